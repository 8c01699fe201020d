//! `weir-chaos`: runs a Weir cluster in network namespaces under faults scheduled from a
//! seed, records what its clients did and saw, and checks that history (docs/reliability.md).
//!
//! - `weir-chaos run --seed N --seconds S`: creates the namespaces, runs `drive` inside the
//!   client namespace, deletes the namespaces whatever happened, then checks the history;
//!   exit 0 only when the checker finds nothing.
//! - `weir-chaos check FILE`: checks a history again (exit 1 on an anomaly).
//! - `weir-chaos cleanup`: deletes namespaces left by runs that were killed.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir_chaos::drive::{Plan, drive, history_path};
use weir_chaos::net::{NAMESPACE_PREFIX, Net, remove_stale};
use weir_chaos::{checker, history};

#[derive(Parser)]
#[command(
    name = "weir-chaos",
    about = "Fault injection and history checking for a Weir cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a cluster under faults and check what its clients saw (needs root).
    Run {
        /// Seed of the fault schedule (the same seed, the same faults).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Length of the whole run, in seconds.
        #[arg(long, default_value_t = 120, conflicts_with = "minutes")]
        seconds: u64,
        /// Length of the whole run, in minutes (instead of --seconds).
        #[arg(long)]
        minutes: Option<u64>,
        /// Brokers (3 or 5).
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// Where data dirs, broker logs and the history go (default: a new dir under /tmp,
        /// deleted when the run is clean).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The broker binary (default: `weir-broker` next to this one).
        #[arg(long)]
        broker_bin: Option<PathBuf>,
        /// Anomalies of this kind are shown but do not fail the run (e.g. `two-owners`, while
        /// investigating one). Repeatable.
        #[arg(long, value_name = "KIND")]
        tolerate: Vec<checker::Kind>,
    },
    /// Internal: one run, inside the client namespace `run` made.
    #[command(hide = true)]
    Drive {
        #[arg(long)]
        tag: String,
        #[arg(long)]
        nodes: u8,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        seconds: u64,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        broker_bin: PathBuf,
    },
    /// Check a history (JSON lines); exit 1 when it holds an anomaly.
    Check {
        history: PathBuf,
        /// Anomalies shown with their evidence.
        #[arg(long, default_value_t = 20)]
        show: usize,
        /// Anomalies of this kind do not fail the check. Repeatable.
        #[arg(long, value_name = "KIND")]
        tolerate: Vec<checker::Kind>,
    },
    /// Delete the namespaces of runs that were killed before they could.
    Cleanup,
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

fn check(path: &Path, show: usize, tolerate: &[checker::Kind]) -> anyhow::Result<bool> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let events = history::read(BufReader::new(file))?;
    let report = checker::check(&events);
    print!("{}", report.render(&events, show));
    if !report.is_clean() && report.is_clean_but(tolerate) {
        println!("(tolerated: every anomaly is of a kind given to --tolerate)");
    }
    Ok(report.is_clean_but(tolerate))
}

fn run() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Cmd::Check {
            history,
            show,
            tolerate,
        } => Ok(if check(&history, show, &tolerate)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Cmd::Cleanup => {
            remove_stale();
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Drive {
            tag,
            nodes,
            seed,
            seconds,
            dir,
            broker_bin,
        } => {
            let plan = Plan {
                tag,
                nodes,
                seed,
                duration: Duration::from_secs(seconds),
                broker_bin,
                dir,
            };
            let rt = tokio::runtime::Runtime::new()?;
            let injected = rt.block_on(drive(&plan))?;
            let list: Vec<String> = injected.iter().map(|(k, n)| format!("{k} {n}")).collect();
            println!("faults: {}", list.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run {
            seed,
            seconds,
            minutes,
            nodes,
            dir,
            broker_bin,
            tolerate,
        } => {
            anyhow::ensure!((3..=5).contains(&nodes), "--nodes must be 3, 4 or 5");
            let seconds = minutes.map_or(seconds, |m| m * 60);
            let exe = std::env::current_exe()?;
            let broker_bin = match broker_bin {
                Some(b) => b,
                None => exe.with_file_name("weir-broker"),
            };
            anyhow::ensure!(
                broker_bin.exists(),
                "no broker binary at {} (build weir-broker or pass --broker-bin)",
                broker_bin.display()
            );
            let (dir, keep) = match dir {
                Some(d) => (d, true),
                None => (
                    std::env::temp_dir().join(format!("weir-chaos-{}", std::process::id())),
                    false,
                ),
            };
            std::fs::create_dir_all(&dir)?;
            remove_stale();
            let tag = format!("{NAMESPACE_PREFIX}{}", std::process::id());
            let net = Net::create(&tag, nodes).context("creating the network namespaces")?;
            eprintln!(
                "seed {seed}, {seconds} s, {nodes} brokers, run dir {}",
                dir.display()
            );
            let status = Command::new("ip")
                .args(["netns", "exec", &net.client_ns()])
                .arg(&exe)
                .args(["drive", "--tag", &tag, "--nodes", &nodes.to_string()])
                .args([
                    "--seed",
                    &seed.to_string(),
                    "--seconds",
                    &seconds.to_string(),
                ])
                .arg("--dir")
                .arg(&dir)
                .arg("--broker-bin")
                .arg(&broker_bin)
                .status()
                .context("starting the driver")?;
            // Whatever happened: no namespace, no broker left behind.
            drop(net);
            anyhow::ensure!(
                status.success(),
                "the run failed ({status}); logs in {}",
                dir.display()
            );
            let clean = check(&history_path(&dir), 20, &tolerate)?;
            if clean && !keep {
                let _ = std::fs::remove_dir_all(&dir);
            } else {
                eprintln!("run dir kept: {}", dir.display());
            }
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
