//! One ordered produce stream to a partition leader (`ProduceStream`): requests go out in the
//! order the sender wrote them, and each answer, and the stream's end, go back to the sender.

use tokio::sync::mpsc;
use weir_proto::v1 as pb;

use super::sender::{Appended, Reply};
use crate::client::{Channel, log_rpc};
use crate::error::Error;

/// An open produce stream to one broker: requests on it are appended in the order sent.
pub(super) struct ProduceStream {
    pub(super) tx: mpsc::UnboundedSender<pb::ProduceStreamRequest>,
    pub(super) generation: u64,
}

/// Runs one produce stream: forwards requests from the sender, reports each answer, and
/// reports the stream's end.
pub(super) async fn run_stream(
    channel: Channel,
    generation: u64,
    requests: mpsc::UnboundedReceiver<pb::ProduceStreamRequest>,
    replies: mpsc::UnboundedSender<Reply>,
) {
    let mut rpc = log_rpc(channel);
    let outbound = tokio_stream::wrappers::UnboundedReceiverStream::new(requests);
    let error = match rpc.produce_stream(outbound).await {
        Err(status) => Error::from(status),
        Ok(resp) => {
            let mut inbound = resp.into_inner();
            loop {
                match inbound.message().await {
                    Ok(Some(m)) => {
                        let result = match m.error {
                            Some(e) => Err(request_error(e)),
                            None => m
                                .appends
                                .first()
                                .map(|a| Appended {
                                    base_offset: a.base_offset,
                                    log_append_time: a.log_append_time,
                                })
                                .ok_or_else(|| {
                                    Error::Protocol("produce response lacks the partition".into())
                                }),
                        };
                        let reply = Reply::Ack {
                            request_id: m.request_id,
                            result,
                        };
                        if replies.send(reply).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        break Error::Unavailable("the broker ended the produce stream".into());
                    }
                    Err(status) => break Error::from(status),
                }
            }
        }
    };
    let _ = replies.send(Reply::StreamClosed { generation, error });
}

/// The SDK error for one failed request of a produce stream (as if it were a unary call).
fn request_error(e: pb::RequestError) -> Error {
    let mut status = tonic::Status::new(tonic::Code::from(e.code), e.message);
    if let Ok(kind) = e.kind.parse() {
        status.metadata_mut().insert("weir-error-kind", kind);
    }
    Error::from(status)
}
