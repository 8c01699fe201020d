//! `weir bench produce|consume|e2e|pipeline|backlog`: throughput and latency against a live
//! broker, on fresh topics that are deleted afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use futures::{FutureExt, StreamExt};
use hdrhistogram::Histogram;
use weir::{
    Acks, Client, Compression, ConsumerConfig, NewPipeline, NewTopic, PluginUse, Producer,
    ProducerConfig, ProducerRecord, StartFrom,
};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time producing records (send → acknowledged).
    Produce(BenchArgs),
    /// Write records (untimed), then time reading them back.
    Consume(BenchArgs),
    /// Produce at --rate records/s while consuming; latency is produce → consume.
    E2e(BenchArgs),
    /// Write records (untimed), then time a pipeline (the --plugin chain, at least one)
    /// processing them into a second topic.
    Pipeline(BenchArgs),
    /// Write a backlog (untimed), then time producing alone and while a consumer reads the
    /// backlog from the start: what a catching-up reader costs producers.
    Backlog(BenchArgs),
}

#[derive(Args, Clone)]
pub struct BenchArgs {
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Target records/s for e2e.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Compress each batch: none, lz4 or zstd.
    #[arg(long, default_value_t = Compression::None)]
    compression: Compression,
    /// Size retention of the bench topic (per partition; default: keep everything), e.g. to
    /// watch disk use stay bounded during a long e2e run.
    #[arg(long)]
    retention_bytes: Option<i64>,
    /// Segment size of the bench topic (default: the broker's).
    #[arg(long)]
    segment_bytes: Option<u64>,
    /// Replicas of each partition of the bench topic (cluster; default: the broker's, 1).
    #[arg(long)]
    replication_factor: Option<u32>,
    /// When the producer's records count as written: `all` in-sync replicas, or `1`.
    #[arg(long, default_value = "all", value_parser = crate::produce::parse_acks)]
    acks: Acks,
    /// One JSON object instead of a sentence.
    #[arg(long)]
    json: bool,
    /// Consume through this registered plugin (consume, e2e) or run it as the pipeline
    /// (pipeline); repeat to chain. Values are a digit (the record's index mod 10) then `x`s,
    /// so `filter-contains={"substring":"x"}` scans every record and keeps it, and
    /// `filter-contains={"substring":"7"}` keeps one in ten. Throughput counts the records
    /// read, however many the plugins pass on.
    #[arg(long = "plugin", value_name = "NAME[=JSON]", value_parser = crate::plugin_use)]
    plugins: Vec<PluginUse>,
    /// Records of old data the reader of `bench backlog` has to read (default: 3 × --records,
    /// so it is still reading when the producer is done).
    #[arg(long)]
    backlog: Option<u64>,
}

impl BenchArgs {
    fn consumer_config(&self) -> ConsumerConfig {
        let mut c = ConsumerConfig::default().start(StartFrom::Earliest);
        c.plugins = self.plugins.clone();
        c
    }
}

struct Report {
    name: &'static str,
    records: u64,
    bytes: u64,
    elapsed: Duration,
    /// Latencies in microseconds.
    latency: Histogram<u64>,
    /// e2e: send → acknowledged of one record per millisecond tick, in microseconds (what
    /// the producer hears back, next to when the consumer sees it).
    acked: Option<Histogram<u64>>,
    /// Records the consumer received (consume: what the plugins passed on; e2e: all).
    delivered: Option<u64>,
    /// Records in the bench topic at the end, as the broker counts them (its end offsets):
    /// what was really written, checked before the topic is deleted.
    stored: u64,
}

