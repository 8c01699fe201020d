//! Group membership of a consumer: a background task that joins the group, heartbeats,
//! commits offsets and leaves, and tells the consumer which partitions it owns.
//!
//! Heartbeats and commits go through this one task, in order, so a commit always carries the
//! member epoch of the newest heartbeat response. The consumer applies each new assignment
//! (stops reading revoked partitions, commits them, starts reading new ones) and then reports
//! what it holds (`Command::Applied`), which the task passes on at once in a heartbeat; only
//! then does the broker hand revoked partitions to their next owner.
//!
//! If the task cannot heartbeat for a whole session timeout, it assumes the broker removed
//! the member and tells the consumer its partitions are lost (another member may read them
//! now), then joins again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::client::Channel;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use weir_proto::v1 as pb;
use weir_proto::v1::groups_client::GroupsClient;

use crate::client::Client;
use crate::error::{Error, Result};

/// `member_epoch` that leaves the group.
const LEAVE_EPOCH: i64 = -1;
/// Wait between heartbeats that failed for a transient reason.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait for one heartbeat or commit answer (capped by the session timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the leave request when closing.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Membership settings (from [`ConsumerConfig`](super::ConsumerConfig)).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub group: String,
    pub topic: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub client_id: String,
}

/// The partitions this consumer owns now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment {
    pub member_id: String,
    /// The member epoch this assignment came with.
    pub member_epoch: i64,
    pub partitions: BTreeSet<u32>,
    /// The partitions held before were lost (the member was removed): do not commit them.
    pub lost: bool,
}

/// What the task tells the consumer.
#[derive(Debug)]
pub(crate) enum Update {
    Assigned(Assignment),
    /// Membership failed for good (e.g. the topic was deleted).
    Failed(Error),
}

/// What the consumer asks of the task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Commit these positions (next offset to read, per partition).
    Commit {
        offsets: BTreeMap<u32, u64>,
        /// Answered with the membership (member id, member epoch) the commit was made under.
        reply: Option<oneshot::Sender<Result<(String, i64)>>>,
    },
    /// The consumer applied the newest assignment and holds exactly `owned`.
    Applied { owned: BTreeSet<u32> },
    /// Leave the group and stop.
    Leave { reply: oneshot::Sender<()> },
}

struct Member {
    client: Client,
    s: Settings,
    member_id: String,
    epoch: i64,
    owned: BTreeSet<u32>,
    published: Option<Assignment>,
    updates: mpsc::UnboundedSender<Update>,
    last_ok: Instant,
}

/// Starts the membership task; it joins at once.
pub(crate) fn spawn(
    client: Client,
    settings: Settings,
) -> (
    mpsc::UnboundedSender<Command>,
    mpsc::UnboundedReceiver<Update>,
) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (upd_tx, upd_rx) = mpsc::unbounded_channel();
    let member = Member {
        client,
        s: settings,
        member_id: String::new(),
        epoch: 0,
        owned: BTreeSet::new(),
        published: None,
        updates: upd_tx,
        last_ok: Instant::now(),
    };
    tokio::spawn(run(member, cmd_rx));
    (cmd_tx, upd_rx)
}

async fn run(mut m: Member, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut next = Instant::now();
    loop {
        tokio::select! {
            biased;
            cmd = commands.recv() => match cmd {
                Some(Command::Commit { offsets, reply }) => {
                    let result = m.commit(offsets).await;
                    match reply {
                        Some(tx) => {
                            let _ = tx.send(result);
                        }
                        None => {
                            if let Err(e) = result {
                                tracing::warn!(group = %m.s.group, error = %e, "auto-commit failed");
                            }
                        }
                    }
                }
                Some(Command::Applied { owned }) => {
                    m.owned = owned;
                    next = Instant::now();
                }
                Some(Command::Leave { reply }) => {
                    m.leave().await;
                    let _ = reply.send(());
                    return;
                }
                // The consumer is gone.
                None => {
                    m.leave().await;
                    return;
                }
            },
            _ = tokio::time::sleep_until(next) => match m.heartbeat().await {
                Some(wait) => next = Instant::now() + wait,
                None => return,
            },
        }
    }
}

fn is_fenced(e: &Error) -> bool {
    matches!(e, Error::Fenced(_))
}

impl Member {
    fn request_timeout(&self) -> Duration {
        REQUEST_TIMEOUT.min(self.s.session_timeout)
    }

    /// Sends the assignment to the consumer if it changed.
    fn publish(&mut self, partitions: BTreeSet<u32>, lost: bool) {
        let a = Assignment {
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            partitions,
            lost,
        };
        if self.published.as_ref() != Some(&a) {
            self.published = Some(a.clone());
            let _ = self.updates.send(Update::Assigned(a));
        }
    }

