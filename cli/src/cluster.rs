//! `weir cluster status`.

use std::io::Write;

use clap::Subcommand;
use weir::Client;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// One line per member: NODE<TAB>ADDRESS<TAB>ROLE<TAB>CONTROLLER<TAB>APPLIED, ROLE being
    /// controller, follower, candidate, learner, standalone or unreachable (exit code 1 if a
    /// member is unreachable or no controller is known).
    Status,
}

pub async fn run(client: &Client, cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status => {
            let nodes = client.admin().cluster_status().await?;
            let mut out = std::io::stdout().lock();
            for n in &nodes {
                let controller = n.controller.map_or("-".to_string(), |c| c.to_string());
                writeln!(
                    out,
                    "{}\t{}\t{}\t{controller}\t{}",
                    n.node_id, n.addr, n.role, n.applied_index
                )?;
            }
            out.flush()?;
            let standalone = nodes.iter().all(|n| n.role == "standalone");
            if let Some(n) = nodes.iter().find(|n| n.role == "unreachable") {
                anyhow::bail!("node {} ({}) is unreachable", n.node_id, n.addr);
            }
            if !standalone && !nodes.iter().any(|n| n.role == "controller") {
                anyhow::bail!("the cluster has no controller right now");
            }
            Ok(())
        }
    }
}
