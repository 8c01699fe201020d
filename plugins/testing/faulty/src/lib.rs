//! `faulty`: a map plugin for Weir's own tests of plugin failures. A value `panic` indexes
//! past the end of a slice (a real panic, as a plugin bug would), a value `error` returns an
//! error; every other record passes unchanged.

use weir_plugin::{Record, map};

/// Fails on the values `panic` and `error`, passes the others.
#[map]
pub fn faulty(record: Record) -> Result<Record, String> {
    match record.value.as_slice() {
        b"panic" => {
            let three = std::hint::black_box(vec![1u8, 2, 3]);
            let at = std::hint::black_box(5);
            Ok(record.with_value(vec![three[at]]))
        }
        b"error" => Err("asked to fail".into()),
        _ => Ok(record),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_other_values_and_fails_on_error() {
        assert_eq!(faulty(Record::new("x")).unwrap().value, b"x");
        assert_eq!(faulty(Record::new("error")).unwrap_err(), "asked to fail");
        assert!(std::panic::catch_unwind(|| faulty(Record::new("panic"))).is_err());
    }

    #[test]
    fn through_the_abi_an_error_is_the_plugins_message() {
        let mut h = weir_plugin::testing::Harness::new(WEIR_PLUGIN, "").unwrap();
        assert_eq!(h.run(&[Record::new("a")]).unwrap(), [Record::new("a")]);
        assert_eq!(
            h.run(&[Record::new("b"), Record::new("error")])
                .unwrap_err(),
            "asked to fail"
        );
        assert_eq!(weir_plugin::abi::offset(), 2);
    }
}