    /// Drops the membership: the consumer stops reading everything; join again next.
    fn lose_membership(&mut self, why: &Error) {
        tracing::warn!(group = %self.s.group, member = %self.member_id, error = %why, "lost group membership; joining again");
        self.member_id.clear();
        self.epoch = 0;
        self.owned.clear();
        self.publish(BTreeSet::new(), true);
    }

    /// One heartbeat (or join). Returns when to send the next one; `None` to stop for good.
    async fn heartbeat(&mut self) -> Option<Duration> {
        let joining = self.member_id.is_empty();
        let req = pb::HeartbeatRequest {
            group: self.s.group.clone(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            topics: if joining {
                vec![self.s.topic.clone()]
            } else {
                Vec::new()
            },
            session_timeout_ms: self.s.session_timeout.as_millis() as u32,
            rebalance_timeout_ms: self.s.rebalance_timeout.as_millis() as u32,
            owned: vec![pb::TopicPartitions {
                topic: self.s.topic.clone(),
                partitions: self.owned.iter().copied().collect(),
            }],
            client_id: self.s.client_id.clone(),
        };
        let sent = Instant::now();
        let result = self
            .at_coordinator(|mut rpc| async move { rpc.heartbeat(req).await })
            .await;
        match result {
            Ok(resp) => {
                self.last_ok = sent;
                if joining {
                    tracing::debug!(group = %self.s.group, member = %resp.member_id, "joined group");
                }
                self.member_id = resp.member_id;
                self.epoch = resp.member_epoch;
                let partitions = resp
                    .assignment
                    .iter()
                    .filter(|tp| tp.topic == self.s.topic)
                    .flat_map(|tp| tp.partitions.iter().copied())
                    .collect();
                self.publish(partitions, false);
                Some(
                    Duration::from_millis(u64::from(resp.heartbeat_interval_ms))
                        .max(Duration::from_millis(10)),
                )
            }
            Err(e) if is_fenced(&e) => {
                self.lose_membership(&e);
                Some(Duration::ZERO)
            }
            Err(e) if e.is_retriable() => {
                tracing::debug!(group = %self.s.group, error = %e, "heartbeat failed; retrying");
                if !self.member_id.is_empty()
                    && sent.duration_since(self.last_ok) > self.s.session_timeout
                {
                    // The broker has removed us by now: someone else may own our partitions.
                    self.lose_membership(&e);
                }
                Some(RETRY_BACKOFF)
            }
            Err(e) => {
                let _ = self.updates.send(Update::Failed(e));
                None
            }
        }
    }

    /// Commits `offsets`; answers the membership the commit was made under.
    async fn commit(&mut self, offsets: BTreeMap<u32, u64>) -> Result<(String, i64)> {
        let membership = (self.member_id.clone(), self.epoch);
        if offsets.is_empty() {
            return Ok(membership);
        }
        if self.member_id.is_empty() {
            return Err(Error::Fenced(format!(
                "not a member of group {:?} right now: nothing committed",
                self.s.group
            )));
        }
        let req = pb::CommitOffsetsRequest {
            group: self.s.group.clone(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            offsets: offsets
                .into_iter()
                .map(|(partition, offset)| pb::OffsetCommit {
                    topic: self.s.topic.clone(),
                    partition,
                    offset,
                    metadata: String::new(),
                })
                .collect(),
        };
        self.at_coordinator(|mut rpc| async move { rpc.commit_offsets(req).await })
            .await
            .map(|_| membership)
    }

    /// One request at the group's coordinator, within the request timeout; a failure that
    /// says the coordinator moved or is gone makes the next request find it again.
    async fn at_coordinator<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnOnce(GroupsClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let timeout = self.request_timeout();
        let attempt = async {
            let rpc = self.client.coordinator_rpc(&self.s.group).await?;
            call(rpc).await.map(|r| r.into_inner()).map_err(Error::from)
        };
        let result = match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(timeout)),
        };
        if let Err(e) = &result {
            self.client.coordinator_failed(&self.s.group, e);
        }
        result
    }

    async fn leave(&mut self) {
        if self.member_id.is_empty() {
            return;
        }
        let req = pb::HeartbeatRequest {
            group: self.s.group.clone(),
            member_id: std::mem::take(&mut self.member_id),
            member_epoch: LEAVE_EPOCH,
            ..Default::default()
        };
        let leave = async {
            let mut rpc = self.client.coordinator_rpc(&self.s.group).await?;
            rpc.heartbeat(req).await.map_err(Error::from)
        };
        match tokio::time::timeout(LEAVE_TIMEOUT, leave).await {
            Ok(Ok(_)) => tracing::debug!(group = %self.s.group, "left group"),
            Ok(Err(e)) => {
                tracing::debug!(group = %self.s.group, error = %e, "leave failed; the session will expire")
            }
            Err(_) => {
                tracing::debug!(group = %self.s.group, "leave timed out; the session will expire")
            }
        }
    }
}
