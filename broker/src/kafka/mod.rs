//! The Kafka wire protocol (`--kafka-listen`): a second front door onto the same topics,
//! partitions and offsets as gRPC (docs/kafka.md). One task per connection reads frames
//! (size-prefixed, at most [`MAX_KAFKA_REQUEST_BYTES`]), decodes them with the
//! `kafka-protocol` crate and answers in request order, as Kafka does; Produce requests are
//! queued on the partitions' appenders as they are read, so pipelined produces keep their
//! order and overlap their writes, and every other request is answered when its turn comes,
//! so it sees what the requests before it did. A malformed frame closes its connection (with a log line);
//! an API or version this listener does not serve gets UNSUPPORTED_VERSION.

mod admin;
mod errors;
mod fetch;
mod groups;
mod metadata;
mod produce;
mod sasl;
mod tls;
mod versions;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use weir_common::limits::MAX_KAFKA_REQUEST_BYTES;

use crate::broker::Broker;
use crate::config::TlsPem;
use crate::metrics;
use crate::security::Principal;
use kafka_protocol::protocol::StrBytes;
use sasl::SaslState;
pub use tls::KafkaTlsError;

pub use errors::code_of;

/// Requests one connection may have in flight (read, not yet answered); past it the
/// listener stops reading that connection. librdkafka pipelines up to 5 produces per
/// partition leader (`max.in.flight` with idempotence); the rest is for metadata and
/// heartbeats.
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 32;

/// Where Kafka clients are told to connect: this broker's `--kafka-advertise`, or the address
/// it listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    pub host: String,
    pub port: u16,
}

impl Advertised {
    /// `HOST:PORT` as given to `--kafka-advertise`.
    pub fn parse(s: &str) -> Option<Self> {
        let (host, port) = s.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (!host.is_empty()).then_some(())?;
        Some(Self {
            host: host.to_string(),
            port: port.parse().ok()?,
        })
    }

    /// The address a listener bound to: an unspecified IP (0.0.0.0) is advertised as this
    /// machine's host name, as Kafka does for a listener without a host.
    pub fn of_bound(addr: SocketAddr) -> Self {
        let host = if addr.ip().is_unspecified() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into())
        } else {
            addr.ip().to_string()
        };
        Self {
            host,
            port: addr.port(),
        }
    }
}

/// What every connection shares.
pub struct Kafka {
    broker: Arc<Broker>,
    advertised: Advertised,
    /// With `--tls-cert`: every connection speaks TLS.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Kafka {
    /// The listener's shared state; with `tls`, connections are TLS with the broker's
    /// certificate (and client certificates as `--tls-client-ca` asks).
    pub fn new(
        broker: Arc<Broker>,
        advertised: Advertised,
        tls: Option<&TlsPem>,
    ) -> Result<Arc<Self>, KafkaTlsError> {
        let tls = tls.map(tls::acceptor).transpose()?;
        Ok(Arc::new(Self {
            broker,
            advertised,
            tls,
        }))
    }

    /// Where Kafka clients are told to connect.
    pub fn advertised(&self) -> &Advertised {
        &self.advertised
    }

    /// This broker's id in Kafka's metadata: its node id in a cluster, 0 standalone.
    fn node_id(&self) -> i32 {
        self.broker.node_id().map_or(0, |n| n as i32)
    }

