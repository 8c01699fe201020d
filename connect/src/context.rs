//! What every connector shares: the broker client, the state directory, and how long it has
//! to finish what it holds once shutdown begins.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weir::Client;

use crate::state::StateDir;

/// How long a connector may take, after shutdown began, to finish the write or chunk in hand.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What every connector shares.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub state: Arc<StateDir>,
}

/// Returns [`STOP_GRACE`] after shutdown began: what a connector does past that (a write the
/// target keeps refusing, a produce the broker cannot take) is dropped, and done again after a
/// restart.
pub async fn grace_over(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: that is a shutdown too.
    let _ = shutdown.wait_for(|stop| *stop).await;
    tokio::time::sleep(STOP_GRACE).await;
}
