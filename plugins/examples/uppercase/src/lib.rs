//! `uppercase`: upper-cases each record's value (UTF-8; other bytes pass unchanged).

use weir_plugin::{Record, RecordView, map};

/// Reads the record where it lies in the batch (a `RecordView`); only the output is built.
#[map]
pub fn uppercase(record: RecordView<'_>) -> Result<Record, String> {
    let value = if record.value.is_ascii() {
        record.value.to_ascii_uppercase()
    } else {
        match std::str::from_utf8(record.value) {
            Ok(s) => s.to_uppercase().into_bytes(),
            Err(_) => record.value.to_ascii_uppercase(),
        }
    };
    Ok(record.with_value(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_cases_and_keeps_the_key() {
        let r = uppercase(RecordView::new("héllo wörld".as_bytes()).with_key(b"k")).unwrap();
        assert_eq!(r.value_str(), Some("HÉLLO WÖRLD"));
        assert_eq!(r.key_str(), Some("k"));
    }
}