impl Report {
    fn print(&self, json: bool) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let rps = self.records as f64 / secs;
        let mbps = self.bytes as f64 / secs / 1e6;
        let p50 = self.latency.value_at_quantile(0.50) as f64 / 1000.0;
        let p99 = self.latency.value_at_quantile(0.99) as f64 / 1000.0;
        if json {
            let mut v = serde_json::json!({
                "records": self.records, "seconds": secs, "records_per_sec": rps,
                "mb_per_sec": mbps, "p50_ms": p50, "p99_ms": p99, "stored": self.stored,
            });
            if let Some(d) = self.delivered {
                v["delivered"] = d.into();
            }
            if let Some(a) = &self.acked {
                v["ack_p50_ms"] = (a.value_at_quantile(0.50) as f64 / 1000.0).into();
                v["ack_p99_ms"] = (a.value_at_quantile(0.99) as f64 / 1000.0).into();
            }
            println!("{v}");
        } else {
            // A pipeline bench has no latencies to report.
            let latency = if self.latency.is_empty() {
                String::new()
            } else {
                format!(", p50 {p50:.2} ms, p99 {p99:.2} ms")
            };
            let acked = match &self.acked {
                Some(a) => format!(
                    " (acknowledged: p50 {:.2} ms, p99 {:.2} ms)",
                    a.value_at_quantile(0.50) as f64 / 1000.0,
                    a.value_at_quantile(0.99) as f64 / 1000.0
                ),
                None => String::new(),
            };
            println!(
                "{}: {} records in {secs:.3} s: {rps:.0} rec/s, {mbps:.1} MB/s{latency}{acked}",
                self.name, self.records
            );
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

fn producer_for(client: &Client, a: &BenchArgs) -> Producer {
    let per_record = a.record_size + 8;
    client.producer(ProducerConfig {
        batch_bytes: (a.batch.max(1) as usize * per_record).max(1024),
        compression: a.compression,
        acks: a.acks,
        ..ProducerConfig::default()
    })
}

fn topic_config(name: &str, a: &BenchArgs) -> NewTopic {
    let mut t = NewTopic::new(name, a.partitions).retention_ms(-1);
    if let Some(b) = a.retention_bytes {
        t = t.retention_bytes(b);
    }
    if let Some(b) = a.segment_bytes {
        t = t.segment_bytes(b);
    }
    if let Some(n) = a.replication_factor {
        t = t.replication_factor(n);
    }
    t
}

async fn fresh_topic(client: &Client, a: &BenchArgs) -> anyhow::Result<String> {
    let name = format!("bench-{}-{}", std::process::id(), weir::now_ms());
    client
        .admin()
        .create_topic(topic_config(&name, a))
        .await
        .context("creating the bench topic")?;
    Ok(name)
}

/// Sends `records` values, sampling one latency per batch. Returns the elapsed time.
async fn produce_all(
    producer: &Producer,
    topic: &str,
    a: &BenchArgs,
    latency: Option<Arc<Mutex<Histogram<u64>>>>,
) -> anyhow::Result<Duration> {
    let values: Vec<Bytes> = (0..10u8)
        .map(|d| {
            let mut v = vec![b'x'; a.record_size];
            if let Some(first) = v.first_mut() {
                *first = b'0' + d;
            }
            Bytes::from(v)
        })
        .collect();
    let start = Instant::now();
    for i in 0..a.records {
        // Read the clock only for the sampled records: per record it was 7% of the client.
        let sample = latency
            .as_ref()
            .filter(|_| i.is_multiple_of(a.batch.max(1)))
            .map(|h| (Arc::clone(h), Instant::now()));
        let value = values[(i % 10) as usize].clone();
        let ack = producer.enqueue(ProducerRecord::new(topic, value)).await?;
        if let Some((h, sent)) = sample {
            tokio::spawn(async move {
                if ack.await.is_ok() {
                    let us = sent.elapsed().as_micros() as u64;
                    let _ = h.lock().map(|mut h| h.saturating_record(us));
                }
            });
        }
    }
    producer.flush().await?;
    Ok(start.elapsed())
}

async fn bench_produce(client: &Client, a: &BenchArgs, topic: &str) -> anyhow::Result<Report> {
    let producer = producer_for(client, a);
    let h = Arc::new(Mutex::new(histogram()));
    let elapsed = produce_all(&producer, topic, a, Some(Arc::clone(&h))).await?;
    // Let the sampling tasks of the last batches record.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let latency = h.lock().map(|h| h.clone()).unwrap_or_else(|_| histogram());
    Ok(Report {
        name: "produce",
        records: a.records,
        bytes: a.records * a.record_size as u64,
        elapsed,
        latency,
        acked: None,
        delivered: None,
        stored: 0,
    })
}

async fn bench_consume(client: &Client, a: &BenchArgs, topic: &str) -> anyhow::Result<Report> {
    produce_all(&producer_for(client, a), topic, a, None).await?;
    let mut latency = histogram();
    let start = Instant::now();
    let mut consumer = client.consumer(topic, a.consumer_config()).await?;
    // Done when every record was read (the topic is fresh: offsets start at 0), whether the
    // plugins passed it on or not.
    let partitions = a.partitions;
    let read_all = |c: &weir::Consumer| {
        (0..partitions)
            .map(|p| c.position(p).unwrap_or(0))
            .sum::<u64>()
            >= a.records
    };
    let mut group_start = Instant::now();
    let mut delivered = 0u64;
    let mut bytes = 0u64;
    loop {
        // A filter may drop the last records: check the positions when no record comes. (A
        // buffered record is taken without arming a timer.)
        let next = match consumer.next().now_or_never() {
            Some(r) => Ok(r),
            None => tokio::time::timeout(Duration::from_millis(2), consumer.next()).await,
        };
        match next {
            Err(_) if read_all(&consumer) => break,
            Err(_) => continue,
            Ok(None) => bail!("stream ended after {delivered} records"),
            Ok(Some(r)) => bytes += r?.value.len() as u64,
        }
        delivered += 1;
        if delivered.is_multiple_of(a.batch.max(1)) {
            latency.saturating_record(group_start.elapsed().as_micros() as u64);
            group_start = Instant::now();
            if read_all(&consumer) {
                break;
            }
        }
    }
    let elapsed = start.elapsed();
    if !a.plugins.is_empty() && !a.json {
        println!(
            "plugins passed on {delivered} of {} records ({bytes} value bytes)",
            a.records
        );
    }
    Ok(Report {
        name: "consume",
        records: a.records,
        bytes: a.records * a.record_size as u64,
        elapsed,
        latency,
        acked: None,
        delivered: Some(delivered),
        stored: 0,
    })
}

async fn bench_e2e(client: &Client, a: &BenchArgs, topic: &str) -> anyhow::Result<Report> {
    let epoch = Instant::now();
    let mut consumer = client.consumer(topic, a.consumer_config()).await?;
    let records = a.records;
    let reader = tokio::spawn(async move {
        let mut latency = histogram();
        let mut n = 0u64;
        while n < records {
            let Some(r) = consumer.next().await else {
                bail!("stream ended after {n} records")
            };
            let r = r?;
            let sent = u64::from_le_bytes(r.value[..8].try_into().context("short bench record")?);
            let now = epoch.elapsed().as_micros() as u64;
            latency.saturating_record(now.saturating_sub(sent));
            n += 1;
        }
        Ok::<_, anyhow::Error>(latency)
    });
    let producer = client.producer(ProducerConfig {
        linger: Duration::from_millis(1),
        acks: a.acks,
        ..ProducerConfig::default()
    });
    let size = a.record_size.max(8);
    let per_tick = (a.rate / 1000).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let acked = Arc::new(std::sync::Mutex::new(histogram()));
    let mut sampled = Vec::new();
    let mut sent = 0u64;
    while sent < records {
        tick.tick().await;
        for i in 0..per_tick.min(records - sent) {
            let mut v = vec![0u8; size];
            let at = epoch.elapsed().as_micros() as u64;
            v[..8].copy_from_slice(&at.to_le_bytes());
            let ack = producer.enqueue(ProducerRecord::new(topic, v)).await?;
            // The first record of each tick: when its producer hears back.
            if i == 0 {
                let h = Arc::clone(&acked);
                sampled.push(tokio::spawn(async move {
                    if ack.await.is_ok() {
                        let us = (epoch.elapsed().as_micros() as u64).saturating_sub(at);
                        let _ = h.lock().map(|mut h| h.saturating_record(us));
                    }
                }));
            }
            sent += 1;
        }
    }
    producer.flush().await?;
    let latency = reader.await??;
    for s in sampled {
        s.await?;
    }
    let acked = acked.lock().map(|h| h.clone()).ok();
    Ok(Report {
        name: "e2e",
        records,
        bytes: records * size as u64,
        elapsed: start.elapsed(),
        latency,
        acked,
        delivered: Some(records),
        stored: 0,
    })
}

/// How often the pipeline bench polls the pipeline's progress.
const PIPELINE_POLL: Duration = Duration::from_millis(5);

async fn bench_pipeline(client: &Client, a: &BenchArgs, topic: &str) -> anyhow::Result<Report> {
    if a.plugins.is_empty() {
        bail!("bench pipeline needs at least one --plugin");
    }
    produce_all(&producer_for(client, a), topic, a, None).await?;
    let admin = client.admin();
    let out = format!("{topic}-out");
    // Configured as the source (in a cluster: as many replicas).
    admin
        .create_topic(topic_config(&out, a))
        .await
        .context("creating the bench output topic")?;
    let mut new = NewPipeline::new(&out, topic, &out);
    new.plugins = a.plugins.clone();
    let start = Instant::now();
    let result = async {
        admin.create_pipeline(new).await?;
        loop {
            let p = admin.describe_pipeline(&out).await?;
            if let Some(e) = p.error {
                bail!("the pipeline failed: {e}");
            }
            if p.records_in >= a.records {
                return Ok(start.elapsed());
            }
            tokio::time::sleep(PIPELINE_POLL).await;
        }
    }
    .await;
    let _ = admin.delete_pipeline(&out).await;
    let _ = admin.delete_topic(&out).await;
    let elapsed = result?;
    Ok(Report {
        name: "pipeline",
        records: a.records,
        bytes: a.records * a.record_size as u64,
        elapsed,
        // A throughput measure: no per-record latency.
        latency: histogram(),
        acked: None,
        delivered: None,
        stored: 0,
    })
}

/// What the backlog reader did while the producer ran.
struct ReaderRun {
    records: u64,
    elapsed: Duration,
}

/// Reads `topic` from the start until `stop` is set or `records` were read, on its own thread
/// and connection at the lowest CPU priority: on a machine shared with the broker it then
/// stands for a consumer on another machine and what is measured is the broker's share of
/// the cost. Says on `started` when the first record arrived.
fn spawn_reader(
    broker: crate::Target,
    topic: String,
    records: u64,
    stop: Arc<AtomicBool>,
    started: tokio::sync::oneshot::Sender<()>,
) -> std::io::Result<std::thread::JoinHandle<anyhow::Result<ReaderRun>>> {
    std::thread::Builder::new()
        .name("backlog-reader".into())
        .spawn(move || {
            lower_thread_priority();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let client = broker.connect().await?;
                let config = ConsumerConfig::default().start(StartFrom::Earliest);
                let mut consumer = client.consumer(&topic, config).await?;
                let mut started = Some(started);
                let start = Instant::now();
                let mut n = 0u64;
                while n < records && !stop.load(Ordering::Relaxed) {
                    match tokio::time::timeout(Duration::from_millis(100), consumer.next()).await {
                        Err(_) => continue,
                        Ok(None) => bail!("the backlog stream ended after {n} records"),
                        Ok(Some(r)) => {
                            r?;
                        }
                    }
                    n += 1;
                    if let Some(tx) = started.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(ReaderRun {
                    records: n,
                    elapsed: start.elapsed(),
                })
            })
        })
}

/// Puts the calling thread in Linux's `SCHED_IDLE` class: it runs only on CPU time nothing else
/// wants (weaker than nice 19, which still takes a share from busy threads).
fn lower_thread_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is the calling
    // thread. Failure only leaves the policy as it was.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        tracing::warn!(
            "cannot lower the backlog reader's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

async fn bench_backlog(
    client: &Client,
    broker: &crate::Target,
    a: &BenchArgs,
    topic: &str,
) -> anyhow::Result<()> {
    let backlog = a.backlog.unwrap_or(a.records.saturating_mul(3)).max(1);
    let old = format!("{topic}-backlog");
    client
        .admin()
        .create_topic(topic_config(&old, a))
        .await
        .context("creating the backlog topic")?;
    let result = async {
        let fill = BenchArgs {
            records: backlog,
            ..a.clone()
        };
        produce_all(&producer_for(client, a), &old, &fill, None).await?;
        let alone = bench_produce(client, a, topic).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let reader = spawn_reader(
            broker.clone(),
            old.clone(),
            backlog,
            Arc::clone(&stop),
            started_tx,
        )
        .context("starting the backlog reader")?;
        // The reader's failure shows when it is joined.
        let _ = started.await;
        let with_reader = bench_produce(client, a, topic).await;
        stop.store(true, Ordering::Relaxed);
        let read = tokio::task::spawn_blocking(move || reader.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the backlog reader panicked"))??;
        Ok::<_, anyhow::Error>((alone, with_reader?, read))
    }
    .await;
    let _ = client.admin().delete_topic(&old).await;
    let (alone, with_reader, read) = result?;
    let rate = |r: &Report| r.records as f64 / r.elapsed.as_secs_f64().max(1e-9);
    let (alone_rps, with_rps) = (rate(&alone), rate(&with_reader));
    let slowdown = 1.0 - with_rps / alone_rps;
    let read_rps = read.records as f64 / read.elapsed.as_secs_f64().max(1e-9);
    if a.json {
        let v = serde_json::json!({
            "records": a.records, "backlog": backlog,
            "alone_records_per_sec": alone_rps, "with_reader_records_per_sec": with_rps,
            "slowdown": slowdown, "reader_records": read.records,
            "reader_records_per_sec": read_rps,
        });
        println!("{v}");
    } else {
        println!(
            "backlog: produce {} records alone {alone_rps:.0} rec/s, while a reader catches up \
             {with_rps:.0} rec/s ({:+.1}%); the reader read {} of {backlog} records at {read_rps:.0} rec/s",
            a.records,
            -slowdown * 100.0,
            read.records,
        );
    }
    Ok(())
}

pub async fn run(client: &Client, broker: &crate::Target, cmd: BenchCommand) -> anyhow::Result<()> {
    let a = match &cmd {
        BenchCommand::Produce(a)
        | BenchCommand::Consume(a)
        | BenchCommand::E2e(a)
        | BenchCommand::Pipeline(a)
        | BenchCommand::Backlog(a) => a.clone(),
    };
    if a.records == 0 {
        bail!("--records must be positive");
    }
    let topic = fresh_topic(client, &a).await?;
    let result = match cmd {
        BenchCommand::Produce(_) => bench_produce(client, &a, &topic).await.map(Some),
        BenchCommand::Consume(_) => bench_consume(client, &a, &topic).await.map(Some),
        BenchCommand::E2e(_) => bench_e2e(client, &a, &topic).await.map(Some),
        BenchCommand::Pipeline(_) => bench_pipeline(client, &a, &topic).await.map(Some),
        BenchCommand::Backlog(_) => bench_backlog(client, broker, &a, &topic)
            .await
            .map(|()| None),
    };
    // What was really written, read before the topic goes (backlog reports its own way).
    let stored = match &result {
        Ok(Some(_)) => Some(
            client
                .admin()
                .describe_topic(&topic)
                .await
                .map(|d| d.partitions.iter().map(|p| p.latest_offset).sum::<u64>()),
        ),
        _ => None,
    };
    let _ = client.admin().delete_topic(&topic).await;
    if let (Some(mut report), Some(stored)) = (result?, stored) {
        report.stored = stored.context("reading the bench topic's end offsets")?;
        report.print(a.json);
    }
    Ok(())
}
