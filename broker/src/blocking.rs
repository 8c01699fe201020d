//! Blocking work (RocksDB I/O, a plugin call) on the runtime's blocking pool, from async code.

use crate::error::BrokerError;

/// Runs `f` on the blocking pool; a task that panicked becomes a storage error.
pub async fn blocking<T, F>(f: F) -> Result<T, BrokerError>
where
    F: FnOnce() -> Result<T, BrokerError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Storage(format!("blocking task failed: {e}")))?
}
