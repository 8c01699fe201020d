//! `weir status`: the broker (or cluster) on one screen: health, members, topics, groups,
//! plugins, pipelines, and what needs attention. Exit code 1 when something does.

use std::io::Write;

use weir::{Client, StatusReport};

use crate::console::human_bytes;

pub async fn run(client: &Client, broker: &str) -> anyhow::Result<()> {
    let s = client.admin().status().await?;
    let mut out = std::io::stdout().lock();
    write!(out, "{}", render(broker, &s))?;
    out.flush()?;
    if !s.problems.is_empty() {
        anyhow::bail!(
            "{} thing(s) need attention: {}",
            s.problems.len(),
            s.problems[0]
        );
    }
    Ok(())
}

fn render(broker: &str, s: &StatusReport) -> String {
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<10} {value}\n"));
    line("broker", format!("{broker}  {}", s.health));
    line("cluster", s.cluster.clone());
    line("version", s.version.clone());
    line(
        "topics",
        format!(
            "{}, {}, {}, {}",
            plural(s.topics as u64, "topic", "topics"),
            plural(s.partitions, "partition", "partitions"),
            plural(s.records, "record", "records"),
            human_bytes(s.bytes)
        ),
    );
    line(
        "groups",
        format!(
            "{}, {}, lag {}",
            plural(s.groups as u64, "group", "groups"),
            plural(s.members, "member", "members"),
            s.lag
        ),
    );
    line("plugins", s.plugins.to_string());
    line(
        "pipelines",
        format!(
            "{} running, {} failed, lag {}",
            s.pipelines - s.pipelines_failed,
            s.pipelines_failed,
            s.pipeline_lag
        ),
    );
    for p in &s.problems {
        out.push_str(&format!("! {p}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_screen_with_problems_last() {
        let s = StatusReport {
            health: "SERVING".into(),
            cluster: "standalone".into(),
            version: "0.1.0 (abc)".into(),
            topics: 1,
            partitions: 3,
            records: 1,
            bytes: 1_500_000,
            groups: 2,
            members: 1,
            lag: 7,
            plugins: 4,
            pipelines: 2,
            pipelines_failed: 1,
            pipeline_lag: 0,
            problems: vec!["pipeline p failed: trap".into()],
            ..StatusReport::default()
        };
        assert_eq!(
            render("127.0.0.1:9292", &s),
            "broker     127.0.0.1:9292  SERVING\n\
             cluster    standalone\n\
             version    0.1.0 (abc)\n\
             topics     1 topic, 3 partitions, 1 record, 1.5 MB\n\
             groups     2 groups, 1 member, lag 7\n\
             plugins    4\n\
             pipelines  1 running, 1 failed, lag 0\n\
             ! pipeline p failed: trap\n"
        );
    }
}
