//! Cluster identity (docs/cluster.md, "Cluster identity"): a cluster has an id, made by the
//! member that founds it, and every member writes it into its data dir when it joins
//! (`RaftValue::ClusterId`) and records that in the metadata ([`Command::Join`]). So:
//!
//! - a member whose data dir was wiped (no id, but the cluster lists it as joined) is refused,
//!   rather than coming back empty as a voter and a replica the cluster counts on;
//! - a data dir of another cluster (its id differs from the members') is refused;
//! - the first member founds a new cluster only once a majority of the members answer and
//!   none of them belongs to a cluster, so a wiped first member cannot start a second one.
//!
//! [`check_at_start`] asks the other members once, before the broker serves, so the common
//! cases fail at start with a clear error; [`maintain`] founds or joins the cluster in the
//! background and ends with an error if a later answer or the metadata shows either problem.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;

use super::network::calls::StatusProbe;
use super::peers::NodeId;
use super::raft_log::{RaftLog, RaftValue};
use super::state::{Command, Outcome};
use super::{Cluster, ClusterError};

/// How long a member waits for each other member's answer when it asks who they are.
pub const PEER_ASK_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often a member asks again, or looks at the metadata again, until it has joined.
const RETRY: Duration = Duration::from_millis(200);
/// How often the first member says it is still waiting for a majority before founding.
const WAITING_LOG_EVERY: Duration = Duration::from_secs(10);

/// What one other member said about itself.
struct Answer {
    node: NodeId,
    cluster_id: String,
    joined: Vec<NodeId>,
}

/// The cluster id written in this data dir, if any.
pub fn local_id(log: &RaftLog) -> Result<Option<String>, ClusterError> {
    log.get(RaftValue::ClusterId)
        .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .map_err(|e| ClusterError::Start(format!("cannot read the cluster id: {e}")))
}

fn write_local_id(log: &RaftLog, id: &str) -> Result<(), ClusterError> {
    log.put(RaftValue::ClusterId, id.as_bytes())
        .map_err(|e| ClusterError::Start(format!("cannot write the cluster id: {e}")))
}

