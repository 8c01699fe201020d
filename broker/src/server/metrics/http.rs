//! The scrape endpoint: `GET /metrics` over HTTP/1.1 (hyper, already in the tree under tonic).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{CONTENT_TYPE as METRICS_TYPE, render};
use crate::broker::Broker;

/// Scrape connections served at once; more wait to be accepted. Scrapers are few; this keeps
/// a misbehaving one from holding many connections open.
const MAX_SCRAPE_CONNECTIONS: usize = 16;
/// A connection that sends no complete request for this long is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPE_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "metrics endpoint cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let broker = Arc::clone(&broker);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let broker = Arc::clone(&broker);
                async move { Ok::<_, Infallible>(answer(&broker, req).await) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
            drop(permit);
        });
    }
}

async fn answer(broker: &Broker, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        r.headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let text = render(broker).await;
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(METRICS_TYPE),
    );
    r
}
