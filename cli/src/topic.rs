//! `weir topic create|list|describe|delete`.

use std::io::Write;

use clap::Subcommand;
use weir::{Client, NewTopic};

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Drop segments older than this; -1 keeps forever [default: broker's].
        #[arg(long, allow_negative_numbers = true)]
        retention_ms: Option<i64>,
        /// Keep about this many bytes per partition; -1: no limit [default: broker's].
        #[arg(long, allow_negative_numbers = true)]
        retention_bytes: Option<i64>,
        /// Segment size in bytes [default: broker's].
        #[arg(long)]
        segment_bytes: Option<u64>,
        /// Segment age in ms after which it rolls [default: broker's].
        #[arg(long)]
        segment_ms: Option<i64>,
        /// Copies of each partition on different brokers (cluster mode) [default: 1].
        #[arg(long)]
        replication_factor: Option<u32>,
    },
    /// One line per topic: NAME<TAB>PARTITIONS.
    List,
    /// One line per partition: PARTITION<TAB>EARLIEST<TAB>LATEST.
    Describe { name: String },
    /// Delete a topic and its records.
    Delete { name: String },
}

pub async fn run(client: &Client, cmd: TopicCommand) -> anyhow::Result<()> {
    let admin = client.admin();
    let mut out = std::io::stdout().lock();
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            retention_ms,
            retention_bytes,
            segment_bytes,
            segment_ms,
            replication_factor,
        } => {
            let topic = NewTopic {
                name,
                partitions,
                retention_ms,
                retention_bytes,
                segment_bytes,
                segment_ms,
                replication_factor,
            };
            let info = admin.create_topic(topic).await?;
            writeln!(
                out,
                "created topic {} with {} partitions",
                info.name, info.partitions
            )?;
        }
        TopicCommand::List => {
            for t in admin.list_topics().await? {
                writeln!(out, "{}\t{}", t.name, t.partitions)?;
            }
        }
        TopicCommand::Describe { name } => {
            for p in admin.describe_topic(&name).await?.partitions {
                writeln!(
                    out,
                    "{}\t{}\t{}",
                    p.partition, p.earliest_offset, p.latest_offset
                )?;
            }
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await?;
            writeln!(out, "deleted topic {name}")?;
        }
    }
    Ok(())
}
