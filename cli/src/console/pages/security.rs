//! Who you are, and (for superusers) every user and ACL. Read-only: users and ACLs are
//! managed with `weir user` and `weir acl`.

use maud::{Markup, html};

use super::super::layout::{PageError, shell};
use super::super::render::utc;
use super::super::session::Ctx;

pub async fn page(ctx: Ctx) -> Result<Markup, PageError> {
    let admin = ctx.client()?.admin();
    let who = admin.whoami().await?;
    let (users, acls) = if who.auth_enabled && who.superuser {
        (admin.list_users().await?, admin.list_acls(None).await?)
    } else {
        (Vec::new(), who.acls.clone())
    };
    let body = html! {
        h1 { "Security" }
        @if !who.auth_enabled {
            p #auth-off { "The broker runs without " code { "--auth" } ": every client may do everything." }
        } @else {
            p #whoami { "You are " strong { (who.name) } @if who.superuser { " (superuser: you may do everything)" } "." }
            @if who.superuser {
                h2 { "Users" }
                table #users {
                    thead { tr { th { "user" } th { "credential" } th { "superuser" } th { "created (UTC)" } } }
                    tbody { @for u in &users { tr {
                        td { (u.name) } td { (u.credential) } td { @if u.superuser { "yes" } } td.time { (utc(u.created_ms)) }
                    } } }
                }
            }
            h2 { @if who.superuser { "ACLs" } @else { "Your permissions" } }
            @if acls.is_empty() { p.muted { "None." } } @else {
                table #acls {
                    thead { tr { th { "principal" } th { "operation" } th { "resource" } th { "pattern" } } }
                    tbody { @for a in &acls { tr {
                        td { (a.principal) } td { (a.operation) } td { (a.resource_type) } td { code { (a.pattern) } }
                    } } }
                }
            }
            p.muted { "Manage them with " code { "weir user" } " and " code { "weir acl" } "." }
        }
    };
    Ok(shell(&ctx, "/security", "Security", body))
}
