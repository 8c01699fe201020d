//! `weir-benchkit`: the pieces of `scripts/bench-peers` no packaged tool provides.
//!
//! - `nats-js`: publishes to a NATS JetStream stream the way `weir bench produce` produces
//!   (same record count and size, acknowledged publishes kept in flight), and prints the same
//!   JSON object. Debian ships `nats-server` but not the `nats` CLI with its `bench`.
//! - `plot`: draws a throughput chart (PNG) from a JSON description, for docs/benchmarks.md.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use plotters::prelude::*;
use serde_json::Value;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish --records messages to a fresh file-backed JetStream stream.
    NatsJs {
        /// nats-server address (host:port).
        #[arg(long)]
        server: String,
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        #[arg(long, default_value_t = 100)]
        record_size: usize,
        /// Publishes awaiting their acknowledgement at once.
        #[arg(long, default_value_t = 1000)]
        window: usize,
    },
    /// Draw a chart. The input JSON: {"title", "x_label", "y_label", "log_x": bool,
    /// "series": [{"name", "points": [[x, y], ...]}]}.
    Plot {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// A TrueType font for the labels.
        #[arg(
            long,
            default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
        )]
        font: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::NatsJs {
            server,
            records,
            record_size,
            window,
        } => nats_js(&server, records, record_size, window.max(1)).await,
        Command::Plot {
            input,
            output,
            font,
        } => plot(&input, &output, &font),
    }
}

async fn nats_js(
    server: &str,
    records: u64,
    record_size: usize,
    window: usize,
) -> anyhow::Result<()> {
    use async_nats::jetstream::{self, stream};
    let client = async_nats::connect(server)
        .await
        .with_context(|| format!("connecting to nats-server at {server}"))?;
    let js = jetstream::new(client);
    let name = format!("weirbench{}", std::process::id());
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![name.clone()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .context("creating the stream")?;
    let payload = Bytes::from(vec![b'x'; record_size]);
    let mut acks = VecDeque::with_capacity(window);
    let start = Instant::now();
    for _ in 0..records {
        if acks.len() == window {
            let ack: jetstream::context::PublishAckFuture =
                acks.pop_front().expect("the window is full");
            ack.await.context("publish not acknowledged")?;
        }
        acks.push_back(
            js.publish(name.clone(), payload.clone())
                .await
                .context("publishing")?,
        );
    }
    for ack in acks {
        ack.await.context("publish not acknowledged")?;
    }
    let secs = start.elapsed().as_secs_f64();
    js.delete_stream(&name)
        .await
        .context("deleting the stream")?;
    let rps = records as f64 / secs;
    let report = serde_json::json!({
        "records": records, "seconds": secs, "records_per_sec": rps,
        "mb_per_sec": rps * record_size as f64 / 1e6,
    });
    println!("{report}");
    Ok(())
}

struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

fn series_of(v: &Value) -> anyhow::Result<Vec<Series>> {
    let Some(list) = v["series"].as_array() else {
        bail!("\"series\" must be a list");
    };
    list.iter()
        .map(|s| {
            let points = s["points"]
                .as_array()
                .context("\"points\" must be a list")?
                .iter()
                .map(|p| match (p[0].as_f64(), p[1].as_f64()) {
                    (Some(x), Some(y)) => Ok((x, y)),
                    _ => bail!("a point is [x, y]: {p}"),
                })
                .collect::<anyhow::Result<_>>()?;
            Ok(Series {
                name: s["name"].as_str().unwrap_or_default().to_string(),
                points,
            })
        })
        .collect()
}

fn plot(input: &PathBuf, output: &PathBuf, font: &PathBuf) -> anyhow::Result<()> {
    let font_bytes = std::fs::read(font).with_context(|| format!("reading {}", font.display()))?;
    // plotters keeps registered fonts for the life of the process.
    let font_bytes: &'static [u8] = Box::leak(font_bytes.into_boxed_slice());
    if plotters::style::register_font("sans-serif", FontStyle::Normal, font_bytes).is_err() {
        bail!("{} is not a usable TrueType font", font.display());
    }
    let spec: Value = serde_json::from_slice(
        &std::fs::read(input).with_context(|| format!("reading {}", input.display()))?,
    )
    .with_context(|| format!("parsing {}", input.display()))?;
    let series = series_of(&spec)?;
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (x_min, x_max) = all().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let y_max = all().fold(0f64, |m, p| m.max(p.1)) * 1.15;
    if series.is_empty() || x_min > x_max {
        bail!("nothing to plot");
    }
    let text = |k: &str| spec[k].as_str().unwrap_or_default().to_string();
    let root = BitMapBackend::new(output, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    let chart = builder
        .caption(text("title"), ("sans-serif", 24))
        .margin(24)
        .x_label_area_size(48)
        .y_label_area_size(72);
    let colours = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(text("x_label"))
                .y_desc(text("y_label"))
                .label_style(("sans-serif", 14))
                .x_label_formatter(&|x| format!("{x:.0}"))
                .draw()?;
            for (i, s) in series.iter().enumerate() {
                let colour = colours[i % colours.len()];
                chart
                    .draw_series(LineSeries::new(
                        s.points.iter().copied(),
                        colour.stroke_width(2),
                    ))?
                    .label(s.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 14))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }};
    }
    if spec["log_x"].as_bool().unwrap_or(false) {
        draw!(chart.build_cartesian_2d((x_min..x_max).log_scale(), 0f64..y_max)?);
    } else {
        draw!(chart.build_cartesian_2d(x_min..x_max, 0f64..y_max)?);
    }
    root.present()
        .with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}
