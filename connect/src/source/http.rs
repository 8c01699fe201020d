//! The HTTP source: an endpoint that takes POSTed records and answers only after the broker
//! acknowledged every one of them.
//!
//! `POST` (any path) with a body of lines (`format = "lines"`: one record per line) or JSON
//! (`format = "json"`: JSON Lines, or one JSON array, of objects; `key_field` picks the key).
//! The answers:
//! - `200 {"accepted": N}`: all N records are in the topic (`acks=all`);
//! - `400` a body that does not parse (nothing produced), `413` a body over
//!   [`MAX_REQUEST_BYTES`], `405` another method, `422` a plugin that failed on the records;
//! - `503` with `Retry-After` while the broker cannot take them (the client sends the body
//!   again).
//!
//! Delivery is at-least-once: a body whose answer was lost (or that got a 503 after part of
//! it was written) is produced again when the client retries. Errors are JSON
//! `{"error": "..."}`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore, watch};
use weir::{Client, Producer, ProducerConfig};

use super::{SourceRecord, json_record, produce};
use crate::config::{HttpSource, LineFormat};
use crate::context::Context;
use crate::error::ConnectError;
use crate::status::{Reporter, State};
use crate::transform::Transform;

/// Largest request body taken.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;
/// Most bytes of an oversize body read (and dropped) before answering 413.
pub const MAX_DRAINED_BYTES: u64 = 8 * MAX_REQUEST_BYTES as u64;
/// Requests handled at once; more wait for a turn (this bounds the memory bodies take).
pub const MAX_CONCURRENT_REQUESTS: usize = 16;
/// How long requests in progress at shutdown get to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// What a 503 asks the client to wait, in seconds.
const RETRY_AFTER_SECS: &str = "1";

/// Serves the endpoint until `shutdown`; then finishes the requests in progress.
pub async fn run(
    ctx: &Context,
    config: &HttpSource,
    status: &Reporter,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnectError> {
    // A missing topic or a bad plugin fails the connector before it takes requests.
    ctx.client.admin().describe_topic(&config.topic).await?;
    let transform = Transform::open(&ctx.client, &config.plugins).await?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| ConnectError::External(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ConnectError::External(format!("cannot listen on {}: {e}", config.listen)))?;
    let handler = Arc::new(Handler {
        client: ctx.client.clone(),
        producer: ctx.client.producer(ProducerConfig::default()),
        config: config.clone(),
        transform: Mutex::new(Some(transform)),
        turns: Semaphore::new(MAX_CONCURRENT_REQUESTS),
        status: status.clone(),
        position: format!("listening on http://{addr}"),
    });
    tracing::info!(connector = %status.name(), %addr, topic = %config.topic, "HTTP source listening");
    status.set_state(State::Running);
    status.progress(0, 0, handler.position.clone());
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!(connector = %status.name(), error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.handle(req, peer).await) }
        });
        let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(connector = %status.name(), "requests still in progress at shutdown were dropped");
    }
    Ok(())
}

struct Handler {
    client: Client,
    producer: Producer,
    config: HttpSource,
    /// The plugin chain; `None` after it broke (it is opened again for the next request).
    transform: Mutex<Option<Transform>>,
    turns: Semaphore,
    status: Reporter,
    position: String,
}

/// Why a request was not taken: the status and the message the client gets.
struct Refusal(StatusCode, String);

impl Handler {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        match self.take(req).await {
            Ok(accepted) => answer(StatusCode::OK, json!({ "accepted": accepted })),
            Err(Refusal(code, message)) => {
                tracing::warn!(connector = %self.status.name(), %peer, status = %code, %message, "refused a request");
                let mut resp = answer(code, json!({ "error": message }));
                match code {
                    StatusCode::SERVICE_UNAVAILABLE => {
                        resp.headers_mut()
                            .insert(RETRY_AFTER, RETRY_AFTER_SECS.parse().expect("a number"));
                    }
                    StatusCode::METHOD_NOT_ALLOWED => {
                        resp.headers_mut()
                            .insert(ALLOW, "POST".parse().expect("a method"));
                    }
                    _ => {}
                }
                resp
            }
        }
    }

    /// Produces a request's records; returns how many once the broker acknowledged all.
    async fn take(&self, req: Request<Incoming>) -> Result<usize, Refusal> {
        if req.method() != Method::POST {
            return Err(Refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not supported: POST records", req.method()),
            ));
        }
        let _turn = self
            .turns
            .acquire()
            .await
            .map_err(|_| unavailable("the source is stopping".to_string()))?;
        let body = read_body(req.into_body()).await?;
        let records = parse(&body, self.config.format, self.config.key_field.as_deref())
            .map_err(|m| Refusal(StatusCode::BAD_REQUEST, m))?;
        if records.is_empty() {
            return Ok(0);
        }
        let outputs = self.transform(records).await?;
        let n = outputs.len();
        produce(
            &self.producer,
            &self.config.topic,
            outputs,
            None,
            &HashSet::new(),
        )
        .await
        .map_err(refusal)?;
        self.status.progress(n as u64, 0, self.position.clone());
        Ok(n)
    }

    /// Runs the plugin chain (one request at a time: stages keep state between calls).
    async fn transform(&self, records: Vec<SourceRecord>) -> Result<Vec<weir::Record>, Refusal> {
        let mut chain = self.transform.lock().await;
        let t = match &mut *chain {
            Some(t) => t,
            None => chain.insert(
                Transform::open(&self.client, &self.config.plugins)
                    .await
                    .map_err(refusal)?,
            ),
        };
        let result = t.apply(records).await;
        if let Err(e) = &result {
            tracing::warn!(connector = %self.status.name(), error = %e, "the plugin chain failed; opening it again for the next request");
            *chain = None;
        }
        result.map_err(refusal)
    }
}

