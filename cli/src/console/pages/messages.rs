//! The message browser (a page of records from chosen partitions and a start, filtered in
//! the broker by a plugin chain), the live tail (server-sent events) and the produce form.
//!
//! Filtering runs where the records are: the browser's filter is the consume-time plugin
//! chain, so a million records scanned in the broker send only the matches here. A
//! substring filter uses the built-in plugin [`CONTAINS_PLUGIN`] (the `filter-contains`
//! example, embedded in this binary), registered on first use.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures::{Stream, StreamExt};
use maud::{Markup, html};
use serde::Deserialize;
use tokio::time::Instant;
use weir::{
    Client, ConsumerConfig, ConsumerRecord, OffsetSpec, PluginUse, ProducerConfig, ProducerRecord,
    StartFrom, TopicDescription,
};

use super::super::layout::{PageError, shell};
use super::super::render::{Shown, detect, utc};
use super::super::session::Ctx;
use super::{notice, seg};

/// The built-in substring filter's registered name.
pub const CONTAINS_PLUGIN: &str = "console.contains";
/// Its module: `plugins/examples/filter-contains` built to wasm (`scripts/build-plugins`).
const CONTAINS_WASM: &[u8] = include_bytes!("../../../assets/filter_contains.wasm");
/// Records on one page unless asked otherwise, and at most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// Longest a page waits for records (a filter scanning a long log stops here; the next
/// page goes on from where it stopped).
const SCAN_TIME: Duration = Duration::from_secs(3);
/// How often a page being read looks whether every partition reached its end.
const POSITION_CHECK: Duration = Duration::from_millis(20);
/// A live tail stops after this many records or this long (reopen it to go on).
pub const TAIL_MAX_RECORDS: usize = 500;
pub const TAIL_MAX_TIME: Duration = Duration::from_secs(300);

#[derive(Deserialize, Default, Clone)]
pub struct BrowseQuery {
    #[serde(default)]
    partition: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    offset: String,
    #[serde(default)]
    time: String,
    #[serde(default)]
    limit: String,
    #[serde(default)]
    plugin: String,
    #[serde(default)]
    params: String,
    #[serde(default)]
    contains: String,
    /// `P:OFFSET,...`: where the next page starts.
    #[serde(default)]
    pos: String,
    done: Option<String>,
}

impl BrowseQuery {
    fn partitions(&self, d: &TopicDescription) -> Result<Vec<u32>, PageError> {
        let all: Vec<u32> = d.partitions.iter().map(|p| p.partition).collect();
        match self.partition.trim() {
            "" | "all" => Ok(all),
            p => {
                let p: u32 = p.parse().map_err(|_| {
                    PageError::BadRequest(format!("partition {p:?} is not a number"))
                })?;
                if all.contains(&p) {
                    Ok(vec![p])
                } else {
                    Err(PageError::BadRequest(format!(
                        "topic {:?} has no partition {p} (it has {})",
                        d.topic.name,
                        all.len()
                    )))
                }
            }
        }
    }

    fn limit(&self) -> Result<usize, PageError> {
        match self.limit.trim() {
            "" => Ok(DEFAULT_PAGE),
            n => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| PageError::BadRequest(format!("records per page: 1 to {MAX_PAGE}"))),
        }
    }

    /// The consume-time chain: the chosen plugin, then the substring filter.
    fn filters(&self) -> Result<Vec<PluginUse>, PageError> {
        let mut chain = Vec::new();
        let name = self.plugin.trim();
        if !name.is_empty() {
            let params = self.params.trim();
            if !params.is_empty() {
                serde_json::from_str::<serde_json::Value>(params).map_err(|e| {
                    PageError::BadRequest(format!("the plugin's params are not JSON: {e}"))
                })?;
            }
            chain.push(PluginUse {
                name: name.to_string(),
                params: (!params.is_empty()).then(|| params.to_string()),
            });
        }
        if !self.contains.is_empty() {
            chain.push(PluginUse {
                name: CONTAINS_PLUGIN.to_string(),
                params: Some(serde_json::json!({ "substring": self.contains }).to_string()),
            });
        }
        Ok(chain)
    }

    /// The query string of the next page.
    fn next(&self, positions: &BTreeMap<u32, u64>) -> String {
        let pos = positions
            .iter()
            .map(|(p, o)| format!("{p}:{o}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut q = vec![
            ("partition", self.partition.as_str()),
            ("limit", self.limit.as_str()),
            ("plugin", self.plugin.as_str()),
            ("params", self.params.as_str()),
            ("contains", self.contains.as_str()),
        ];
        q.retain(|(_, v)| !v.is_empty());
        q.push(("pos", &pos));
        encode_query(&q)
    }
}

