//! The broker (or cluster) at a glance: health, members, topic totals, groups, plugins,
//! pipelines, and what needs attention. What `weir status` prints and the console's
//! overview shows.

use crate::admin::{Admin, Health, NodeStatus};
use crate::error::{Error, Result};
use crate::pipeline::PipelineStatus;

/// What [`Admin::status`] gathered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusReport {
    /// The bootstrap broker's health (`SERVING`, ...).
    pub health: String,
    /// `standalone`, or `N nodes, controller node C`.
    pub cluster: String,
    /// The members (one, `standalone`, for a single broker).
    pub nodes: Vec<NodeStatus>,
    /// What the members run (`VERSION (COMMIT)`), with the node ids when they differ.
    pub version: String,
    /// Topics (views not counted: they read their sources' records).
    pub topics: usize,
    /// Their partitions.
    pub partitions: u64,
    /// Records kept (latest − earliest, summed).
    pub records: u64,
    /// Bytes kept.
    pub bytes: u64,
    /// Records ever appended (latest offsets, summed): what a produce rate is sampled from.
    /// `None` when the topics could not be read in full.
    pub produced: Option<u64>,
    /// Consumer groups.
    pub groups: usize,
    /// Their members.
    pub members: u64,
    /// Their total lag (partitions with a committed offset).
    pub lag: u64,
    /// Each group's name, members and lag.
    pub group_lag: Vec<(String, u32, u64)>,
    /// Committed offsets, summed over every group's partitions: what a consume rate is sampled
    /// from. `None` when the groups could not be read in full.
    pub committed: Option<u64>,
    /// Registered plugins.
    pub plugins: usize,
    /// Pipelines.
    pub pipelines: usize,
    /// Of which failed.
    pub pipelines_failed: usize,
    /// Their total lag.
    pub pipeline_lag: u64,
    /// One line per thing that needs attention.
    pub problems: Vec<String>,
}

impl Admin {
    /// Every section of [`StatusReport`]; a section that cannot be read becomes a problem
    /// line, the others still show. Fails only if the broker's health cannot be read.
    pub async fn status(&self) -> Result<StatusReport> {
        let mut s = StatusReport::default();
        let health = self.health("").await?;
        s.health = health.to_string();
        if health != Health::Serving {
            s.problems.push(format!("the broker reports {health}"));
        }
        let sections = [
            ("the cluster", self.status_cluster(&mut s).await),
            ("the topics", self.status_topics(&mut s).await),
            ("the groups", self.status_groups(&mut s).await),
            (
                "plugins and pipelines",
                self.status_extensions(&mut s).await,
            ),
        ];
        for (what, result) in sections {
            if let Err(e) = result {
                s.problems.push(format!("cannot read {what}: {e}"));
            }
        }
        Ok(s)
    }

    async fn status_cluster(&self, s: &mut StatusReport) -> Result<()> {
        let nodes = self.cluster_status().await?;
        s.version = versions(&nodes);
        if nodes.iter().all(|n| n.role == "standalone") {
            s.cluster = "standalone".to_string();
            s.nodes = nodes;
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
        s.nodes = nodes;
        Ok(())
    }

    async fn status_topics(&self, s: &mut StatusReport) -> Result<()> {
        let mut topics = self.list_topics().await?;
        topics.retain(|t| t.view_of.is_none());
        s.topics = topics.len();
        let mut produced = 0;
        for t in &topics {
            let d = match self.describe_topic(&t.name).await {
                Ok(d) => d,
                // Deleted since the list: it is gone, not a problem.
                Err(Error::TopicNotFound(_)) => {
                    s.topics -= 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            s.partitions += u64::from(t.partitions);
            for p in &d.partitions {
                s.records += p.latest_offset.saturating_sub(p.earliest_offset);
                s.bytes += p.size_bytes;
                produced += p.latest_offset;
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
        s.produced = Some(produced);
        Ok(())
    }

    async fn status_groups(&self, s: &mut StatusReport) -> Result<()> {
        let groups = self.list_groups().await?;
        s.groups = groups.len();
        let mut committed = 0;
        for g in &groups {
            let d = match self.describe_group(&g.name).await {
                Ok(d) => d,
                // Deleted since the list.
                Err(Error::GroupNotFound(_)) => {
                    s.groups -= 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            s.members += u64::from(g.members);
            let lag = d.partitions.iter().filter_map(|p| p.lag).sum::<u64>();
            committed += d
                .partitions
                .iter()
                .filter_map(|p| p.committed_offset)
                .sum::<u64>();
            s.lag += lag;
            s.group_lag.push((g.name.clone(), g.members, lag));
        }
        s.committed = Some(committed);
        Ok(())
    }

    async fn status_extensions(&self, s: &mut StatusReport) -> Result<()> {
        s.plugins = self.list_plugins().await?.len();
        let pipelines = self.list_pipelines().await?;
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
}

/// One version, or each member's (a rolling upgrade half done): `0.1.0 (abc)` or
/// `node 1 0.1.0 (abc), node 2 0.2.0 (def)`. Members that did not answer are left out.
fn versions(nodes: &[NodeStatus]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_version_or_each_members() {
        let node = |id, role: &str, v: Option<&str>| NodeStatus {
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
