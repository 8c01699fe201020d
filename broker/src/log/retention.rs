//! Retention policy: which whole segments a partition may drop now. Pure logic, unit-tested.
//!
//! Kafka's rules: by time, a segment goes once its newest record is older than `retention_ms`;
//! by size, the oldest segments go while the partition stays at least `retention_bytes` big
//! without them. The active (last) segment is never dropped by size; when time retention
//! covers it, it is rolled first (a new empty segment starts at the log end) so the log end
//! offset survives, and the earliest offset moves to it. Records at or above the high
//! watermark are never dropped (they may not be on every in-sync replica yet), as in Kafka.

use crate::types::{SegmentMeta, TopicConfig};

/// What retention should do to a partition now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPlan {
    /// Roll the active segment before dropping (it is expired and not empty).
    pub roll_active: bool,
    /// Number of segments to drop from the front (counted after the roll, if any).
    pub drop_count: usize,
}

pub fn plan(
    segments: &[SegmentMeta],
    config: &TopicConfig,
    now_ms: i64,
    high_watermark: u64,
) -> RetentionPlan {
    let mut out = RetentionPlan::default();
    let Some(active) = segments.last() else {
        return out;
    };
    // Only segments wholly below the high watermark may go.
    let committed = segments
        .iter()
        .take_while(|s| s.next_offset <= high_watermark)
        .count();
    let expired = |s: &SegmentMeta| match config.retention_ms {
        Some(ms) => !s.is_empty() && s.max_timestamp < now_ms.saturating_sub(ms),
        None => false,
    };
    // Time: a prefix of expired segments.
    let by_time = segments.iter().take_while(|s| expired(s)).count();
    if by_time == segments.len() && committed == segments.len() {
        out.roll_active = !active.is_empty();
    }
    // Size: drop the oldest while what stays is still >= retention_bytes; never the active one.
    let mut by_size = 0;
    if let Some(limit) = config.retention_bytes {
        let mut total: u64 = segments.iter().map(|s| s.size_bytes).sum();
        for s in &segments[..segments.len() - 1] {
            if total - s.size_bytes < limit {
                break;
            }
            total -= s.size_bytes;
            by_size += 1;
        }
    }
    out.drop_count = by_time.max(by_size).min(committed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: u64, n: u64, size: u64, max_ts: i64) -> SegmentMeta {
        SegmentMeta {
            base_offset: base,
            next_offset: base + n,
            size_bytes: size,
            created_ms: 0,
            max_timestamp: max_ts,
            running_max_timestamp: max_ts,
        }
    }

    fn config(retention_ms: Option<i64>, retention_bytes: Option<u64>) -> TopicConfig {
        TopicConfig {
            partitions: 1,
            retention_ms,
            retention_bytes,
            segment_bytes: 1000,
            segment_ms: i64::MAX,
            min_insync_replicas: 1,
        }
    }

    #[test]
    fn nothing_to_do_without_limits() {
        let segs = [seg(0, 10, 1000, 1), seg(10, 5, 500, 2)];
        assert_eq!(
            plan(&segs, &config(None, None), 1_000_000, u64::MAX),
            RetentionPlan::default()
        );
    }

    #[test]
    fn time_drops_expired_prefix_only() {
        let segs = [
            seg(0, 10, 100, 100),
            seg(10, 10, 100, 500),
            seg(20, 10, 100, 150),
        ];
        // now - retention = 200: first is expired, second is not, so the third stays too.
        let p = plan(&segs, &config(Some(800), None), 1_000, u64::MAX);
        assert_eq!(
            p,
            RetentionPlan {
                roll_active: false,
                drop_count: 1
            }
        );
    }

    #[test]
    fn time_rolls_the_active_segment_when_everything_expired() {
        let segs = [seg(0, 10, 100, 100), seg(10, 10, 100, 150)];
        let p = plan(&segs, &config(Some(10), None), 1_000, u64::MAX);
        assert_eq!(
            p,
            RetentionPlan {
                roll_active: true,
                drop_count: 2
            }
        );
        // An empty active segment is never "expired".
        let segs = [seg(0, 10, 100, 100), seg(10, 0, 0, i64::MIN)];
        let p = plan(&segs, &config(Some(10), None), 1_000, u64::MAX);
        assert_eq!(
            p,
            RetentionPlan {
                roll_active: false,
                drop_count: 1
            }
        );
    }

    #[test]
    fn size_keeps_at_least_the_limit_and_the_active_segment() {
        let segs = [
            seg(0, 1, 400, 0),
            seg(1, 1, 400, 0),
            seg(2, 1, 400, 0),
            seg(3, 1, 100, 0),
        ];
        // total 1300; limit 500: dropping 400 → 900 ≥ 500, again → 500 ≥ 500, again → 100 < 500.
        let p = plan(&segs, &config(None, Some(500)), 0, u64::MAX);
        assert_eq!(p.drop_count, 2);
        // A tiny limit still never drops the active segment.
        let p = plan(&segs, &config(None, Some(1)), 0, u64::MAX);
        assert_eq!(p.drop_count, 3);
    }

    #[test]
    fn nothing_at_or_above_the_high_watermark_goes() {
        let segs = [
            seg(0, 10, 400, 100),
            seg(10, 10, 400, 100),
            seg(20, 5, 400, 100),
        ];
        // Everything expired, but only the first segment is wholly below the high watermark.
        let p = plan(&segs, &config(Some(10), None), 1_000, 15);
        assert_eq!(
            p,
            RetentionPlan {
                roll_active: false,
                drop_count: 1
            }
        );
        let p = plan(&segs, &config(None, Some(1)), 0, 20);
        assert_eq!(p.drop_count, 2);
        // With the high watermark at the log end the active segment rolls as usual.
        let p = plan(&segs, &config(Some(10), None), 1_000, 25);
        assert_eq!(p.drop_count, 3);
        assert!(p.roll_active);
    }
}
