//! `weir-chaos`: checks a recorded history (and, as it grows, runs the fault harness).

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir_chaos::{checker, history};

#[derive(Parser)]
#[command(
    name = "weir-chaos",
    about = "Fault injection and history checking for a Weir cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a history (JSON lines); exit 1 when it holds an anomaly.
    Check {
        /// The history file.
        history: PathBuf,
        /// Anomalies shown with their evidence.
        #[arg(long, default_value_t = 20)]
        show: usize,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Check { history, show } => {
            let file = std::fs::File::open(&history)
                .with_context(|| format!("cannot open {}", history.display()))?;
            let events = history::read(BufReader::new(file))?;
            let report = checker::check(&events);
            print!("{}", report.render(&events, show));
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
