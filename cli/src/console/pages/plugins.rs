//! Plugins: the list (kind, size, limits), upload a `.wasm` under a name, delete, and try a
//! plugin on the first records of a topic, input and output side by side (the chain runs
//! at the broker, in the plugin's sandbox, exactly as at consume time).

use axum::Form;
use axum::extract::{Multipart, Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use weir::{PluginLimits, PluginUse, Record};

use super::super::layout::{PageError, shell};
use super::super::render::{detect, human_bytes, utc};
use super::super::session::Ctx;
use super::messages::{CONTAINS_PLUGIN, first_records};
use super::topics::Done;
use super::{ConfirmForm, confirm_form, delete_confirmed, notice, seg};

/// Records a try reads at most.
const MAX_TRY_RECORDS: usize = 100;

pub async fn list(ctx: Ctx, Query(q): Query<Done>) -> Result<Markup, PageError> {
    let plugins = ctx.client()?.admin().list_plugins().await?;
    let body = html! {
        h1 { "Plugins" }
        (notice(q.done.as_deref()))
        table #plugins {
            thead { tr {
                th { "plugin" } th { "kind" } th.num { "size" } th.num { "version" }
                th.num { "memory" } th.num { "CPU / batch" } th.num { "output / call" }
                th { "sha-256" } th { "registered (UTC)" } th {}
            } }
            tbody { @for p in &plugins { tr {
                td { code { (p.name) } @if p.name == CONTAINS_PLUGIN { " " span.badge { "built-in" } } }
                td { (p.kind) } td.num { (human_bytes(p.size_bytes)) } td.num { (p.version) }
                td.num { (human_bytes(p.memory_limit_bytes)) } td.num { (p.call_timeout_ms) " ms" }
                td.num { (human_bytes(p.max_output_bytes)) }
                td { code title=(p.sha256) { (p.sha256.get(..12).unwrap_or(&p.sha256)) } }
                td.time { (utc(p.created_ms)) }
                td { a.button href=(format!("/plugins/{}/try", seg(&p.name))) { "Try" } }
            } } }
        }
        @if plugins.is_empty() { p.muted { "No plugins registered." } }
        @if ctx.may("admin", "plugin", "*") {
            h2 { "Upload a plugin" }
            form.grid #upload-plugin method="post" action="/plugins" enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(ctx.csrf);
                label { "Name" input #plugin-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,249}"; }
                label { "Module (.wasm)" input #plugin-file type="file" name="file" accept=".wasm" required; }
                label.check { input type="checkbox" name="replace" value="1"; " replace a plugin of that name" }
                button #upload-submit type="submit" { "Upload" }
            }
            @for p in &plugins {
                @if ctx.may("admin", "plugin", &p.name) {
                    details.delete { summary { "Delete " code { (p.name) } }
                        (confirm_form(&ctx, &format!("/plugins/{}/delete", seg(&p.name)), "plugin", &p.name, "Delete plugin")) }
                }
            }
        }
    };
    Ok(shell(&ctx, "/plugins", "Plugins", body))
}

pub async fn upload(ctx: Ctx, mut form: Multipart) -> Result<Response, PageError> {
    let bad = |e: axum::extract::multipart::MultipartError| PageError::BadRequest(e.body_text());
    let (mut csrf, mut name, mut replace, mut wasm) = (String::new(), String::new(), false, None);
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name().unwrap_or_default() {
            "csrf" => csrf = field.text().await.map_err(bad)?,
            "name" => name = field.text().await.map_err(bad)?.trim().to_string(),
            "replace" => replace = true,
            "file" => wasm = Some(field.bytes().await.map_err(bad)?),
            _ => {}
        }
    }
    let client = ctx.check_post(&csrf)?;
    let wasm = wasm
        .filter(|w| !w.is_empty())
        .ok_or_else(|| PageError::BadRequest("choose a .wasm file".into()))?;
    let info = client
        .admin()
        .register_plugin_with(&name, wasm, PluginLimits::default(), replace)
        .await?;
    let done = format!(
        "registered plugin {} ({}, version {})",
        info.name, info.kind, info.version
    );
    Ok(Redirect::to(&format!(
        "/plugins?done={}",
        super::messages::percent(&done)
    ))
    .into_response())
}

