//! `weir view create|list|describe|delete`: read-only topics through a WASM chain.

use std::io::Write;

use clap::Subcommand;
use weir::{Client, PluginUse};

use crate::pipeline::chain;

#[derive(Subcommand)]
pub enum ViewCommand {
    /// Create a view: TOPIC's records through a chain of filter/map plugins, read by any
    /// consumer (Weir's or Kafka's) as a read-only topic at TOPIC's offsets.
    Create {
        name: String,
        /// The topic it reads.
        #[arg(long)]
        from: String,
        /// A registered plugin, with optional JSON params after `=`; repeat to chain them.
        #[arg(long = "plugin", value_name = "NAME[=JSON]", required = true,
              value_parser = crate::plugin_use)]
        plugins: Vec<PluginUse>,
    },
    /// One line per view: NAME<TAB>SOURCE<TAB>PLUGINS.
    List,
    /// The view's definition (name, from, plugins), then per partition of its source:
    /// PARTITION<TAB>EARLIEST<TAB>LATEST.
    Describe { name: String },
    /// Delete a view (its source keeps every record).
    Delete { name: String },
}

pub async fn run(client: &Client, cmd: ViewCommand) -> anyhow::Result<()> {
    let admin = client.admin();
    let mut out = std::io::stdout().lock();
    match cmd {
        ViewCommand::Create {
            name,
            from,
            plugins,
        } => {
            let v = admin.create_view(&name, &from, &plugins).await?;
            writeln!(
                out,
                "created view {} of {}: {}",
                v.name,
                v.source,
                chain(&v.plugins)
            )?;
        }
        ViewCommand::List => {
            for v in admin.list_views().await? {
                writeln!(out, "{}\t{}\t{}", v.name, v.source, chain(&v.plugins))?;
            }
        }
        ViewCommand::Describe { name } => {
            let d = admin.describe_view(&name).await?;
            writeln!(out, "name\t{}", d.view.name)?;
            writeln!(out, "from\t{}", d.view.source)?;
            writeln!(out, "plugins\t{}", chain(&d.view.plugins))?;
            writeln!(out, "partition\tearliest\tlatest")?;
            for p in &d.partitions {
                writeln!(
                    out,
                    "{}\t{}\t{}",
                    p.partition, p.earliest_offset, p.latest_offset
                )?;
            }
        }
        ViewCommand::Delete { name } => {
            admin.delete_view(&name).await?;
            writeln!(out, "deleted view {name}")?;
        }
    }
    Ok(())
}
