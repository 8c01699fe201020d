//! The streaming consumer: a `futures::Stream` of records over the broker's server-streaming
//! `Subscribe`. The broker pushes whole batches as they are written (bounded by `max_bytes`
//! per push and a small queue), so the consumer never waits on a request round trip.
//!
//! If the stream breaks (broker restart, network), the consumer subscribes again from its
//! positions — the next offset it has not yielded — so nothing is skipped or repeated.
//!
//! With a group ([`ConsumerConfig::group`]) the consumer reads only the partitions the group
//! coordinator assigns to it (`group`: the membership task), starting from the group's
//! committed offsets, and follows rebalances: before giving a partition up it stops yielding
//! its records and commits how far it got.

mod config;
mod group;

pub use config::{ConsumerConfig, PluginUse};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::SelectAll;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};
use weir_common::batch;
use weir_common::limits::{
    DEFAULT_FETCH_MAX_BYTES, DEFAULT_REBALANCE_TIMEOUT_MS, DEFAULT_SESSION_TIMEOUT_MS,
};
use weir_common::record::{Header, Record};
use weir_proto::v1 as pb;

use crate::admin::{OffsetSpec, list_offsets};
use crate::client::{Client, log_rpc};
use crate::error::{Error, Result};
use group::{Assignment, Command, Update};

use crate::start::StartFrom;

impl Client {
    /// A consumer of `topic` (all partitions unless the config names some).
    pub async fn consumer(&self, topic: &str, config: ConsumerConfig) -> Result<Consumer> {
        Consumer::open(self.clone(), topic, config).await
    }
}

/// A consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic it was read from.
    pub topic: Arc<str>,
    /// Partition it was read from.
    pub partition: u32,
    /// Its offset in the partition.
    pub offset: u64,
    /// Unix ms.
    pub timestamp: i64,
    /// Key, if the record has one.
    pub key: Option<Bytes>,
    /// Payload.
    pub value: Bytes,
    /// Headers, in the order they were produced.
    pub headers: Vec<Header>,
}

/// How long a consumer keeps trying to subscribe again after its stream broke.
pub const RECONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest pause between two reconnection attempts.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How many times a consumer starting from the earliest offset looks it up while retention
/// keeps dropping the records it found there.
const MAX_EARLIEST_LOOKUPS: u32 = 5;

/// One subscription's pushes; a stream the broker ends without an error ends with one, so
/// the consumer notices and subscribes again.
type Pushes = Pin<Box<dyn Stream<Item = Result<pb::FetchResponse, tonic::Status>> + Send>>;
/// The subscriptions of a consumer, one per partition leader, merged.
type Feeds = SelectAll<Pushes>;
type SubscribeFuture = Pin<Box<dyn Future<Output = Result<Feeds>> + Send>>;
type ReconcileFuture = Pin<Box<dyn Future<Output = Result<BTreeMap<u32, u64>>> + Send>>;

/// Where records come from right now.
enum Feed {
    Open(Feeds),
    Reconnecting(SubscribeFuture),
    /// A group consumer that owns no partition right now.
    Idle,
    Closed,
}

/// A group consumer's membership ([`Consumer::group_metadata`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    /// The group's name.
    pub group: String,
    /// The member id the broker gave this consumer (empty while it is joining).
    pub member_id: String,
    /// The member epoch: the broker bumps it at each change of the member's assignment.
    pub member_epoch: i64,
}

/// A group consumer's side of its membership.
struct GroupLink {
    name: String,
    /// The membership this consumer acts under: the member id and epoch of the assignment
    /// it applied, or of its last accepted commit if that is newer.
    member_id: String,
    member_epoch: i64,
    commands: mpsc::UnboundedSender<Command>,
    updates: mpsc::UnboundedReceiver<Update>,
    /// Applying an assignment: the positions of the partitions it adds.
    reconcile: Option<(BTreeSet<u32>, ReconcileFuture)>,
    auto_commit: Option<(Duration, Pin<Box<Sleep>>)>,
    /// What was last committed, to skip commits that change nothing.
    committed: BTreeMap<u32, u64>,
}