/// A new cluster id: 16 random bytes, hex.
fn new_id() -> Result<String, ClusterError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| ClusterError::Start(format!("no randomness for a cluster id: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Asks every other member who it is; those that answer within [`PEER_ASK_TIMEOUT`].
async fn ask(me: NodeId, peers: &BTreeMap<NodeId, String>) -> Vec<Answer> {
    let asks = peers.iter().filter(|(id, _)| **id != me).map(|(id, addr)| {
        let id = *id;
        let probe = StatusProbe::new(addr, PEER_ASK_TIMEOUT);
        async move {
            let status = probe.ok()?.identity(PEER_ASK_TIMEOUT).await?;
            Some(Answer {
                node: id,
                cluster_id: status.cluster_id,
                joined: status.joined,
            })
        }
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn wiped(me: NodeId, cluster_id: &str, by: &str) -> ClusterError {
    ClusterError::Start(format!(
        "node {me}'s data dir holds no cluster id, but cluster {cluster_id} already counts node \
         {me} as a member ({by}): this node's data was lost or wiped. Start it with its own data \
         dir; a member cannot rejoin empty"
    ))
}

fn wrong(me: NodeId, local: &str, other: &str, by: &str) -> ClusterError {
    ClusterError::Start(format!(
        "node {me}'s data dir belongs to cluster {local}, but {by} belongs to cluster {other}: \
         check --data-dir and --cluster"
    ))
}

/// Checks what the other members' answers say about this member's data dir.
fn judge(me: NodeId, local: Option<&str>, answers: &[Answer]) -> Result<(), ClusterError> {
    for a in answers.iter().filter(|a| !a.cluster_id.is_empty()) {
        let by = format!("member {}", a.node);
        match local {
            Some(l) if l != a.cluster_id => return Err(wrong(me, l, &a.cluster_id, &by)),
            None if a.joined.contains(&me) => return Err(wiped(me, &a.cluster_id, &by)),
            _ => {}
        }
    }
    Ok(())
}

/// Before serving: asks the other members once and refuses a wiped data dir or another
/// cluster's. Members that do not answer in time are left to [`maintain`].
pub async fn check_at_start(
    me: NodeId,
    peers: &BTreeMap<NodeId, String>,
    local: Option<&str>,
) -> Result<(), ClusterError> {
    judge(me, local, &ask(me, peers).await)
}

/// Founds or joins the cluster, then returns; an error when this member must not serve
/// (wiped, or of another cluster). `initialized`: raft already had a log at start.
pub async fn maintain(c: Arc<Cluster>, initialized: bool) -> Result<(), ClusterError> {
    let me = c.node_id;
    let log = RaftLog::new(c.store.clone());
    let first = c.peers.keys().next() == Some(&me);
    let mut metadata = c.metadata();
    let mut waiting_since = tokio::time::Instant::now();
    loop {
        let (cluster_id, joined) = {
            let m = metadata.borrow_and_update();
            (m.cluster_id.clone(), m.joined.contains(&me))
        };
        let local = c.cluster_id();
        match (local, cluster_id) {
            (Some(l), Some(id)) if l != id => return Err(wrong(me, &l, &id, "the metadata")),
            (Some(_), Some(_)) if joined => return Ok(()),
            // Joining, or founding: the first Join sets the cluster's id.
            (Some(l), _) => match c
                .propose(Command::Join {
                    id: me,
                    cluster_id: l.clone(),
                })
                .await
            {
                Ok(Outcome::WrongCluster { current }) => {
                    return Err(wrong(me, &l, &current, "the metadata"));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "cannot record joining the cluster yet"),
            },
            (None, Some(id)) if joined => return Err(wiped(me, &id, "the metadata says so")),
            (None, Some(id)) => {
                write_local_id(&log, &id)?;
                c.set_cluster_id(id);
                continue;
            }
            (None, None) => {
                let answers = ask(me, &c.peers).await;
                judge(me, None, &answers)?;
                let exists = answers.iter().any(|a| !a.cluster_id.is_empty());
                // A majority, counting this member, answered and none is in a cluster.
                let quorum = answers.len() + 1 > c.peers.len() / 2;
                // A cluster from before cluster ids (its log exists): its first member names it.
                let unnamed = initialized && first;
                if unnamed || (first && !exists && quorum) {
                    let id = new_id()?;
                    write_local_id(&log, &id)?;
                    c.set_cluster_id(id.clone());
                    if !initialized {
                        let members: BTreeMap<NodeId, BasicNode> = c
                            .peers
                            .iter()
                            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                            .collect();
                        tracing::info!(members = ?c.peers, cluster_id = %id, "founding a new cluster");
                        c.raft
                            .initialize(members)
                            .await
                            .map_err(|e| ClusterError::Start(e.to_string()))?;
                    }
                    continue;
                }
                if first && !exists && waiting_since.elapsed() >= WAITING_LOG_EVERY {
                    waiting_since = tokio::time::Instant::now();
                    tracing::info!(
                        answered = answers.len() + 1,
                        members = c.peers.len(),
                        "waiting for a majority of the members to answer before founding the cluster"
                    );
                }
            }
        }
        tokio::select! {
            _ = metadata.changed() => {}
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(node: NodeId, cluster_id: &str, joined: &[NodeId]) -> Answer {
        Answer {
            node,
            cluster_id: cluster_id.into(),
            joined: joined.to_vec(),
        }
    }

    #[test]
    fn a_wiped_member_and_another_clusters_data_dir_are_refused() {
        let fresh = [answer(2, "", &[]), answer(3, "", &[])];
        assert!(judge(1, None, &fresh).is_ok());
        // Node 3 joined cluster c1 without node 1 yet: node 1 is new, not wiped.
        assert!(judge(1, None, &[answer(3, "c1", &[2, 3])]).is_ok());
        let e = judge(1, None, &[answer(2, "", &[]), answer(3, "c1", &[1, 3])]).unwrap_err();
        assert!(e.to_string().contains("data was lost or wiped"), "{e}");
        assert!(e.to_string().contains("cluster c1"), "{e}");
        assert!(judge(1, Some("c1"), &[answer(3, "c1", &[1, 3])]).is_ok());
        let e = judge(1, Some("c2"), &[answer(3, "c1", &[1, 3])]).unwrap_err();
        assert!(e.to_string().contains("belongs to cluster c2"), "{e}");
    }

    #[test]
    fn cluster_ids_are_random_hex() {
        let (a, b) = (new_id().unwrap(), new_id().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
