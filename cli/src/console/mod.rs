//! `weir console`: a web console for a broker or a cluster, and a client of it like the rest
//! of the CLI (through the Rust SDK). Server-rendered HTML (maud) on axum; the only script is
//! `assets/console.js` (the live tail and small conveniences): every page works without it.
//!
//! Layout:
//! - this file: flags, the router, start-up;
//! - [`session`]: sessions (cookie), logins against the broker's users, CSRF tokens, and
//!   what the person using the console may do;
//! - [`render`]: how untrusted bytes are shown (JSON, text or hex), times and sizes;
//! - [`layout`]: the page around every page, and error pages;
//! - [`rates`]: the produce/consume rates behind the overview's chart;
//! - `pages/`: one module per page.
//!
//! The console never has more rights than the person using it: with `--auth`, each browser
//! session logs in as a broker user and every call is made as that user. `--read-only`
//! hides (and refuses) every action that changes something.

mod layout;
mod pages;
mod rates;
mod render;
mod session;

pub use render::human_bytes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use clap::Args;

use crate::Target;

/// Where the console listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9294";

#[derive(Args)]
pub struct ConsoleArgs {
    /// Address the console's web server binds (port 0 picks a free one).
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "HOST:PORT")]
    listen: SocketAddr,
    /// Show and allow nothing that changes the broker (no create, delete, produce, reset,
    /// upload, resume).
    #[arg(long)]
    read_only: bool,
}

/// What every handler shares.
pub struct Console {
    read_only: bool,
    sessions: session::Sessions,
    rates: rates::Rates,
}

type State = Arc<Console>;

pub async fn run(target: &Target, args: ConsoleArgs) -> anyhow::Result<()> {
    // The broker is checked once at start: an unreachable one is a one-line error now rather
    // than a page of errors later. Whether it asks for logins is decided here too.
    let client = target.connect().await?;
    let who = match client.admin().whoami().await {
        Ok(who) => who,
        // The broker runs with --auth and the console has no credentials of its own: every
        // browser logs in.
        Err(weir::Error::Unauthenticated(_)) => weir::WhoAmI {
            name: String::new(),
            superuser: false,
            auth_enabled: true,
            acls: Vec::new(),
        },
        Err(e) => return Err(e.into()),
    };
    let sessions = session::Sessions::new(target, &client, who);
    let console = Arc::new(Console {
        read_only: args.read_only,
        sessions,
        rates: rates::Rates::default(),
    });
    tokio::spawn(rates::sample(client, console.clone()));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "weir console listening on http://{addr}")?;
        out.flush()?;
    }
    // On SIGTERM or Ctrl-C: stop accepting, let requests in flight finish, but do not wait
    // for open live tails (they would hold the exit for minutes).
    let server = axum::serve(listener, router(console)).with_graceful_shutdown(stop_signal());
    tokio::select! {
        served = server => served?,
        () = async {
            stop_signal().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {}
    }
    Ok(())
}

/// How long requests in flight get after a stop signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn router(console: State) -> Router {
    use pages::{groups, messages, overview, pipelines, plugins, security, topics};
    Router::new()
        .route("/", get(overview::page))
        .route("/topics", get(topics::list).post(topics::create))
        .route("/topics/{name}", get(topics::page))
        .route("/topics/{name}/delete", post(topics::delete))
        .route("/topics/{name}/messages", get(messages::browse))
        .route("/topics/{name}/tail", get(messages::tail))
        .route(
            "/topics/{name}/produce",
            get(messages::produce_form).post(messages::produce),
        )
        .route("/groups", get(groups::list))
        .route("/groups/{name}", get(groups::page))
        .route("/groups/{name}/reset", post(groups::reset))
        .route("/plugins", get(plugins::list).post(plugins::upload))
        .route("/plugins/{name}/delete", post(plugins::delete))
        .route("/plugins/{name}/try", get(plugins::try_it))
        .route("/pipelines", get(pipelines::list).post(pipelines::create))
        .route("/pipelines/{name}", get(pipelines::page))
        .route("/pipelines/{name}/resume", post(pipelines::resume))
        .route("/pipelines/{name}/delete", post(pipelines::delete))
        .route("/security", get(security::page))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/assets/console.css", get(layout::css))
        .route("/assets/console.js", get(layout::js))
        .fallback(layout::not_found)
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            session::middleware,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            pages::MAX_UPLOAD_BYTES,
        ))
        .with_state(console)
}
