//! `weir pipeline create|list|describe|delete|resume`.

use std::io::Write;

use clap::{Subcommand, ValueEnum};
use weir::{Client, NewPipeline, PipelineInfo, PipelineStart, PluginUse};

#[derive(Clone, Copy, ValueEnum)]
pub enum Start {
    Earliest,
    Latest,
}

#[derive(Subcommand)]
pub enum PipelineCommand {
    /// Run a chain of plugins inside the broker from one topic to another, exactly once.
    /// Output of source partition P goes to destination partition P mod its partition count.
    Create {
        name: String,
        /// Source topic.
        #[arg(long)]
        from: String,
        /// Destination topic; repeat for more outputs (output k is the k-th --to, from 0:
        /// where a `route` plugin sends records; at most 8).
        #[arg(long, required = true)]
        to: Vec<String>,
        /// A registered plugin, with optional JSON params after `=`; repeat to chain them.
        #[arg(long = "plugin", value_name = "NAME[=JSON]", required = true,
              value_parser = crate::plugin_use)]
        plugins: Vec<PluginUse>,
        /// Where to start in the source topic.
        #[arg(long, value_enum, default_value = "earliest")]
        start: Start,
    },
    /// One line per pipeline: NAME<TAB>FROM<TAB>TO<TAB>STATUS<TAB>LAG.
    List,
    /// The pipeline's settings and state as KEY<TAB>VALUE lines (status is running or
    /// failed; error says why), then a header row and one line per source partition:
    /// partition, position, end offset, lag, records in, records out.
    Describe { name: String },
    /// Stop and delete a pipeline (what it wrote stays in the destination topic).
    Delete { name: String },
    /// Restart a failed pipeline from where it stopped, once the cause is fixed.
    Resume { name: String },
}

pub fn chain(plugins: &[PluginUse]) -> String {
    let uses: Vec<String> = plugins
        .iter()
        .map(|u| match &u.params {
            Some(p) => format!("{}={p}", u.name),
            None => u.name.clone(),
        })
        .collect();
    uses.join(" | ")
}

/// The output topics, output 0 first, comma-separated.
fn outputs(p: &PipelineInfo) -> String {
    std::iter::once(&p.to_topic)
        .chain(&p.extra_to_topics)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

fn write_describe(out: &mut impl Write, p: &PipelineInfo) -> std::io::Result<()> {
    writeln!(out, "name\t{}", p.name)?;
    writeln!(out, "from\t{}", p.from_topic)?;
    writeln!(out, "to\t{}", outputs(p))?;
    writeln!(out, "plugins\t{}", chain(&p.plugins))?;
    writeln!(out, "status\t{}", p.status)?;
    writeln!(out, "error\t{}", p.error.as_deref().unwrap_or("-"))?;
    writeln!(out, "records_in\t{}", p.records_in)?;
    writeln!(out, "records_out\t{}", p.records_out)?;
    writeln!(out, "lag\t{}", p.lag)?;
    writeln!(
        out,
        "partition\tposition\tend\tlag\trecords_in\trecords_out\tworker"
    )?;
    for q in &p.partitions {
        // The node id of the cluster member whose worker runs it; "-" standalone or while
        // none does.
        let worker = q.worker.map_or_else(|| "-".to_string(), |n| n.to_string());
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{worker}",
            q.partition, q.position, q.end_offset, q.lag, q.records_in, q.records_out
        )?;
    }
    Ok(())
}

pub async fn run(client: &Client, cmd: PipelineCommand) -> anyhow::Result<()> {
    let admin = client.admin();
    let mut out = std::io::stdout().lock();
    match cmd {
        PipelineCommand::Create {
            name,
            from,
            to,
            plugins,
            start,
        } => {
            let mut to = to.into_iter();
            let first = to.next().unwrap_or_default();
            let mut new = NewPipeline::new(name, from, first).start(match start {
                Start::Earliest => PipelineStart::Earliest,
                Start::Latest => PipelineStart::Latest,
            });
            new.plugins = plugins;
            new.extra_to_topics = to.collect();
            let p = admin.create_pipeline(new).await?;
            writeln!(
                out,
                "created pipeline {} ({} -> {}: {})",
                p.name,
                p.from_topic,
                outputs(&p),
                chain(&p.plugins)
            )?;
        }
        PipelineCommand::List => {
            for p in admin.list_pipelines().await? {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}",
                    p.name,
                    p.from_topic,
                    outputs(&p),
                    p.status,
                    p.lag
                )?;
            }
        }
        PipelineCommand::Describe { name } => {
            write_describe(&mut out, &admin.describe_pipeline(&name).await?)?;
        }
        PipelineCommand::Delete { name } => admin.delete_pipeline(&name).await?,
        PipelineCommand::Resume { name } => {
            let p = admin.resume_pipeline(&name).await?;
            writeln!(out, "resumed pipeline {} ({})", p.name, p.status)?;
        }
    }
    Ok(())
}
