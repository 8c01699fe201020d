//! `uppercase`: upper-cases each record's value (UTF-8; other bytes pass unchanged).

use weir_plugin::{Mapped, RecordView, map, value_buffer};

/// Reads the record where it lies in the batch (a `RecordView`); only the new value is built
/// (key and headers stay borrowed: a `Mapped`).
#[map]
pub fn uppercase(record: RecordView<'_>) -> Result<Mapped<'_>, String> {
    let value = match ascii_uppercase(record.value) {
        Some(upper) => upper,
        None => match std::str::from_utf8(record.value) {
            Ok(s) => s.to_uppercase().into_bytes(),
            Err(_) => record.value.to_ascii_uppercase(),
        },
    };
    Ok(record.with_value(value))
}

/// The value upper-cased when it is all ASCII (`None` otherwise): one pass, eight bytes at a
/// time in a `u64` (a 100-byte value takes 13 steps instead of 100), in the buffer the last
/// output value left (`value_buffer`: no allocation per record).
fn ascii_uppercase(value: &[u8]) -> Option<Vec<u8>> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    let mut out = value_buffer();
    out.extend_from_slice(value);
    let mut high = 0u64;
    let mut words = out.chunks_exact_mut(8);
    for word in &mut words {
        let bytes: &mut [u8; 8] = word.try_into().ok()?;
        let x = u64::from_le_bytes(*bytes);
        high |= x;
        // Bit 7 of each byte: set when the byte is at least b'a', and when it is above b'z'
        // (no carries between bytes while every byte is below 0x80).
        let low7 = x & (0x7f * ONES);
        let from_a = low7 + (0x80 - u64::from(b'a')) * ONES;
        let past_z = low7 + (0x80 - u64::from(b'z') - 1) * ONES;
        let lower = from_a & !past_z & (0x80 * ONES);
        *bytes = (x - (lower >> 2)).to_le_bytes();
    }
    let mut tail = 0u8;
    for b in words.into_remainder() {
        tail |= *b;
        b.make_ascii_uppercase();
    }
    (high & (0x80 * ONES) == 0 && tail < 0x80).then_some(out)
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

    #[test]
    fn eight_bytes_at_a_time_matches_byte_by_byte() {
        // Every ASCII byte, at every position of a word and in the tail.
        let all: Vec<u8> = (0u8..0x80).collect();
        for start in 0..8 {
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 100, 128 - start] {
                let value = &all[start..start + len.min(128 - start)];
                assert_eq!(
                    ascii_uppercase(value).as_deref(),
                    Some(&value.to_ascii_uppercase()[..]),
                    "{value:?}"
                );
            }
        }
        // A non-ASCII byte anywhere: not this path.
        for at in [0, 5, 8, 20] {
            let mut value = vec![b'a'; 21];
            value[at] = 0xC3;
            assert_eq!(ascii_uppercase(&value), None);
        }
        let r = uppercase(RecordView::new(b"abc\xff")).unwrap();
        assert_eq!(r.value, b"ABC\xff");
    }
}