fn encode_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Registers the built-in substring filter if it is not yet (a no-op after the first time).
async fn ensure_contains(ctx: &Ctx, client: &Client) -> Result<(), PageError> {
    let admin = client.admin();
    if admin
        .list_plugins()
        .await?
        .iter()
        .any(|p| p.name == CONTAINS_PLUGIN)
    {
        return Ok(());
    }
    if !ctx.may("admin", "plugin", CONTAINS_PLUGIN) {
        return Err(PageError::Forbidden(format!(
            "the substring filter runs the built-in plugin {CONTAINS_PLUGIN:?}, which is not \
             registered yet; a user who may register plugins registers it by filtering once"
        )));
    }
    match admin.register_plugin(CONTAINS_PLUGIN, CONTAINS_WASM).await {
        Ok(_) | Err(weir::Error::PluginExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Where each partition's page starts.
async fn starts(
    client: &Client,
    q: &BrowseQuery,
    d: &TopicDescription,
    partitions: &[u32],
    limit: usize,
) -> Result<BTreeMap<u32, u64>, PageError> {
    let info = |p: u32| d.partitions.iter().find(|i| i.partition == p);
    let clamp = |p: u32, o: u64| {
        info(p).map_or(o, |i| {
            o.clamp(i.earliest_offset, i.latest_offset.max(i.earliest_offset))
        })
    };
    if !q.pos.trim().is_empty() {
        let mut out = BTreeMap::new();
        for part in q.pos.split(',') {
            let parsed = part.split_once(':').and_then(|(p, o)| {
                Some((p.trim().parse::<u32>().ok()?, o.trim().parse::<u64>().ok()?))
            });
            match parsed {
                Some((p, o)) if partitions.contains(&p) => {
                    out.insert(p, clamp(p, o));
                }
                _ => return Err(PageError::BadRequest(format!("bad position {part:?}"))),
            }
        }
        return Ok(out);
    }
    let mut out = BTreeMap::new();
    match q.from.as_str() {
        "" | "earliest" => {
            for &p in partitions {
                out.insert(p, info(p).map_or(0, |i| i.earliest_offset));
            }
        }
        "latest" => {
            // The newest `limit` records, shared among the partitions.
            let share = limit.div_ceil(partitions.len().max(1)) as u64;
            for &p in partitions {
                let o = info(p).map_or(0, |i| i.latest_offset.saturating_sub(share));
                out.insert(p, clamp(p, o));
            }
        }
        "offset" => {
            let o: u64 = q.offset.trim().parse().map_err(|_| {
                PageError::BadRequest(format!("offset {:?} is not a number", q.offset))
            })?;
            for &p in partitions {
                out.insert(p, clamp(p, o));
            }
        }
        "time" => {
            let ms = super::super::render::parse_time(&q.time).ok_or_else(|| {
                PageError::BadRequest(format!(
                    "time {:?}: give YYYY-MM-DDTHH:MM (UTC) or unix ms",
                    q.time
                ))
            })?;
            let specs: Vec<(u32, OffsetSpec)> = partitions
                .iter()
                .map(|&p| (p, OffsetSpec::Timestamp(ms)))
                .collect();
            let found = client.admin().list_offsets(&d.topic.name, &specs).await?;
            for (p, o) in found {
                out.insert(p, o);
            }
        }
        other => {
            return Err(PageError::BadRequest(format!(
                "start {other:?}: earliest, latest, offset or time"
            )));
        }
    }
    Ok(out)
}

/// One page of records: up to `limit`, from `starts`, until each partition reaches the end
/// it had when the page was asked for, or [`SCAN_TIME`] passes.
struct PageOfRecords {
    records: Vec<ConsumerRecord>,
    next: BTreeMap<u32, u64>,
    at_end: bool,
    stopped_scanning: bool,
}

async fn read_page(
    client: &Client,
    d: &TopicDescription,
    starts: &BTreeMap<u32, u64>,
    chain: Vec<PluginUse>,
    limit: usize,
) -> Result<PageOfRecords, PageError> {
    let ends: BTreeMap<u32, u64> = d
        .partitions
        .iter()
        .filter(|p| starts.contains_key(&p.partition))
        .map(|p| (p.partition, p.latest_offset))
        .collect();
    let at_end = |c: &weir::Consumer| {
        ends.iter()
            .all(|(&p, &end)| c.position(p).is_none_or(|pos| pos >= end))
    };
    let mut config = ConsumerConfig::default()
        .partitions(starts.keys().copied().collect())
        .start(StartFrom::Earliest);
    config.plugins = chain;
    let mut consumer = client.consumer(&d.topic.name, config).await?;
    for (&p, &o) in starts {
        consumer.seek(p, o)?;
    }
    let mut records = Vec::new();
    let deadline = Instant::now() + SCAN_TIME;
    let mut stopped_scanning = false;
    // A filter that drops records moves the consumer's position without yielding anything:
    // wait in short steps and look at the positions between them.
    while records.len() < limit && !at_end(&consumer) {
        match tokio::time::timeout(POSITION_CHECK, consumer.next()).await {
            Err(_) if Instant::now() >= deadline => {
                stopped_scanning = true;
                break;
            }
            Err(_) => {}
            Ok(None) => break,
            Ok(Some(r)) => records.push(r?),
        }
    }
    let next = starts
        .keys()
        .map(|&p| (p, consumer.position(p).unwrap_or(0)))
        .collect();
    let at_end = at_end(&consumer);
    drop(consumer);
    records.sort_by_key(|r| (r.timestamp, r.partition, r.offset));
    Ok(PageOfRecords {
        records,
        next,
        at_end,
        stopped_scanning,
    })
}

/// The first `n` records of `topic` (from the earliest of every partition, by time).
pub async fn first_records(
    client: &Client,
    topic: &str,
    n: usize,
) -> Result<Vec<ConsumerRecord>, PageError> {
    let d = client.admin().describe_topic(topic).await?;
    let starts = d
        .partitions
        .iter()
        .map(|p| (p.partition, p.earliest_offset))
        .collect();
    let mut got = read_page(client, &d, &starts, Vec::new(), n).await?;
    got.records.truncate(n);
    Ok(got.records)
}

fn shown(kind_class: &str, s: &Shown) -> Markup {
    html! { pre class=(format!("{kind_class} {}", s.kind())) { (s.text()) } }
}

/// One record as a table row (also what the live tail sends).
pub fn row(r: &ConsumerRecord) -> Markup {
    html! {
        tr.record data-partition=(r.partition) data-offset=(r.offset) {
            td.num { (r.partition) }
            td.num { (r.offset) }
            td.time { (utc(r.timestamp)) }
            td { @match &r.key { Some(k) => (shown("key", &detect(k))), None => span.muted { "null" } } }
            td {
                @for h in &r.headers {
                    div.header { code { (h.key) } " " (shown("hval", &detect(&h.value))) }
                }
            }
            td { (shown("value", &detect(&r.value))) }
        }
    }
}

fn records_table(records: &[ConsumerRecord]) -> Markup {
    html! {
        table.records #records {
            thead { tr { th.num { "partition" } th.num { "offset" } th { "timestamp (UTC)" } th { "key" } th { "headers" } th { "value" } } }
            tbody #records-body { @for r in records { (row(r)) } }
        }
    }
}

fn filter_form(name: &str, q: &BrowseQuery, d: &TopicDescription, plugins: &[String]) -> Markup {
    let sel = |v: &str| (q.from == v || (q.from.is_empty() && v == "earliest")).then_some("");
    html! {
        form.grid #browse-form method="get" action=(format!("/topics/{}/messages", seg(name))) {
            label { "Partition"
                select #partition name="partition" {
                    option value="all" { "all" }
                    @for p in &d.partitions {
                        option value=(p.partition) selected[q.partition == p.partition.to_string()] { (p.partition) }
                    }
                }
            }
            label { "Start"
                select #from name="from" {
                    option value="earliest" selected=[sel("earliest")] { "earliest" }
                    option value="latest" selected=[sel("latest")] { "newest" }
                    option value="offset" selected=[sel("offset")] { "offset" }
                    option value="time" selected=[sel("time")] { "time" }
                }
            }
            label { "Offset" input #offset type="number" name="offset" min="0" value=(q.offset); }
            label { "Time (UTC)" input #time type="datetime-local" name="time" step="1" value=(q.time); }
            label { "Records" input #limit type="number" name="limit" min="1" max=(MAX_PAGE) placeholder=(DEFAULT_PAGE) value=(q.limit); }
            label { "Value contains" input #contains type="text" name="contains" value=(q.contains) placeholder="substring, filtered in the broker"; }
            label { "Plugin filter"
                select #plugin name="plugin" {
                    option value="" { "none" }
                    @for p in plugins {
                        option value=(p) selected[&q.plugin == p] { (p) }
                    }
                }
            }
            label { "Plugin params (JSON)" input #params type="text" name="params" value=(q.params) placeholder="{}"; }
            button #browse-submit type="submit" { "Show" }
        }
    }
}

pub async fn browse(
    ctx: Ctx,
    Path(name): Path<String>,
    Query(q): Query<BrowseQuery>,
) -> Result<Markup, PageError> {
    let client = ctx.client()?;
    let admin = client.admin();
    let d = admin.describe_topic(&name).await?;
    let plugins: Vec<String> = match admin.list_plugins().await {
        Ok(list) => list
            .into_iter()
            .map(|p| p.name)
            .filter(|n| n != CONTAINS_PLUGIN)
            .collect(),
        Err(_) => Vec::new(),
    };
    let partitions = q.partitions(&d)?;
    let limit = q.limit()?;
    let chain = q.filters()?;
    if !q.contains.is_empty() {
        ensure_contains(&ctx, client).await?;
    }
    let starts = starts(client, &q, &d, &partitions, limit).await?;
    let got = read_page(client, &d, &starts, chain, limit).await?;
    let tail_query = encode_query(&[
        ("partition", q.partition.as_str()),
        ("plugin", q.plugin.as_str()),
        ("params", q.params.as_str()),
        ("contains", q.contains.as_str()),
    ]);
    let body = html! {
        h1 { "Messages in " a href=(format!("/topics/{}", seg(&name))) { code { (name) } } }
        (notice(q.done.as_deref()))
        (filter_form(&name, &q, &d, &plugins))
        p.summary #summary {
            (got.records.len()) " record" @if got.records.len() != 1 { "s" }
            @if got.at_end { " · end of the topic reached" }
            @if got.stopped_scanning { " · the scan stopped after " (SCAN_TIME.as_secs()) " s; the next page goes on from there" }
        }
        p.actions {
            @if !got.at_end {
                a.button #next-page href=(format!("/topics/{}/messages?{}", seg(&name), q.next(&got.next))) { "Next page →" }
            }
            " "
            button #tail-start type="button" data-url=(format!("/topics/{}/tail?{tail_query}", seg(&name))) { "Live tail" }
            " "
            button #tail-stop type="button" hidden { "Stop tail" }
            span #tail-status.muted {}
        }
        (records_table(&got.records))
    };
    Ok(shell(&ctx, "/topics", &format!("Messages in {name}"), body))
}

/// Server-sent events: each record as a rendered table row (`record`), then `end` with the
/// reason it stopped, or `failed` with the broker's error.
pub async fn tail(
    ctx: Ctx,
    Path(name): Path<String>,
    Query(q): Query<BrowseQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    let client = ctx.client()?.clone();
    let d = client.admin().describe_topic(&name).await?;
    let partitions = q.partitions(&d)?;
    let chain = q.filters()?;
    if !q.contains.is_empty() {
        ensure_contains(&ctx, &client).await?;
    }
    let mut config = ConsumerConfig::default()
        .partitions(partitions)
        .start(StartFrom::Latest);
    config.plugins = chain;
    let consumer = client.consumer(&name, config).await?;
    let deadline = Instant::now() + TAIL_MAX_TIME;
    let state = Some((consumer, 0usize));
    let stream = futures::stream::unfold(state, move |state| async move {
        let (mut consumer, sent) = state?;
        if sent >= TAIL_MAX_RECORDS {
            let e = Event::default()
                .event("end")
                .data(format!("stopped after {TAIL_MAX_RECORDS} records"));
            return Some((Ok(e), None));
        }
        match tokio::time::timeout_at(deadline, consumer.next()).await {
            Err(_) => {
                let e = Event::default().event("end").data(format!(
                    "stopped after {} minutes",
                    TAIL_MAX_TIME.as_secs() / 60
                ));
                Some((Ok(e), None))
            }
            Ok(None) => Some((
                Ok(Event::default().event("end").data("the stream ended")),
                None,
            )),
            Ok(Some(Err(err))) => Some((
                Ok(Event::default().event("failed").data(err.to_string())),
                None,
            )),
            Ok(Some(Ok(r))) => {
                let e = Event::default().event("record").data(row(&r).into_string());
                Some((Ok(e), Some((consumer, sent + 1))))
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

pub async fn produce_form(ctx: Ctx, Path(name): Path<String>) -> Result<Markup, PageError> {
    let d = ctx.client()?.admin().describe_topic(&name).await?;
    let body = html! {
        h1 { "Produce to " a href=(format!("/topics/{}", seg(&name))) { code { (name) } } }
        @if !ctx.may("write", "topic", &name) {
            p.muted { "You may not write to this topic." }
        } @else {
            form.stack #produce-form method="post" action=(format!("/topics/{}/produce", seg(&name))) {
                input type="hidden" name="csrf" value=(ctx.csrf);
                label { "Key (optional; records with the same key go to the same partition)" input #key type="text" name="key"; }
                label { "Value" textarea #value name="value" rows="6" {} }
                label { "Headers (one NAME=VALUE per line)" textarea #headers name="headers" rows="3" {} }
                label { "Partition"
                    select #produce-partition name="partition" {
                        option value="" { "by key (or spread)" }
                        @for p in &d.partitions { option value=(p.partition) { (p.partition) } }
                    }
                }
                button #produce-submit type="submit" { "Produce" }
            }
        }
    };
    Ok(shell(&ctx, "/topics", &format!("Produce to {name}"), body))
}

#[derive(Deserialize)]
pub struct ProduceForm {
    csrf: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    headers: String,
    #[serde(default)]
    partition: String,
}

pub async fn produce(
    ctx: Ctx,
    Path(name): Path<String>,
    Form(f): Form<ProduceForm>,
) -> Result<Response, PageError> {
    let client = ctx.check_post(&f.csrf)?;
    // Browsers send text areas with CRLF line ends.
    let value = f.value.replace("\r\n", "\n");
    let mut record = ProducerRecord::new(name.as_str(), value.into_bytes());
    if !f.key.is_empty() {
        record = record.key(f.key.into_bytes());
    }
    for line in f.headers.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once('=').ok_or_else(|| {
            PageError::BadRequest(format!("header {line:?}: write it as NAME=VALUE"))
        })?;
        record = record.header(k.trim(), v.as_bytes().to_vec());
    }
    if !f.partition.trim().is_empty() {
        let p = f.partition.trim().parse::<u32>().map_err(|_| {
            PageError::BadRequest(format!("partition {:?} is not a number", f.partition))
        })?;
        record = record.partition(p);
    }
    let producer = client.producer(ProducerConfig::default());
    let sent = producer.send(record).await;
    let closed = producer.close().await;
    let (partition, offset) = sent?;
    closed?;
    let done = format!("produced to partition {partition} at offset {offset}");
    let query = encode_query(&[
        ("partition", &partition.to_string()),
        ("from", "offset"),
        ("offset", &offset.to_string()),
        ("done", &done),
    ]);
    Ok(Redirect::to(&format!("/topics/{}/messages?{query}", seg(&name))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_escape_every_untrusted_part() {
        let r = ConsumerRecord {
            topic: "t".into(),
            partition: 1,
            offset: 7,
            timestamp: 0,
            key: Some(bytes::Bytes::from_static(b"<b>k</b>")),
            value: bytes::Bytes::from_static(b"<script>alert(1)</script>"),
            headers: vec![weir::Header {
                key: "<i>h".into(),
                value: bytes::Bytes::from_static(b"<img src=x onerror=alert(1)>"),
            }],
        };
        let html = row(&r).into_string();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(!html.contains("<i>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
    }

    #[test]
    fn next_page_query_keeps_the_filters() {
        let q = BrowseQuery {
            partition: "all".into(),
            contains: "a b&c".into(),
            ..Default::default()
        };
        let next = q.next(&BTreeMap::from([(0, 5), (1, 9)]));
        assert_eq!(next, "partition=all&contains=a%20b%26c&pos=0%3A5%2C1%3A9");
        assert_eq!(q.filters().unwrap()[0].name, CONTAINS_PLUGIN);
    }
}
