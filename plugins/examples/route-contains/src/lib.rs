//! `route-contains`: sends each record whose value contains `params.substring` to output
//! `params.output` (default 1: the pipeline's second `--to` topic), every other record to
//! output 0 (the first). Records pass unchanged.
//!
//! `weir pipeline create triage --from logs --to rest --to errors
//!     --plugin 'route-contains={"substring":"ERROR"}'`

use memchr::memmem::Finder;
use serde::Deserialize;
use weir_plugin::{RecordView, route};

/// `{"substring": "...", "output": 1}`.
#[derive(Debug, Deserialize)]
#[serde(from = "RawParams")]
pub struct Params {
    needle: Finder<'static>,
    output: u8,
}

#[derive(Deserialize)]
struct RawParams {
    substring: String,
    #[serde(default = "second")]
    output: u8,
}

fn second() -> u8 {
    1
}

impl From<RawParams> for Params {
    fn from(raw: RawParams) -> Self {
        Self {
            needle: Finder::new(raw.substring.as_bytes()).into_owned(),
            output: raw.output,
        }
    }
}

#[route]
pub fn by_content(record: RecordView<'_>, params: &Params) -> Result<Option<u8>, String> {
    Ok(Some(match params.needle.find(record.value) {
        Some(_) => params.output,
        None => 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin::Record;

    #[test]
    fn matching_records_go_to_the_other_output_in_order() {
        let mut h =
            weir_plugin::testing::Harness::new(WEIR_PLUGIN, r#"{"substring":"ERROR"}"#).unwrap();
        let input = [
            Record::new("ok 1"),
            Record::new("ERROR disk").with_key("k"),
            Record::new("ERROR net"),
            Record::new("ok 2"),
        ];
        let out = h.run_routed(&input).unwrap();
        let got: Vec<(u8, &str, u64)> = out
            .iter()
            .map(|(k, r)| (*k, r.value_str().unwrap(), r.offset))
            .collect();
        assert_eq!(
            got,
            [
                (0, "ok 1", 0),
                (1, "ERROR disk", 1),
                (1, "ERROR net", 2),
                (0, "ok 2", 3)
            ]
        );
        assert_eq!(out[1].1.key_str(), Some("k"));
        // A consumer (output 0) sees the rest only.
        let values: Vec<String> = h
            .run(&input)
            .unwrap()
            .iter()
            .map(|r| r.value_str().unwrap().to_string())
            .collect();
        assert_eq!(values, ["ok 1", "ok 2"]);
    }

    #[test]
    fn the_output_is_a_param_and_out_of_range_outputs_fail() {
        let mut h =
            weir_plugin::testing::Harness::new(WEIR_PLUGIN, r#"{"substring":"x","output":3}"#)
                .unwrap();
        let out = h.run_routed(&[Record::new("x")]).unwrap();
        assert_eq!(out[0].0, 3);
        let mut bad =
            weir_plugin::testing::Harness::new(WEIR_PLUGIN, r#"{"substring":"x","output":8}"#)
                .unwrap();
        let e = bad.run_routed(&[Record::new("x")]).err().unwrap();
        assert!(e.contains("output 8"), "{e}");
    }
}
