//! `filter-contains`: keeps the records whose value contains `params.substring`.
//!
//! `weir consume logs --plugin 'filter-contains={"substring":"ERROR"}'`

use serde::Deserialize;
use weir_plugin::{Record, filter};

#[derive(Debug, Deserialize)]
pub struct Params {
    pub substring: String,
}

#[filter]
pub fn contains(record: &Record, params: &Params) -> Result<bool, String> {
    let needle = params.substring.as_bytes();
    Ok(needle.is_empty() || record.value.windows(needle.len()).any(|w| w == needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_matching_values() {
        let p = Params {
            substring: "err".into(),
        };
        assert!(contains(&Record::new("an error here"), &p).unwrap());
        assert!(!contains(&Record::new("all fine"), &p).unwrap());
        assert!(!contains(&Record::new(vec![0xff, 0xfe]), &p).unwrap());
    }
}
