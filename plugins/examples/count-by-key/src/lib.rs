//! `count-by-key`: for each record, emits the running count of records seen with its key
//! (value `1`, `2`, `3`, ...; records without a key count under the empty key). The counts are
//! the aggregate state: the host keeps them between batches, and a pipeline persists them with
//! its outputs.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use weir_plugin::{Record, aggregate};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counts {
    by_key: HashMap<String, u64>,
}

#[aggregate]
pub fn count_by_key(state: &mut Counts, record: Record) -> Result<Option<Record>, String> {
    let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
    let n = state.by_key.entry(key).or_insert(0);
    *n += 1;
    let count = n.to_string();
    Ok(Some(record.with_value(count)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key() {
        let mut s = Counts::default();
        let mut run = |k: &str| {
            let r = count_by_key(&mut s, Record::new("x").with_key(k))
                .unwrap()
                .unwrap();
            r.value_str().unwrap().to_string()
        };
        assert_eq!(run("a"), "1");
        assert_eq!(run("b"), "1");
        assert_eq!(run("a"), "2");
        assert_eq!(run("a"), "3");
    }

    #[test]
    fn through_the_abi_the_state_carries_from_batch_to_batch() {
        let mut h = weir_plugin::testing::Harness::new(WEIR_PLUGIN, "").unwrap();
        let batch = |keys: &[&str]| -> Vec<Record> {
            keys.iter().map(|k| Record::new("x").with_key(*k)).collect()
        };
        let out = h.run(&batch(&["a", "b", "a"])).unwrap();
        let counts: Vec<&str> = out.iter().filter_map(Record::value_str).collect();
        assert_eq!(counts, ["1", "1", "2"]);
        assert_eq!(out.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 2]);
        let out = h.run(&batch(&["a"])).unwrap();
        assert_eq!(out[0].value_str(), Some("3"));
        assert_eq!(out[0].offset, 3);
        let state: Counts = h.state_as().unwrap();
        assert_eq!(state.by_key.get("a"), Some(&3));
    }
}
