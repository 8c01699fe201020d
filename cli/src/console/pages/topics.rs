//! Topics: the list (with records, size and retention), create, delete, and a topic's page
//! (per partition offsets, size, leader/replicas/ISR; its configuration).

use axum::Form;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use futures::{StreamExt, TryStreamExt};
use maud::{Markup, html};
use serde::Deserialize;
use weir::{NewTopic, TopicDescription, TopicInfo};

use super::super::layout::{PageError, shell};
use super::super::render::human_bytes;
use super::super::session::Ctx;
use super::{ConfirmForm, confirm_form, delete_confirmed, notice, plugin_use_text, seg};

/// Topics described at once for the list.
const DESCRIBE_CONCURRENCY: usize = 16;

/// `?done=...`: what the action that redirected here did.
#[derive(Deserialize, Default)]
pub struct Done {
    pub done: Option<String>,
}

fn retention(t: &TopicInfo) -> String {
    let time = match t.retention_ms {
        None | Some(-1) => "forever".to_string(),
        Some(ms) if ms % 86_400_000 == 0 => format!("{} d", ms / 86_400_000),
        Some(ms) if ms % 3_600_000 == 0 => format!("{} h", ms / 3_600_000),
        Some(ms) => format!("{ms} ms"),
    };
    match t.retention_bytes {
        Some(b) => format!("{time}, {}", human_bytes(b)),
        None => time,
    }
}

