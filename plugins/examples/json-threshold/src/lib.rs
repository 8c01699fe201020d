//! `json-threshold`: a realistic JSON stage. Values are JSON objects (e.g. orders); records
//! whose numeric `field` is below `min` (or missing) are dropped, and the survivors are
//! projected to the `keep` fields (all fields when `keep` is empty).
//!
//! `--plugin 'json-threshold={"field":"amount","min":100,"keep":["id","amount"]}'`

use serde::Deserialize;
use serde_json::{Map, Value};
use weir_plugin::{Record, filter_map};

#[derive(Debug, Deserialize)]
pub struct Params {
    pub field: String,
    pub min: f64,
    #[serde(default)]
    pub keep: Vec<String>,
}

#[filter_map]
pub fn threshold(record: Record, params: &Params) -> Result<Option<Record>, String> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&record.value) else {
        return Err("value is not a JSON object".into());
    };
    match obj.get(&params.field).and_then(Value::as_f64) {
        Some(v) if v >= params.min => {}
        _ => return Ok(None),
    }
    let projected: Map<String, Value> = if params.keep.is_empty() {
        obj
    } else {
        obj.into_iter()
            .filter(|(k, _)| params.keep.contains(k))
            .collect()
    };
    let value = serde_json::to_vec(&projected).map_err(|e| e.to_string())?;
    Ok(Some(record.with_value(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            field: "amount".into(),
            min: 100.0,
            keep: vec!["id".into(), "amount".into()],
        }
    }

    #[test]
    fn drops_small_and_projects_big() {
        let big = Record::new(r#"{"id":1,"amount":250,"note":"x"}"#);
        let out = threshold(big, &params()).unwrap().unwrap();
        assert_eq!(out.value_str(), Some(r#"{"amount":250,"id":1}"#));
        let small = Record::new(r#"{"id":2,"amount":5}"#);
        assert_eq!(threshold(small, &params()).unwrap(), None);
        let missing = Record::new(r#"{"id":3}"#);
        assert_eq!(threshold(missing, &params()).unwrap(), None);
        assert!(threshold(Record::new("nope"), &params()).is_err());
    }
}
