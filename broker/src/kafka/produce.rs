//! Produce and InitProducerId: Kafka batches become Weir batches at this edge and are
//! appended through the facade like any gRPC produce (validated, deduplicated by producer id
//! and sequence, acknowledged per acks).

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};
use kafka_protocol::protocol::StrBytes;
use weir_codec::kafka::to_weir;

use super::errors::{self, Code, FirstError, INVALID_REQUIRED_ACKS, code_of, records_code};
use super::{FrameError, Reply, Request};
use crate::broker::{Acks, Admission};
use crate::error::BrokerError;
use crate::security::{Operation, Resource};

/// One partition's outcome, in the response's terms.
struct Outcome {
    index: i32,
    result: Result<(i64, i64), (Code, String)>,
}

fn failed(index: i32, code: Code, message: String) -> Outcome {
    Outcome {
        index,
        result: Err((code, message)),
    }
}

fn broker_failed(index: i32, e: &BrokerError) -> Outcome {
    failed(index, code_of(e), e.to_string())
}

/// Kafka's acks: 0 (no answer), 1 (the leader has it), -1 (every in-sync replica has it).
fn acks_of(acks: i16) -> Option<Option<Acks>> {
    match acks {
        0 => Some(None),
        1 => Some(Some(Acks::Leader)),
        -1 => Some(Some(Acks::All)),
        _ => None,
    }
}

/// Queues every partition's batches in request order (so pipelined requests append in the
/// order they were sent) and returns the reply, which waits for the appends.
pub async fn produce(r: Request, req: ProduceRequest) -> Result<Reply, FrameError> {
    let Some(acks) = acks_of(req.acks) else {
        let mut resp = ProduceResponse::default();
        resp.responses = req
            .topic_data
            .iter()
            .map(|t| {
                let outcomes = t
                    .partition_data
                    .iter()
                    .map(|p| {
                        failed(
                            p.index,
                            INVALID_REQUIRED_ACKS,
                            format!("acks={} is not 0, 1 or -1", req.acks),
                        )
                    })
                    .collect();
                topic_response(t.name.0.clone(), outcomes)
            })
            .collect();
        return r.answer(resp, INVALID_REQUIRED_ACKS.1);
    };
    let broker = std::sync::Arc::clone(r.broker());
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for t in req.topic_data {
        let name = t.name.0;
        let allowed = broker
            .security()
            .authorize(&r.who, Resource::topic(&name), Operation::Write);
        let mut pending = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let index = p.index;
            if let Err(e) = &allowed {
                let code = match e {
                    BrokerError::PermissionDenied(_) => errors::TOPIC_AUTHORIZATION_FAILED,
                    e => code_of(e),
                };
                pending.push(futures::future::Either::Left(std::future::ready(failed(
                    index,
                    code,
                    e.to_string(),
                ))));
                continue;
            }
            // A negative index is no partition (it fails as one that does not exist).
            let partition = u32::try_from(index).unwrap_or(u32::MAX);
            let queued = match p.records.map(to_weir) {
                None => Err(failed(
                    index,
                    errors::INVALID_REQUEST,
                    "no records for this partition".into(),
                )),
                Some(Err(e)) => Err(failed(index, records_code(&e), e.to_string())),
                Some(Ok(batches)) => {
                    let batches: Vec<(u32, Bytes)> =
                        batches.into_iter().map(|b| (partition, b.batch)).collect();
                    broker
                        .produce_queued(
                            &name,
                            batches,
                            acks.unwrap_or(Acks::Leader),
                            Admission::Wait,
                        )
                        .await
                        .map_err(|e| broker_failed(index, &e))
                }
            };
            pending.push(futures::future::Either::Right(async move {
                match queued {
                    Err(o) => o,
                    Ok(done) => match done.await {
                        Ok(appended) => {
                            let first = appended.first().map(|(_, a)| *a);
                            Outcome {
                                index,
                                result: Ok(first.map_or((-1, -1), |a| {
                                    let time = if a.log_append_time > 0 {
                                        a.log_append_time
                                    } else {
                                        -1
                                    };
                                    (a.base_offset as i64, time)
                                })),
                            }
                        }
                        Err(e) => broker_failed(index, &e),
                    },
                }
            }));
        }
        topics.push((name, join_all(pending)));
    }
    let reply = async move {
        let mut first_error = FirstError::default();
        let mut resp = ProduceResponse::default();
        for (name, outcomes) in topics {
            let outcomes = outcomes.await;
            if let Some(Err((code, _))) = outcomes.iter().map(|o| &o.result).find(|r| r.is_err()) {
                first_error.note(*code);
            }
            resp.responses.push(topic_response(name, outcomes));
        }
        (resp, first_error.name())
    };
    match acks {
        // acks=0: no answer; the appends still complete (and hold the produce budget) in
        // the background.
        None => {
            tokio::spawn(reply);
            Ok(Box::pin(std::future::ready(None)))
        }
        Some(_) => Ok(Box::pin(async move {
            let (resp, code) = reply.await;
            r.encoded(&resp, code)
        })),
    }
}

fn topic_response(name: StrBytes, outcomes: Vec<Outcome>) -> TopicProduceResponse {
    let mut t = TopicProduceResponse::default();
    t.name = kafka_protocol::messages::TopicName(name);
    t.partition_responses = outcomes
        .into_iter()
        .map(|o| {
            let mut p = PartitionProduceResponse::default();
            p.index = o.index;
            p.log_start_offset = -1;
            match o.result {
                Ok((base, time)) => {
                    p.base_offset = base;
                    p.log_append_time_ms = time;
                }
                Err((code, message)) => {
                    p.error_code = code.code();
                    p.base_offset = -1;
                    p.log_append_time_ms = -1;
                    p.error_message = Some(StrBytes::from_string(message));
                }
            }
            p
        })
        .collect();
    t
}

/// A fresh producer id for an idempotent producer (epoch 0). A producer that asks to bump
/// its epoch (KIP-360) gets a fresh id instead, which Kafka allows: its sequences start over.
/// Transactional ids are refused: Weir has no transactions.
pub async fn init_producer_id(
    r: &Request,
    req: InitProducerIdRequest,
) -> (InitProducerIdResponse, &'static str) {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if req.transactional_id.as_ref().is_some_and(|t| !t.is_empty()) {
        resp.error_code = errors::INVALID_REQUEST.code();
        return (resp, errors::INVALID_REQUEST.1);
    }
    match r.broker().init_producer().await {
        Ok(id) => {
            resp.producer_id = ProducerId(id as i64);
            resp.producer_epoch = 0;
            (resp, "NONE")
        }
        Err(e) => {
            let code = code_of(&e);
            resp.error_code = code.code();
            (resp, code.1)
        }
    }
}
