//! The workloads of a run, recording a history: idempotent `acks=all` producers sending
//! unique values to every partition, a consumer reading every partition (assigned), and
//! group members reading and committing. After the faults, a final read of every partition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weir::{
    Acks, Client, Consumer, ConsumerConfig, OffsetSpec, ProducerConfig, ProducerRecord, StartFrom,
};

use crate::history::Event;

/// The topic every run writes.
pub const TOPIC: &str = "chaos";
/// Its partitions.
pub const PARTITIONS: u32 = 3;
/// The consumer group of the committing members.
pub const GROUP: &str = "chaos-group";
/// Producers, and how often each sends one record.
const PRODUCERS: u64 = 3;
const SEND_EVERY: Duration = Duration::from_millis(10);
/// Members of the group.
const MEMBERS: usize = 2;
/// A member commits after this many records, or this long.
const COMMIT_EVERY_RECORDS: u64 = 50;
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// A client's pause before trying again after an error.
const RETRY: Duration = Duration::from_millis(500);

/// Where events go: one writer, so the history's order is the order events arrived in.
#[derive(Clone)]
pub struct Sink(mpsc::UnboundedSender<Event>);

impl Sink {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    pub fn record(&self, e: Event) {
        // The writer outlives the workloads; a send to a closed writer means it is over.
        let _ = self.0.send(e);
    }
}

/// Connects, retrying while the cluster is unreachable (a fault may be on).
async fn connect(bootstrap: &str, stop: &AtomicBool) -> Option<Client> {
    while !stop.load(Ordering::Relaxed) {
        match Client::connect(bootstrap).await {
            Ok(c) => return Some(c),
            Err(_) => tokio::time::sleep(RETRY).await,
        }
    }
    None
}

/// Creates the topic (replication factor 3, 2 in sync for `acks=all`: the setting that
/// promises no acknowledged loss with one broker lost), retrying until the cluster can.
pub async fn create_topic(bootstrap: &str, deadline: Duration) -> anyhow::Result<()> {
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        let r = async {
            let c = Client::connect(bootstrap).await?;
            c.admin()
                .create_topic(
                    weir::NewTopic::new(TOPIC, PARTITIONS)
                        .replication_factor(3)
                        .min_insync_replicas(2),
                )
                .await
        }
        .await;
        match r {
            Ok(_) => return Ok(()),
            Err(weir::Error::TopicExists(_)) => return Ok(()),
            Err(e) if tokio::time::Instant::now() > give_up => {
                anyhow::bail!("cannot create the topic: {e}")
            }
            Err(_) => tokio::time::sleep(RETRY).await,
        }
    }
}

/// Starts the producers; they send until `stop`, then wait for what they sent.
pub fn producers(bootstrap: &str, sink: &Sink, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    (0..PRODUCERS)
        .map(|i| {
            let (bootstrap, sink, stop) = (bootstrap.to_string(), sink.clone(), Arc::clone(stop));
            tokio::spawn(async move { produce(i, &bootstrap, &sink, &stop).await })
        })
        .collect()
}

async fn produce(index: u64, bootstrap: &str, sink: &Sink, stop: &AtomicBool) {
    let process = format!("producer-{index}");
    let Some(client) = connect(bootstrap, stop).await else {
        return;
    };
    let producer = client.producer(ProducerConfig {
        acks: Acks::All,
        idempotent: true,
        linger: Duration::from_millis(5),
        request_timeout: Duration::from_secs(5),
        delivery_timeout: Duration::from_secs(30),
        ..ProducerConfig::default()
    });
    let mut waiting = Vec::new();
    let mut n = 0u64;
    let mut tick = tokio::time::interval(SEND_EVERY);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        // Unique across the run: the producer in the top bits.
        let value = ((index + 1) << 40) | n;
        let partition = (n % u64::from(PARTITIONS)) as u32;
        n += 1;
        sink.record(Event::Invoke {
            process: process.clone(),
            partition,
            value,
        });
        let record = ProducerRecord::new(TOPIC, value.to_string()).partition(partition);
        match producer.enqueue(record).await {
            Ok(delivery) => {
                let (sink, process) = (sink.clone(), process.clone());
                waiting.push(tokio::spawn(async move {
                    let e = match delivery.await {
                        Ok((partition, offset)) => Event::Ok {
                            process,
                            partition,
                            value,
                            offset,
                        },
                        // The batch may or may not have been written.
                        Err(e) => Event::Info {
                            process,
                            partition,
                            value,
                            error: e.to_string(),
                        },
                    };
                    sink.record(e);
                }));
            }
            // Refused before anything was sent.
            Err(e) => sink.record(Event::Fail {
                process: process.clone(),
                partition,
                value,
                error: e.to_string(),
            }),
        }
        waiting.retain(|h| !h.is_finished());
    }
    for h in waiting {
        let _ = h.await;
    }
}

