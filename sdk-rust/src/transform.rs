//! Running a plugin chain over records the caller holds, at a broker, without storing them
//! (`Plugins.Transform`): what connectors do to what they read before producing it.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weir_common::batch::{self, BatchBuilder, TimestampType};
use weir_common::record::Record;
use weir_proto::v1 as pb;

use crate::client::Client;
use crate::consumer::{PluginUse, plugins_pb};
use crate::error::{Error, Result};

/// Records per transform request at most (bytes: about one producer batch).
const REQUEST_BYTES: usize = 1024 * 1024;

/// A plugin chain open at a broker. Its stages live as long as it does, so an aggregate
/// keeps its state from one [`apply`](Transformer::apply) to the next.
pub struct Transformer {
    requests: mpsc::Sender<pb::TransformRequest>,
    responses: tonic::Streaming<pb::TransformResponse>,
    states: Vec<bytes::Bytes>,
}

impl Client {
    /// Opens `plugins` (in order) at the bootstrap broker. Unknown plugins and bad params
    /// fail here.
    pub async fn transformer(&self, plugins: Vec<PluginUse>) -> Result<Transformer> {
        let (requests, rx) = mpsc::channel(2);
        let first = pb::TransformRequest {
            plugins: plugins_pb(&plugins),
            batch: Default::default(),
        };
        requests
            .send(first)
            .await
            .map_err(|_| Error::Unavailable("the transform stream closed".into()))?;
        let mut responses = self
            .plugins_rpc()
            .transform(ReceiverStream::new(rx))
            .await?
            .into_inner();
        // The answer to the first (empty) request: the chain is open.
        responses
            .message()
            .await?
            .ok_or_else(|| Error::Unavailable("the broker ended the transform stream".into()))?;
        Ok(Transformer {
            requests,
            responses,
            states: Vec::new(),
        })
    }
}

impl Transformer {
    /// Runs `records` through the chain. Each output record's `offset` is the `offset` of
    /// the input record it came from (give inputs their index to know which), in order; a
    /// filter drops records, a flat_map may give several per input. Records go to the broker
    /// in requests of about 1 MiB.
    pub async fn apply(&mut self, records: Vec<Record>) -> Result<Vec<Record>> {
        let mut out = Vec::with_capacity(records.len());
        let mut rest = records.as_slice();
        while !rest.is_empty() {
            let (request, n) = encode(rest);
            rest = &rest[n..];
            out.extend(self.call(request).await?);
        }
        Ok(out)
    }

    /// Each plugin's aggregate state (the SDK's JSON) after the last
    /// [`apply`](Transformer::apply), in chain order; empty for other kinds.
    pub fn states(&self) -> &[bytes::Bytes] {
        &self.states
    }

    async fn call(&mut self, batch: bytes::Bytes) -> Result<Vec<Record>> {
        let req = pb::TransformRequest {
            plugins: Vec::new(),
            batch,
        };
        if self.requests.send(req).await.is_err() {
            // The stream is over: its error (if any) is waiting in the responses.
            self.responses.message().await?;
            return Err(Error::Unavailable(
                "the broker ended the transform stream".into(),
            ));
        }
        let resp =
            self.responses.message().await?.ok_or_else(|| {
                Error::Unavailable("the broker ended the transform stream".into())
            })?;
        self.states = resp.states;
        let mut out = Vec::new();
        for b in &resp.batches {
            let (_, records) = batch::decode(b).map_err(|e| Error::Protocol(e.to_string()))?;
            out.extend(records);
        }
        Ok(out)
    }
}

/// One request's batch from the head of `records` (at least one record, then up to
/// [`REQUEST_BYTES`]); returns it and how many records it holds. A batch's records have
/// consecutive offsets from its base offset, so a gap in the inputs' offsets starts the next
/// request.
fn encode(records: &[Record]) -> (bytes::Bytes, usize) {
    let mut builder = BatchBuilder::with_capacity(TimestampType::CreateTime, REQUEST_BYTES);
    let mut n = 0;
    for r in records {
        if n > 0
            && (builder.len_bytes() >= REQUEST_BYTES || r.offset != records[0].offset + n as u64)
        {
            break;
        }
        let headers = r.headers.iter().map(|h| (h.key.as_str(), &h.value[..]));
        builder.push(r.timestamp, r.key.as_deref(), &r.value, headers);
        n += 1;
    }
    let mut batch = builder.finish().to_vec();
    batch::set_base_offset(&mut batch, records[0].offset);
    (bytes::Bytes::from(batch), n)
}