pub async fn list(ctx: Ctx, Query(q): Query<Done>) -> Result<Markup, PageError> {
    let admin = ctx.client()?.admin();
    let topics = admin.list_topics().await?;
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let described: Vec<Option<TopicDescription>> = futures::stream::iter(names)
        .map(|name| {
            let admin = admin.clone();
            async move {
                match admin.describe_topic(&name).await {
                    Ok(d) => Ok(Some(d)),
                    Err(weir::Error::TopicNotFound(_) | weir::Error::PermissionDenied(_)) => {
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
        })
        .buffered(DESCRIBE_CONCURRENCY)
        .try_collect()
        .await?;
    let may_create = ctx.may("admin", "topic", "*");
    let body = html! {
        h1 { "Topics" }
        (notice(q.done.as_deref()))
        table #topics {
            thead { tr { th { "topic" } th.num { "partitions" } th.num { "records" } th.num { "size" } th { "retention" } } }
            tbody {
                @for (t, d) in topics.iter().zip(&described) {
                    tr {
                        td {
                            a href=(format!("/topics/{}", seg(&t.name))) { (t.name) }
                            @if let Some(src) = &t.view_of { " " span.badge { "view of " (src) } }
                        }
                        td.num { (t.partitions) }
                        td.num { @if let Some(d) = d { (d.partitions.iter().map(|p| p.latest_offset - p.earliest_offset.min(p.latest_offset)).sum::<u64>()) } }
                        td.num { @if let Some(d) = d { (human_bytes(d.partitions.iter().map(|p| p.size_bytes).sum())) } }
                        td { (retention(t)) }
                    }
                }
            }
        }
        @if topics.is_empty() { p.muted { "No topics yet." } }
        @if may_create {
            h2 { "Create a topic" }
            form.grid #create-topic method="post" action="/topics" {
                input type="hidden" name="csrf" value=(ctx.csrf);
                label { "Name" input #topic-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,249}"; }
                label { "Partitions" input #topic-partitions type="number" name="partitions" value="1" min="1"; }
                label { "Retention (ms, -1 forever)" input type="number" name="retention_ms" placeholder="broker default"; }
                label { "Retention (bytes, -1 no limit)" input type="number" name="retention_bytes" placeholder="broker default"; }
                label { "Replication factor" input type="number" name="replication_factor" min="1" placeholder="1"; }
                button #create-topic-submit type="submit" { "Create topic" }
            }
        }
    };
    Ok(shell(&ctx, "/topics", "Topics", body))
}

#[derive(Deserialize)]
pub struct CreateForm {
    csrf: String,
    name: String,
    partitions: String,
    #[serde(default)]
    retention_ms: String,
    #[serde(default)]
    retention_bytes: String,
    #[serde(default)]
    replication_factor: String,
}

/// An optional number field: blank is `None`.
fn number<T: std::str::FromStr>(what: &str, s: &str) -> Result<Option<T>, PageError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| PageError::BadRequest(format!("{what}: {s:?} is not a number")))
}

pub async fn create(ctx: Ctx, Form(f): Form<CreateForm>) -> Result<Response, PageError> {
    let client = ctx.check_post(&f.csrf)?;
    let name = f.name.trim();
    let partitions = number::<u32>("partitions", &f.partitions)?.unwrap_or(1);
    let mut new = NewTopic::new(name, partitions);
    if let Some(ms) = number("retention (ms)", &f.retention_ms)? {
        new = new.retention_ms(ms);
    }
    if let Some(b) = number("retention (bytes)", &f.retention_bytes)? {
        new = new.retention_bytes(b);
    }
    if let Some(rf) = number("replication factor", &f.replication_factor)? {
        new = new.replication_factor(rf);
    }
    client.admin().create_topic(new).await?;
    Ok(Redirect::to(&format!(
        "/topics/{}?done=created+topic+{}",
        seg(name),
        seg(name)
    ))
    .into_response())
}

pub async fn page(
    ctx: Ctx,
    Path(name): Path<String>,
    Query(q): Query<Done>,
) -> Result<Markup, PageError> {
    let admin = ctx.client()?.admin();
    let d = admin.describe_topic(&name).await?;
    let view = match &d.topic.view_of {
        Some(_) => Some(admin.describe_view(&name).await?.view),
        None => None,
    };
    let t = &d.topic;
    let records: u64 = d
        .partitions
        .iter()
        .map(|p| p.latest_offset.saturating_sub(p.earliest_offset))
        .sum();
    let size: u64 = d.partitions.iter().map(|p| p.size_bytes).sum();
    let list = |ids: &[u64]| {
        ids.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let body = html! {
        h1 { "Topic " code #topic-title { (t.name) } }
        (notice(q.done.as_deref()))
        p.actions {
            a.button #browse href=(format!("/topics/{}/messages", seg(&t.name))) { "Browse messages" }
            @if view.is_none() && ctx.may("write", "topic", &t.name) {
                " " a.button #produce href=(format!("/topics/{}/produce", seg(&t.name))) { "Produce" }
            }
        }
        @if let Some(v) = &view {
            p #view-of { "A view of " a href=(format!("/topics/{}", seg(&v.source))) { (v.source) }
              " through " @for (i, u) in v.plugins.iter().enumerate() { @if i > 0 { " → " } code { (plugin_use_text(u)) } } "." }
        }
        section.cards {
            div.card { h3 { "Records" } p.big #records { (records) } }
            div.card { h3 { "Size" } p.big { (human_bytes(size)) } }
            div.card { h3 { "Partitions" } p.big { (t.partitions) } }
        }
        h2 { "Configuration" }
        table.config #config {
            tr { th { "retention" } td { (retention(t)) } }
            tr { th { "retention.ms" } td { (t.retention_ms.unwrap_or(-1)) } }
            tr { th { "retention.bytes" } td { (t.retention_bytes.map_or(-1, |b| b as i64)) } }
            tr { th { "segment.bytes" } td { (t.segment_bytes) } }
            tr { th { "segment.ms" } td { (t.segment_ms) } }
            tr { th { "min.insync.replicas" } td { (t.min_insync_replicas) } }
        }
        h2 { "Partitions" }
        table #partitions {
            thead { tr {
                th.num { "partition" } th.num { "earliest" } th.num { "latest" } th.num { "records" }
                th.num { "size" } th.num { "segments" }
                @if !d.placement.is_empty() { th { "leader" } th { "replicas" } th { "in sync" } }
            } }
            tbody {
                @for (i, p) in d.partitions.iter().enumerate() {
                    @let placement = d.placement.get(i);
                    tr class=[placement.filter(|pl| pl.leader.is_none() || pl.isr.len() < pl.replicas.len()).map(|_| "bad")] {
                        td.num { a href=(format!("/topics/{}/messages?partition={}", seg(&t.name), p.partition)) { (p.partition) } }
                        td.num { (p.earliest_offset) } td.num { (p.latest_offset) }
                        td.num { (p.latest_offset.saturating_sub(p.earliest_offset)) }
                        td.num { (human_bytes(p.size_bytes)) } td.num { (p.segments) }
                        @if let Some(pl) = placement {
                            td { (pl.leader.map_or("none".to_string(), |l| l.to_string())) }
                            td { (list(&pl.replicas)) } td { (list(&pl.isr)) }
                        }
                    }
                }
            }
        }
        @if ctx.may("admin", "topic", &t.name) {
            h2 { "Delete" }
            @if view.is_some() {
                p.muted { "Delete a view with " code { "weir view delete" } "." }
            } @else {
                p.muted { "Deletes every record of every partition. This cannot be undone." }
                (confirm_form(&ctx, &format!("/topics/{}/delete", seg(&t.name)), "topic", &t.name, "Delete topic"))
            }
        }
    };
    Ok(shell(&ctx, "/topics", &t.name, body))
}

pub async fn delete(
    ctx: Ctx,
    Path(name): Path<String>,
    Form(f): Form<ConfirmForm>,
) -> Result<Response, PageError> {
    delete_confirmed(
        &ctx,
        f,
        "topic",
        name,
        "/topics",
        |admin, name| async move { admin.delete_topic(&name).await },
    )
    .await
}
