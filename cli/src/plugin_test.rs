//! `weir plugin test MODULE.wasm|NAME`: runs a plugin on sample records (one per input line)
//! and prints what it makes of them — Fluvio's `smdk test`. A `.wasm` file runs here, in the
//! broker's own sandbox (`weir-wasm`, default limits), with no broker; a registered NAME runs
//! at the broker through `Plugins.Transform`. Output records go to stdout; the aggregate state
//! and the time per record to stderr.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use weir_common::batch::{self, BatchBuilder, TimestampType, set_base_offset};
use weir_common::record::Record;
use weir_wasm::{PluginKind, PluginLimits, Runtime};

use crate::consume::Format;

/// Records per call at most, in bytes (about what the broker hands a plugin per batch).
const CALL_BYTES: usize = 1024 * 1024;

#[derive(Args)]
pub struct TestArgs {
    /// A .wasm file (run here, no broker needed) or a registered plugin's name (run at the
    /// broker).
    plugin: String,
    /// The plugin's params, as JSON.
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    /// Sample records, one per line [default: stdin].
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    #[arg(long, value_enum, default_value = "value")]
    format: Format,
}

impl TestArgs {
    /// A module file runs without a broker.
    pub fn is_local(&self) -> bool {
        self.plugin.ends_with(".wasm") || Path::new(&self.plugin).is_file()
    }
}

/// What a run made: outputs, the aggregate states, the time inside the plugin.
struct Ran {
    /// Each output record with its output (0: the main one; others: where a `route` plugin
    /// sent it), in offset order.
    outputs: Vec<(u8, Record)>,
    states: Vec<Bytes>,
    took: Duration,
    /// Where the time was measured.
    clock: &'static str,
}

/// The sample records: one per line, numbered from offset 0, stamped now.
fn sample(args: &TestArgs) -> anyhow::Result<Vec<Record>> {
    let sep = match args.key_separator.as_deref() {
        Some("") => bail!("--key-separator must not be empty"),
        other => other.map(str::as_bytes),
    };
    let reader: Box<dyn BufRead> = match &args.input {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut records = Vec::new();
    for (i, line) in reader.split(b'\n').enumerate() {
        let mut line = line.context("reading the sample records")?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let (key, value) = match sep {
            Some(sep) => crate::produce::split_key(&line, sep),
            None => (None, Bytes::from(line)),
        };
        records.push(Record {
            offset: i as u64,
            timestamp: now,
            key,
            value,
            headers: Vec::new(),
        });
    }
    Ok(records)
}

/// Stored-format batches of about [`CALL_BYTES`] each, offsets as the records have them.
fn batches(records: &[Record]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut rest = records;
    while let Some(first) = rest.first() {
        let mut b = BatchBuilder::with_capacity(TimestampType::CreateTime, CALL_BYTES);
        let mut n = 0;
        for r in rest {
            if n > 0 && b.len_bytes() >= CALL_BYTES {
                break;
            }
            let headers = r.headers.iter().map(|h| (h.key.as_str(), &h.value[..]));
            b.push(r.timestamp, r.key.as_deref(), &r.value, headers);
            n += 1;
        }
        let mut bytes = b.finish().to_vec();
        set_base_offset(&mut bytes, first.offset);
        out.push(Bytes::from(bytes));
        rest = &rest[n..];
    }
    out
}

/// Runs a module file here: one call per batch, as the broker calls it.
fn run_file(path: &Path, params: &[u8], records: &[Record]) -> anyhow::Result<Ran> {
    let wasm = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path
        .file_stem()
        .map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned());
    let runtime = Runtime::new()?;
    let plugin = runtime.compile(&name, &wasm, PluginLimits::default())?;
    let mut stage = plugin.stage(params)?;
    let mut outputs = Vec::new();
    let mut took = Duration::ZERO;
    for b in batches(records) {
        let start = Instant::now();
        let staged = stage.run(vec![b], 0)?;
        took += start.elapsed();
        let mut round = Vec::new();
        let all = std::iter::once((0u8, &staged.batches))
            .chain(staged.routed.iter().map(|(k, b)| (*k, b)));
        for (k, batches) in all {
            for out in batches {
                let (_, records) = batch::decode(out).context("decoding the plugin's output")?;
                round.extend(records.into_iter().map(|r| (k, r)));
            }
        }
        // Stable: records of one source offset keep their order within an output.
        round.sort_by_key(|(_, r)| r.offset);
        outputs.extend(round);
    }
    let states = match plugin.kind {
        PluginKind::Aggregate => vec![Bytes::copy_from_slice(stage.state())],
        _ => Vec::new(),
    };
    Ok(Ran {
        outputs,
        states,
        took,
        clock: "in the plugin, on this machine",
    })
}

/// Runs a registered plugin at the broker.
async fn run_registered(
    client: &weir::Client,
    name: &str,
    params: Option<String>,
    records: Vec<Record>,
) -> anyhow::Result<Ran> {
    let mut t = client
        .transformer(vec![weir::PluginUse {
            name: name.to_string(),
            params,
        }])
        .await?;
    let start = Instant::now();
    let outputs = t.apply(records).await?;
    Ok(Ran {
        outputs: outputs.into_iter().map(|r| (0, r)).collect(),
        states: t.states().to_vec(),
        took: start.elapsed(),
        clock: "at the broker, network included",
    })
}

/// Runs the test and prints it.
pub async fn run(client: Option<&weir::Client>, args: TestArgs) -> anyhow::Result<()> {
    let records = sample(&args)?;
    let n = records.len();
    let ran = match client {
        None => {
            let params = args.params.clone().unwrap_or_default();
            run_file(Path::new(&args.plugin), params.as_bytes(), &records)?
        }
        Some(c) => run_registered(c, &args.plugin, args.params.clone(), records).await?,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (k, r) in &ran.outputs {
        match args.format {
            Format::Value => {
                // A record a `route` plugin sent to another output says which.
                if *k > 0 {
                    write!(out, "[output {k}] ")?;
                }
                out.write_all(&r.value)?;
                out.write_all(b"\n")?;
            }
            Format::Json => {
                let rec = weir::ConsumerRecord {
                    topic: "test".into(),
                    partition: 0,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.clone(),
                    value: r.value.clone(),
                    headers: r.headers.clone(),
                };
                let mut json = weir_connect::json::record_json(&rec);
                if let Some(obj) = json.as_object_mut() {
                    // No topic here: just the record.
                    obj.remove("topic");
                    obj.remove("partition");
                    if *k > 0 {
                        obj.insert("output".into(), (*k).into());
                    }
                }
                serde_json::to_writer(&mut out, &json)?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush().context("writing stdout")?;
    let mut err = std::io::stderr().lock();
    for state in ran.states.iter().filter(|s| !s.is_empty()) {
        writeln!(err, "state: {}", String::from_utf8_lossy(state))?;
    }
    let per_record = match n {
        0 => Duration::ZERO,
        n => ran.took / n as u32,
    };
    let per_record = match per_record.as_nanos() {
        ns @ 0..1000 => format!("{ns} ns"),
        _ => format!("{:.2} µs", per_record.as_secs_f64() * 1e6),
    };
    writeln!(
        err,
        "{n} records in, {} out; {per_record} per record ({})",
        ran.outputs.len(),
        ran.clock
    )?;
    Ok(())
}