fn answer(code: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("a media type"),
    );
    resp
}

/// The whole body, or a 413 once it passes [`MAX_REQUEST_BYTES`]. The rest of an oversize
/// body (up to [`MAX_DRAINED_BYTES`]) is read and dropped first, so that the client, still
/// sending, gets the answer rather than a reset connection.
async fn read_body(mut body: Incoming) -> Result<Bytes, Refusal> {
    let declared = body.size_hint().exact().unwrap_or(0);
    if declared > MAX_DRAINED_BYTES {
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.min(MAX_REQUEST_BYTES as u64) as usize);
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Refusal(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        if seen > MAX_DRAINED_BYTES {
            break;
        }
        if seen <= MAX_REQUEST_BYTES as u64 && declared <= MAX_REQUEST_BYTES as u64 {
            buf.extend_from_slice(&data);
        }
    }
    if seen > MAX_REQUEST_BYTES as u64 || declared > MAX_REQUEST_BYTES as u64 {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

fn too_large() -> Refusal {
    Refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over {MAX_REQUEST_BYTES} bytes; send fewer records per request"),
    )
}

fn unavailable(message: String) -> Refusal {
    Refusal(StatusCode::SERVICE_UNAVAILABLE, message)
}

/// The answer for a failure to transform or produce.
fn refusal(e: ConnectError) -> Refusal {
    match e {
        ConnectError::Weir(e) if e.is_retriable() => unavailable(e.to_string()),
        ConnectError::Weir(e @ weir::Error::InvalidArgument { .. }) => {
            Refusal(StatusCode::BAD_REQUEST, e.to_string())
        }
        ConnectError::Weir(e @ weir::Error::PluginFailed(_)) => {
            Refusal(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        // A topic or plugin deleted under the source: nothing the client can fix.
        e => unavailable(e.to_string()),
    }
}

/// A body's records, or why it does not parse (naming the line).
pub(crate) fn parse(
    body: &[u8],
    format: LineFormat,
    key_field: Option<&str>,
) -> Result<Vec<SourceRecord>, String> {
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let lines = body
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    match format {
        LineFormat::Lines => Ok(lines
            .map(|line| SourceRecord {
                key: None,
                value: Bytes::copy_from_slice(line),
            })
            .collect()),
        LineFormat::Json => {
            let start = body.iter().find(|b| !b.is_ascii_whitespace());
            if start == Some(&b'[') {
                return json_array(body, key_field);
            }
            let mut out = Vec::new();
            for (i, line) in lines.enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let record = json_record(line, key_field)
                    .ok_or_else(|| format!("line {} is not a JSON object", i + 1))?;
                out.push(record);
            }
            Ok(out)
        }
    }
}

/// A JSON array of objects: one record per element (its compact JSON as the value).
fn json_array(body: &[u8], key_field: Option<&str>) -> Result<Vec<SourceRecord>, String> {
    let items: Vec<Value> =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            if !item.is_object() {
                return Err(format!("element {i} of the array is not a JSON object"));
            }
            let text = serde_json::to_vec(&item).map_err(|e| e.to_string())?;
            json_record(&text, key_field)
                .ok_or_else(|| format!("element {i} of the array is not a JSON object"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(records: &[SourceRecord]) -> Vec<&[u8]> {
        records.iter().map(|r| &r.value[..]).collect()
    }

    #[test]
    fn lines_are_records_and_a_final_newline_adds_none() {
        let r = parse(b"a\r\n\nb\n", LineFormat::Lines, None).unwrap();
        assert_eq!(values(&r), [&b"a"[..], b"", b"b"]);
        assert!(parse(b"", LineFormat::Lines, None).unwrap().is_empty());
        let r = parse(b"\xff\xfe", LineFormat::Lines, None).unwrap();
        assert_eq!(values(&r), [&b"\xff\xfe"[..]]);
    }

    #[test]
    fn json_lines_and_arrays_take_their_keys_and_a_bad_one_refuses_the_body() {
        let r = parse(
            b"{\"id\":1,\"v\":\"x\"}\n\n{\"id\":\"k\"}\n",
            LineFormat::Json,
            Some("id"),
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].key.as_deref(), Some(&b"1"[..]));
        assert_eq!(r[1].key.as_deref(), Some(&b"k"[..]));
        let r = parse(b" [{\"id\": 7}, {\"v\": 1}]", LineFormat::Json, Some("id")).unwrap();
        assert_eq!(values(&r), [&b"{\"id\":7}"[..], b"{\"v\":1}"]);
        assert_eq!(r[0].key.as_deref(), Some(&b"7"[..]));
        assert_eq!(r[1].key, None);
        let e = parse(b"{\"a\":1}\n[1]\n", LineFormat::Json, None).unwrap_err();
        assert_eq!(e, "line 2 is not a JSON object");
        let e = parse(b"[{\"a\":1}, 2]", LineFormat::Json, None).unwrap_err();
        assert_eq!(e, "element 1 of the array is not a JSON object");
        assert!(
            parse(b"[{\"a\":1}", LineFormat::Json, None)
                .unwrap_err()
                .starts_with("the body is not JSON")
        );
    }
}
