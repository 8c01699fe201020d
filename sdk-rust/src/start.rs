//! Where reading starts in a partition: a consumer's start, and where a group's committed
//! offsets are reset to. One type, parsed from the same text by the CLI and the Python SDK.

use std::str::FromStr;

/// Where reading starts in each partition: a consumer's start (for a group consumer: in a
/// partition the group has no valid committed offset for), or where
/// [`Admin::reset_group`](crate::Admin::reset_group) moves a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// The oldest record still kept. A consumer without a group that finds retention has
    /// dropped it before its subscription arrives looks it up again (up to 5 times).
    #[default]
    Earliest,
    /// The log end: only records written from now on.
    Latest,
    /// This offset in every partition (a reset: at most the log end).
    Offset(u64),
    /// The first record with a timestamp `>=` this (unix ms).
    Timestamp(i64),
}

impl FromStr for StartFrom {
    type Err = String;

    /// `earliest`, `latest`, an offset, or `ts:` and unix milliseconds.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "earliest" => Ok(StartFrom::Earliest),
            "latest" => Ok(StartFrom::Latest),
            _ => {
                if let Some(ts) = s.strip_prefix("ts:") {
                    return ts
                        .parse()
                        .map(StartFrom::Timestamp)
                        .map_err(|_| format!("bad timestamp {ts:?}: want unix milliseconds"));
                }
                s.parse().map(StartFrom::Offset).map_err(|_| {
                    format!("want earliest, latest, an offset or ts:UNIX_MILLIS, got {s:?}")
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_parse_from_their_names_offsets_and_timestamps() {
        assert_eq!("earliest".parse(), Ok(StartFrom::Earliest));
        assert_eq!("latest".parse(), Ok(StartFrom::Latest));
        assert_eq!("42".parse(), Ok(StartFrom::Offset(42)));
        assert_eq!(
            "ts:1700000000000".parse(),
            Ok(StartFrom::Timestamp(1_700_000_000_000))
        );
        assert!(
            "ts:soon"
                .parse::<StartFrom>()
                .unwrap_err()
                .contains("bad timestamp")
        );
        assert!(
            "-1".parse::<StartFrom>()
                .unwrap_err()
                .contains("want earliest")
        );
        assert!("".parse::<StartFrom>().is_err());
    }
}
