//! The runner: starts every connector of a file as its own task, starts a failed one again
//! after a backoff, writes the status board, and stops them all on shutdown (each finishes
//! what it has in hand: a source its chunk, a sink its write and commit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use weir::Client;

use crate::config::{ConnectConfig, ConnectorConfig, Sink, Source};
use crate::context::Context;
use crate::error::ConnectError;
use crate::sink::{self, SinkSpec};
use crate::source;
use crate::state::StateDir;
use crate::status::{Board, Reporter, STATUS_INTERVAL, State};

/// First and longest wait before a failed connector is started again (doubling between).
pub const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(500);
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connector that ran this long before failing starts again after the shortest backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

#[derive(Clone)]
enum Connector {
    Source(Source),
    Sink(Sink),
}

/// Runs every connector of `config` until `shutdown` turns true (or its sender goes).
pub async fn run(
    client: Client,
    config: ConnectConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectError> {
    let state = Arc::new(StateDir::open(config.state_dir())?);
    let ctx = Context {
        client,
        state: state.clone(),
    };
    let board = Board::new();
    let mut tasks = JoinSet::new();
    for c in config.connectors() {
        let reporter = board.add(&c.name, c.role, c.kind, c.topic);
        let connector = match c.config {
            ConnectorConfig::Source(s) => Connector::Source(s.clone()),
            ConnectorConfig::Sink(s) => Connector::Sink(s.clone()),
        };
        tasks.spawn(supervise(
            ctx.clone(),
            connector,
            reporter,
            shutdown.clone(),
        ));
    }
    tracing::info!(
        connectors = tasks.len(),
        state_dir = %state.path().display(),
        "connectors started"
    );
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    while !tasks.is_empty() {
        tokio::select! {
            _ = tick.tick() => save_board(&board, &state),
            _ = tasks.join_next() => {}
        }
    }
    save_board(&board, &state);
    tracing::info!("connectors stopped");
    Ok(())
}

fn save_board(board: &Board, state: &StateDir) {
    if let Err(e) = board.save(state) {
        tracing::warn!(error = %e, "cannot write the status file");
    }
}

/// Runs one connector, starting it again after a backoff whenever it fails, until shutdown.
async fn supervise(
    ctx: Context,
    connector: Connector,
    status: Reporter,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = RESTART_BACKOFF_MIN;
    loop {
        status.set_state(State::Starting);
        let started = Instant::now();
        let result = run_once(&ctx, &connector, &status, &mut shutdown).await;
        let Err(e) = result else {
            status.set_state(State::Stopped);
            return;
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff = RESTART_BACKOFF_MIN;
        }
        tracing::error!(connector = %status.name(), error = %e, ?backoff, "connector failed; starting it again");
        status.failed(&e);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => {}
        }
        if stopping(&shutdown) {
            return;
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
    }
}

fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

async fn run_once(
    ctx: &Context,
    connector: &Connector,
    status: &Reporter,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnectError> {
    match connector {
        Connector::Source(Source::File(s)) => {
            let mut reader = source::file::FileReader::new(s);
            source::run(ctx, &s.topic, &s.plugins, &mut reader, status, shutdown).await
        }
        Connector::Source(Source::Http(s)) => source::http::run(ctx, s, status, shutdown).await,
        Connector::Sink(sink @ Sink::File(s)) => {
            let mut writer = sink::file::FileWriter::new(s, ctx.state.clone(), status.name());
            sink::run(ctx, spec_of(sink), &mut writer, status, shutdown).await
        }
        Connector::Sink(sink @ Sink::Http(s)) => {
            let mut writer = sink::http::HttpWriter::new(s, status.name())?;
            sink::run(ctx, spec_of(sink), &mut writer, status, shutdown).await
        }
        Connector::Source(Source::Postgres(s)) => {
            let mut reader = source::postgres::PostgresReader::new(s, status.name());
            source::run(ctx, &s.topic, &s.plugins, &mut reader, status, shutdown).await
        }
        Connector::Sink(sink @ Sink::Postgres(s)) => {
            let mut writer = sink::postgres::PostgresWriter::new(s, status.name());
            sink::run(ctx, spec_of(sink), &mut writer, status, shutdown).await
        }
    }
}

fn spec_of(s: &Sink) -> SinkSpec<'_> {
    let (group, session_timeout_ms) = s.group();
    SinkSpec {
        topic: s.topic(),
        group,
        session_timeout_ms,
        plugins: s.plugins(),
    }
}
