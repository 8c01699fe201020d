//! The HTTP sink: POSTs each batch to a webhook as JSON, retrying with exponential backoff.
//!
//! Body: `{"records": [...]}`, each record as `weir consume` prints it ([`crate::json`]):
//! `topic`, `partition`, `offset`, `timestamp`, `key`, `value`, `headers`, and
//! `key_encoding`/`value_encoding`/`header_encodings` saying `"base64"` for bytes that are not
//! UTF-8. Delivery is at-least-once (a batch whose answer was lost is sent
//! again): receivers deduplicate by (topic, partition, offset).
//!
//! A 2xx answer is success. Connection errors, 408, 429 and 5xx are retried (`retries`
//! attempts in all, waiting `backoff_ms`, doubling, at most [`MAX_BACKOFF`]); any other answer
//! fails the sink with the receiver's status and the start of its body.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use weir::ConsumerRecord;
use weir_common::error::with_causes;

use super::Writer;
use crate::config::{DEFAULT_HTTP_BACKOFF_MS, DEFAULT_HTTP_RETRIES, HttpSink};
use crate::error::ConnectError;
use crate::json::record_json;

/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a refusing receiver's body the error quotes.
const QUOTED_BODY_BYTES: usize = 200;

pub struct HttpWriter {
    url: Uri,
    attempts: u32,
    backoff: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
    connector: String,
}

impl HttpWriter {
    pub fn new(config: &HttpSink, connector: &str) -> Result<Self, ConnectError> {
        let url: Uri = config.url.parse().map_err(|e| {
            ConnectError::External(format!("`url` {:?} is not a URL: {e}", config.url))
        })?;
        Ok(Self {
            url,
            attempts: config.retries.unwrap_or(DEFAULT_HTTP_RETRIES).max(1),
            backoff: Duration::from_millis(config.backoff_ms.unwrap_or(DEFAULT_HTTP_BACKOFF_MS)),
            client: Client::builder(TokioExecutor::new()).build_http(),
            connector: connector.to_string(),
        })
    }

    /// One attempt: `Ok(None)` on success, `Ok(Some(reason))` when worth retrying.
    async fn attempt(&self, body: &Bytes) -> Result<Option<String>, ConnectError> {
        let req = Request::post(self.url.clone())
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("weir-connect/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body.clone()))
            .map_err(|e| ConnectError::External(format!("cannot build the request: {e}")))?;
        let resp = match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req)).await {
            Err(_) => return Ok(Some(format!("no answer within {REQUEST_TIMEOUT:?}"))),
            Ok(Err(e)) => return Ok(Some(with_causes(&e))),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        if status.is_success() {
            // Read the body so the connection can be reused.
            let _ = resp.into_body().collect().await;
            return Ok(None);
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let quoted = String::from_utf8_lossy(&body[..body.len().min(QUOTED_BODY_BYTES)]);
        let reason = format!("{} answered {status}: {}", self.url, quoted.trim());
        if status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
        {
            return Ok(Some(reason));
        }
        Err(ConnectError::External(reason))
    }
}

impl Writer for HttpWriter {
    async fn open(&mut self) -> Result<BTreeMap<u32, u64>, ConnectError> {
        Ok(BTreeMap::new())
    }

    async fn write(
        &mut self,
        records: &[ConsumerRecord],
        _positions: &BTreeMap<u32, u64>,
    ) -> Result<u64, ConnectError> {
        let body = Bytes::from(body_of(records).to_string());
        let mut wait = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match self.attempt(&body).await? {
                None => return Ok(0),
                Some(reason) => last = reason,
            }
            if attempt < self.attempts {
                tracing::warn!(connector = %self.connector, attempt, error = %last, ?wait, "webhook failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
        Err(ConnectError::External(format!(
            "gave up after {} attempts: {last}",
            self.attempts
        )))
    }
}

fn body_of(records: &[ConsumerRecord]) -> Value {
    let records: Vec<Value> = records.iter().map(record_json).collect();
    json!({ "records": records })
}
