//! Consumer groups: the list with lag, a group's members, assignment and per-partition
//! committed/end/lag, and resetting its offsets (only while it has no members, with a
//! confirmation).

use std::collections::BTreeSet;

use axum::Form;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use weir::StartFrom;

use super::super::layout::{PageError, shell};
use super::super::render::parse_time;
use super::super::session::Ctx;
use super::topics::Done;
use super::{confirm_form_fields, confirmed, notice, seg};

pub async fn list(ctx: Ctx) -> Result<Markup, PageError> {
    let admin = ctx.client()?.admin();
    let groups = admin.list_groups().await?;
    let mut lags = Vec::with_capacity(groups.len());
    for g in &groups {
        lags.push(match admin.describe_group(&g.name).await {
            Ok(d) => Some(d.partitions.iter().filter_map(|p| p.lag).sum::<u64>()),
            Err(_) => None,
        });
    }
    let body = html! {
        h1 { "Consumer groups" }
        table #groups {
            thead { tr { th { "group" } th { "state" } th.num { "members" } th.num { "lag" } } }
            tbody {
                @for (g, lag) in groups.iter().zip(&lags) {
                    tr {
                        td { a href=(format!("/groups/{}", seg(&g.name))) { (g.name) } }
                        td { (g.state) } td.num { (g.members) }
                        td.num.lag { @if let Some(l) = lag { (l) } }
                    }
                }
            }
        }
        @if groups.is_empty() { p.muted { "No consumer groups yet." } }
    };
    Ok(shell(&ctx, "/groups", "Groups", body))
}

pub async fn page(
    ctx: Ctx,
    Path(name): Path<String>,
    Query(q): Query<Done>,
) -> Result<Markup, PageError> {
    let d = ctx.client()?.admin().describe_group(&name).await?;
    let total: u64 = d.partitions.iter().filter_map(|p| p.lag).sum();
    let topics: BTreeSet<&str> = d.partitions.iter().map(|p| p.topic.as_str()).collect();
    let body = html! {
        h1 { "Group " code { (name) } }
        (notice(q.done.as_deref()))
        section.cards {
            div.card { h3 { "State" } p.big #group-state { (d.group.state) } }
            div.card { h3 { "Members" } p.big #group-members { (d.group.members) } }
            div.card { h3 { "Lag" } p.big #group-lag { (total) } }
        }
        h2 { "Members" }
        @if d.members.is_empty() { p.muted { "No live members." } } @else {
            table #members {
                thead { tr { th { "member" } th { "client" } th { "assignment" } th { "last heartbeat" } } }
                tbody { @for m in &d.members { tr {
                    td { code { (m.member_id) } } td { (m.client_id) }
                    td { (m.assignment.iter().map(|(t, p)| format!("{t}/{p}")).collect::<Vec<_>>().join(", ")) }
                    td { (format!("{:.1} s ago", m.since_heartbeat.as_secs_f64())) }
                } } }
            }
        }
        h2 { "Offsets" }
        table #offsets {
            thead { tr { th { "topic" } th.num { "partition" } th.num { "committed" } th.num { "end" } th.num { "lag" } th { "member" } } }
            tbody { @for p in &d.partitions { tr {
                td { a href=(format!("/topics/{}", seg(&p.topic))) { (p.topic) } }
                td.num { (p.partition) }
                td.num { @match p.committed_offset { Some(o) => (o), None => span.muted { "none" } } }
                td.num { (p.end_offset) }
                td.num.lag { @if let Some(l) = p.lag { (l) } }
                td { @if let Some(m) = &p.member_id { code { (m) } } }
            } } }
        }
        @if ctx.may("admin", "group", &name) && !topics.is_empty() {
            h2 { "Reset offsets" }
            @if d.group.members > 0 {
                p.muted #reset-unavailable { "Offsets can be reset only while the group has no members: stop its consumers first." }
            } @else {
                (confirm_form_fields(&ctx, &format!("/groups/{}/reset", seg(&name)), "group", &name, "Reset offsets", html! {
                    label { "Topic" select #reset-topic name="topic" { @for t in &topics { option value=(t) { (t) } } } }
                    label { "To" select #reset-to name="to" {
                        option value="earliest" { "earliest" } option value="latest" { "latest" }
                        option value="offset" { "offset" } option value="time" { "time" }
                    } }
                    label { "Offset or time (UTC)" input #reset-value type="text" name="value" placeholder="for offset / time"; }
                }))
            }
        }
    };
    Ok(shell(&ctx, "/groups", &format!("Group {name}"), body))
}

#[derive(Deserialize)]
pub struct ResetForm {
    csrf: String,
    confirm: String,
    topic: String,
    to: String,
    #[serde(default)]
    value: String,
}

pub async fn reset(
    ctx: Ctx,
    Path(name): Path<String>,
    Form(f): Form<ResetForm>,
) -> Result<Response, PageError> {
    let client = ctx.check_post(&f.csrf)?;
    confirmed(&f.confirm, &name)?;
    let to =
        match f.to.as_str() {
            "earliest" => StartFrom::Earliest,
            "latest" => StartFrom::Latest,
            "offset" => StartFrom::Offset(f.value.trim().parse().map_err(|_| {
                PageError::BadRequest(format!("offset {:?} is not a number", f.value))
            })?),
            "time" => StartFrom::Timestamp(parse_time(&f.value).ok_or_else(|| {
                PageError::BadRequest(format!(
                    "time {:?}: give YYYY-MM-DDTHH:MM (UTC) or unix ms",
                    f.value
                ))
            })?),
            other => return Err(PageError::BadRequest(format!("reset to {other:?}?"))),
        };
    let moved = client.admin().reset_group(&name, &f.topic, to).await?;
    let done = format!(
        "reset {} partition(s) of {} to {}",
        moved.len(),
        f.topic,
        moved
            .iter()
            .map(|(p, o)| format!("{p}:{o}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Redirect::to(&format!(
        "/groups/{}?done={}",
        seg(&name),
        super::messages::percent(&done)
    ))
    .into_response())
}