pub async fn delete(
    ctx: Ctx,
    Path(name): Path<String>,
    Form(f): Form<ConfirmForm>,
) -> Result<Response, PageError> {
    delete_confirmed(
        &ctx,
        f,
        "plugin",
        name,
        "/plugins",
        |admin, name| async move { admin.delete_plugin(&name).await },
    )
    .await
}

#[derive(Deserialize, Default)]
pub struct TryQuery {
    #[serde(default)]
    topic: String,
    #[serde(default)]
    n: String,
    #[serde(default)]
    params: String,
}

pub async fn try_it(
    ctx: Ctx,
    Path(name): Path<String>,
    Query(q): Query<TryQuery>,
) -> Result<Markup, PageError> {
    let client = ctx.client()?;
    let admin = client.admin();
    let plugin = admin
        .list_plugins()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| PageError::NotFound(format!("no plugin named {name:?}")))?;
    let topics: Vec<String> = admin
        .list_topics()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let n = match q.n.trim() {
        "" => 10,
        s => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_TRY_RECORDS).contains(n))
            .ok_or_else(|| PageError::BadRequest(format!("records: 1 to {MAX_TRY_RECORDS}")))?,
    };
    let mut result = None;
    if !q.topic.is_empty() {
        let params = q.params.trim();
        if !params.is_empty() {
            serde_json::from_str::<serde_json::Value>(params)
                .map_err(|e| PageError::BadRequest(format!("params are not JSON: {e}")))?;
        }
        let input: Vec<Record> = first_records(client, &q.topic, n)
            .await?
            .into_iter()
            .enumerate()
            .map(|(i, r)| Record {
                offset: i as u64,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
            })
            .collect();
        let chain = vec![PluginUse {
            name: name.clone(),
            params: (!params.is_empty()).then(|| params.to_string()),
        }];
        let mut t = client.transformer(chain).await?;
        let output = t.apply(input.clone()).await?;
        let state = t.states().first().filter(|s| !s.is_empty()).cloned();
        result = Some((input, output, state));
    }
    let cell = |b: &[u8]| {
        let s = detect(b);
        html! { pre class=(format!("value {}", s.kind())) { (s.text()) } }
    };
    let body = html! {
        h1 { "Try " code { (name) } " " span.badge { (plugin.kind) } }
        form.grid #try-form method="get" action=(format!("/plugins/{}/try", seg(&name))) {
            label { "Topic" select #try-topic name="topic" { @for t in &topics { option value=(t) selected[*t == q.topic] { (t) } } } }
            label { "First records" input #try-n type="number" name="n" min="1" max=(MAX_TRY_RECORDS) value=(n); }
            label { "Params (JSON)" input #try-params type="text" name="params" value=(q.params) placeholder="{}"; }
            button #try-submit type="submit" { "Run" }
        }
        @if let Some((input, output, state)) = &result {
            p.summary #try-summary { (input.len()) " in → " (output.len()) " out" }
            div.side {
                section { h2 { "Input" }
                    table #try-input { thead { tr { th.num { "#" } th { "key" } th { "value" } } }
                        tbody { @for r in input { tr { td.num { (r.offset) }
                            td { @if let Some(k) = &r.key { (cell(k)) } } td { (cell(&r.value)) } } } } } }
                section { h2 { "Output" }
                    table #try-output { thead { tr { th.num { "from #" } th { "key" } th { "value" } } }
                        tbody { @for r in output { tr { td.num { (r.offset) }
                            td { @if let Some(k) = &r.key { (cell(k)) } } td { (cell(&r.value)) } } } } } }
            }
            @if let Some(s) = state { h2 { "Aggregate state" } (cell(s)) }
        }
    };
    Ok(shell(&ctx, "/plugins", &format!("Try {name}"), body))
}
