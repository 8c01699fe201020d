//! A fake broker for the SDK's unit tests: an in-process gRPC server (real tonic, real
//! loopback) that serves just what a producer uses — `Topics.DescribeTopic`,
//! `Log.InitProducer`, `Log.ProduceStream` — with a real broker's idempotence rules, and lets a
//! test script faults per produce request: refuse it, drop its answer, close the stream, or
//! hold answers back. Everything it received is kept for the test to inspect.
//!
//! It is not a broker: one topic, logs in memory, no fetch. The real broker's behaviour is
//! covered by the e2e tests; this one exists to drive the producer's state machine through
//! every path deterministically.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Code, Request, Response, Status};
use weir_proto::v1 as pb;
use weir_proto::v1::log_server::{Log, LogServer};
use weir_proto::v1::topics_server::{Topics, TopicsServer};

/// The one topic the fake serves.
pub const TOPIC: &str = "t";

/// What the fake does with one produce request (taken in arrival order from the script).
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this error (code, `weir-error-kind`), appending nothing.
    Refuse(Code, &'static str),
    /// Append, but never answer (a lost acknowledgement: the producer's request timeout fires).
    DropAck,
    /// Append, answer, then end the produce stream with UNAVAILABLE.
    CloseAfter,
}

/// One batch as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub partition: u32,
    pub producer_id: u64,
    pub base_sequence: u32,
    pub records: u32,
    pub bytes: usize,
}

/// One record the fake appended.
#[derive(Debug, Clone)]
pub struct Stored {
    pub offset: u64,
    pub producer_id: u64,
    pub value: Bytes,
}

#[derive(Debug, Default)]
pub struct State {
    pub partitions: u32,
    /// Announced with each producer id (how many batches per partition are deduplicated).
    pub dedupe_window: u32,
    next_producer_id: u64,
    pub init_producer_calls: u32,
    /// Faults for the next produce requests, in arrival order.
    pub script: VecDeque<Fault>,
    /// Applied to every request once the script is used up (`None`: accept).
    pub always: Option<Fault>,
    /// How long each answer is held back (so requests pile up in flight).
    pub answer_delay: Duration,
    /// Every batch received, retries included.
    pub seen: Vec<Seen>,
    /// Records appended, per partition.
    pub logs: Vec<Vec<Stored>>,
    /// Requests received and not answered yet, per partition, and the most at once.
    in_flight: Vec<usize>,
    pub max_in_flight: Vec<usize>,
    /// Per (producer id, partition): the last batches appended (base sequence, records, base
    /// offset), as many as the dedupe window.
    recent: HashMap<(u64, u32), VecDeque<Appended>>,
}

/// One appended batch of a producer: base sequence, records, base offset.
type Appended = (u32, u32, u64);

impl State {
    /// Every value appended to `partition`, in offset order.
    pub fn values(&self, partition: u32) -> Vec<String> {
        self.logs[partition as usize]
            .iter()
            .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
            .collect()
    }

    /// Appends one batch with the broker's idempotence rules: a repeat of one of the last
    /// batches is answered with its original offset, a sequence that is not the next one is
    /// refused (`out_of_order_sequence`).
    fn append(&mut self, partition: u32, batch: &Bytes) -> Result<(u64, u32), pb::RequestError> {
        let (header, records) =
            weir_common::batch::decode(batch).map_err(|e| pb::RequestError {
                code: Code::InvalidArgument as i32,
                message: format!("bad batch: {e}"),
                kind: "invalid_argument".into(),
            })?;
        let count = records.len() as u32;
        let (pid, seq) = (header.producer_id, header.base_sequence);
        if pid != 0 {
            let recent = self.recent.entry((pid, partition)).or_default();
            if let Some(&(_, n, base)) = recent.iter().find(|(s, _, _)| *s == seq) {
                return Ok((base, n));
            }
            let next = recent.back().map_or(0, |(s, n, _)| s.wrapping_add(*n));
            if seq != next {
                return Err(pb::RequestError {
                    code: Code::FailedPrecondition as i32,
                    message: format!("producer {pid}: sequence {seq}, expected {next}"),
                    kind: "out_of_order_sequence".into(),
                });
            }
        }
        let log = &mut self.logs[partition as usize];
        let base = log.len() as u64;
        for (i, r) in records.into_iter().enumerate() {
            log.push(Stored {
                offset: base + i as u64,
                producer_id: pid,
                value: r.value,
            });
        }
        if pid != 0 {
            let window = self.dedupe_window.max(1) as usize;
            let recent = self.recent.entry((pid, partition)).or_default();
            recent.push_back((seq, count, base));
            while recent.len() > window {
                recent.pop_front();
            }
        }
        Ok((base, count))
    }
}

