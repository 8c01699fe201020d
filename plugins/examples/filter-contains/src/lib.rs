//! `filter-contains`: keeps the records whose value contains `params.substring` (as bytes:
//! the value need not be UTF-8).
//!
//! `weir consume logs --plugin 'filter-contains={"substring":"ERROR"}'`

use memchr::memmem::Finder;
use serde::Deserialize;
use weir_plugin::{RecordView, filter};

/// `{"substring": "..."}`, turned once (at init) into a searcher for it.
#[derive(Debug, Deserialize)]
#[serde(from = "RawParams")]
pub struct Params {
    needle: Finder<'static>,
}

#[derive(Deserialize)]
struct RawParams {
    substring: String,
}

impl From<RawParams> for Params {
    fn from(raw: RawParams) -> Self {
        Self {
            needle: Finder::new(raw.substring.as_bytes()).into_owned(),
        }
    }
}

/// Reads the value where it lies in the batch (a `RecordView`): nothing is copied.
#[filter]
pub fn contains(record: RecordView<'_>, params: &Params) -> Result<bool, String> {
    Ok(params.needle.find(record.value).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin::Record;

    fn params(substring: &str) -> Params {
        serde_json::from_value(serde_json::json!({ "substring": substring })).unwrap()
    }

    #[test]
    fn keeps_only_matching_values() {
        let p = params("err");
        let v = RecordView::new;
        assert!(contains(v(b"an error here"), &p).unwrap());
        assert!(contains(v(b"err"), &p).unwrap());
        assert!(!contains(v(b"all fine"), &p).unwrap());
        assert!(!contains(v(b"er"), &p).unwrap());
        assert!(!contains(v(&[0xff, 0xfe]), &p).unwrap());
        assert!(contains(v(b"\xff err"), &p).unwrap());
        assert!(contains(v(b"anything"), &params("")).unwrap());
    }

    #[test]
    fn through_the_abi_kept_records_pass_unchanged_and_bad_params_fail() {
        let mut h =
            weir_plugin::testing::Harness::new(WEIR_PLUGIN, r#"{"substring":"ERROR"}"#).unwrap();
        let input = [
            Record::new("ERROR disk").with_key("k"),
            Record::new("ok"),
            Record::new("ERROR net"),
        ];
        let out = h.run(&input).unwrap();
        let values: Vec<&str> = out.iter().filter_map(Record::value_str).collect();
        assert_eq!(values, ["ERROR disk", "ERROR net"]);
        assert_eq!(out[0].key_str(), Some("k"));
        assert_eq!(out[1].offset, 2);
        let bad = weir_plugin::testing::Harness::new(WEIR_PLUGIN, "{}")
            .err()
            .unwrap();
        assert!(bad.contains("substring"), "{bad}");
    }
}
