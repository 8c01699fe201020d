//! Pipelines: status, error, counters and lag; a pipeline's per-partition position, lag and
//! worker; create, resume and delete.

use axum::Form;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use weir::{NewPipeline, PipelineStart, PipelineStatus};

use super::super::layout::{PageError, shell};
use super::super::render::utc;
use super::super::session::Ctx;
use super::topics::Done;
use super::{
    ConfirmForm, confirm_form, delete_confirmed, notice, plugin_use_text, plugin_uses, seg,
};

pub async fn list(ctx: Ctx, Query(q): Query<Done>) -> Result<Markup, PageError> {
    let pipelines = ctx.client()?.admin().list_pipelines().await?;
    let body = html! {
        h1 { "Pipelines" }
        (notice(q.done.as_deref()))
        table #pipelines {
            thead { tr { th { "pipeline" } th { "status" } th { "from" } th { "to" } th { "chain" }
                th.num { "in" } th.num { "out" } th.num { "lag" } } }
            tbody { @for p in &pipelines { tr class=[(p.status == PipelineStatus::Failed).then_some("bad")] {
                td { a href=(format!("/pipelines/{}", seg(&p.name))) { (p.name) } }
                td { (p.status.to_string()) @if let Some(e) = &p.error { div.error { (e) } } }
                td { (p.from_topic) }
                td { (std::iter::once(&p.to_topic).chain(&p.extra_to_topics).cloned().collect::<Vec<_>>().join(", ")) }
                td { @for (i, u) in p.plugins.iter().enumerate() { @if i > 0 { " → " } code { (plugin_use_text(u)) } } }
                td.num { (p.records_in) } td.num { (p.records_out) } td.num { (p.lag) }
            } } }
        }
        @if pipelines.is_empty() { p.muted { "No pipelines." } }
        @if ctx.may("admin", "pipeline", "*") {
            h2 { "Create a pipeline" }
            form.grid #create-pipeline method="post" action="/pipelines" {
                input type="hidden" name="csrf" value=(ctx.csrf);
                label { "Name" input #pipeline-name type="text" name="name" required; }
                label { "From topic" input #pipeline-from type="text" name="from" required; }
                label { "To topic(s), comma-separated" input #pipeline-to type="text" name="to" required; }
                label { "Plugins, one NAME or NAME={json} per line" textarea #pipeline-plugins name="plugins" rows="3" required {} }
                label { "Start" select name="start" { option value="earliest" { "earliest" } option value="latest" { "latest" } } }
                button #create-pipeline-submit type="submit" { "Create pipeline" }
            }
        }
    };
    Ok(shell(&ctx, "/pipelines", "Pipelines", body))
}

#[derive(Deserialize)]
pub struct CreateForm {
    csrf: String,
    name: String,
    from: String,
    to: String,
    plugins: String,
    #[serde(default)]
    start: String,
}

pub async fn create(ctx: Ctx, Form(f): Form<CreateForm>) -> Result<Response, PageError> {
    let client = ctx.check_post(&f.csrf)?;
    let mut to = f.to.split(',').map(str::trim).filter(|t| !t.is_empty());
    let first = to
        .next()
        .ok_or_else(|| PageError::BadRequest("give a destination topic".into()))?;
    let mut new = NewPipeline::new(f.name.trim(), f.from.trim(), first);
    for t in to {
        new = new.also_to(t);
    }
    new.plugins = plugin_uses(&f.plugins)?;
    new = new.start(match f.start.as_str() {
        "latest" => PipelineStart::Latest,
        _ => PipelineStart::Earliest,
    });
    let p = client.admin().create_pipeline(new).await?;
    Ok(Redirect::to(&format!("/pipelines/{}?done=created", seg(&p.name))).into_response())
}

pub async fn page(
    ctx: Ctx,
    Path(name): Path<String>,
    Query(q): Query<Done>,
) -> Result<Markup, PageError> {
    let p = ctx.client()?.admin().describe_pipeline(&name).await?;
    let admin = ctx.may("admin", "pipeline", &name);
    let body = html! {
        h1 { "Pipeline " code { (p.name) } }
        (notice(q.done.as_deref()))
        section.cards {
            div.card { h3 { "Status" } p.big #pipeline-status { (p.status.to_string()) } }
            div.card { h3 { "In" } p.big { (p.records_in) } }
            div.card { h3 { "Out" } p.big { (p.records_out) } }
            div.card { h3 { "Lag" } p.big { (p.lag) } }
        }
        @if let Some(e) = &p.error { p.error #pipeline-error { (e) } }
        table.config {
            tr { th { "from" } td { a href=(format!("/topics/{}", seg(&p.from_topic))) { (p.from_topic) } } }
            tr { th { "to" } td { @for (i, t) in std::iter::once(&p.to_topic).chain(&p.extra_to_topics).enumerate() {
                @if i > 0 { ", " } a href=(format!("/topics/{}", seg(t))) { (t) } " (output " (i) ")" } } }
            tr { th { "chain" } td { @for (i, u) in p.plugins.iter().enumerate() { @if i > 0 { " → " } code { (plugin_use_text(u)) } } } }
            tr { th { "created (UTC)" } td { (utc(p.created_ms)) } }
        }
        h2 { "Partitions" }
        table #pipeline-partitions {
            thead { tr { th.num { "partition" } th.num { "position" } th.num { "end" } th.num { "lag" }
                th.num { "in" } th.num { "out" } th { "worker" } } }
            tbody { @for w in &p.partitions { tr {
                td.num { (w.partition) } td.num { (w.position) } td.num { (w.end_offset) } td.num { (w.lag) }
                td.num { (w.records_in) } td.num { (w.records_out) }
                td { @match w.worker { Some(n) => { "node " (n) }, None => span.muted { "this broker" } } }
            } } }
        }
        @if admin {
            @if p.status == PipelineStatus::Failed {
                form method="post" action=(format!("/pipelines/{}/resume", seg(&p.name))) {
                    input type="hidden" name="csrf" value=(ctx.csrf);
                    button #resume type="submit" { "Resume" }
                }
            }
            h2 { "Delete" }
            (confirm_form(&ctx, &format!("/pipelines/{}/delete", seg(&p.name)), "pipeline", &p.name, "Delete pipeline"))
        }
    };
    Ok(shell(&ctx, "/pipelines", &format!("Pipeline {name}"), body))
}

#[derive(Deserialize)]
pub struct ResumeForm {
    csrf: String,
}

pub async fn resume(
    ctx: Ctx,
    Path(name): Path<String>,
    Form(f): Form<ResumeForm>,
) -> Result<Response, PageError> {
    let client = ctx.check_post(&f.csrf)?;
    client.admin().resume_pipeline(&name).await?;
    Ok(Redirect::to(&format!("/pipelines/{}?done=resumed", seg(&name))).into_response())
}

pub async fn delete(
    ctx: Ctx,
    Path(name): Path<String>,
    Form(f): Form<ConfirmForm>,
) -> Result<Response, PageError> {
    delete_confirmed(
        &ctx,
        f,
        "pipeline",
        name,
        "/pipelines",
        |admin, name| async move { admin.delete_pipeline(&name).await },
    )
    .await
}