/// Reads every partition from the start, recording each record, until `stop`.
pub fn reader(bootstrap: &str, sink: &Sink, stop: &Arc<AtomicBool>) -> JoinHandle<()> {
    let (bootstrap, sink, stop) = (bootstrap.to_string(), sink.clone(), Arc::clone(stop));
    tokio::spawn(async move {
        let process = "reader".to_string();
        let mut next: BTreeMap<u32, u64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
        while !stop.load(Ordering::Relaxed) {
            let Some(client) = connect(&bootstrap, &stop).await else {
                return;
            };
            let config = ConsumerConfig::default()
                .partitions((0..PARTITIONS).collect())
                .start(StartFrom::Earliest);
            let mut consumer = match client.consumer(TOPIC, config).await {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            for (p, o) in &next {
                let _ = consumer.seek(*p, *o);
            }
            while !stop.load(Ordering::Relaxed) {
                let item = tokio::time::timeout(RETRY, consumer.next()).await;
                match item {
                    Err(_) => continue,
                    Ok(Some(Ok(r))) => {
                        next.insert(r.partition, r.offset + 1);
                        sink.record(read_event(&process, &r));
                    }
                    Ok(Some(Err(_))) | Ok(None) => break,
                }
            }
        }
    })
}

fn read_event(process: &str, r: &weir::ConsumerRecord) -> Event {
    let value = std::str::from_utf8(&r.value)
        .ok()
        .and_then(|s| s.parse().ok())
        // Not a value any producer sent: the checker reports it.
        .unwrap_or(u64::MAX);
    Event::Read {
        process: process.to_string(),
        partition: r.partition,
        offset: r.offset,
        value,
    }
}

/// Group members reading and committing what they read, until `stop`.
pub fn members(bootstrap: &str, sink: &Sink, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    (0..MEMBERS)
        .map(|i| {
            let (bootstrap, sink, stop) = (bootstrap.to_string(), sink.clone(), Arc::clone(stop));
            tokio::spawn(async move { member(i, &bootstrap, &sink, &stop).await })
        })
        .collect()
}

async fn member(index: usize, bootstrap: &str, sink: &Sink, stop: &AtomicBool) {
    // A new process name per membership: a rejoined member is a new member.
    let mut life = 0;
    while !stop.load(Ordering::Relaxed) {
        let process = format!("member-{index}.{life}");
        life += 1;
        let Some(client) = connect(bootstrap, stop).await else {
            return;
        };
        let config = ConsumerConfig::default()
            .group(GROUP)
            .auto_commit(false)
            .session_timeout(Duration::from_secs(6));
        let mut consumer = match client.consumer(TOPIC, config).await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        // The assignment last recorded, with its membership (member id, epoch); sampled after
        // every poll. The checker decides ownership by the membership of each commit, which
        // is exact; these records make its evidence readable.
        let mut assigned = (Vec::new(), None);
        let mut since_commit = 0u64;
        let mut last_commit = tokio::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let polled = tokio::time::timeout(RETRY, consumer.next()).await;
            record_assignment(sink, &process, &consumer, &mut assigned);
            match polled {
                Err(_) => {}
                Ok(Some(Ok(r))) => {
                    since_commit += 1;
                    sink.record(read_event(&process, &r));
                }
                Ok(Some(Err(_))) | Ok(None) => break,
            }
            if since_commit >= COMMIT_EVERY_RECORDS || last_commit.elapsed() >= COMMIT_EVERY {
                let offsets: BTreeMap<u32, u64> = consumer
                    .assignment()
                    .into_iter()
                    .filter_map(|p| consumer.position(p).map(|o| (p, o)))
                    .collect();
                let accepted = consumer.commit_offsets(offsets.clone()).await.is_ok();
                // The membership the commit was accepted under (nothing ran in between).
                let membership = accepted.then(|| membership(&consumer)).flatten();
                for (partition, offset) in offsets {
                    sink.record(Event::Commit {
                        process: process.clone(),
                        group: GROUP.to_string(),
                        partition,
                        offset,
                        membership: membership.clone(),
                        uncertain: !accepted,
                    });
                }
                since_commit = 0;
                last_commit = tokio::time::Instant::now();
            }
        }
        let _ = consumer.close().await;
    }
}

fn membership(consumer: &Consumer) -> Option<(String, i64)> {
    consumer
        .group_metadata()
        .map(|g| (g.member_id, g.member_epoch))
}

/// Records the consumer's assignment if it (or its membership) changed since `last`.
fn record_assignment(
    sink: &Sink,
    process: &str,
    consumer: &Consumer,
    last: &mut (Vec<u32>, Option<(String, i64)>),
) {
    let now = (consumer.assignment(), membership(consumer));
    if now != *last {
        *last = now.clone();
        sink.record(Event::Assigned {
            process: process.to_string(),
            group: GROUP.to_string(),
            partitions: now.0,
            membership: now.1,
        });
    }
}

/// Reads every partition from its first offset to its high watermark, with a fresh client,
/// retrying until `deadline`.
pub async fn final_read(bootstrap: &str, sink: &Sink, deadline: Duration) -> anyhow::Result<()> {
    let give_up = tokio::time::Instant::now() + deadline;
    for partition in 0..PARTITIONS {
        loop {
            match read_partition(bootstrap, partition).await {
                Ok(records) => {
                    sink.record(Event::Final { partition, records });
                    break;
                }
                Err(e) if tokio::time::Instant::now() > give_up => {
                    anyhow::bail!("final read of partition {partition}: {e}")
                }
                Err(_) => tokio::time::sleep(RETRY).await,
            }
        }
    }
    Ok(())
}

async fn read_partition(bootstrap: &str, partition: u32) -> anyhow::Result<Vec<(u64, u64)>> {
    let client = Client::connect(bootstrap).await?;
    let admin = client.admin();
    let first = admin
        .list_offset(TOPIC, partition, OffsetSpec::Earliest)
        .await?;
    let end = admin
        .list_offset(TOPIC, partition, OffsetSpec::Latest)
        .await?;
    let mut out = Vec::new();
    if end <= first {
        return Ok(out);
    }
    let config = ConsumerConfig::default()
        .partitions(vec![partition])
        .start(StartFrom::Offset(first));
    let mut consumer = client.consumer(TOPIC, config).await?;
    while out.last().is_none_or(|(o, _): &(u64, u64)| o + 1 < end) {
        let r = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .map_err(|_| anyhow::anyhow!("no record for 10 s"))?
            .ok_or_else(|| anyhow::anyhow!("the stream ended"))??;
        let value = std::str::from_utf8(&r.value)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX);
        out.push((r.offset, value));
    }
    Ok(out)
}
