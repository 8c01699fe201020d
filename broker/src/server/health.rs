//! `grpc.health.v1` that lets the broker stop: tonic-health's `Watch` streams never end (its
//! reporter and service share the status senders), so one open `Watch` held a graceful
//! shutdown forever. This wraps its service: once shutdown begins, every `Watch` stream
//! delivers `NOT_SERVING` (unless that was its last message already) and ends.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::HealthService;

pub struct StoppingHealth {
    inner: HealthService,
    /// Becomes true when shutdown begins (after the statuses were set to NOT_SERVING).
    stop: watch::Receiver<bool>,
}

impl StoppingHealth {
    pub fn new(inner: HealthService, stop: watch::Receiver<bool>) -> Self {
        Self { inner, stop }
    }
}

type Responses = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for StoppingHealth {
    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(req).await
    }

    type WatchStream = Responses;

    async fn watch(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let inner = self.inner.watch(req).await?.into_inner();
        Ok(Response::new(until_stopped(
            Box::pin(inner),
            self.stop.clone(),
        )))
    }
}

/// `inner`'s messages until `stop` turns true; then a last NOT_SERVING if the last message
/// was something else, and the end.
fn until_stopped(inner: Responses, stop: watch::Receiver<bool>) -> Responses {
    let not_serving = ServingStatus::NotServing as i32;
    Box::pin(futures::stream::unfold(
        (Some(inner), stop, None::<i32>),
        move |(inner, mut stop, last)| async move {
            let mut inner = inner?;
            let next = tokio::select! {
                // A status set just before the stop goes out first.
                biased;
                next = inner.next() => Some(next?),
                _ = stop.wait_for(|stopped| *stopped) => None,
            };
            match next {
                Some(next) => {
                    let status = next.as_ref().ok().map(|r| r.status);
                    let keep = next.is_ok().then_some(inner);
                    Some((next, (keep, stop, status.or(last))))
                }
                None => (last != Some(not_serving)).then(|| {
                    let last = HealthCheckResponse {
                        status: not_serving,
                    };
                    (Ok(last), (None, stop, Some(not_serving)))
                }),
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_health::server::HealthReporter;

    async fn next(s: &mut Responses) -> Option<i32> {
        s.next().await.map(|r| r.unwrap().status)
    }

    #[tokio::test]
    async fn a_watch_ends_with_not_serving_once_shutdown_begins() {
        let (serving, not_serving) = (
            ServingStatus::Serving as i32,
            ServingStatus::NotServing as i32,
        );
        for already_not_serving in [false, true] {
            let reporter = HealthReporter::new();
            let (stop_tx, stop) = watch::channel(false);
            let health =
                StoppingHealth::new(HealthService::from_health_reporter(reporter.clone()), stop);
            let mut w = health
                .watch(Request::new(HealthCheckRequest {
                    service: String::new(),
                }))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(next(&mut w).await, Some(serving));
            if already_not_serving {
                reporter
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
            }
            stop_tx.send(true).unwrap();
            // NOT_SERVING once, whichever way it came, then the end.
            assert_eq!(next(&mut w).await, Some(not_serving));
            assert_eq!(next(&mut w).await, None);
        }
    }
}
