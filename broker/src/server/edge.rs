//! Middleware around every gRPC call: load shedding past the global in-flight cap
//! (RESOURCE_EXHAUSTED before the request is read), then authentication (`--auth`: the
//! caller's [`Principal`] goes into the request's extensions for the services to authorize;
//! UNAUTHENTICATED before the request is read; in a cluster, another member is recognised by
//! its certificate, and only members may call the cluster's internal services), all counted
//! and timed by service, method and
//! status code (`crate::metrics`). The code is read where gRPC puts it: in the response
//! headers of a call that failed before answering, else in the trailers at the end of the
//! response body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tonic::metadata::MetadataValue;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};
use tower_layer::Layer;
use tower_service::Service;

use super::{BUSY_KIND, ERROR_KIND_KEY};
use crate::error::BrokerError;
use crate::metrics::{self, RpcCall};
use crate::security::member::Members;
use crate::security::{Principal, Security};

/// The service anyone may call, authenticated or not (probes carry no credentials).
const PUBLIC_SERVICE: &str = "grpc.health.v1.Health";

/// Wraps each call: shed past the cap, else metered.
#[derive(Debug, Clone)]
pub struct EdgeLayer {
    /// The client-facing services (anything else is `unknown` in metrics).
    services: &'static [&'static str],
    /// Services never shed (health checks, cluster traffic).
    internal: &'static [&'static str],
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
    /// Who calls: with `--auth`, every call but health checks authenticates.
    security: Option<Arc<Security>>,
    /// Cluster mode with TLS: who the other members are (their certificates).
    members: Option<Arc<Members>>,
    /// Services only members may call (with `--auth`).
    members_only: &'static [&'static str],
}

impl EdgeLayer {
    pub fn new(
        services: &'static [&'static str],
        internal: &'static [&'static str],
        max_in_flight: usize,
        security: Arc<Security>,
    ) -> Self {
        Self {
            services,
            internal,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight,
            security: Some(security),
            members: None,
            members_only: &[],
        }
    }

    /// Recognises the cluster's `members` by their certificates (no credentials needed), and
    /// lets only them call `members_only` services.
    pub fn members(
        mut self,
        members: Option<Arc<Members>>,
        members_only: &'static [&'static str],
    ) -> Self {
        self.members = members;
        self.members_only = members_only;
        self
    }
}

/// What a call presents to prove who sent it.
struct Presented {
    /// Its connection presented a member's certificate.
    member: bool,
    /// Its `authorization` metadata.
    authorization: Option<String>,
}

impl Presented {
    fn of<B>(req: &http::Request<B>, members: Option<&Members>) -> Self {
        let member = members.is_some_and(|m| {
            req.extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(TlsConnectInfo::peer_certs)
                .is_some_and(|chain| m.recognises(&chain))
        });
        let authorization = (!member)
            .then(|| req.headers().get(http::header::AUTHORIZATION))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Self {
            member,
            authorization,
        }
    }

    /// Who sent the call: another member, or the user its credentials prove (refused if the
    /// call is to `members_only`, a service for members only).
    async fn identify(
        self,
        security: &Security,
        members_only: Option<&str>,
    ) -> Result<Principal, BrokerError> {
        if self.member {
            return Ok(Principal::Member);
        }
        let who = security.authenticate(self.authorization.as_deref()).await?;
        if let Some(service) = members_only {
            return Err(BrokerError::PermissionDenied(format!(
                "{service} is for the cluster's members (a certificate signed by --tls-peer-ca)"
            )));
        }
        Ok(who)
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: S,
    layer: EdgeLayer,
}

/// One call counted against the in-flight cap until dropped (with its response body).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EdgeLayer {
    /// A slot for a call to `service`, unless the cap is reached.
    fn slot(&self, service: &str) -> Option<Slot> {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(Arc::clone(&self.in_flight));
        (now < self.max_in_flight || self.internal.contains(&service)).then_some(slot)
    }
}

/// `/weir.v1.Log/Produce` → (`weir.v1.Log`, `Produce`); anything else is `unknown`.
fn rpc_name<'a>(path: &'a str, known: [&[&str]; 2]) -> (&'a str, &'a str) {
    path.strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(service, method)| {
            known.iter().any(|k| k.contains(service)) && !method.is_empty() && !method.contains('/')
        })
        .unwrap_or(("unknown", "unknown"))
}

