//! One appender task per partition: the only writer of its log.
//!
//! Produce requests queue their validated batches here; the task takes everything queued (up
//! to [`GROUP_COMMIT_MAX_BYTES`]) and appends it in one RocksDB write on the blocking pool —
//! group commit, so concurrent producers to a partition share one write (and one fsync with
//! `--fsync always`). The bounded queue gives backpressure.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Appended, LogError, PartitionLog, PendingBatch};
use crate::error::BrokerError;
use crate::types::now_ms;

/// Most batches waiting for one partition's appender before producers wait.
pub const APPEND_QUEUE_DEPTH: usize = 256;
/// Most bytes grouped into one RocksDB write.
pub const GROUP_COMMIT_MAX_BYTES: usize = 8 * 1024 * 1024;

struct AppendJob {
    batch: PendingBatch,
    reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// Handle to a partition's appender. Dropping every handle stops the task.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<AppendJob>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("partition is closed (topic deleted or broker shutting down)")]
    Closed,
}

impl AppendError {
    /// The broker's error for this failure of `topic`'s partition `partition`.
    pub fn in_partition(self, topic: &str, partition: u32) -> BrokerError {
        match self {
            AppendError::Log(e) => e.in_partition(topic, partition),
            AppendError::Closed => BrokerError::TopicNotFound(topic.to_string()),
        }
    }
}

impl Appender {
    /// Starts the appender task of `log` on the current runtime.
    pub fn spawn(log: Arc<PartitionLog>) -> Self {
        let (tx, rx) = mpsc::channel(APPEND_QUEUE_DEPTH);
        tokio::spawn(run(log, rx));
        Self { tx }
    }

    /// Queues a batch (waiting while the queue is full) and returns a future of its append.
    /// Batches are appended in the order they were queued.
    pub async fn submit(
        &self,
        batch: PendingBatch,
    ) -> Result<impl Future<Output = Result<Appended, AppendError>> + use<>, AppendError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(AppendJob { batch, reply })
            .await
            .map_err(|_| AppendError::Closed)?;
        Ok(async move { Ok(rx.await.map_err(|_| AppendError::Closed)??) })
    }
}

async fn run(log: Arc<PartitionLog>, mut rx: mpsc::Receiver<AppendJob>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.batch.bytes.len();
        let mut jobs = vec![first];
        while bytes < GROUP_COMMIT_MAX_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.batch.bytes.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let (batches, replies): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|j| (j.batch, j.reply)).unzip();
        let writer = Arc::clone(&log);
        let result =
            tokio::task::spawn_blocking(move || writer.append_group(&batches, now_ms())).await;
        let result = match result {
            Ok(r) => r,
            Err(e) => Err(LogError::Storage(format!("append task failed: {e}"))),
        };
        match result {
            Ok(appended) => {
                for (reply, a) in replies.into_iter().zip(appended) {
                    let _ = reply.send(a);
                }
            }
            Err(e) => {
                tracing::error!(topic = log.key().topic, partition = log.key().partition, error = %e, "append failed");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
