//! `weir status`: the broker (or cluster) on one screen: health, members, topics, groups,
//! plugins, pipelines, and what needs attention. Exit code 1 when something does.

use std::io::Write;

use weir::{Admin, Client, Health, PipelineStatus};

/// What `weir status` gathered.
#[derive(Debug, Default, PartialEq)]
struct Summary {
    health: String,
    cluster: String,
    /// What the members run (`VERSION (COMMIT)`), with the node ids when they differ.
    version: String,
    topics: usize,
    partitions: u64,
    records: u64,
    bytes: u64,
    groups: usize,
    members: u64,
    lag: u64,
    plugins: usize,
    pipelines: usize,
    pipelines_failed: usize,
    pipeline_lag: u64,
    /// One line per thing that needs attention.
    problems: Vec<String>,
}

pub async fn run(client: &Client, broker: &str) -> anyhow::Result<()> {
    let s = gather(client).await?;
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

/// Every section; one that cannot be read becomes a problem line, the others still show.
async fn gather(client: &Client) -> anyhow::Result<Summary> {
    let admin = client.admin();
    let mut s = Summary::default();
    let health = admin.health("").await?;
    s.health = health.to_string();
    if health != Health::Serving {
        s.problems.push(format!("the broker reports {health}"));
    }
    let sections = [
        ("the cluster", cluster(&admin, &mut s).await),
        ("the topics", topics(&admin, &mut s).await),
        ("the groups", groups(&admin, &mut s).await),
        ("plugins and pipelines", extensions(&admin, &mut s).await),
    ];
    for (what, result) in sections {
        if let Err(e) = result {
            s.problems.push(format!("cannot read {what}: {e}"));
        }
    }
    Ok(s)
}

async fn cluster(admin: &Admin, s: &mut Summary) -> weir::Result<()> {
    let nodes = admin.cluster_status().await?;
    s.version = versions(&nodes);
    if nodes.iter().all(|n| n.role == "standalone") {
        s.cluster = "standalone".to_string();
        return Ok(());
    }
    let controller = nodes
        .iter()
        .find(|n| n.role == "controller")
        .map(|n| n.node_id);
    s.cluster = format!(
        "{} nodes, controller {}",
        nodes.len(),
        controller.map_or("none".to_string(), |c| format!("node {c}"))
    );
    for n in nodes.iter().filter(|n| n.role == "unreachable") {
        s.problems
            .push(format!("node {} ({}) is unreachable", n.node_id, n.addr));
    }
    if controller.is_none() {
        s.problems.push("the cluster has no controller".to_string());
    }
    Ok(())
}

/// One version, or each member's (a rolling upgrade half done): `0.1.0 (abc)` or
/// `node 1 0.1.0 (abc), node 2 0.2.0 (def)`. Members that did not answer are left out.
fn versions(nodes: &[weir::NodeStatus]) -> String {
    let known: Vec<(u64, &str)> = nodes
        .iter()
        .filter(|n| n.role != "unreachable")
        .map(|n| (n.node_id, n.version.as_deref().unwrap_or("unknown")))
        .collect();
    match known.first() {
        None => "unknown".to_string(),
        Some((_, v)) if known.iter().all(|(_, w)| w == v) => v.to_string(),
        Some(_) => known
            .iter()
            .map(|(id, v)| format!("node {id} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

async fn topics(admin: &Admin, s: &mut Summary) -> weir::Result<()> {
    // Views read their sources' records: counted once, as their sources'.
    let mut topics = admin.list_topics().await?;
    topics.retain(|t| t.view_of.is_none());
    s.topics = topics.len();
    for t in &topics {
        let d = admin.describe_topic(&t.name).await?;
        s.partitions += u64::from(t.partitions);
        for p in &d.partitions {
            s.records += p.latest_offset.saturating_sub(p.earliest_offset);
            s.bytes += p.size_bytes;
        }
        for (i, p) in d.placement.iter().enumerate() {
            if p.leader.is_none() {
                s.problems
                    .push(format!("partition {}/{i} has no leader", t.name));
            } else if p.isr.len() < p.replicas.len() {
                s.problems.push(format!(
                    "partition {}/{i} is under-replicated ({} of {} replicas in sync)",
                    t.name,
                    p.isr.len(),
                    p.replicas.len()
                ));
            }
        }
    }
    Ok(())
}

async fn groups(admin: &Admin, s: &mut Summary) -> weir::Result<()> {
    let groups = admin.list_groups().await?;
    s.groups = groups.len();
    for g in &groups {
        s.members += u64::from(g.members);
        let d = admin.describe_group(&g.name).await?;
        s.lag += d.partitions.iter().filter_map(|p| p.lag).sum::<u64>();
    }
    Ok(())
}

async fn extensions(admin: &Admin, s: &mut Summary) -> weir::Result<()> {
    s.plugins = admin.list_plugins().await?.len();
    let pipelines = admin.list_pipelines().await?;
    s.pipelines = pipelines.len();
    for p in &pipelines {
        s.pipeline_lag += p.lag;
        if p.status == PipelineStatus::Failed {
            s.pipelines_failed += 1;
            s.problems.push(format!(
                "pipeline {} failed: {}",
                p.name,
                p.error.as_deref().unwrap_or("no reason given")
            ));
        }
    }
    Ok(())
}

fn render(broker: &str, s: &Summary) -> String {
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

/// `1.5 MB` style (powers of 1000, as `ls --si`).
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_screen_with_problems_last() {
        let s = Summary {
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
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(12_345), "12.3 kB");
    }

    #[test]
    fn one_version_or_each_members() {
        let node = |id, role: &str, v: Option<&str>| weir::NodeStatus {
            node_id: id,
            addr: String::new(),
            role: role.into(),
            controller: None,
            term: 0,
            applied_index: 0,
            cluster_id: None,
            version: v.map(Into::into),
        };
        let a = Some("0.1.0 (abc)");
        assert_eq!(versions(&[node(0, "standalone", a)]), "0.1.0 (abc)");
        let same = [
            node(1, "controller", a),
            node(2, "follower", a),
            node(3, "unreachable", None),
        ];
        assert_eq!(versions(&same), "0.1.0 (abc)");
        let mixed = [
            node(1, "controller", a),
            node(2, "follower", Some("0.2.0 (def)")),
        ];
        assert_eq!(versions(&mixed), "node 1 0.1.0 (abc), node 2 0.2.0 (def)");
        assert_eq!(versions(&[node(1, "unreachable", None)]), "unknown");
    }
}
