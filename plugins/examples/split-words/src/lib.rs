//! `split-words`: one record per whitespace-separated word of the value (same key, timestamp
//! and headers; all outputs keep the input record's offset).

use weir_plugin::{Record, flat_map};

#[flat_map]
pub fn split_words(record: Record) -> Result<Vec<Record>, String> {
    let text = record
        .value_str()
        .ok_or_else(|| "value is not UTF-8 text".to_string())?;
    Ok(text
        .split_whitespace()
        .map(|w| record.clone().with_value(w))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_per_word() {
        let out = split_words(Record::new("  the quick\tfox \n")).unwrap();
        let words: Vec<&str> = out.iter().filter_map(Record::value_str).collect();
        assert_eq!(words, vec!["the", "quick", "fox"]);
        assert!(split_words(Record::new("")).unwrap().is_empty());
        assert!(split_words(Record::new(vec![0xff])).is_err());
    }
}