/// A fetched batch whose records are decoded one at a time as they are yielded: no
/// `Vec<Record>` per batch, no buffer of records (together a third of a consuming client's CPU
/// when they existed).
struct Fetched {
    partition: u32,
    /// The next record to yield (so its offset is known: [`Consumer::position`]).
    head: Record,
    rest: batch::RecordCursor,
}

/// A stream of records from one topic. Records of a partition come in offset order.
pub struct Consumer {
    client: Client,
    topic: Arc<str>,
    max_bytes: u32,
    plugins: Vec<pb::PluginUse>,
    start: StartFrom,
    feed: Feed,
    /// Fetched batches not yielded yet, in arrival order.
    buffered: VecDeque<Fetched>,
    /// Next offset to fetch, per partition (records before it are yielded or buffered).
    positions: BTreeMap<u32, u64>,
    /// Partitions of `positions` not fetched for now ([`Consumer::pause`]).
    paused: BTreeSet<u32>,
    group: Option<GroupLink>,
}

pub(crate) fn plugins_pb(uses: &[PluginUse]) -> Vec<pb::PluginUse> {
    uses.iter()
        .map(|u| pb::PluginUse {
            name: u.name.clone(),
            params: u.params.clone().unwrap_or_default(),
        })
        .collect()
}

/// Subscribes to the positions of `req` at their partitions' leaders (one subscription per
/// leader), retrying with fresh metadata when leadership moved, and — with `retry` — other
/// transient failures with backoff, until `RECONNECT_TIMEOUT`.
async fn subscribe_routed(client: Client, req: pb::SubscribeRequest, retry: bool) -> Result<Feeds> {
    let deadline = Instant::now() + RECONNECT_TIMEOUT;
    let mut backoff = Duration::from_millis(50);
    loop {
        let seen = client.routes_version();
        let err = match subscribe_at_leaders(&client, &req).await {
            Ok(feeds) => return Ok(feeds),
            Err(e) => e,
        };
        let again = matches!(err, Error::NotLeader(_)) || (retry && is_transient(&err));
        if !again || Instant::now() + backoff > deadline {
            return Err(err);
        }
        tracing::debug!(error = %err, ?backoff, "subscribe failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
        if let Err(e) = client.refresh_routes(seen).await {
            tracing::debug!(error = %e, "cannot refresh the cluster metadata");
        }
    }
}

/// One subscription per leader of the partitions in `req`.
async fn subscribe_at_leaders(client: &Client, req: &pb::SubscribeRequest) -> Result<Feeds> {
    let routes = client
        .routes_for(&req.topic, req.positions.iter().map(|p| p.partition))
        .await?;
    let mut feeds = SelectAll::new();
    for (route, partitions) in routes {
        let mut sub = req.clone();
        sub.positions.retain(|p| partitions.contains(&p.partition));
        let stream = log_rpc(route.channel).subscribe(sub).await?.into_inner();
        let ended = futures::stream::once(async {
            Err(tonic::Status::unavailable(
                "the broker ended the record stream",
            ))
        });
        feeds.push(Box::pin(stream.chain(ended)) as Pushes);
    }
    Ok(feeds)
}

/// Errors after which subscribing again may work (anything but a definite answer about the
/// topic, partition, offset or group membership).
fn is_transient(e: &Error) -> bool {
    e.is_retriable() || matches!(e, Error::Broker(_))
}

impl Consumer {
    pub(crate) async fn open(client: Client, topic: &str, config: ConsumerConfig) -> Result<Self> {
        if let Some(name) = config.group.clone() {
            return Self::open_group(client, topic, name, config).await;
        }
        let partitions = match config.partitions.clone() {
            Some(p) => p,
            None => {
                let desc = client.admin().describe_topic(topic).await?;
                (0..desc.topic.partitions).collect()
            }
        };
        let mut positions = resolve_positions(&client, topic, &partitions, config.start).await?;
        let mut resolved = 1;
        loop {
            let mut consumer = Self::idle(client.clone(), topic, &config, positions, None);
            let req = consumer.subscribe_request();
            match subscribe_routed(consumer.client.clone(), req, false).await {
                Ok(feeds) => {
                    consumer.feed = Feed::Open(feeds);
                    return Ok(consumer);
                }
                // Retention dropped the oldest records between looking up "earliest" and
                // subscribing there: look it up again, as Kafka's consumer does with
                // auto.offset.reset=earliest.
                Err(Error::OffsetOutOfRange { .. })
                    if config.start == StartFrom::Earliest && resolved < MAX_EARLIEST_LOOKUPS =>
                {
                    resolved += 1;
                    positions =
                        resolve_positions(&client, topic, &partitions, config.start).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn open_group(
        client: Client,
        topic: &str,
        name: String,
        config: ConsumerConfig,
    ) -> Result<Self> {
        // Fail fast on an unknown topic rather than from the membership task.
        client.admin().describe_topic(topic).await?;
        let (commands, updates) = group::spawn(
            client.clone(),
            group::Settings {
                group: name.clone(),
                topic: topic.to_string(),
                session_timeout: config.session_timeout,
                rebalance_timeout: config.rebalance_timeout,
                client_id: config.client_id.clone(),
            },
        );
        let auto_commit = config.auto_commit.then(|| {
            let every = config.auto_commit_interval;
            (every, Box::pin(tokio::time::sleep(every)))
        });
        let link = GroupLink {
            name,
            member_id: String::new(),
            member_epoch: 0,
            commands,
            updates,
            reconcile: None,
            auto_commit,
            committed: BTreeMap::new(),
        };
        Ok(Self::idle(
            client,
            topic,
            &config,
            BTreeMap::new(),
            Some(link),
        ))
    }

    /// A consumer with no stream open yet.
    fn idle(
        client: Client,
        topic: &str,
        config: &ConsumerConfig,
        positions: BTreeMap<u32, u64>,
        group: Option<GroupLink>,
    ) -> Self {
        Self {
            client,
            topic: Arc::from(topic),
            max_bytes: config.max_bytes,
            plugins: plugins_pb(&config.plugins),
            start: config.start,
            feed: Feed::Idle,
            buffered: VecDeque::new(),
            positions,
            paused: BTreeSet::new(),
            group,
        }
    }

    fn subscribe_request(&self) -> pb::SubscribeRequest {
        pb::SubscribeRequest {
            topic: self.topic.to_string(),
            positions: self
                .positions
                .iter()
                .filter(|(p, _)| !self.paused.contains(p))
                .map(|(&partition, &offset)| pb::FetchPosition { partition, offset })
                .collect(),
            max_bytes: self.max_bytes,
            member: self.group.as_ref().map(|g| pb::GroupMember {
                group: g.name.clone(),
                member_id: g.member_id.clone(),
            }),
            plugins: self.plugins.clone(),
        }
    }

    /// Subscribes again from the current positions (the old stream is dropped); idles when
    /// there is nothing to read.
    fn resubscribe(&mut self) {
        if self.positions.keys().all(|p| self.paused.contains(p)) {
            self.feed = Feed::Idle;
            return;
        }
        let req = self.subscribe_request();
        self.feed = Feed::Reconnecting(Box::pin(subscribe_routed(self.client.clone(), req, true)));
    }

    /// Moves `partition` to `offset`: the next record yielded from it has that offset.
    /// Records of that partition already buffered are dropped.
    pub fn seek(&mut self, partition: u32, offset: u64) -> Result<()> {
        self.check_reads(&[partition])?;
        self.positions.insert(partition, offset);
        self.buffered.retain(|f| f.partition != partition);
        self.resubscribe();
        Ok(())
    }

    /// Moves `partition` to its first record with a timestamp `>=` `unix_ms` (the log end
    /// if there is none), asking the partition's leader.
    pub async fn seek_to_time(&mut self, partition: u32, unix_ms: i64) -> Result<()> {
        self.check_reads(&[partition])?;
        let found = list_offsets(
            &self.client,
            &self.topic,
            &[(partition, OffsetSpec::Timestamp(unix_ms))],
        )
        .await?;
        let offset = found
            .first()
            .map(|o| o.offset)
            .ok_or_else(|| Error::Protocol("empty list-offsets response".into()))?;
        self.seek(partition, offset)
    }

    /// Stops fetching `partitions` until [`resume`](Consumer::resume) (Kafka's `pause`): no
    /// more of their records are yielded, and those already buffered are dropped, to be
    /// fetched again from the same position on resume. Positions and commits are kept. A
    /// group consumer keeps its assignment; a partition it gives up is no longer paused.
    pub fn pause(&mut self, partitions: &[u32]) -> Result<()> {
        self.check_reads(partitions)?;
        for &p in partitions {
            if let Some(pos) = self.position(p) {
                self.positions.insert(p, pos);
            }
            self.paused.insert(p);
        }
        let paused = &self.paused;
        self.buffered.retain(|f| !paused.contains(&f.partition));
        self.resubscribe();
        Ok(())
    }

    /// Fetches `partitions` again from where they were paused.
    pub fn resume(&mut self, partitions: &[u32]) -> Result<()> {
        self.check_reads(partitions)?;
        let before = self.paused.len();
        for p in partitions {
            self.paused.remove(p);
        }
        if self.paused.len() != before {
            self.resubscribe();
        }
        Ok(())
    }

    /// The partitions paused now.
    pub fn paused(&self) -> Vec<u32> {
        self.paused
            .iter()
            .filter(|p| self.positions.contains_key(p))
            .copied()
            .collect()
    }

    fn check_reads(&self, partitions: &[u32]) -> Result<()> {
        match partitions.iter().find(|p| !self.positions.contains_key(p)) {
            None => Ok(()),
            Some(p) => Err(Error::PartitionNotFound(format!(
                "this consumer does not read partition {p} of {:?}",
                self.topic
            ))),
        }
    }

    /// Next offset this consumer will yield from `partition` (`None` if it does not read it).
    pub fn position(&self, partition: u32) -> Option<u64> {
        // The partition's first buffered record, else where its reads stand. Not through
        // `consumed_positions`: that walks the whole buffer, and callers poll this per batch
        // (it was a fifth of a consuming client's CPU).
        self.buffered
            .iter()
            .find(|f| f.partition == partition)
            .map(|f| f.head.offset)
            .or_else(|| self.positions.get(&partition).copied())
    }

    /// The partitions this consumer reads now (for a group consumer: its current assignment).
    pub fn assignment(&self) -> Vec<u32> {
        self.positions.keys().copied().collect()
    }

    /// Per partition read, the next offset to yield (what a commit records).
    fn consumed_positions(&self) -> BTreeMap<u32, u64> {
        let mut out = self.positions.clone();
        let mut seen = BTreeSet::new();
        for f in &self.buffered {
            if seen.insert(f.partition) {
                out.insert(f.partition, f.head.offset);
            }
        }
        out
    }

    /// Commits, for every partition this group consumer reads, the offset after the last
    /// record it yielded. Fails with [`Error::Fenced`] if the consumer is not (or no longer)
    /// the owner, and with [`Error::InvalidArgument`] without a group.
    pub async fn commit(&mut self) -> Result<()> {
        let offsets = self.consumed_positions();
        self.commit_offsets(offsets).await
    }

    /// Commits these positions (partition → the next offset to read) as this group member:
    /// for callers that commit only what they have written somewhere durable, which may be
    /// less than what was yielded (Kafka's `commitSync(offsets)`). Fenced as [`commit`].
    ///
    /// [`commit`]: Consumer::commit
    pub async fn commit_offsets(&mut self, offsets: BTreeMap<u32, u64>) -> Result<()> {
        let Some(g) = &mut self.group else {
            return Err(Error::InvalidArgument {
                message: "commit needs a consumer group (ConsumerConfig::group)".into(),
            });
        };
        let (tx, rx) = oneshot::channel();
        g.commands
            .send(Command::Commit {
                offsets: offsets.clone(),
                reply: Some(tx),
            })
            .map_err(|_| Error::Fenced("the group membership has ended".into()))?;
        let (member_id, member_epoch) = rx
            .await
            .map_err(|_| Error::Fenced("the group membership has ended".into()))??;
        if member_id != g.member_id || member_epoch > g.member_epoch {
            g.member_id = member_id;
            g.member_epoch = member_epoch;
        }
        g.committed.extend(offsets);
        Ok(())
    }

    /// The group membership this consumer acts under (Kafka's `groupMetadata()`): `None`
    /// without a group. Its member id and epoch are those of the assignment it applied, or of
    /// its last accepted [`commit`](Consumer::commit) when that is newer; the broker bumps a
    /// member's epoch at each change of its assignment, so two commits under one epoch were
    /// made with one assignment.
    pub fn group_metadata(&self) -> Option<GroupMetadata> {
        self.group.as_ref().map(|g| GroupMetadata {
            group: g.name.clone(),
            member_id: g.member_id.clone(),
            member_epoch: g.member_epoch,
        })
    }

    /// Ends the consumer. A group consumer commits its positions (with auto-commit on) and
    /// leaves the group, so its partitions move to the other members at once.
    pub async fn close(mut self) -> Result<()> {
        let Some(auto) = self.group.as_ref().map(|g| g.auto_commit.is_some()) else {
            return Ok(());
        };
        let committed = if auto && !self.positions.is_empty() {
            self.commit().await
        } else {
            Ok(())
        };
        if let Some(g) = self.group.take() {
            let (tx, rx) = oneshot::channel();
            if g.commands.send(Command::Leave { reply: tx }).is_ok() {
                let _ = rx.await;
            }
        }
        committed
    }

    /// Decodes a pushed response into `buffered`, skipping records before the positions.
    fn absorb(&mut self, resp: pb::FetchResponse) -> Result<()> {
        let protocol = |e: batch::BatchError| Error::Protocol(e.to_string());
        for part in resp.partitions {
            let Some(pos) = self.positions.get_mut(&part.partition) else {
                return Err(Error::Protocol(format!(
                    "unexpected partition {}",
                    part.partition
                )));
            };
            // Plugin output may give several records one offset (a flat_map): skip by the
            // position this response started from, not by the last record's.
            let start = *pos;
            for bytes in part.batches {
                let mut rest = batch::RecordCursor::new(&bytes).map_err(protocol)?;
                *pos = (*pos).max(rest.next_offset().map_err(protocol)?);
                // The first batch may begin before the position.
                let head = loop {
                    match rest.next().transpose().map_err(protocol)? {
                        Some(r) if r.offset < start => continue,
                        head => break head,
                    }
                };
                if let Some(head) = head {
                    self.buffered.push_back(Fetched {
                        partition: part.partition,
                        head,
                        rest,
                    });
                }
            }
            // Filtered-out records count as read.
            if let Some(next) = part.next_offset {
                *pos = (*pos).max(next);
            }
        }
        Ok(())
    }

    /// Takes the next buffered record.
    fn next_buffered(&mut self) -> Option<Result<ConsumerRecord>> {
        let f = self.buffered.front_mut()?;
        let partition = f.partition;
        let r = match f.rest.next() {
            Some(Ok(next)) => std::mem::replace(&mut f.head, next),
            Some(Err(e)) => return Some(Err(Error::Protocol(e.to_string()))),
            None => self.buffered.pop_front()?.head,
        };
        Some(Ok(ConsumerRecord {
            topic: Arc::clone(&self.topic),
            partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r.headers,
        }))
    }

    /// Starts applying a new assignment: stops reading (and drops buffered records of)
    /// revoked partitions at once, then — asynchronously — commits them and looks up where
    /// to start in the added ones.
    fn begin_reconcile(&mut self, a: Assignment) {
        let Some(g) = &mut self.group else {
            return;
        };
        if g.reconcile.is_none()
            && a.member_id == g.member_id
            && !a.lost
            && a.partitions.iter().eq(self.positions.keys())
        {
            // Only the epoch moved (nothing to stop or start reading).
            g.member_epoch = g.member_epoch.max(a.member_epoch);
            return;
        }
        // A new membership (the member was removed and joined again, perhaps through
        // assignments this consumer never applied): whatever it read before may have been
        // read and committed by another member since, so it starts every partition again
        // from the group's committed offsets.
        if a.lost || (!g.member_id.is_empty() && a.member_id != g.member_id) {
            if !self.positions.is_empty() {
                tracing::warn!(group = %g.name, "partitions lost with the group membership; not committing them");
            }
            self.forget_positions();
        }
        let consumed = self.consumed_positions();
        let revoked: BTreeMap<u32, u64> = consumed
            .into_iter()
            .filter(|(p, _)| !a.partitions.contains(p))
            .collect();
        self.positions.retain(|p, _| a.partitions.contains(p));
        self.paused.retain(|p| a.partitions.contains(p));
        self.buffered
            .retain(|f| a.partitions.contains(&f.partition));
        // The old stream may carry revoked partitions: drop it now.
        self.feed = Feed::Idle;
        let Some(g) = &mut self.group else {
            return;
        };
        for p in revoked.keys() {
            g.committed.remove(p);
        }
        g.member_id = a.member_id.clone();
        g.member_epoch = a.member_epoch;
        let added: Vec<u32> = a
            .partitions
            .iter()
            .filter(|p| !self.positions.contains_key(p))
            .copied()
            .collect();
        let commit = (g.auto_commit.is_some() && !revoked.is_empty()).then(|| {
            let (tx, rx) = oneshot::channel();
            let _ = g.commands.send(Command::Commit {
                offsets: revoked,
                reply: Some(tx),
            });
            rx
        });
        let client = self.client.clone();
        let (group, topic, start) = (g.name.clone(), self.topic.to_string(), self.start);
        let fut = async move {
            if let Some(rx) = commit
                && let Ok(Err(e)) = rx.await
            {
                tracing::warn!(error = %e, "commit of revoked partitions failed");
            }
            start_positions(&client, &group, &topic, &added, start).await
        };
        g.reconcile = Some((a.partitions, Box::pin(fut)));
    }

    /// Group bookkeeping at the top of every poll: takes new assignments, drives the one
    /// being applied, runs auto-commit. `Some` to return at once.
    fn poll_group(&mut self, cx: &mut Context<'_>) -> Option<Poll<Option<Result<ConsumerRecord>>>> {
        let g = self.group.as_mut()?;
        let mut newest = None;
        loop {
            match g.updates.poll_recv(cx) {
                Poll::Ready(Some(u)) => newest = Some(u),
                Poll::Ready(None) => {
                    if newest.is_none() && g.reconcile.is_none() {
                        self.feed = Feed::Closed;
                        return Some(Poll::Ready(None));
                    }
                    break;
                }
                Poll::Pending => break,
            }
        }
        match newest {
            Some(Update::Failed(e)) => {
                self.feed = Feed::Closed;
                return Some(Poll::Ready(Some(Err(e))));
            }
            Some(Update::Assigned(a)) => {
                // A newer assignment supersedes one still being applied.
                self.begin_reconcile(a);
            }
            None => {}
        }
        let g = self.group.as_mut()?;
        if let Some((partitions, fut)) = &mut g.reconcile {
            match fut.as_mut().poll(cx) {
                Poll::Pending => return Some(Poll::Pending),
                Poll::Ready(Err(e)) => {
                    g.reconcile = None;
                    self.feed = Feed::Closed;
                    return Some(Poll::Ready(Some(Err(e))));
                }
                Poll::Ready(Ok(added)) => {
                    let owned = std::mem::take(partitions);
                    g.reconcile = None;
                    let _ = g.commands.send(Command::Applied { owned });
                    self.positions.extend(added);
                    self.resubscribe();
                }
            }
        }
        let g = self.group.as_mut()?;
        if let Some((every, timer)) = &mut g.auto_commit
            && timer.as_mut().poll(cx).is_ready()
        {
            let next = Instant::now() + *every;
            timer.as_mut().reset(next);
            self.auto_commit_now();
        }
        None
    }

    /// Sends the positions that changed since the last commit (no waiting for the answer).
    fn auto_commit_now(&mut self) {
        let consumed = self.consumed_positions();
        let Some(g) = &mut self.group else {
            return;
        };
        let changed: BTreeMap<u32, u64> = consumed
            .into_iter()
            .filter(|(p, o)| g.committed.get(p) != Some(o))
            .collect();
        if changed.is_empty() {
            return;
        }
        g.committed.extend(changed.iter().map(|(p, o)| (*p, *o)));
        let _ = g.commands.send(Command::Commit {
            offsets: changed,
            reply: None,
        });
    }

    /// A group consumer whose subscription was refused or ended because it no longer owns a
    /// partition: it stops reading everything and waits for its membership to settle.
    /// Drops every position, buffered record and remembered commit: the partitions are no
    /// longer this member's to read from where it was.
    fn forget_positions(&mut self) {
        self.positions.clear();
        self.paused.clear();
        self.buffered.clear();
        if let Some(g) = &mut self.group {
            g.committed.clear();
        }
    }

    fn lost_ownership(&mut self, e: &Error) {
        tracing::warn!(error = %e, "the broker says this member no longer owns its partitions");
        self.forget_positions();
        self.feed = Feed::Idle;
        if let Some(g) = &self.group {
            let _ = g.commands.send(Command::Applied {
                owned: BTreeSet::new(),
            });
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Dropped without `close`: commit what was yielded (the membership task sends it, then
        // leaves the group when it sees the consumer is gone).
        if self.group.as_ref().is_some_and(|g| g.auto_commit.is_some()) {
            self.auto_commit_now();
        }
    }
}

/// Where to start in newly assigned partitions: the group's committed offset when it is
/// still in range, else the reset policy `start`.
async fn start_positions(
    client: &Client,
    group: &str,
    topic: &str,
    added: &[u32],
    start: StartFrom,
) -> Result<BTreeMap<u32, u64>> {
    if added.is_empty() {
        return Ok(BTreeMap::new());
    }
    let req = pb::FetchOffsetsRequest {
        group: group.to_string(),
        topic: topic.to_string(),
        partitions: added.to_vec(),
    };
    let resp = client
        .on_coordinator(group, |mut rpc| {
            let req = req.clone();
            async move { rpc.fetch_offsets(req).await }
        })
        .await?;
    let mut out = BTreeMap::new();
    let mut reset = Vec::new();
    for o in resp.offsets {
        match o.offset {
            Some(c) if (o.earliest_offset..=o.latest_offset).contains(&c) => {
                out.insert(o.partition, c);
            }
            _ => reset.push(o.partition),
        }
    }
    out.extend(resolve_positions(client, topic, &reset, start).await?);
    Ok(out)
}

async fn resolve_positions(
    client: &Client,
    topic: &str,
    partitions: &[u32],
    start: StartFrom,
) -> Result<BTreeMap<u32, u64>> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    if let StartFrom::Offset(o) = start {
        return Ok(partitions.iter().map(|&p| (p, o)).collect());
    }
    let spec = match start {
        StartFrom::Earliest => OffsetSpec::Earliest,
        StartFrom::Latest => OffsetSpec::Latest,
        StartFrom::Timestamp(ts) => OffsetSpec::Timestamp(ts),
        StartFrom::Offset(_) => unreachable!("handled above"),
    };
    let queries: Vec<(u32, OffsetSpec)> = partitions.iter().map(|&p| (p, spec)).collect();
    Ok(list_offsets(client, topic, &queries)
        .await?
        .into_iter()
        .map(|o| (o.partition, o.offset))
        .collect())
}

impl Stream for Consumer {
    type Item = Result<ConsumerRecord>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(ready) = self.poll_group(cx) {
            return ready;
        }
        loop {
            match self.next_buffered() {
                Some(Ok(r)) => return Poll::Ready(Some(Ok(r))),
                Some(Err(e)) => {
                    self.buffered.clear();
                    self.feed = Feed::Closed;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {}
            }
            let polled = match &mut self.feed {
                Feed::Closed => return Poll::Ready(None),
                Feed::Idle => return Poll::Pending,
                Feed::Reconnecting(fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(feeds)) => {
                        self.feed = Feed::Open(feeds);
                        continue;
                    }
                    Poll::Ready(Err(e))
                        if self.group.is_some() && matches!(e, Error::Fenced(_)) =>
                    {
                        self.lost_ownership(&e);
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => {
                        self.feed = Feed::Closed;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
                Feed::Open(feeds) => match Pin::new(feeds).poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(polled) => polled,
                },
            };
            match polled {
                Some(Ok(resp)) => {
                    if let Err(e) = self.absorb(resp) {
                        self.feed = Feed::Closed;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Some(Err(status)) => {
                    let err = Error::from(status);
                    if self.group.is_some() && matches!(err, Error::Fenced(_)) {
                        self.lost_ownership(&err);
                        return Poll::Pending;
                    }
                    if !is_transient(&err) {
                        self.feed = Feed::Closed;
                        return Poll::Ready(Some(Err(err)));
                    }
                    tracing::debug!(error = %err, "record stream broke; subscribing again");
                    self.resubscribe();
                }
                // Every subscription ended (none was open): subscribe again.
                None => self.resubscribe(),
            }
        }
    }
}
