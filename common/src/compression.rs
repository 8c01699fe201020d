//! Per-batch compression of the records section (header bytes 1, bits 0-2).
//!
//! The producer compresses the varint-framed records of a batch as one block; the broker
//! decompresses only to validate and stores the compressed bytes as they came; consumers
//! decompress. Formats (so any SDK can produce them):
//!
//! - `lz4`: an LZ4 *block* preceded by the uncompressed length as u32 LE (what `lz4_flex`'s
//!   `compress_prepend_size` and Python's `lz4.block.compress(store_size=True)` write).
//! - `zstd`: one standard zstd frame.
//!
//! Decompression is bounded by [`MAX_UNCOMPRESSED_BATCH_BYTES`], so a small hostile batch
//! cannot make the broker allocate without limit.

use std::fmt;
use std::str::FromStr;

use crate::limits::MAX_UNCOMPRESSED_BATCH_BYTES;

/// zstd level the producer uses: zstd's default, a good speed/ratio balance for batches.
pub const ZSTD_LEVEL: i32 = 3;

/// How a batch's records are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Stored as encoded.
    #[default]
    None,
    /// LZ4 block: fastest, moderate ratio.
    Lz4,
    /// zstd: better ratio, more CPU.
    Zstd,
}

/// Why a compressed records section could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    #[error("unknown compression code {0}")]
    UnknownCode(u8),
    #[error("{codec} data is corrupt: {reason}")]
    Corrupt { codec: Compression, reason: String },
    #[error("records decompress to more than {MAX_UNCOMPRESSED_BATCH_BYTES} bytes")]
    TooLarge,
}

impl Compression {
    /// The code stored in the batch attributes.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
        }
    }

    /// The codec of an attributes code.
    pub fn from_code(code: u8) -> Result<Self, CompressionError> {
        match code {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Lz4),
            2 => Ok(Compression::Zstd),
            c => Err(CompressionError::UnknownCode(c)),
        }
    }

    /// Compresses `raw` (for [`Compression::None`], a copy).
    pub fn compress(self, raw: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => raw.to_vec(),
            Compression::Lz4 => lz4_flex::block::compress_prepend_size(raw),
            Compression::Zstd => zstd::bulk::compress(raw, ZSTD_LEVEL)
                .expect("in-memory zstd compression of a bounded buffer cannot fail"),
        }
    }

    /// Decompresses `data`, refusing output beyond [`MAX_UNCOMPRESSED_BATCH_BYTES`].
    pub fn decompress(self, data: &[u8]) -> Result<Vec<u8>, CompressionError> {
        let corrupt = |reason: String| CompressionError::Corrupt {
            codec: self,
            reason,
        };
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Lz4 => {
                let declared = data
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .ok_or_else(|| corrupt("shorter than its length prefix".into()))?;
                if declared > MAX_UNCOMPRESSED_BATCH_BYTES {
                    return Err(CompressionError::TooLarge);
                }
                lz4_flex::block::decompress_size_prepended(data).map_err(|e| corrupt(e.to_string()))
            }
            Compression::Zstd => {
                let capacity = match zstd::zstd_safe::get_frame_content_size(data) {
                    Ok(Some(n)) if n > MAX_UNCOMPRESSED_BATCH_BYTES as u64 => {
                        return Err(CompressionError::TooLarge);
                    }
                    Ok(Some(n)) => n as usize,
                    // Streamed frames do not record their size: bound by the limit.
                    Ok(None) => MAX_UNCOMPRESSED_BATCH_BYTES,
                    Err(_) => return Err(corrupt("not a zstd frame".into())),
                };
                zstd::bulk::decompress(data, capacity).map_err(|e| {
                    if capacity == MAX_UNCOMPRESSED_BATCH_BYTES {
                        CompressionError::TooLarge
                    } else {
                        corrupt(e.to_string())
                    }
                })
            }
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        })
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!(
                "unknown compression {other:?} (expected none, lz4 or zstd)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..10_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips_and_shrinks_repetitive_data() {
        let raw = sample();
        for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let packed = c.compress(&raw);
            if c != Compression::None {
                assert!(packed.len() < raw.len() / 2, "{c}: {}", packed.len());
            }
            assert_eq!(c.decompress(&packed).unwrap(), raw, "{c}");
            assert_eq!(Compression::from_code(c.code()).unwrap(), c);
            assert_eq!(c.to_string().parse::<Compression>().unwrap(), c);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for c in [Compression::Lz4, Compression::Zstd] {
            for junk in [
                &b""[..],
                b"\x01",
                b"\xff\xff\xff\x00abc",
                b"not compressed at all",
            ] {
                assert!(c.decompress(junk).is_err(), "{c} {junk:?}");
            }
        }
        assert_eq!(
            Compression::from_code(5),
            Err(CompressionError::UnknownCode(5))
        );
    }

    #[test]
    fn decompression_is_bounded() {
        let mut bomb = Compression::Lz4.compress(&[0u8; 1024]);
        bomb[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Compression::Lz4.decompress(&bomb),
            Err(CompressionError::TooLarge)
        );
        let big = vec![0u8; MAX_UNCOMPRESSED_BATCH_BYTES + 1];
        let z = Compression::Zstd.compress(&big);
        assert!(z.len() < 64 * 1024);
        assert_eq!(
            Compression::Zstd.decompress(&z),
            Err(CompressionError::TooLarge)
        );
    }
}