/// A running fake broker; stops when dropped.
pub struct FakeBroker {
    pub addr: String,
    pub state: Arc<Mutex<State>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeBroker {
    /// A fake with `partitions` partitions of [`TOPIC`] and a dedupe window of 10.
    pub async fn start(partitions: u32) -> Self {
        let state = Arc::new(Mutex::new(State {
            partitions,
            dedupe_window: 10,
            next_producer_id: 1,
            logs: vec![Vec::new(); partitions as usize],
            in_flight: vec![0; partitions as usize],
            max_in_flight: vec![0; partitions as usize],
            ..State::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = Service {
            state: Arc::clone(&state),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(LogServer::new(service.clone()))
                .add_service(TopicsServer::new(service))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        Self {
            addr,
            state,
            _stop: stop,
        }
    }

    /// Runs `f` on the fake's state.
    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub async fn client(&self) -> weir::Client {
        weir::Client::connect(&self.addr).await.unwrap()
    }
}

#[derive(Clone)]
struct Service {
    state: Arc<Mutex<State>>,
}

fn unimplemented<T>() -> Result<T, Status> {
    Err(Status::unimplemented("not in the fake broker"))
}

#[tonic::async_trait]
impl Topics for Service {
    async fn create_topic(
        &self,
        _: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        unimplemented()
    }

    async fn list_topics(
        &self,
        _: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        unimplemented()
    }

    async fn describe_topic(
        &self,
        req: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::DescribeTopicResponse>, Status> {
        if req.get_ref().name != TOPIC {
            let mut s = Status::not_found(format!("topic {:?} does not exist", req.get_ref().name));
            s.metadata_mut()
                .insert("weir-error-kind", "topic_not_found".parse().unwrap());
            return Err(s);
        }
        let st = self.state.lock().unwrap();
        Ok(Response::new(pb::DescribeTopicResponse {
            topic: Some(pb::TopicInfo {
                name: TOPIC.into(),
                config: Some(pb::TopicConfig {
                    partitions: st.partitions,
                    ..Default::default()
                }),
                view_of: None,
            }),
            partitions: (0..st.partitions)
                .map(|p| pb::PartitionInfo {
                    partition: p,
                    latest_offset: st.logs[p as usize].len() as u64,
                    ..Default::default()
                })
                .collect(),
        }))
    }

    async fn delete_topic(
        &self,
        _: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        unimplemented()
    }

    async fn create_view(
        &self,
        _: Request<pb::CreateViewRequest>,
    ) -> Result<Response<pb::CreateViewResponse>, Status> {
        unimplemented()
    }

    async fn list_views(
        &self,
        _: Request<pb::ListViewsRequest>,
    ) -> Result<Response<pb::ListViewsResponse>, Status> {
        unimplemented()
    }

    async fn describe_view(
        &self,
        _: Request<pb::DescribeViewRequest>,
    ) -> Result<Response<pb::DescribeViewResponse>, Status> {
        unimplemented()
    }

    async fn delete_view(
        &self,
        _: Request<pb::DeleteViewRequest>,
    ) -> Result<Response<pb::DeleteViewResponse>, Status> {
        unimplemented()
    }
}

/// What to do with one request, decided when it arrives.
enum Plan {
    Answer(pb::ProduceStreamResponse),
    Drop,
    AnswerThenClose(pb::ProduceStreamResponse),
}

impl Service {
    fn plan(&self, req: &pb::ProduceStreamRequest) -> (Plan, Vec<u32>, Duration) {
        let mut st = self.state.lock().unwrap();
        let fault = st.script.pop_front().or_else(|| st.always.clone());
        let partitions: Vec<u32> = req.batches.iter().map(|b| b.partition).collect();
        for b in &req.batches {
            let header = weir_common::batch::BatchHeader::parse(&b.batch).unwrap();
            st.seen.push(Seen {
                partition: b.partition,
                producer_id: header.producer_id,
                base_sequence: header.base_sequence,
                records: header.record_count,
                bytes: b.batch.len(),
            });
            let p = b.partition as usize;
            st.in_flight[p] += 1;
            st.max_in_flight[p] = st.max_in_flight[p].max(st.in_flight[p]);
        }
        let respond = |st: &mut State| {
            let mut appends = Vec::new();
            for b in &req.batches {
                match st.append(b.partition, &b.batch) {
                    Ok((base, n)) => appends.push(pb::PartitionAppend {
                        partition: b.partition,
                        base_offset: base,
                        record_count: n,
                        log_append_time: 0,
                    }),
                    Err(e) => {
                        return pb::ProduceStreamResponse {
                            request_id: req.request_id,
                            appends: Vec::new(),
                            error: Some(e),
                        };
                    }
                }
            }
            pb::ProduceStreamResponse {
                request_id: req.request_id,
                appends,
                error: None,
            }
        };
        let plan = match fault {
            None => Plan::Answer(respond(&mut st)),
            Some(Fault::Refuse(code, kind)) => Plan::Answer(pb::ProduceStreamResponse {
                request_id: req.request_id,
                appends: Vec::new(),
                error: Some(pb::RequestError {
                    code: code as i32,
                    message: format!("refused by the fake broker ({kind})"),
                    kind: kind.into(),
                }),
            }),
            Some(Fault::DropAck) => {
                respond(&mut st);
                Plan::Drop
            }
            Some(Fault::CloseAfter) => Plan::AnswerThenClose(respond(&mut st)),
        };
        (plan, partitions, st.answer_delay)
    }

    fn answered(&self, partitions: &[u32]) {
        let mut st = self.state.lock().unwrap();
        for p in partitions {
            st.in_flight[*p as usize] -= 1;
        }
    }
}

#[tonic::async_trait]
impl Log for Service {
    async fn produce(
        &self,
        _: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        unimplemented()
    }

    type ProduceStreamStream = ReceiverStream<Result<pb::ProduceStreamResponse, Status>>;

    async fn produce_stream(
        &self,
        req: Request<tonic::Streaming<pb::ProduceStreamRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let service = self.clone();
        tokio::spawn(async move {
            // Answers go out in arrival order, each after the answer delay.
            let (answers, mut queue) = mpsc::unbounded_channel::<(Plan, Vec<u32>, Duration)>();
            let out = tx.clone();
            let answering = service.clone();
            tokio::spawn(async move {
                while let Some((plan, partitions, delay)) = queue.recv().await {
                    tokio::time::sleep(delay).await;
                    answering.answered(&partitions);
                    match plan {
                        Plan::Answer(r) => {
                            let _ = out.send(Ok(r)).await;
                        }
                        Plan::Drop => {}
                        Plan::AnswerThenClose(r) => {
                            let _ = out.send(Ok(r)).await;
                            let _ = out
                                .send(Err(Status::unavailable(
                                    "the fake broker closed the stream",
                                )))
                                .await;
                            return;
                        }
                    }
                }
            });
            while let Ok(Some(req)) = inbound.message().await {
                if answers.send(service.plan(&req)).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch(
        &self,
        _: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        unimplemented()
    }

    type SubscribeStream = ReceiverStream<Result<pb::FetchResponse, Status>>;

    async fn subscribe(
        &self,
        _: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        unimplemented()
    }

    async fn list_offsets(
        &self,
        _: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        unimplemented()
    }

    async fn init_producer(
        &self,
        _: Request<pb::InitProducerRequest>,
    ) -> Result<Response<pb::InitProducerResponse>, Status> {
        let mut st = self.state.lock().unwrap();
        st.init_producer_calls += 1;
        let id = st.next_producer_id;
        st.next_producer_id += 1;
        Ok(Response::new(pb::InitProducerResponse {
            producer_id: id,
            dedupe_window: st.dedupe_window,
        }))
    }
}
