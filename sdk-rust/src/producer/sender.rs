//! The producer's sender task: seals lingering batches, numbers them, keeps requests in flight,
//! retries, and completes delivery futures.
//!
//! Per partition, batches wait in a queue in the order they were sealed. A batch gets its
//! sequence number when first sent, so sequence order is queue order. Rules that keep retries
//! exactly-once and ordered (the broker appends a producer's batch only if it continues the
//! sequence, and answers a repeat of one of its last batches with the original offsets):
//!
//! - A batch is first sent only while it is among the first `max_in_flight` unfinished batches
//!   of its partition, capped by the dedupe window the broker announces with the producer id
//!   (10; 5 for older brokers), so any retry is of one the broker still remembers.
//! - A batch waiting out a retry backoff blocks the batches behind it; while the partition
//!   recovers from an error only one request is in flight.
//! - An out-of-order answer to a batch sent when nothing before it was unfinished means a gap
//!   (an earlier batch failed for good): the partition waits for its requests to return, takes
//!   a fresh producer id and renumbers its unfinished batches from 0. None of them can have been
//!   written: the broker refuses everything after a gap.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use weir_common::batch;
use weir_common::limits::LEGACY_DEDUPE_WINDOW;
use weir_proto::v1 as pb;

use super::stream::{ProduceStream, run_stream};
use super::{Accumulator, BatchAck, BatchHandle, Event, ProducerConfig, SealedBatch, lock};
use crate::client::{Client, Route};
use crate::error::{Error, Result};

/// What the produce stream and id requests report back.
/// Where the broker put an acknowledged batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Appended {
    pub(super) base_offset: u64,
    /// The broker's timestamp for the batch when it asked for log-append time, else 0.
    pub(super) log_append_time: i64,
}

pub(super) enum Reply {
    /// The answer to one request on the produce stream.
    Ack {
        request_id: u64,
        result: Result<Appended>,
    },
    /// A produce stream ended; its unanswered requests failed with `error`.
    StreamClosed { generation: u64, error: Error },
    ProducerId {
        /// `None`: the producer-wide id; else a partition resetting its sequence.
        part: Option<usize>,
        /// The id, and how many batches per partition the broker deduplicates.
        result: Result<(u64, usize)>,
    },
    /// Fresh metadata arrived (or could not be had).
    Routes(Result<()>),
}

/// A request sent on the produce stream and not answered yet.
struct InFlightRequest {
    part: usize,
    batch: u64,
    /// Whether nothing before this batch was unfinished when it was sent.
    sent_as_head: bool,
    generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not sent yet, or due for a retry.
    Ready,
    InFlight,
    /// Retry once this passes.
    Backoff(Instant),
    Acked,
}

struct Queued {
    id: u64,
    bytes: Bytes,
    record_count: u32,
    handle: Arc<BatchHandle>,
    cost: usize,
    created: Instant,
    /// Assigned when first sent (with the producer id it was numbered under).
    seq: Option<u32>,
    state: State,
    attempts: u32,
}

struct PartitionState {
    topic: Arc<str>,
    partition: u32,
    /// Own producer id after a sequence reset; else the producer-wide one.
    producer_id: Option<u64>,
    next_seq: u32,
    queue: VecDeque<Queued>,
    in_flight: usize,
    /// Recovering from an error: one request at a time.
    degraded: bool,
    /// Waiting to renumber under a fresh producer id.
    resetting: bool,
    requesting_id: bool,
    /// The partition's leader, once known; forgotten on errors that say it moved.
    route: Option<Route>,
}

#[derive(Debug, Clone, Copy)]
enum ProducerId {
    /// Idempotence off: batches carry id 0.
    Disabled,
    Unknown,
    Requesting,
    Known(u64),
}

