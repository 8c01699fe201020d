//! `--node-id N --cluster 1=HOST:PORT,2=HOST:PORT,...`: who is in the cluster.

use std::collections::BTreeMap;

use weir_common::limits::{MAX_CLUSTER_NODES, MAX_NODE_ID};

/// A broker's id in the cluster (`--node-id`).
pub type NodeId = u64;

/// This broker's place in a cluster: its id and every member's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub node_id: NodeId,
    /// Every member (this one included) by id.
    pub peers: BTreeMap<NodeId, String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeersError {
    #[error("--cluster entry {0:?} is not ID=HOST:PORT")]
    BadEntry(String),
    #[error("--cluster names node {0} twice")]
    Duplicate(NodeId),
    #[error("--cluster lists {0} nodes; at most {MAX_CLUSTER_NODES} are supported")]
    TooMany(usize),
    #[error("--node-id {0} is not in --cluster")]
    NotAMember(NodeId),
    #[error("--node-id and --cluster go together")]
    Incomplete,
    #[error("node ids start at 1 (0 is reserved)")]
    ZeroId,
    #[error("node id {0} is too large; at most {MAX_NODE_ID}")]
    IdTooLarge(NodeId),
}

/// Parses `1=HOST:PORT,2=HOST:PORT`.
pub fn parse_peers(spec: &str) -> Result<BTreeMap<NodeId, String>, PeersError> {
    let mut out = BTreeMap::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || PeersError::BadEntry(entry.to_string());
        let (id, addr) = entry.split_once('=').ok_or_else(bad)?;
        let id: NodeId = id.trim().parse().map_err(|_| bad())?;
        if id == 0 {
            return Err(PeersError::ZeroId);
        }
        if id > MAX_NODE_ID {
            return Err(PeersError::IdTooLarge(id));
        }
        let addr = addr.trim();
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad());
        }
        if out.insert(id, addr.to_string()).is_some() {
            return Err(PeersError::Duplicate(id));
        }
    }
    if out.is_empty() {
        return Err(PeersError::BadEntry(spec.to_string()));
    }
    if out.len() > MAX_CLUSTER_NODES {
        return Err(PeersError::TooMany(out.len()));
    }
    Ok(out)
}

/// The cluster this broker belongs to, from `--node-id` and `--cluster` (both or neither).
pub fn cluster_spec(
    node_id: Option<NodeId>,
    cluster: Option<&str>,
) -> Result<Option<ClusterSpec>, PeersError> {
    match (node_id, cluster) {
        (None, None) => Ok(None),
        (Some(node_id), Some(spec)) => {
            let peers = parse_peers(spec)?;
            if !peers.contains_key(&node_id) {
                return Err(PeersError::NotAMember(node_id));
            }
            Ok(Some(ClusterSpec { node_id, peers }))
        }
        _ => Err(PeersError::Incomplete),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_ids_and_addresses_parses() {
        let p = parse_peers("1=127.0.0.1:9292, 2=broker-2:9292,3=[::1]:9300").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&2], "broker-2:9292");
        assert_eq!(p[&3], "[::1]:9300");
    }

    #[test]
    fn malformed_lists_are_refused_with_the_entry() {
        for bad in ["", "1", "1=host", "x=h:1", "1=:9", "1=h:0", "1=h:99999"] {
            assert!(parse_peers(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_peers("1=a:1,1=b:2"), Err(PeersError::Duplicate(1)));
        assert_eq!(parse_peers("0=a:1"), Err(PeersError::ZeroId));
        assert_eq!(
            parse_peers(&format!("{}=a:1", MAX_NODE_ID + 1)),
            Err(PeersError::IdTooLarge(MAX_NODE_ID + 1))
        );
        assert!(parse_peers(&format!("{MAX_NODE_ID}=a:1")).is_ok());
        let many: Vec<String> = (1..=MAX_CLUSTER_NODES as u64 + 1)
            .map(|i| format!("{i}=h:{}", 1000 + i))
            .collect();
        assert!(matches!(
            parse_peers(&many.join(",")),
            Err(PeersError::TooMany(_))
        ));
    }

    #[test]
    fn the_node_must_be_a_member_and_both_flags_go_together() {
        assert_eq!(cluster_spec(None, None), Ok(None));
        assert_eq!(cluster_spec(Some(1), None), Err(PeersError::Incomplete));
        assert_eq!(
            cluster_spec(None, Some("1=a:1")),
            Err(PeersError::Incomplete)
        );
        assert_eq!(
            cluster_spec(Some(4), Some("1=a:1,2=b:2")),
            Err(PeersError::NotAMember(4))
        );
        let spec = cluster_spec(Some(2), Some("1=a:1,2=b:2")).unwrap().unwrap();
        assert_eq!(spec.node_id, 2);
        assert_eq!(spec.peers.len(), 2);
    }
}
