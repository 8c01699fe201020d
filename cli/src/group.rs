//! `weir group list|describe|reset|delete`.

use std::io::Write;

use anyhow::bail;
use clap::Subcommand;
use weir::{Client, StartFrom};

#[derive(Subcommand)]
pub enum GroupCommand {
    /// One line per group: NAME<TAB>MEMBERS<TAB>STATE.
    List,
    /// A header row, then one line per partition the group reads or has committed:
    /// topic, partition, committed offset, end offset, lag, member ("-" when none).
    Describe { group: String },
    /// Move the group's committed offsets for every partition of a topic (only while the
    /// group has no live members). Prints PARTITION<TAB>OFFSET per partition.
    Reset {
        group: String,
        #[arg(long)]
        topic: String,
        /// earliest | latest | OFFSET | ts:UNIX_MILLIS
        #[arg(long, value_parser = str::parse::<StartFrom>)]
        to: StartFrom,
    },
    /// Delete a group and its committed offsets (only while it has no live members).
    Delete { group: String },
}

fn or_dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

pub async fn run(client: &Client, cmd: GroupCommand) -> anyhow::Result<()> {
    let admin = client.admin();
    let mut out = std::io::stdout().lock();
    match cmd {
        GroupCommand::List => {
            for g in admin.list_groups().await? {
                writeln!(out, "{}\t{}\t{}", g.name, g.members, g.state)?;
            }
        }
        GroupCommand::Describe { group } => {
            let d = admin.describe_group(&group).await?;
            writeln!(out, "topic\tpartition\tcommitted\tend\tlag\tmember")?;
            for p in d.partitions {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    p.topic,
                    p.partition,
                    or_dash(p.committed_offset),
                    p.end_offset,
                    or_dash(p.lag),
                    or_dash(p.member_id),
                )?;
            }
        }
        GroupCommand::Reset { group, topic, to } => {
            let offsets = admin.reset_group(&group, &topic, to).await?;
            if offsets.is_empty() {
                bail!("topic {topic:?} has no partitions");
            }
            for (p, o) in offsets {
                writeln!(out, "{p}\t{o}")?;
            }
        }
        GroupCommand::Delete { group } => admin.delete_group(&group).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_targets_parse() {
        assert_eq!("earliest".parse::<StartFrom>(), Ok(StartFrom::Earliest));
        assert_eq!("latest".parse::<StartFrom>(), Ok(StartFrom::Latest));
        assert_eq!("17".parse::<StartFrom>(), Ok(StartFrom::Offset(17)));
        assert_eq!("ts:5".parse::<StartFrom>(), Ok(StartFrom::Timestamp(5)));
        assert!("-3".parse::<StartFrom>().is_err());
        assert!("never".parse::<StartFrom>().is_err());
    }
}