pub(super) struct Sender {
    client: Client,
    config: Arc<ProducerConfig>,
    acc: Arc<Mutex<Accumulator>>,
    buffer: Arc<Semaphore>,
    events: mpsc::WeakUnboundedSender<Event>,
    replies_tx: mpsc::UnboundedSender<Reply>,
    replies_rx: mpsc::UnboundedReceiver<Reply>,
    /// One produce stream per leader, by address.
    streams: HashMap<Arc<str>, ProduceStream>,
    /// A metadata refresh is under way (partitions without a route wait for it).
    routing: bool,
    generations: u64,
    next_request_id: u64,
    requests: HashMap<u64, InFlightRequest>,
    /// Request deadlines in send order.
    deadlines: VecDeque<(Instant, u64)>,
    producer_id: ProducerId,
    /// `max_in_flight`, capped by the broker's dedupe window once it is known.
    in_flight_limit: usize,
    /// When to retry asking for the producer-wide id.
    producer_id_retry: Option<Instant>,
    parts: Vec<PartitionState>,
    index: HashMap<(Arc<str>, u32), usize>,
    /// Open batches by linger deadline (deadlines are created in order: a FIFO).
    lingers: VecDeque<(Instant, Arc<str>, u32, u64)>,
    /// Partitions to look at again at a time (backoffs, delivery timeouts).
    wakeups: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Partitions touched since the last pump.
    dirty: Vec<usize>,
    /// Batches received and not finished.
    outstanding: BTreeSet<u64>,
    flushes: Vec<(u64, oneshot::Sender<Result<()>>)>,
    first_error: Option<Error>,
}

impl Sender {
    pub(super) fn new(
        client: Client,
        config: Arc<ProducerConfig>,
        acc: Arc<Mutex<Accumulator>>,
        buffer: Arc<Semaphore>,
        events: mpsc::WeakUnboundedSender<Event>,
    ) -> Self {
        let (replies_tx, replies_rx) = mpsc::unbounded_channel();
        let max_in_flight = config.max_in_flight;
        let producer_id = if config.idempotent {
            ProducerId::Unknown
        } else {
            ProducerId::Disabled
        };
        Self {
            client,
            config,
            acc,
            buffer,
            events,
            replies_tx,
            replies_rx,
            streams: HashMap::new(),
            routing: false,
            generations: 0,
            next_request_id: 0,
            requests: HashMap::new(),
            deadlines: VecDeque::new(),
            producer_id,
            in_flight_limit: max_in_flight,
            producer_id_retry: None,
            parts: Vec::new(),
            index: HashMap::new(),
            lingers: VecDeque::new(),
            wakeups: BinaryHeap::new(),
            dirty: Vec::new(),
            outstanding: BTreeSet::new(),
            flushes: Vec::new(),
            first_error: None,
        }
    }

