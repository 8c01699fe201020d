//! `weir.v1.Log`: produce, fetch, subscribe (server streaming), list offsets.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;
use weir_common::batch;
use weir_common::limits::{MAX_PLUGIN_CHAIN, MAX_PLUGIN_PARAMS_BYTES};
use weir_proto::v1 as pb;

use super::{Guarded, principal, status_of};
use crate::broker::{Acks, Admission, Broker};
use crate::error::BrokerError;
use crate::log::{ReadResult, ReadUpTo};
use crate::metrics;
use crate::plugins::Chain;
use crate::security::{Operation, Principal, Resource};
use crate::topics::{Topic, any_changed};
use crate::types::OffsetQuery;

/// Responses a subscription may have queued for a slow client before it stops reading.
const SUBSCRIPTION_QUEUE_DEPTH: usize = 4;

/// Requests of one produce stream being appended at once; beyond this the broker stops
/// reading the stream (HTTP/2 flow control then holds the producer back).
pub const PRODUCE_STREAM_MAX_PENDING: usize = 128;

/// The per-request error of a produce stream: the status a unary call would have returned.
pub(super) fn request_error(e: BrokerError) -> pb::RequestError {
    let status = status_of(e);
    pb::RequestError {
        code: status.code() as i32,
        message: status.message().to_string(),
        kind: status
            .metadata()
            .get(super::ERROR_KIND_KEY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    }
}

fn appends_of(appended: Vec<(u32, crate::log::Appended)>) -> Vec<pb::PartitionAppend> {
    appended
        .into_iter()
        .map(|(partition, a)| pb::PartitionAppend {
            partition,
            base_offset: a.base_offset,
            record_count: a.record_count,
            log_append_time: a.log_append_time,
        })
        .collect()
}

/// Reads a produce stream in order, queueing each request's batches on their appenders before
/// reading the next (so order on the stream is order in the log), and answers each request as
/// its appends complete.
async fn run_produce_stream(
    broker: Arc<Broker>,
    who: Principal,
    mut inbound: tonic::Streaming<pb::ProduceStreamRequest>,
    out: mpsc::Sender<Result<pb::ProduceStreamResponse, Status>>,
    mut shutdown: watch::Receiver<bool>,
) {
    use futures::StreamExt;
    use futures::stream::FuturesUnordered;
    let mut pending = FuturesUnordered::new();
    let mut reading = true;
    loop {
        tokio::select! {
            msg = inbound.message(), if reading && pending.len() < PRODUCE_STREAM_MAX_PENDING => {
                match msg {
                    Ok(Some(req)) => {
                        let id = req.request_id;
                        let batches = req.batches.into_iter().map(|b| (b.partition, b.batch)).collect();
                        let submitted = match broker.security().authorize(&who, Resource::topic(&req.topic), Operation::Write) {
                            Ok(()) => broker.produce_queued(&req.topic, batches, acks_of(req.acks), Admission::Wait).await,
                            Err(e) => Err(e),
                        };
                        match submitted {
                            Ok(done) => pending.push(async move { (id, done.await) }),
                            Err(e) => {
                                let resp = pb::ProduceStreamResponse {
                                    request_id: id,
                                    appends: Vec::new(),
                                    error: Some(request_error(e)),
                                };
                                if out.send(Ok(resp)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    // The client finished sending (or went away): answer what is pending.
                    Ok(None) | Err(_) => reading = false,
                }
            }
            // Shutting down: take no more requests, answer the pending ones, end the stream
            // (the producer retries on a new one).
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; }, if reading => reading = false,
            Some((id, result)) = pending.next() => {
                let resp = match result {
                    Ok(appended) => pb::ProduceStreamResponse {
                        request_id: id,
                        appends: appends_of(appended),
                        error: None,
                    },
                    Err(e) => pb::ProduceStreamResponse {
                        request_id: id,
                        appends: Vec::new(),
                        error: Some(request_error(e)),
                    },
                };
                if out.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
            else => return,
        }
    }
}

pub struct LogService {
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
}

impl LogService {
    pub fn new(broker: Arc<Broker>, shutdown: watch::Receiver<bool>) -> Self {
        Self { broker, shutdown }
    }
}

/// Resolves a plugin chain (a subscription's, or a `Transform` stream's) and instantiates it
/// once, for `first` (bad names, params or inits fail the call that asked for it).
pub(super) async fn chain_of(
    broker: &Broker,
    who: &Principal,
    uses: Vec<pb::PluginUse>,
    first: u32,
) -> Result<Chain, BrokerError> {
    if uses.len() > MAX_PLUGIN_CHAIN {
        return Err(BrokerError::InvalidArgument(format!(
            "{} plugins in one chain; the limit is {MAX_PLUGIN_CHAIN}",
            uses.len()
        )));
    }
    let mut resolved = Vec::with_capacity(uses.len());
    for u in &uses {
        broker
            .security()
            .authorize(who, Resource::plugin(&u.name), Operation::Read)?;
    }
    for u in uses {
        if u.params.len() > MAX_PLUGIN_PARAMS_BYTES {
            return Err(BrokerError::InvalidArgument(format!(
                "params of plugin {:?} are {} bytes; the limit is {MAX_PLUGIN_PARAMS_BYTES}",
                u.name,
                u.params.len()
            )));
        }
        resolved.push((broker.plugin(&u.name).await?, u.params.into_bytes()));
    }
    tokio::task::spawn_blocking(move || Chain::new(resolved, first))
        .await
        .map_err(|e| BrokerError::Storage(format!("plugin task failed: {e}")))?
        .map_err(BrokerError::from)
}

/// Checks positions name distinct existing partitions.
/// Also fails with `not_leader` on a partition another broker leads, before any bounds of
/// this broker's copy are looked at.
fn check_positions(
    broker: &Broker,
    topic: &Topic,
    positions: &[pb::FetchPosition],
) -> Result<(), BrokerError> {
    if positions.is_empty() {
        return Err(BrokerError::InvalidArgument(
            "no partition positions given".into(),
        ));
    }
    let mut seen = HashSet::new();
    for p in positions {
        topic.partition(p.partition)?;
        broker.check_leader(&topic.meta.name, p.partition)?;
        if !seen.insert(p.partition) {
            return Err(BrokerError::InvalidArgument(format!(
                "partition {} is listed twice",
                p.partition
            )));
        }
    }
    Ok(())
}

/// The proto's `Acks` (an unknown value counts as the safe default, all).
fn acks_of(acks: i32) -> Acks {
    match pb::Acks::try_from(acks) {
        Ok(pb::Acks::Leader) => Acks::Leader,
        _ => Acks::All,
    }
}

fn records_of(partition: u32, r: ReadResult) -> pb::PartitionRecords {
    pb::PartitionRecords {
        partition,
        batches: r.batches,
        earliest_offset: r.bounds.earliest,
        latest_offset: r.bounds.latest,
        next_offset: r.end,
    }
}

/// Runs what one read round returned through the subscription's plugin chain (blocking:
/// wasm): drops records before each partition's start position, applies the chain, and sends
/// the output as explicit-offset batches with the position reached.
fn transform_round(
    chain: &mut Chain,
    partitions: Vec<pb::PartitionRecords>,
    starts: &HashMap<u32, u64>,
) -> Result<Vec<pb::PartitionRecords>, BrokerError> {
    let mut out = Vec::with_capacity(partitions.len());
    for mut part in partitions {
        let start = starts.get(&part.partition).copied().unwrap_or(0);
        let next = read_end(part.next_offset, &part.batches)?.map_or(start, |end| end.max(start));
        let batches = std::mem::take(&mut part.batches);
        // Unchanged: the stored batches themselves (records before the start position in the
        // first one are skipped by the client, as without plugins).
        part.batches = chain.apply(part.partition, batches, start)?.batches;
        part.next_offset = Some(next);
        out.push(part);
    }
    Ok(out)
}

/// Where a read of these stored batches ends (see [`batch::next_offset_after`]).
fn stored_end(batches: &[Bytes]) -> Result<Option<u64>, BrokerError> {
    batch::next_offset_after(batches)
        .map_err(|e| BrokerError::Storage(format!("stored batch: {e}")))
}

/// Where a read continues: where a view's read says it ended, else after its stored batches.
fn read_end(end: Option<u64>, batches: &[Bytes]) -> Result<Option<u64>, BrokerError> {
    match end {
        Some(end) => Ok(Some(end)),
        None => stored_end(batches),
    }
}

/// One pass over the positions: reads what is available (at most `budget` bytes in all,
/// starting at partition `start` for fairness) and advances the positions past it.
async fn read_round(
    broker: &Broker,
    topic: &Arc<Topic>,
    positions: &mut [pb::FetchPosition],
    start: usize,
    mut budget: usize,
    skip_empty: bool,
) -> Result<Vec<pb::PartitionRecords>, BrokerError> {
    let mut out = Vec::new();
    let n = positions.len();
    for i in 0..n {
        let pos = &mut positions[(start + i) % n];
        let bounds = topic.bounds(pos.partition)?;
        if !bounds.holds(pos.offset) {
            return Err(topic.out_of_range(pos.partition, pos.offset, bounds));
        }
        if budget == 0 || (skip_empty && pos.offset >= bounds.latest) {
            continue;
        }
        let r = broker
            .read(
                topic,
                pos.partition,
                pos.offset,
                budget,
                ReadUpTo::HighWatermark,
            )
            .await?;
        if let Some(end) = read_end(r.end, &r.batches)? {
            pos.offset = end;
            let bytes: usize = r.batches.iter().map(|b| b.len()).sum();
            budget = budget.saturating_sub(bytes);
            metrics::global().consumed(
                &topic.meta.name,
                batch::records_in(&r.batches),
                bytes as u64,
            );
        }
        // A view's read whose records were all left out still moves the reader on.
        if !skip_empty || !r.batches.is_empty() || r.end.is_some() {
            out.push(records_of(pos.partition, r));
        }
    }
    Ok(out)
}

/// The group member a subscription reads for.
struct Reader {
    group: String,
    member_id: String,
    /// Ticks when some member may have lost partitions.
    changes: watch::Receiver<u64>,
}

/// Fails (not_partition_owner) on the first position whose partition `reader` does not hold.
fn first_not_owned(
    broker: &Broker,
    reader: &Reader,
    topic: &Topic,
    positions: &[pb::FetchPosition],
) -> Result<(), BrokerError> {
    match positions.iter().find(|p| {
        !broker.group_owns(
            &reader.group,
            &reader.member_id,
            &topic.meta.name,
            p.partition,
        )
    }) {
        None => Ok(()),
        Some(p) => Err(BrokerError::NotPartitionOwner {
            group: reader.group.clone(),
            member: reader.member_id.clone(),
            topic: topic.meta.name.clone(),
            partition: p.partition,
        }),
    }
}

/// Waits for a group change (forever when not reading for a group).
async fn group_changed(reader: &mut Option<Reader>) {
    match reader {
        Some(r) => {
            if r.changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// What one subscription reads, for whom, and through which plugins.
struct Subscription {
    broker: Arc<Broker>,
    /// Who reads: checked again every round, so a revoked permission ends the stream.
    who: Principal,
    topic: Arc<Topic>,
    positions: Vec<pb::FetchPosition>,
    budget: usize,
    reader: Option<Reader>,
    chain: Option<Chain>,
}

async fn run_subscription(
    sub: Subscription,
    tx: mpsc::Sender<Result<pb::FetchResponse, Status>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Subscription {
        broker,
        who,
        topic,
        mut positions,
        budget,
        mut reader,
        mut chain,
    } = sub;
    let mut watches: Vec<_> = positions
        .iter()
        .filter_map(|p| topic.watch(p.partition).ok())
        .collect();
    let mut start = 0;
    let mut group_changed_seen = false;
    loop {
        for w in &mut watches {
            w.borrow_and_update();
        }
        let may_read =
            broker
                .security()
                .authorize(&who, Resource::topic(&topic.meta.name), Operation::Read);
        if let Err(e) = may_read {
            let _ = tx.send(Err(status_of(e))).await;
            return;
        }
        // A group member that lost a partition gets nothing more of this stream.
        if let Some(r) = &mut reader
            && (std::mem::take(&mut group_changed_seen) || r.changes.has_changed().unwrap_or(false))
        {
            r.changes.borrow_and_update();
            if let Err(e) = first_not_owned(&broker, r, &topic, &positions) {
                let _ = tx.send(Err(status_of(e))).await;
                return;
            }
        }
        let starts: HashMap<u32, u64> = positions.iter().map(|p| (p.partition, p.offset)).collect();
        let mut round = read_round(&broker, &topic, &mut positions, start, budget, true).await;
        let read_something = matches!(&round, Ok(p) if !p.is_empty());
        if read_something
            && let Ok(partitions) = &mut round
            && let Some(c) = chain.take()
        {
            let read = std::mem::take(partitions);
            let (c, transformed) = match tokio::task::spawn_blocking(move || {
                let mut c = c;
                let r = transform_round(&mut c, read, &starts);
                (c, r)
            })
            .await
            {
                Ok(done) => done,
                Err(e) => {
                    let e = BrokerError::Storage(format!("plugin task failed: {e}"));
                    let _ = tx.send(Err(status_of(e))).await;
                    return;
                }
            };
            chain = Some(c);
            round = transformed;
        }
        match round {
            Err(e) => {
                let _ = tx.send(Err(status_of(e))).await;
                return;
            }
            Ok(partitions) if !partitions.is_empty() => {
                start = (start + 1) % positions.len();
                if tx.send(Ok(pb::FetchResponse { partitions })).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(_) => {}
        }
        let stopping = tokio::select! {
            _ = any_changed(&mut watches) => false,
            _ = group_changed(&mut reader) => {
                group_changed_seen = true;
                false
            }
            _ = tx.closed() => return,
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => true,
        };
        if stopping {
            let _ = tx.send(Err(status_of(BrokerError::ShuttingDown))).await;
            return;
        }
    }
}

impl Guarded for LogService {
    fn broker(&self) -> &Broker {
        &self.broker
    }
}

#[tonic::async_trait]
impl pb::log_server::Log for LogService {
    async fn produce(
        &self,
        req: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        self.allow(&who, Resource::topic(&req.topic), Operation::Write)?;
        let span = tracing::debug_span!("produce", topic = %req.topic, batches = req.batches.len());
        let batches = req
            .batches
            .into_iter()
            .map(|b| (b.partition, b.batch))
            .collect();
        let appended = self
            .broker
            .produce(&req.topic, batches, acks_of(req.acks))
            .instrument(span)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::ProduceResponse {
            appends: appends_of(appended),
        }))
    }

    type ProduceStreamStream = ReceiverStream<Result<pb::ProduceStreamResponse, Status>>;

    async fn produce_stream(
        &self,
        req: Request<tonic::Streaming<pb::ProduceStreamRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        let (tx, rx) = mpsc::channel(PRODUCE_STREAM_MAX_PENDING);
        let span = tracing::debug_span!("produce_stream");
        let who = principal(&req);
        tokio::spawn(
            run_produce_stream(
                Arc::clone(&self.broker),
                who,
                req.into_inner(),
                tx,
                self.shutdown.clone(),
            )
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch(
        &self,
        req: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let who = principal(&req);
        let mut req = req.into_inner();
        self.allow(&who, Resource::topic(&req.topic), Operation::Read)?;
        let topic = self.broker.topic(&req.topic).map_err(status_of)?;
        check_positions(&self.broker, &topic, &req.positions).map_err(status_of)?;
        let budget = Broker::fetch_budget(req.max_bytes);
        let partitions = read_round(&self.broker, &topic, &mut req.positions, 0, budget, false)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::FetchResponse { partitions }))
    }

    type SubscribeStream = ReceiverStream<Result<pb::FetchResponse, Status>>;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        self.allow(&who, Resource::topic(&req.topic), Operation::Read)?;
        if let Some(m) = &req.member {
            self.allow(&who, Resource::group(&m.group), Operation::Read)?;
        }
        let topic = self.broker.topic(&req.topic).map_err(status_of)?;
        check_positions(&self.broker, &topic, &req.positions).map_err(status_of)?;
        for p in &req.positions {
            let bounds = topic.bounds(p.partition).map_err(status_of)?;
            if !bounds.holds(p.offset) {
                return Err(status_of(topic.out_of_range(p.partition, p.offset, bounds)));
            }
        }
        // A partition's leader knows group membership only when it coordinates the group
        // too, so in a cluster (as in Kafka) subscriptions are not fenced by membership:
        // members stop reading revoked partitions themselves, and commits are fenced.
        let member = req.member.filter(|_| !self.broker.in_cluster());
        let reader = member.map(|m| Reader {
            group: m.group,
            member_id: m.member_id,
            changes: self.broker.group_changes(),
        });
        if let Some(r) = &reader {
            first_not_owned(&self.broker, r, &topic, &req.positions).map_err(status_of)?;
        }
        let chain = if req.plugins.is_empty() {
            None
        } else {
            let first = req.positions[0].partition;
            Some(
                chain_of(&self.broker, &who, req.plugins, first)
                    .await
                    .map_err(status_of)?,
            )
        };
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_QUEUE_DEPTH);
        let span =
            tracing::debug_span!("subscribe", topic = %req.topic, partitions = req.positions.len());
        let budget = Broker::fetch_budget(req.max_bytes);
        tokio::spawn(
            run_subscription(
                Subscription {
                    broker: Arc::clone(&self.broker),
                    who,
                    topic,
                    positions: req.positions,
                    budget,
                    reader,
                    chain,
                },
                tx,
                self.shutdown.clone(),
            )
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_offsets(
        &self,
        req: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        self.allow_any(&who, Resource::topic(&req.topic))?;
        let topic = self.broker.topic(&req.topic).map_err(status_of)?;
        let mut offsets = Vec::with_capacity(req.queries.len());
        for q in req.queries {
            let query = match pb::OffsetSpec::try_from(q.spec) {
                Ok(pb::OffsetSpec::Earliest) => OffsetQuery::Earliest,
                Ok(pb::OffsetSpec::Latest) => OffsetQuery::Latest,
                Ok(pb::OffsetSpec::Timestamp) => OffsetQuery::Timestamp(q.timestamp),
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "unknown offset spec {}",
                        q.spec
                    )));
                }
            };
            let (offset, b) = self
                .broker
                .list_offset(&topic, q.partition, query)
                .await
                .map_err(status_of)?;
            offsets.push(pb::PartitionOffset {
                partition: q.partition,
                offset,
                earliest_offset: b.earliest,
                latest_offset: b.latest,
            });
        }
        Ok(Response::new(pb::ListOffsetsResponse { offsets }))
    }

    async fn init_producer(
        &self,
        _req: Request<pb::InitProducerRequest>,
    ) -> Result<Response<pb::InitProducerResponse>, Status> {
        let producer_id = self.broker.init_producer().await.map_err(status_of)?;
        tracing::debug!(producer_id, "allocated producer id");
        Ok(Response::new(pb::InitProducerResponse {
            producer_id,
            dedupe_window: crate::log::producers::PRODUCER_DEDUPE_WINDOW as u32,
        }))
    }
}