/// The canonical name of a status code, as go-grpc-prometheus writes it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Notes the `grpc-status` in `headers`, if there is one.
fn note_status(call: &mut RpcCall, headers: &http::HeaderMap) {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    let code = Code::from_i32(code);
    if code == Code::Unimplemented {
        call.set_unknown_method();
    }
    call.set_code(code_name(code));
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Edge<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let known = [self.layer.services, self.layer.internal];
        let (service, method) = rpc_name(req.uri().path(), known);
        let mut call = metrics::global().rpc_started(service, method);
        let Some(slot) = self.layer.slot(service) else {
            // Refused before the request is read: h2 drops its body.
            call.set_code(code_name(Code::ResourceExhausted));
            let response = busy(self.layer.max_in_flight).into_http::<ResBody>();
            return Box::pin(async move {
                Ok(response.map(|inner| MeteredBody {
                    inner,
                    call,
                    _slot: None,
                }))
            });
        };
        // The service was made ready by `poll_ready`: take it, leave a clone (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // Without `--auth` nothing is read: services see no principal, and allow everything.
        let security = self
            .layer
            .security
            .clone()
            .filter(|s| s.enabled() && service != PUBLIC_SERVICE);
        let presented = security
            .as_ref()
            .map(|_| Presented::of(&req, self.layer.members.as_deref()));
        let members_only = self
            .layer
            .members_only
            .iter()
            .find(|s| **s == service)
            .copied();
        Box::pin(async move {
            if let (Some(security), Some(presented)) = (security, presented) {
                match presented.identify(&security, members_only).await {
                    Ok(who) => {
                        req.extensions_mut().insert(who);
                    }
                    Err(e) => {
                        // Refused before the request is read, like a shed call.
                        let status = super::status_of(e);
                        call.set_code(code_name(status.code()));
                        let response = status.into_http::<ResBody>();
                        return Ok(response.map(|inner| MeteredBody {
                            inner,
                            call,
                            _slot: Some(slot),
                        }));
                    }
                }
            }
            let response = inner.call(req).await?;
            note_status(&mut call, response.headers());
            call.confirm();
            Ok(response.map(|inner| MeteredBody {
                inner,
                call,
                _slot: Some(slot),
            }))
        })
    }
}

/// The answer past the in-flight cap (`busy`: the SDK backs off and retries).
fn busy(max: usize) -> Status {
    let mut status = Status::resource_exhausted(format!(
        "broker busy: {max} calls in flight (--max-in-flight-requests); retry later"
    ));
    status
        .metadata_mut()
        .insert(ERROR_KIND_KEY, MetadataValue::from_static(BUSY_KIND));
    status
}

/// A response body that notes the status in its trailers; the call is recorded when the
/// body is dropped (finished, or abandoned by the client).
pub struct MeteredBody<B> {
    inner: B,
    call: RpcCall,
    _slot: Option<Slot>,
}

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
        {
            note_status(&mut this.call, trailers);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_calls_are_shed_except_health_and_cluster_traffic() {
        let edge = EdgeLayer {
            services: &[],
            internal: &["grpc.health.v1.Health", "weir.v1.Raft"],
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: 2,
            security: None,
            members: None,
            members_only: &[],
        };
        let a = edge.slot("weir.v1.Log");
        let b = edge.slot("weir.v1.Topics");
        assert!(a.is_some() && b.is_some());
        assert!(edge.slot("weir.v1.Log").is_none());
        let health = edge.slot("grpc.health.v1.Health");
        let raft = edge.slot("weir.v1.Raft");
        assert!(health.is_some() && raft.is_some());
        drop((a, health, raft));
        // A refused call gave its slot back at once; a finished one gives it back when dropped.
        assert!(edge.slot("weir.v1.Log").is_some());
        assert_eq!(edge.in_flight.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn calls_are_named_by_known_service_and_method() {
        let known: [&[&str]; 2] = [&["weir.v1.Log"], &["grpc.health.v1.Health"]];
        assert_eq!(
            rpc_name("/weir.v1.Log/Produce", known),
            ("weir.v1.Log", "Produce")
        );
        assert_eq!(
            rpc_name("/grpc.health.v1.Health/Check", known),
            ("grpc.health.v1.Health", "Check")
        );
        for path in [
            "/made.up/X",
            "/weir.v1.Log/",
            "/weir.v1.Log",
            "/",
            "",
            "/weir.v1.Log/a/b",
        ] {
            assert_eq!(rpc_name(path, known), ("unknown", "unknown"), "{path}");
        }
    }
}