    /// Accepts connections until `shutdown` turns true; then stops accepting and ends each
    /// connection once the request it is reading has been answered.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        let mut stop = shutdown.clone();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let this = Arc::clone(&self);
                        tokio::spawn(this.accepted(stream, peer, shutdown.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka listener: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                _ = stopped(&mut stop) => return,
            }
        }
    }

    /// A new connection: its TLS handshake first when TLS is on.
    async fn accepted(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => {
                let (rd, wr) = stream.into_split();
                self.connection(rd, wr, peer, shutdown).await;
            }
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                match tokio::time::timeout(tls::TLS_HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(tls)) => {
                        let (rd, wr) = tokio::io::split(tls);
                        self.connection(rd, wr, peer, shutdown).await;
                    }
                    Ok(Err(e)) => {
                        tracing::info!(%peer, error = %e, "kafka connection closed: TLS handshake failed");
                    }
                    Err(_) => {
                        tracing::info!(%peer, "kafka connection closed: no TLS handshake within {} s", tls::TLS_HANDSHAKE_TIMEOUT.as_secs());
                    }
                }
            }
        }
    }

    async fn connection<R, W>(
        self: Arc<Self>,
        rd: R,
        mut wr: W,
        peer: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
    ) where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Reply>(MAX_IN_FLIGHT_PER_CONNECTION);
        // Answers in request order; a reply of `None` (acks=0 produce) sends nothing.
        let writer = tokio::spawn(async move {
            while let Some(reply) = rx.recv().await {
                if let Some(bytes) = reply.await
                    && wr.write_all(&bytes).await.is_err()
                {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        let required = self.broker.security().enabled();
        let mut conn = Connection {
            kafka: self,
            who: Principal::Anonymous,
            sasl: SaslState::new(required),
            // Kafka's `client_host` form.
            peer: format!("/{}", peer.ip()),
        };
        let mut rd = BufReader::with_capacity(64 * 1024, rd);
        loop {
            let frame = tokio::select! {
                f = read_frame(&mut rd) => f,
                _ = stopped(&mut shutdown) => break,
            };
            let frame = match frame {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(%peer, error = %e, "kafka connection closed");
                    break;
                }
            };
            match conn.handle(frame).await {
                Ok(Handled { reply, close }) => {
                    if tx.send(reply).await.is_err() {
                        break;
                    }
                    if close {
                        tracing::info!(%peer, "kafka connection closed: authentication failed");
                        break;
                    }
                }
                Err(e) => {
                    tracing::info!(%peer, error = %e, "kafka connection closed");
                    break;
                }
            }
        }
        drop(tx);
        let _ = writer.await;
    }
}

/// Resolves once the broker is shutting down.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// A response on its way: resolves to the encoded frame (or to nothing).
type Reply = Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>;

fn ready(bytes: Bytes) -> Reply {
    Box::pin(std::future::ready(Some(bytes)))
}

/// Why a connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is larger than the limit of {MAX_KAFKA_REQUEST_BYTES} bytes")]
    TooLarge(i64),
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(i32),
    #[error("malformed {api} v{version} request: {reason}")]
    Malformed {
        api: &'static str,
        version: i16,
        reason: String,
    },
    #[error("cannot encode the {api} v{version} response: {reason}")]
    Encode {
        api: &'static str,
        version: i16,
        reason: String,
    },
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0} request before SASL authentication (the broker runs with --auth)")]
    Unauthenticated(&'static str),
}

/// The smallest request: api key, api version, correlation id.
const MIN_REQUEST_BYTES: i32 = 8;

/// Reads one size-prefixed frame; `None` at a clean end of the stream.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
) -> Result<Option<Bytes>, FrameError> {
    let mut size = [0u8; 4];
    match rd.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    if size < MIN_REQUEST_BYTES {
        return Err(FrameError::TooShort(size));
    }
    if size as usize > MAX_KAFKA_REQUEST_BYTES {
        return Err(FrameError::TooLarge(i64::from(size)));
    }
    let mut body = BytesMut::zeroed(size as usize);
    rd.read_exact(&mut body).await?;
    Ok(Some(body.freeze()))
}

/// Room for the size prefix and any response header (correlation id, tagged fields).
const RESPONSE_HEADER_ROOM: usize = 16;

/// Encodes a response frame: size, header (its version from the API's), body.
fn encode_response<R: Encodable + HeaderVersion>(
    api: ApiKey,
    correlation_id: i32,
    version: i16,
    response: &R,
) -> Result<Bytes, FrameError> {
    // Sized up front: a Fetch response is megabytes, and growing the buffer copies them.
    let body = response.compute_size(version).unwrap_or(0);
    let mut buf = BytesMut::with_capacity(RESPONSE_HEADER_ROOM + body);
    buf.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let fail = |e: anyhow::Error| FrameError::Encode {
        api: api_name(api),
        version,
        reason: format!("{e:#}"),
    };
    header
        .encode(&mut buf, R::header_version(version))
        .map_err(fail)?;
    response.encode(&mut buf, version).map_err(fail)?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// The answer to an API or version this listener does not serve: the response header and
/// UNSUPPORTED_VERSION, which every response of Kafka's starts with or can be read as.
fn unsupported(correlation_id: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(10);
    buf.put_i32(6);
    buf.put_i32(correlation_id);
    buf.put_i16(kafka_protocol::ResponseError::UnsupportedVersion.code());
    buf.freeze()
}

fn api_name(api: ApiKey) -> &'static str {
    versions::name(api)
}

/// One client connection's state.
struct Connection {
    kafka: Arc<Kafka>,
    /// Who the client is (with `--auth`, after SASL).
    who: Principal,
    sasl: SaslState,
    peer: String,
}

/// A request read: its reply, and whether the connection closes once it is sent.
struct Handled {
    reply: Reply,
    close: bool,
}

impl From<Reply> for Handled {
    fn from(reply: Reply) -> Self {
        Handled {
            reply,
            close: false,
        }
    }
}

