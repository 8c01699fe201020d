//! The APIs and versions the Kafka listener serves (ApiVersions), kept in one table with the
//! version ranges it advertises; docs/kafka.md lists the same.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// One served API: what ApiVersions advertises, and what is served when asked.
struct Served {
    api: ApiKey,
    /// Advertised.
    min: i16,
    max: i16,
    /// Lowest version actually served; below it (but advertised) the answer is
    /// UNSUPPORTED_VERSION.
    lowest_served: i16,
}

const fn served(api: ApiKey, min: i16, max: i16) -> Served {
    Served {
        api,
        min,
        max,
        lowest_served: min,
    }
}

/// Every API served, in ApiKey order. Produce is advertised from v0, as Kafka 4 does
/// (KAFKA-18659: librdkafka turns compression off against a broker that does not), though v0–2
/// (message sets before v2) are refused when used. Versions stop where a later one would need
/// what Weir does not have: topic ids in Produce v13 and Fetch v13 (KIP-516), ListOffsets v7's
/// max-timestamp query (KIP-734), Metadata v13's top-level error.
const SERVED: &[Served] = &[
    Served {
        api: ApiKey::Produce,
        min: 0,
        max: 12,
        lowest_served: 3,
    },
    served(ApiKey::Fetch, 4, 12),
    served(ApiKey::ListOffsets, 1, 6),
    served(ApiKey::Metadata, 0, 12),
    served(ApiKey::OffsetCommit, 2, 9),
    served(ApiKey::OffsetFetch, 1, 9),
    served(ApiKey::FindCoordinator, 0, 4),
    served(ApiKey::JoinGroup, 0, 9),
    served(ApiKey::Heartbeat, 0, 4),
    served(ApiKey::LeaveGroup, 0, 5),
    served(ApiKey::SyncGroup, 0, 5),
    served(ApiKey::DescribeGroups, 0, 5),
    served(ApiKey::ListGroups, 0, 5),
    // v0 carries raw SASL tokens after the handshake; clients use v1 and SaslAuthenticate.
    served(ApiKey::SaslHandshake, 1, 1),
    served(ApiKey::ApiVersions, 0, 4),
    served(ApiKey::CreateTopics, 2, 7),
    served(ApiKey::DeleteTopics, 1, 6),
    served(ApiKey::InitProducerId, 0, 5),
    served(ApiKey::DescribeConfigs, 1, 4),
    served(ApiKey::SaslAuthenticate, 0, 2),
    served(ApiKey::DescribeCluster, 0, 1),
];

fn entry(api: ApiKey) -> Option<&'static Served> {
    SERVED.iter().find(|s| s.api == api)
}

/// Whether requests of `api` at `version` are served.
pub fn serves(api: ApiKey, version: i16) -> bool {
    entry(api).is_some_and(|s| (s.lowest_served..=s.max).contains(&version))
}

/// The ApiVersions response: every served API with its advertised range.
pub fn api_versions(error_code: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error_code;
    r.api_keys = SERVED
        .iter()
        .map(|s| {
            let mut v = ApiVersion::default();
            v.api_key = s.api as i16;
            v.min_version = s.min;
            v.max_version = s.max;
            v
        })
        .collect();
    r
}

/// The API's name in metrics and logs (Kafka's own names).
pub fn name(api: ApiKey) -> &'static str {
    match api {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        ApiKey::DescribeCluster => "DescribeCluster",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_range_is_one_the_codec_can_decode_and_encode() {
        for s in SERVED {
            let codec = s.api.valid_versions();
            assert!(s.lowest_served >= codec.min, "{:?}", s.api);
            assert!(s.max <= codec.max, "{:?}", s.api);
            assert!(s.min <= s.lowest_served && s.lowest_served <= s.max);
            assert!(serves(s.api, s.max) && !serves(s.api, s.max + 1));
        }
        assert!(!serves(ApiKey::Produce, 2) && serves(ApiKey::Produce, 3));
        assert!(!serves(ApiKey::EndTxn, 0));
    }
}
