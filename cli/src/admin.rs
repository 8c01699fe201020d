//! `weir admin backup` and `weir admin health`: operating a broker's host.

use std::io::Write;

use clap::Subcommand;
use weir::{Client, Health};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Ask the broker (the first --broker address) to write a consistent copy of its data dir
    /// into DIR on its own host, while it serves; `weir-broker --data-dir DIR` restores it.
    /// Prints `backup of node N written to DIR: F files, B bytes in MS ms`.
    Backup {
        /// A directory that does not exist yet: an absolute path on the broker's host.
        #[arg(long, value_name = "DIR")]
        to: String,
    },
    /// Ask the broker's gRPC health service (grpc.health.v1) whether it serves: prints
    /// SERVING and exits 0, or exits 1 (a container's or a load balancer's health check).
    Health,
}

pub async fn run(client: &Client, cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Backup { to } => {
            let b = client.admin().backup(&to).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "backup of node {} written to {}: {} files, {} bytes in {} ms",
                b.node_id,
                b.path,
                b.files,
                b.bytes,
                b.duration.as_millis()
            )?;
            out.flush()?;
            Ok(())
        }
        AdminCommand::Health => {
            let health = client.admin().health("").await?;
            if health != Health::Serving {
                anyhow::bail!("the broker reports {health}");
            }
            println!("{health}");
            Ok(())
        }
    }
}
