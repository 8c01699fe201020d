//! `weir consume TOPIC`: print records as values or JSON lines.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use futures::{FutureExt, StreamExt};
use weir::{Client, ConsumerConfig, StartFrom};
use weir_connect::json::record_json;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// One record value per line.
    Value,
    /// One JSON object per line.
    Json,
}

#[derive(Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    partition: Option<u32>,
    /// earliest | latest | OFFSET | ts:UNIX_MILLIS. With --group: where to start in
    /// partitions the group has no committed offset for.
    #[arg(long, default_value = "earliest", value_parser = str::parse::<StartFrom>)]
    from: StartFrom,
    /// Read as a member of this consumer group: get a share of the partitions, resume from
    /// the group's committed offsets and commit progress (periodically and on exit).
    #[arg(long, conflicts_with = "partition")]
    group: Option<String>,
    /// With --group: the broker hands this member's partitions to others after this long
    /// without a heartbeat.
    #[arg(long, value_name = "MS", default_value_t = default_session_timeout_ms(), requires = "group")]
    session_timeout: u64,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<u64>,
    /// Stop after this many ms with nothing new (default: follow forever).
    #[arg(long, value_name = "MS")]
    idle_timeout: Option<u64>,
    /// Apply a registered plugin on the broker before records are sent; repeat to chain them
    /// (in order). JSON after `=` is the plugin's params.
    #[arg(long = "plugin", value_name = "NAME[=JSON]", value_parser = crate::plugin_use)]
    plugins: Vec<weir::PluginUse>,
    #[arg(long, value_enum, default_value = "value")]
    format: Format,
}

fn default_session_timeout_ms() -> u64 {
    weir::ConsumerConfig::default().session_timeout.as_millis() as u64
}

pub async fn run(client: &Client, args: ConsumeArgs) -> anyhow::Result<()> {
    if args.max == Some(0) {
        return Ok(());
    }
    let mut config = ConsumerConfig::default()
        .start(args.from)
        .client_id("weir-cli");
    if let Some(p) = args.partition {
        config = config.partitions(vec![p]);
    }
    config.plugins = args.plugins.clone();
    if let Some(g) = &args.group {
        config = config
            .group(g)
            .session_timeout(Duration::from_millis(args.session_timeout));
    }
    let mut consumer = client.consumer(&args.topic, config).await?;
    let result = print_records(&mut consumer, &args).await;
    // A group member commits what it printed and leaves, so its partitions move at once.
    let closed = consumer.close().await;
    result?;
    closed.context("committing the group's offsets")
}

/// Prints records until --max, --idle-timeout, Ctrl-C or SIGTERM.
async fn print_records(consumer: &mut weir::Consumer, args: &ConsumeArgs) -> anyhow::Result<()> {
    let mut stop = std::pin::pin!(stop_signal());
    let idle = args.idle_timeout.map(Duration::from_millis);
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    let mut seen: u64 = 0;
    loop {
        // Flush what we have before waiting, so a follower's output is never held back.
        let next = match consumer.next().now_or_never() {
            Some(n) => n,
            None => {
                out.flush().context("writing stdout")?;
                let wait = async {
                    match idle {
                        Some(d) => tokio::time::timeout(d, consumer.next()).await.ok(),
                        None => Some(consumer.next().await),
                    }
                };
                tokio::select! {
                    n = wait => match n {
                        Some(n) => n,
                        None => break,
                    },
                    _ = &mut stop => break,
                }
            }
        };
        let record = match next {
            Some(r) => r?,
            None => bail!("the record stream ended"),
        };
        match args.format {
            Format::Value => {
                out.write_all(&record.value)?;
                out.write_all(b"\n")?;
            }
            Format::Json => {
                serde_json::to_writer(&mut out, &record_json(&record))?;
                out.write_all(b"\n")?;
            }
        }
        seen += 1;
        if args.max.is_some_and(|m| seen >= m) {
            break;
        }
    }
    out.flush().context("writing stdout")?;
    Ok(())
}

/// Ctrl-C or SIGTERM: stop printing and exit cleanly (a group member commits and leaves).
/// SIGTERM is caught from the call on, not from the first poll.
pub(crate) fn stop_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse() {
        assert_eq!("earliest".parse::<StartFrom>(), Ok(StartFrom::Earliest));
        assert_eq!("latest".parse::<StartFrom>(), Ok(StartFrom::Latest));
        assert_eq!("42".parse::<StartFrom>(), Ok(StartFrom::Offset(42)));
        assert_eq!(
            "ts:1700000000000".parse::<StartFrom>(),
            Ok(StartFrom::Timestamp(1_700_000_000_000))
        );
        assert!("ts:x".parse::<StartFrom>().is_err());
        assert!("-1".parse::<StartFrom>().is_err());
        assert!("soon".parse::<StartFrom>().is_err());
    }
}
