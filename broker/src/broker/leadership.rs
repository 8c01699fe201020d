//! Cluster mode, a leader's side of replication: which partitions this broker leads
//! (`check_leader`), its followers' fetch progress, the high watermark that follows, and the
//! ISR changes it proposes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Broker;
use crate::blocking::blocking;
use crate::cluster::isr::Leadership;
use crate::cluster::peers::NodeId;
use crate::cluster::state::{Command, Metadata, Outcome};
use crate::error::BrokerError;
use crate::log::Diverging;

/// The leader epoch of a partition while `me` leads it.
pub(super) fn leader_epoch_of(
    m: &Metadata,
    topic: &str,
    partition: u32,
    me: NodeId,
) -> Option<u32> {
    m.partition(topic, partition)
        .filter(|p| p.leader == Some(me))
        .map(|p| p.leader_epoch)
}

/// How often the high watermarks of local copies are checkpointed (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms`); also once at a clean shutdown.
pub const HIGH_WATERMARK_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

impl Broker {
    /// Cluster mode: checkpoints the high watermarks every
    /// [`HIGH_WATERMARK_CHECKPOINT_INTERVAL`].
    pub(super) fn spawn_high_watermark_checkpoints(self: &Arc<Self>) {
        let this = Arc::clone(self);
        self.spawn_background(async move {
            let mut tick = tokio::time::interval(HIGH_WATERMARK_CHECKPOINT_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let b = Arc::clone(&this);
                if let Err(e) = blocking(move || b.checkpoint_high_watermarks()).await {
                    tracing::warn!(error = %e, "high-watermark checkpoint failed; retrying");
                }
            }
        });
    }

    /// Cluster mode: writes the high watermarks of the local copies now (blocking; the
    /// broker's last act at a clean shutdown). Nothing standalone.
    pub fn checkpoint_high_watermarks(&self) -> Result<(), BrokerError> {
        if self.in_cluster() {
            self.topics.checkpoint_high_watermarks()?;
        }
        Ok(())
    }

    /// Makes each local partition's high watermark follow its role: a leader alone in the ISR
    /// sees all it has; a leader with in-sync followers moves it as they fetch (and at once
    /// when the ISR shrank); a follower takes its leader's.
    pub(super) fn follow_leadership(&self, m: &Metadata) {
        let Some(me) = self.cluster().map(|c| c.node_id()) else {
            return;
        };
        let mut led = Vec::new();
        let mut sync = Vec::new();
        for (name, t) in &m.topics {
            let Ok(topic) = self.topics.get(name) else {
                continue;
            };
            for (i, p) in t.partitions.iter().enumerate() {
                let Ok(part) = topic.partition(i as u32) else {
                    continue;
                };
                let leads = p.leader == Some(me);
                part.log.set_hw_follows_end(leads && p.isr == [me]);
                if leads && let Err(e) = part.log.ensure_epoch(p.leader_epoch) {
                    tracing::error!(topic = %name, partition = i, error = %e, "cannot record the leader epoch");
                }
                if leads {
                    led.push((name.clone(), i as u32, p.leader_epoch));
                    if p.isr.len() > 1 {
                        sync.push((name, i as u32, p, Arc::clone(&part.log)));
                    }
                }
            }
        }
        let mut leadership = self.leadership();
        leadership.retain_led(&led, Instant::now());
        for (name, i, p, log) in sync {
            let b = log.bounds();
            log.raise_high_watermark(
                leadership.high_watermark(name, i, p, me, b.log_end, b.latest),
            );
        }
    }

