//! The overview: problems first, then the members, totals, groups with their lag, and the
//! produce/consume chart.

use axum::extract::State as S;
use maud::{Markup, html};

use super::super::State;
use super::super::layout::{PageError, shell};
use super::super::rates::chart;
use super::super::render::human_bytes;
use super::super::session::Ctx;
use super::seg;

pub async fn page(S(console): S<State>, ctx: Ctx) -> Result<Markup, PageError> {
    let s = ctx.client()?.admin().status().await?;
    let body = html! {
        h1 { "Overview" }
        @if !s.problems.is_empty() {
            section.problems #problems {
                h2 { "Needs attention" }
                ul { @for p in &s.problems { li { (p) } } }
            }
        }
        section.cards {
            div.card { h3 { "Cluster" } p.big { (s.cluster) } p.muted { (s.health) " · " (s.version) } }
            div.card #card-topics { h3 { a href="/topics" { "Topics" } } p.big { (s.topics) }
                p.muted { (s.partitions) " partitions · " (s.records) " records · " (human_bytes(s.bytes)) } }
            div.card #card-groups { h3 { a href="/groups" { "Groups" } } p.big { (s.groups) }
                p.muted { (s.members) " members · lag " (s.lag) } }
            div.card { h3 { a href="/plugins" { "Plugins" } } p.big { (s.plugins) } }
            div.card #card-pipelines { h3 { a href="/pipelines" { "Pipelines" } }
                p.big { (s.pipelines - s.pipelines_failed) " running" }
                p.muted { (s.pipelines_failed) " failed · lag " (s.pipeline_lag) } }
        }
        h2 { "Records per second" }
        (chart(&console.rates))
        h2 { "Brokers" }
        table #brokers {
            thead { tr { th { "node" } th { "address" } th { "role" } th { "term" } th { "applied" } th { "version" } } }
            tbody {
                @for n in &s.nodes {
                    tr class=[(n.role == "unreachable").then_some("bad")] {
                        td { (n.node_id) } td { (n.addr) } td { (n.role) }
                        td.num { (n.term) } td.num { (n.applied_index) }
                        td { (n.version.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        @if !s.group_lag.is_empty() {
            h2 { "Groups" }
            table #groups {
                thead { tr { th { "group" } th.num { "members" } th.num { "lag" } } }
                tbody {
                    @for (name, members, lag) in &s.group_lag {
                        tr { td { a href=(format!("/groups/{}", seg(name))) { (name) } }
                             td.num { (members) } td.num { (lag) } }
                    }
                }
            }
        }
    };
    Ok(shell(&ctx, "/", "Overview", body))
}
