//! `weir connect run|status`: the connectors of a file (SPEC.md, "Connectors").

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use tokio::sync::watch;
use weir_connect::{ConnectConfig, runtime, status};

#[derive(Subcommand)]
pub enum ConnectCommand {
    /// Run the sources and sinks a connector file declares until SIGTERM or Ctrl-C; a
    /// restart resumes where they stood.
    Run { config: PathBuf },
    /// A header row, then one line per connector of the file: name, role, type, topic,
    /// state, records, skipped, position, error ("-" when none).
    Status { config: PathBuf },
}

pub async fn run(broker: &crate::Target, cmd: ConnectCommand) -> anyhow::Result<()> {
    match cmd {
        ConnectCommand::Run { config } => {
            let stop_signal = crate::consume::stop_signal();
            let config = ConnectConfig::load(&config)?;
            let client = broker.connect().await?;
            let (stop, shutdown) = watch::channel(false);
            tokio::spawn(async move {
                stop_signal.await;
                tracing::info!("stopping the connectors");
                let _ = stop.send(true);
            });
            runtime::run(client, config, shutdown).await?;
            Ok(())
        }
        ConnectCommand::Status { config } => show_status(&config),
    }
}

/// Reads the runner's state directory only (no broker).
fn show_status(path: &std::path::Path) -> anyhow::Result<()> {
    let config = ConnectConfig::load(path)?;
    let dir = config.state_dir();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "name\trole\ttype\ttopic\tstate\trecords\tskipped\tposition\terror"
    )?;
    let shown = status::read(dir).with_context(|| format!("reading {}", dir.display()))?;
    let known: Vec<status::ConnectorStatus> = shown.map(|(s, _)| s.connectors).unwrap_or_default();
    for connector in config.connectors() {
        let (name, role, kind, topic) = (
            connector.name,
            connector.role,
            connector.kind,
            connector.topic,
        );
        match known.iter().find(|c| c.name == name) {
            Some(c) => writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                c.name,
                c.role,
                c.kind,
                c.topic,
                c.state.as_str(),
                c.records,
                c.skipped,
                dash(&c.position),
                dash(c.error.as_deref().unwrap_or("")),
            )?,
            None => writeln!(
                out,
                "{name}\t{role}\t{kind}\t{topic}\tnever-run\t0\t0\t-\t-"
            )?,
        }
    }
    Ok(())
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