    pub(super) fn leadership(&self) -> std::sync::MutexGuard<'_, Leadership> {
        // Pure bookkeeping: a panic under the lock leaves nothing half-done that matters.
        self.leadership.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A follower fetched a partition this broker should lead from `fetch_offset` (its log
    /// end), believing in `leader_epoch`: moves the high watermark and lets the follower
    /// rejoin the ISR when it caught up (docs/cluster.md, "Replication").
    pub fn on_replica_fetch(
        self: &Arc<Self>,
        topic: &str,
        partition: u32,
        follower: NodeId,
        fetch_offset: u64,
        leader_epoch: u32,
        last_epoch: Option<u32>,
    ) -> Result<Option<Diverging>, BrokerError> {
        self.check_leader(topic, partition)?;
        let Some(c) = self.cluster() else {
            return Err(BrokerError::InvalidArgument(
                "this broker is not in a cluster".into(),
            ));
        };
        let m = Arc::clone(&c.metadata().borrow());
        let Some(state) = m.partition(topic, partition) else {
            return Err(BrokerError::TopicNotFound(topic.to_string()));
        };
        if state.leader_epoch != leader_epoch {
            return Err(BrokerError::StaleLeaderEpoch {
                topic: topic.to_string(),
                partition,
                current: state.leader_epoch,
                asked: leader_epoch,
            });
        }
        if !state.replicas.contains(&follower) {
            return Err(BrokerError::InvalidArgument(format!(
                "broker {follower} holds no replica of topic {topic:?} partition {partition}"
            )));
        }
        let log = Arc::clone(&self.topics.get(topic)?.partition(partition)?.log);
        let b = log.bounds();
        if let Some(d) = log.diverging(fetch_offset, last_epoch) {
            return Ok(Some(d));
        }
        let effect = self.leadership().on_fetch(
            topic,
            partition,
            state,
            c.node_id(),
            follower,
            fetch_offset,
            b.log_end,
            b.latest,
            Instant::now(),
        );
        if let Some(hw) = effect.high_watermark {
            log.raise_high_watermark(hw);
        }
        if let Some(cmd) = effect.propose {
            self.propose_isr(topic, partition, cmd);
        }
        Ok(None)
    }

    /// Sends an ISR change of a led partition to the controller, in the background.
    pub(super) fn propose_isr(self: &Arc<Self>, topic: &str, partition: u32, cmd: Command) {
        let Some(c) = self.cluster().cloned() else {
            return;
        };
        let this = Arc::clone(self);
        let topic = topic.to_string();
        tokio::spawn(async move {
            tracing::info!(topic = %topic, partition, change = ?cmd, "proposing an ISR change");
            match c.propose(cmd).await {
                Ok(Outcome::Done) => {}
                Ok(other) => {
                    tracing::debug!(topic = %topic, partition, outcome = ?other, "ISR change refused")
                }
                Err(e) => {
                    tracing::warn!(topic = %topic, partition, error = %e, "ISR change failed")
                }
            }
            this.leadership().proposed(&topic, partition);
        });
    }

    /// Every half `--replica-lag-max-ms` (as Kafka), drops from the ISR of each partition
    /// led here the followers that have not caught up for that long.
    pub(super) fn spawn_isr_checks(self: &Arc<Self>) {
        let Some(c) = self.cluster().cloned() else {
            return;
        };
        let this = Arc::clone(self);
        let lag_max = self.replica_lag_max;
        self.spawn_background(async move {
            let mut tick = tokio::time::interval(lag_max / 2);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let m = Arc::clone(&c.metadata().borrow());
                let me = c.node_id();
                let now = Instant::now();
                let changes: Vec<(String, u32, Command)> = {
                    let mut leadership = this.leadership();
                    m.partitions()
                        .filter(|(_, _, p)| p.leader == Some(me) && p.isr.len() > 1)
                        .filter_map(|(name, i, p)| {
                            leadership
                                .shrink(name, i, p, me, lag_max, now)
                                .map(|cmd| (name.clone(), i, cmd))
                        })
                        .collect()
                };
                for (topic, partition, cmd) in changes {
                    this.propose_isr(&topic, partition, cmd);
                }
            }
        });
    }

    /// Cluster mode: fails with [`BrokerError::NotLeader`] unless this broker leads the
    /// partition (a standalone broker leads everything; a view's partition is led where its
    /// source's is). Producers and consumers are served by
    /// leaders only; followers fetch from them (docs/cluster.md). Returns the leader epoch
    /// (`None` standalone, or for a topic the metadata does not know).
    pub fn check_leader(&self, topic: &str, partition: u32) -> Result<Option<u32>, BrokerError> {
        let Some(c) = self.cluster() else {
            return Ok(None);
        };
        let m = c.metadata();
        let m = m.borrow();
        // A view's partition is its source's.
        let placed = m.partition(topic, partition).or_else(|| {
            let source = &m.views.get(topic)?.source;
            m.partition(source, partition)
        });
        let Some(p) = placed else {
            // Unknown here: the usual not-found errors follow from the local registry.
            return Ok(None);
        };
        if p.leader == Some(c.node_id()) {
            return Ok(Some(p.leader_epoch));
        }
        Err(BrokerError::NotLeader {
            topic: topic.to_string(),
            partition,
            leader: p
                .leader
                .and_then(|l| m.brokers.get(&l))
                .map(|b| b.addr.clone()),
        })
    }
}
