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
        /// In-sync replicas an acks=all produce needs, up to the replication factor (cluster
        /// mode; Kafka's min.insync.replicas) [default: 1].
        #[arg(long)]
        min_insync_replicas: Option<u32>,
    },
    /// One line per topic: NAME<TAB>PARTITIONS; a view's line adds <TAB>view of SOURCE.
    List,
    /// One line per partition: PARTITION<TAB>EARLIEST<TAB>LATEST, and in cluster mode
    /// <TAB>LEADER<TAB>REPLICAS<TAB>ISR (broker ids, comma-separated).
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
            min_insync_replicas,
        } => {
            let topic = NewTopic {
                name,
                partitions,
                retention_ms,
                retention_bytes,
                segment_bytes,
                segment_ms,
                replication_factor,
                min_insync_replicas,
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
                match &t.view_of {
                    Some(source) => {
                        writeln!(out, "{}\t{}\tview of {source}", t.name, t.partitions)?
                    }
                    None => writeln!(out, "{}\t{}", t.name, t.partitions)?,
                }
            }
        }
        TopicCommand::Describe { name } => {
            let ids = |v: &[u64]| {
                let v: Vec<String> = v.iter().map(u64::to_string).collect();
                v.join(",")
            };
            let d = admin.describe_topic(&name).await?;
            for (i, p) in d.partitions.iter().enumerate() {
                write!(
                    out,
                    "{}\t{}\t{}",
                    p.partition, p.earliest_offset, p.latest_offset
                )?;
                // Cluster mode: where the partition lives, after the columns the spec names.
                if let Some(place) = d.placement.get(i) {
                    let leader = place.leader.map_or("-".into(), |l| l.to_string());
                    let (replicas, isr) = (ids(&place.replicas), ids(&place.isr));
                    write!(out, "\t{leader}\t{replicas}\t{isr}")?;
                }
                writeln!(out)?;
            }
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await?;
            writeln!(out, "deleted topic {name}")?;
        }
    }
    Ok(())
}