    pub(super) async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>) {
        let mut closing = false;
        loop {
            let wake = self.next_wake();
            tokio::select! {
                ev = events.recv(), if !closing => match ev {
                    Some(ev) => self.on_event(ev),
                    // Every producer handle is gone (their drop sealed what was buffered).
                    None => closing = true,
                },
                Some(reply) = self.replies_rx.recv() => self.on_reply(reply),
                _ = sleep_until(wake), if wake.is_some() => {}
            }
            // Drain whatever else is ready before pumping, so a burst is handled in one pass.
            while let Ok(ev) = events.try_recv() {
                self.on_event(ev);
            }
            while let Ok(reply) = self.replies_rx.try_recv() {
                self.on_reply(reply);
            }
            self.on_timers();
            self.pump();
            self.resolve_flushes();
            if closing && self.outstanding.is_empty() {
                return;
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        [
            self.lingers.front().map(|l| l.0),
            self.wakeups.peek().map(|w| w.0.0),
            self.deadlines.front().map(|d| d.0),
            self.producer_id_retry,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn part_index(&mut self, topic: &Arc<str>, partition: u32) -> usize {
        if let Some(&i) = self.index.get(&(Arc::clone(topic), partition)) {
            return i;
        }
        let i = self.parts.len();
        self.parts.push(PartitionState {
            topic: Arc::clone(topic),
            partition,
            producer_id: None,
            next_seq: 0,
            queue: VecDeque::new(),
            in_flight: 0,
            degraded: false,
            resetting: false,
            requesting_id: false,
            route: None,
        });
        self.index.insert((Arc::clone(topic), partition), i);
        i
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Opened {
                topic,
                partition,
                id,
                deadline,
            } => self.lingers.push_back((deadline, topic, partition, id)),
            Event::Sealed(b) => self.on_sealed(b),
            Event::Flush(mark, tx) => self.flushes.push((mark, tx)),
        }
    }

    fn on_sealed(&mut self, b: SealedBatch) {
        let SealedBatch {
            id,
            topic,
            partition,
            builder,
            handle,
            cost,
            created,
        } = b;
        let record_count = builder.record_count();
        let bytes = builder.finish_compressed(self.config.compression);
        let i = self.part_index(&topic, partition);
        self.outstanding.insert(id);
        self.parts[i].queue.push_back(Queued {
            id,
            bytes,
            record_count,
            handle,
            cost,
            created,
            seq: None,
            state: State::Ready,
            attempts: 0,
        });
        self.wakeups
            .push(Reverse((created + self.config.delivery_timeout, i)));
        self.dirty.push(i);
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        while self.lingers.front().is_some_and(|l| l.0 <= now) {
            let Some((_, topic, partition, id)) = self.lingers.pop_front() else {
                break;
            };
            // Sealing sends the batch back through the event channel; if every handle is
            // gone, their drop already sealed everything.
            let Some(events) = self.events.upgrade() else {
                continue;
            };
            let mut acc = lock(&self.acc);
            if let Some(t) = acc.topic_mut(&topic)
                && t.open[partition as usize]
                    .as_ref()
                    .is_some_and(|b| b.id == id)
            {
                Accumulator::seal(t, partition, &events);
            }
        }
        while let Some(&Reverse((at, i))) = self.wakeups.peek() {
            if at > now {
                break;
            }
            self.wakeups.pop();
            self.dirty.push(i);
        }
        while self.deadlines.front().is_some_and(|d| d.0 <= now) {
            let Some((_, id)) = self.deadlines.pop_front() else {
                break;
            };
            if let Some(generation) = self.requests.get(&id).map(|r| r.generation) {
                // A request hangs: abandon the stream; everything on it is retried on a new one
                // (the broker drops the copies it already appended).
                self.close_stream(generation, Error::Timeout(self.config.request_timeout));
            }
        }
        if self.producer_id_retry.is_some_and(|t| t <= now) {
            self.producer_id_retry = None;
            self.producer_id = ProducerId::Unknown;
            self.dirty.extend(0..self.parts.len());
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Ack { request_id, result } => {
                if let Some(r) = self.requests.remove(&request_id) {
                    self.on_produced(r.part, r.batch, r.sent_as_head, result);
                }
            }
            Reply::StreamClosed { generation, error } => self.close_stream(generation, error),
            Reply::Routes(result) => {
                self.routing = false;
                if let Err(e) = result {
                    // The partitions waiting for a route ask again on their next retry.
                    tracing::debug!(error = %e, "cannot refresh the cluster metadata");
                }
                self.dirty.extend(0..self.parts.len());
            }
            Reply::ProducerId { part: None, result } => match result {
                Ok((id, window)) => {
                    self.producer_id = ProducerId::Known(id);
                    self.in_flight_limit = self.config.max_in_flight.min(window.max(1));
                    self.dirty.extend(0..self.parts.len());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot get a producer id yet; retrying");
                    self.producer_id = ProducerId::Unknown;
                    self.producer_id_retry = Some(Instant::now() + self.config.retry_backoff_max);
                }
            },
            Reply::ProducerId {
                part: Some(i),
                result,
            } => {
                let p = &mut self.parts[i];
                p.requesting_id = false;
                match result {
                    Ok((id, _)) => {
                        tracing::debug!(topic = %p.topic, partition = p.partition, producer_id = id, "renumbering unfinished batches under a fresh producer id");
                        p.producer_id = Some(id);
                        p.next_seq = 0;
                        p.resetting = false;
                        p.degraded = true;
                        for b in p.queue.iter_mut().filter(|b| b.state != State::Acked) {
                            b.seq = None;
                            b.state = State::Ready;
                        }
                    }
                    Err(_) => {
                        let at = Instant::now() + self.config.retry_backoff_max;
                        self.wakeups.push(Reverse((at, i)));
                    }
                }
                self.dirty.push(i);
            }
        }
    }

    /// Forgets a produce stream; its unanswered requests fail with `error`.
    fn close_stream(&mut self, generation: u64, error: Error) {
        self.streams.retain(|_, s| s.generation != generation);
        let lost: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.generation == generation)
            .map(|(id, _)| *id)
            .collect();
        if !lost.is_empty() {
            tracing::debug!(requests = lost.len(), error = %error, "produce stream closed");
        }
        for id in lost {
            if let Some(r) = self.requests.remove(&id) {
                self.on_produced(r.part, r.batch, r.sent_as_head, Err(error.clone()));
            }
        }
    }

    /// Asks for fresh metadata (once at a time); partitions are pumped again when it comes.
    fn refresh_routes(&mut self) {
        if std::mem::replace(&mut self.routing, true) {
            return;
        }
        let client = self.client.clone();
        let replies = self.replies_tx.clone();
        let seen = client.routes_version();
        tokio::spawn(async move {
            let result = client.refresh_routes(seen).await;
            let _ = replies.send(Reply::Routes(result));
        });
    }

    /// Sends a request on the produce stream to `route`, opening one if needed.
    fn send_request(
        &mut self,
        route: &Route,
        req: pb::ProduceStreamRequest,
        info: InFlightRequest,
    ) {
        let id = req.request_id;
        let mut req = Some(req);
        for _ in 0..2 {
            let stream = match self.streams.get(&route.addr) {
                Some(s) => s,
                None => {
                    self.generations += 1;
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(run_stream(
                        route.channel.clone(),
                        self.generations,
                        rx,
                        self.replies_tx.clone(),
                    ));
                    self.streams
                        .entry(Arc::clone(&route.addr))
                        .or_insert(ProduceStream {
                            tx,
                            generation: self.generations,
                        })
                }
            };
            let generation = stream.generation;
            match stream.tx.send(req.take().expect("sent at most once")) {
                Ok(()) => {
                    self.requests
                        .insert(id, InFlightRequest { generation, ..info });
                    self.deadlines
                        .push_back((Instant::now() + self.config.request_timeout, id));
                    return;
                }
                // The stream's task is gone: open a fresh stream and send there.
                Err(mpsc::error::SendError(r)) => {
                    req = Some(r);
                    self.streams.remove(&route.addr);
                }
            }
        }
        let _ = self.replies_tx.send(Reply::Ack {
            request_id: id,
            result: Err(Error::Unavailable("cannot open a produce stream".into())),
        });
        self.requests.insert(id, info);
    }

    fn on_produced(&mut self, i: usize, id: u64, sent_as_head: bool, result: Result<Appended>) {
        let now = Instant::now();
        let delivery_timeout = self.config.delivery_timeout;
        self.dirty.push(i);
        let p = &mut self.parts[i];
        p.in_flight -= 1;
        let Some(pos) = p.queue.iter().position(|b| b.id == id) else {
            return;
        };
        let error = match result {
            Ok(appended) => {
                let b = &mut p.queue[pos];
                b.state = State::Acked;
                b.handle.complete(Ok(BatchAck {
                    partition: p.partition,
                    base_offset: appended.base_offset,
                    log_append_time: appended.log_append_time,
                }));
                if pos == 0 {
                    p.degraded = false;
                }
                self.finish_acked(i);
                return;
            }
            Err(e) => e,
        };
        let error = match error {
            // The leader may not have applied the metadata that created the topic yet.
            Error::TopicNotFound(m)
                if p.route
                    .as_ref()
                    .is_some_and(|r| *r.addr != *self.client.addr()) =>
            {
                Error::Unavailable(m)
            }
            e => e,
        };
        if matches!(
            error,
            Error::NotLeader(_) | Error::Unavailable(_) | Error::Connect { .. } | Error::Timeout(_)
        ) {
            // Leadership may have moved: route by fresh metadata.
            p.route = None;
            self.refresh_routes();
        }
        let p = &mut self.parts[i];
        let b = &mut p.queue[pos];
        let expired = now >= b.created + delivery_timeout;
        if error.is_retriable() && !expired {
            if matches!(error, Error::OutOfOrderSequence(_)) && sent_as_head {
                // A gap before this batch: an earlier one failed for good.
                p.resetting = true;
                b.state = State::Ready;
            } else {
                let at = now + backoff(&self.config, b.attempts);
                b.state = State::Backoff(at);
                p.degraded = true;
                self.wakeups.push(Reverse((at, i)));
            }
            tracing::debug!(topic = %p.topic, partition = p.partition, attempt = b.attempts, error = %error, "produce failed; will retry");
            return;
        }
        let error = match error {
            e if expired && e.is_retriable() => {
                tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "giving up on a batch after the delivery timeout");
                Error::Timeout(delivery_timeout)
            }
            e => e,
        };
        self.fail(i, pos, error);
    }

    /// Pops acknowledged batches off the front of a partition's queue.
    fn finish_acked(&mut self, i: usize) {
        while self.parts[i]
            .queue
            .front()
            .is_some_and(|b| b.state == State::Acked)
        {
            if let Some(b) = self.parts[i].queue.pop_front() {
                self.outstanding.remove(&b.id);
                self.buffer.add_permits(b.cost);
            }
        }
    }

    /// Gives up on a batch: its records fail with `error`.
    fn fail(&mut self, i: usize, pos: usize, error: Error) {
        let Some(b) = self.parts[i].queue.remove(pos) else {
            return;
        };
        b.handle.complete(Err(error.clone()));
        self.outstanding.remove(&b.id);
        self.buffer.add_permits(b.cost);
        self.first_error.get_or_insert(error);
        self.finish_acked(i);
    }

    fn pump(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for i in dirty {
            self.pump_partition(i);
        }
    }

    fn pump_partition(&mut self, i: usize) {
        let now = Instant::now();
        // Batches not in flight that ran out of time fail here (in flight ones on reply). The
        // queue is in seal order, so the scan stops at the first batch still in time.
        let timeout = self.config.delivery_timeout;
        let mut pos = 0;
        while let Some(b) = self.parts[i].queue.get(pos) {
            if now < b.created + timeout {
                break;
            }
            if matches!(b.state, State::Ready | State::Backoff(_)) {
                self.fail(i, pos, Error::Timeout(timeout));
                // `fail` may also pop acknowledged batches off the front: rescan from there.
                pos = 0;
            } else {
                pos += 1;
            }
        }
        let p = &mut self.parts[i];
        if p.resetting {
            if p.in_flight == 0 && !p.requesting_id {
                p.requesting_id = true;
                self.request_producer_id(Some(i));
            }
            return;
        }
        if p.queue.is_empty() {
            return;
        }
        let producer_id = match (p.producer_id, self.producer_id) {
            (Some(id), _) => id,
            (None, ProducerId::Disabled) => 0,
            (None, ProducerId::Known(id)) => id,
            (None, ProducerId::Requesting) => return,
            (None, ProducerId::Unknown) => {
                if self.producer_id_retry.is_none() {
                    self.producer_id = ProducerId::Requesting;
                    self.request_producer_id(None);
                }
                return;
            }
        };
        let p = &mut self.parts[i];
        let route = match &p.route {
            Some(r) => r.clone(),
            // The route was forgotten because it may be stale: wait for the fresh metadata
            // (the answer pumps every partition again) rather than resolve it from the old.
            None if self.routing => return,
            None => match self.client.route(&p.topic, p.partition) {
                Some(r) => p.route.insert(r).clone(),
                None => {
                    self.refresh_routes();
                    return;
                }
            },
        };
        let p = &mut self.parts[i];
        let limit = if p.degraded { 1 } else { self.in_flight_limit };
        let mut all_before_acked = true;
        let mut sends = Vec::new();
        for pos in 0..p.queue.len() {
            if p.in_flight >= limit {
                break;
            }
            let b = &mut p.queue[pos];
            match b.state {
                State::Acked => continue,
                State::InFlight => {
                    all_before_acked = false;
                    continue;
                }
                State::Backoff(at) if at > now => break,
                State::Ready | State::Backoff(_) => {}
            }
            if b.seq.is_none() {
                if pos >= self.in_flight_limit {
                    break;
                }
                b.seq = Some(p.next_seq);
                if producer_id != 0 {
                    b.bytes = stamp(std::mem::take(&mut b.bytes), producer_id, p.next_seq);
                }
                p.next_seq = p.next_seq.wrapping_add(b.record_count);
            }
            b.state = State::InFlight;
            b.attempts += 1;
            p.in_flight += 1;
            self.next_request_id += 1;
            let req = pb::ProduceStreamRequest {
                request_id: self.next_request_id,
                topic: p.topic.to_string(),
                batches: vec![pb::PartitionBatch {
                    partition: p.partition,
                    batch: b.bytes.clone(),
                }],
                acks: self.config.acks.to_proto(),
            };
            sends.push((
                req,
                InFlightRequest {
                    part: i,
                    batch: b.id,
                    sent_as_head: all_before_acked,
                    generation: 0,
                },
            ));
            all_before_acked = false;
        }
        for (req, info) in sends {
            self.send_request(&route, req, info);
        }
    }

    fn request_producer_id(&self, part: Option<usize>) {
        let mut rpc = self.client.log_rpc();
        let client = self.client.clone();
        let replies = self.replies_tx.clone();
        let timeout = self.config.request_timeout;
        tokio::spawn(async move {
            let result =
                match tokio::time::timeout(timeout, rpc.init_producer(pb::InitProducerRequest {}))
                    .await
                {
                    Err(_) => Err(Error::Timeout(timeout)),
                    Ok(Err(status)) => Err(Error::from(status)),
                    Ok(Ok(resp)) => {
                        let resp = resp.into_inner();
                        let window = match resp.dedupe_window {
                            0 => LEGACY_DEDUPE_WINDOW,
                            n => n as usize,
                        };
                        Ok((resp.producer_id, window))
                    }
                };
            if let Err(e) = &result {
                // The retry then asks another broker if this one is gone.
                client.bootstrap_unreachable(e).await;
            }
            let _ = replies.send(Reply::ProducerId { part, result });
        });
    }

    fn resolve_flushes(&mut self) {
        if self.flushes.is_empty() {
            return;
        }
        let oldest = self.outstanding.first().copied().unwrap_or(u64::MAX);
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|(mark, _)| oldest >= *mark);
        self.flushes = waiting;
        if done.is_empty() {
            return;
        }
        let result = match self.first_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        for (_, tx) in done {
            let _ = tx.send(result.clone());
        }
    }
}

/// Wait before retry number `attempts`: doubling from `retry_backoff` up to the maximum.
fn backoff(config: &ProducerConfig, attempts: u32) -> std::time::Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    (config.retry_backoff * factor).min(config.retry_backoff_max)
}

/// Writes the producer id and base sequence into a sealed batch (copying it only if a request
/// still holds the bytes).
fn stamp(bytes: Bytes, producer_id: u64, base_sequence: u32) -> Bytes {
    let mut buf = BytesMut::from(bytes);
    batch::set_producer(&mut buf, producer_id, base_sequence);
    buf.freeze()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
