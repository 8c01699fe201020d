//! Middleware around every gRPC call: counted and timed by service, method and status code
//! (`crate::metrics`). The code is read where gRPC puts it: in the response headers of a
//! call that failed before answering, else in the trailers at the end of the response body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tower_layer::Layer;
use tower_service::Service;

use crate::metrics::{self, RpcCall};

/// Wraps each call in an [`RpcCall`].
#[derive(Debug, Clone, Copy)]
pub struct MetricsLayer {
    /// The services this server has (anything else is `unknown`).
    known: &'static [&'static str],
}

impl MetricsLayer {
    pub fn new(known: &'static [&'static str]) -> Self {
        Self { known }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            known: self.known,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
    known: &'static [&'static str],
}

/// `/weir.v1.Log/Produce` → (`weir.v1.Log`, `Produce`); anything else is `unknown`.
fn rpc_name<'a>(path: &'a str, known: &[&str]) -> (&'a str, &'a str) {
    path.strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(service, method)| {
            known.contains(service) && !method.is_empty() && !method.contains('/')
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

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Metered<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = rpc_name(req.uri().path(), self.known);
        let mut call = metrics::global().rpc_started(service, method);
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            note_status(&mut call, response.headers());
            call.confirm();
            Ok(response.map(|inner| MeteredBody { inner, call }))
        })
    }
}

/// A response body that notes the status in its trailers; the call is recorded when the
/// body is dropped (finished, or abandoned by the client).
pub struct MeteredBody<B> {
    inner: B,
    call: RpcCall,
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
    fn calls_are_named_by_known_service_and_method() {
        let known = ["weir.v1.Log", "grpc.health.v1.Health"];
        assert_eq!(
            rpc_name("/weir.v1.Log/Produce", &known),
            ("weir.v1.Log", "Produce")
        );
        assert_eq!(
            rpc_name("/grpc.health.v1.Health/Check", &known),
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
            assert_eq!(rpc_name(path, &known), ("unknown", "unknown"), "{path}");
        }
    }
}