impl Connection {
    /// Decodes one request and starts answering it.
    async fn handle(&mut self, mut frame: Bytes) -> Result<Handled, FrameError> {
        let started = Instant::now();
        let key = frame.clone().get_i16();
        let version = frame.slice(2..).get_i16();
        let correlation_id = frame.slice(4..).get_i32();
        let api = match ApiKey::try_from(key) {
            Ok(api) if versions::serves(api, version) => api,
            Ok(ApiKey::ApiVersions) => {
                // KIP-511: a version this broker does not know still gets the list of
                // versions it does, in v0's format, so the client can pick.
                metrics::global().kafka_request("ApiVersions", "UNSUPPORTED_VERSION", started);
                let resp = versions::api_versions(
                    kafka_protocol::ResponseError::UnsupportedVersion.code(),
                );
                return encode_response(ApiKey::ApiVersions, correlation_id, 0, &resp)
                    .map(|b| ready(b).into());
            }
            other => {
                let name = other.map_or("unknown", api_name);
                tracing::debug!(
                    key,
                    version,
                    api = name,
                    "kafka: unsupported API or version"
                );
                metrics::global().kafka_request(name, "UNSUPPORTED_VERSION", started);
                return Ok(ready(unsupported(correlation_id)).into());
            }
        };
        let malformed = |e: anyhow::Error| FrameError::Malformed {
            api: api_name(api),
            version,
            reason: format!("{e:#}"),
        };
        let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
            .map_err(malformed)?;
        let sasl_api = matches!(
            api,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        );
        if !self.sasl.authenticated() && !sasl_api {
            return Err(FrameError::Unauthenticated(api_name(api)));
        }
        let ctx = Request {
            kafka: Arc::clone(&self.kafka),
            who: self.who.clone(),
            peer: self.peer.clone(),
            client_id: header
                .client_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            api,
            version,
            correlation_id: header.correlation_id,
            started,
        };
        macro_rules! decode {
            ($t:ty) => {
                <$t>::decode(&mut frame, version).map_err(malformed)?
            };
        }
        // A request answered when its turn comes, by a handler returning (response, code).
        macro_rules! later_async {
            ($t:ty, $handler:path) => {{
                let req = decode!($t);
                Box::pin(async move {
                    let (resp, code) = $handler(&ctx, req).await;
                    ctx.encoded(&resp, code)
                }) as Reply
            }};
        }
        macro_rules! later {
            ($t:ty, $handler:path) => {{
                let req = decode!($t);
                Box::pin(async move {
                    let (resp, code) = $handler(&ctx, req);
                    ctx.encoded(&resp, code)
                }) as Reply
            }};
        }
        use kafka_protocol::messages::*;
        if api == ApiKey::SaslAuthenticate {
            let req = decode!(SaslAuthenticateRequest);
            let mut resp = SaslAuthenticateResponse::default();
            if self.sasl != SaslState::Authenticate {
                resp.error_code = kafka_protocol::ResponseError::IllegalSaslState.code();
                resp.error_message = Some(StrBytes::from_static_str(
                    "SaslAuthenticate before a successful SaslHandshake",
                ));
                let reply = ctx.answer(resp, "ILLEGAL_SASL_STATE")?;
                return Ok(Handled { reply, close: true });
            }
            return match sasl::authenticate(self.kafka.broker.security(), &req.auth_bytes).await {
                Ok(who) => {
                    self.who = who;
                    self.sasl = SaslState::Done;
                    Ok(ctx.answer(resp, "NONE")?.into())
                }
                Err(e) => {
                    resp.error_code =
                        kafka_protocol::ResponseError::SaslAuthenticationFailed.code();
                    resp.error_message = Some(StrBytes::from_string(e.to_string()));
                    let reply = ctx.answer(resp, "SASL_AUTHENTICATION_FAILED")?;
                    Ok(Handled { reply, close: true })
                }
            };
        }
        let reply = match api {
            ApiKey::ApiVersions => {
                let _ = decode!(ApiVersionsRequest);
                ctx.answer(versions::api_versions(0), "NONE")?
            }
            ApiKey::SaslHandshake => {
                let req = decode!(SaslHandshakeRequest);
                let (resp, next, code) = sasl::handshake(self.sasl, &req);
                self.sasl = next;
                ctx.answer(resp, code)?
            }
            // Answered when its turn comes (as every request but Produce's append), so it sees
            // what the requests before it on the connection did.
            ApiKey::Metadata => {
                let req = decode!(MetadataRequest);
                Box::pin(async move { ctx.encoded(&metadata::metadata(&ctx, req), "NONE") })
            }
            ApiKey::Produce => produce::produce(ctx, decode!(ProduceRequest)).await?,
            ApiKey::Fetch => later_async!(FetchRequest, fetch::fetch),
            ApiKey::ListOffsets => later_async!(ListOffsetsRequest, fetch::list_offsets),
            ApiKey::InitProducerId => {
                later_async!(InitProducerIdRequest, produce::init_producer_id)
            }
            ApiKey::CreateTopics => later_async!(CreateTopicsRequest, admin::create_topics),
            ApiKey::DeleteTopics => later_async!(DeleteTopicsRequest, admin::delete_topics),
            ApiKey::DescribeConfigs => later!(DescribeConfigsRequest, admin::describe_configs),
            ApiKey::DescribeCluster => {
                let req = decode!(DescribeClusterRequest);
                Box::pin(async move { ctx.encoded(&admin::describe_cluster(&ctx, req), "NONE") })
            }
            ApiKey::FindCoordinator => {
                later_async!(FindCoordinatorRequest, groups::find_coordinator)
            }
            ApiKey::JoinGroup => later_async!(JoinGroupRequest, groups::join_group),
            ApiKey::SyncGroup => later_async!(SyncGroupRequest, groups::sync_group),
            ApiKey::Heartbeat => later!(HeartbeatRequest, groups::heartbeat),
            ApiKey::LeaveGroup => later!(LeaveGroupRequest, groups::leave_group),
            ApiKey::OffsetCommit => later_async!(OffsetCommitRequest, groups::offset_commit),
            ApiKey::OffsetFetch => later_async!(OffsetFetchRequest, groups::offset_fetch),
            ApiKey::ListGroups => later!(ListGroupsRequest, groups::list_groups),
            ApiKey::DescribeGroups => later!(DescribeGroupsRequest, groups::describe_groups),
            // `versions::serves` lets through only the APIs above.
            other => {
                tracing::error!(
                    api = api_name(other),
                    "kafka: an advertised API has no handler"
                );
                ready(unsupported(correlation_id))
            }
        };
        Ok(reply.into())
    }
}

