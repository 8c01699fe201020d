//! Records as JSON, the one rendering `weir consume` (SPEC.md: "values as UTF-8 strings (key
//! null when absent); bytes that are not UTF-8 are base64 with key_encoding/value_encoding")
//! and the HTTP sink share: `topic`, `partition`, `offset`, `timestamp`, `key`, `value`,
//! `headers`; a key, value or header value that is not UTF-8 is base64, flagged by
//! `key_encoding`/`value_encoding`: `"base64"` or, for headers, `header_encodings`.

use base64::Engine as _;
use serde_json::{Map, Value, json};
use weir::ConsumerRecord;

/// A byte string as JSON: UTF-8 text as is, anything else base64 (flagged by `encoding`).
fn text_or_base64(bytes: &[u8]) -> (Value, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Value::String(s.to_string()), false),
        Err(_) => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            true,
        ),
    }
}

/// One record as a JSON object.
pub fn record_json(r: &ConsumerRecord) -> Value {
    let mut obj = Map::new();
    obj.insert("topic".into(), json!(&*r.topic));
    obj.insert("partition".into(), json!(r.partition));
    obj.insert("offset".into(), json!(r.offset));
    obj.insert("timestamp".into(), json!(r.timestamp));
    match &r.key {
        None => {
            obj.insert("key".into(), Value::Null);
        }
        Some(k) => {
            let (v, b64) = text_or_base64(k);
            obj.insert("key".into(), v);
            if b64 {
                obj.insert("key_encoding".into(), json!("base64"));
            }
        }
    }
    let (v, b64) = text_or_base64(&r.value);
    obj.insert("value".into(), v);
    if b64 {
        obj.insert("value_encoding".into(), json!("base64"));
    }
    let mut headers = Map::new();
    let mut encodings = Map::new();
    for h in &r.headers {
        let (v, b64) = text_or_base64(&h.value);
        if b64 {
            encodings.insert(h.key.clone(), json!("base64"));
        }
        headers.insert(h.key.clone(), v);
    }
    obj.insert("headers".into(), Value::Object(headers));
    if !encodings.is_empty() {
        obj.insert("header_encodings".into(), Value::Object(encodings));
    }
    Value::Object(obj)
}