/// One request being answered: what its handler needs.
pub(crate) struct Request {
    kafka: Arc<Kafka>,
    who: Principal,
    /// The client's address as Kafka shows it (`/IP`).
    peer: String,
    /// The request header's client id (empty if none).
    client_id: String,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    started: Instant,
}

impl Request {
    fn broker(&self) -> &Arc<Broker> {
        &self.kafka.broker
    }

    /// Encodes the response now, counted with `code` (the name of its error, `NONE`).
    fn answer<R: Encodable + HeaderVersion>(
        &self,
        response: R,
        code: &'static str,
    ) -> Result<Reply, FrameError> {
        let bytes = encode_response(self.api, self.correlation_id, self.version, &response)?;
        metrics::global().kafka_request(api_name(self.api), code, self.started);
        Ok(ready(bytes))
    }

    /// Encodes a response computed later; a response that cannot be encoded (a bug) is logged
    /// and answered as UNSUPPORTED_VERSION rather than leaving the client waiting.
    fn encoded<R: Encodable + HeaderVersion>(
        &self,
        response: &R,
        code: &'static str,
    ) -> Option<Bytes> {
        metrics::global().kafka_request(api_name(self.api), code, self.started);
        match encode_response(self.api, self.correlation_id, self.version, response) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!(error = %e, "kafka: cannot encode a response");
                Some(unsupported(self.correlation_id))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses_parse_with_or_without_brackets() {
        assert_eq!(
            Advertised::parse("broker-1.example:9092"),
            Some(Advertised {
                host: "broker-1.example".into(),
                port: 9092
            })
        );
        assert_eq!(
            Advertised::parse("[::1]:9092"),
            Some(Advertised {
                host: "::1".into(),
                port: 9092
            })
        );
        assert_eq!(Advertised::parse("no-port"), None);
        assert_eq!(Advertised::parse(":9092"), None);
        assert_eq!(Advertised::parse("host:99999"), None);
    }

    #[tokio::test]
    async fn frames_are_read_whole_and_bad_sizes_are_refused() {
        let mut ok: &[u8] = &[0, 0, 0, 8, 0, 18, 0, 3, 0, 0, 0, 7];
        assert_eq!(read_frame(&mut ok).await.unwrap().unwrap().len(), 8);
        assert!(read_frame(&mut ok).await.unwrap().is_none());
        let mut short: &[u8] = &[0, 0, 0, 2, 1, 2];
        assert!(matches!(
            read_frame(&mut short).await,
            Err(FrameError::TooShort(2))
        ));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut negative).await,
            Err(FrameError::TooShort(-1))
        ));
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut huge).await,
            Err(FrameError::TooLarge(_))
        ));
        let mut truncated: &[u8] = &[0, 0, 0, 20, 0, 18, 0, 3];
        assert!(matches!(
            read_frame(&mut truncated).await,
            Err(FrameError::Io(_))
        ));
    }
}
