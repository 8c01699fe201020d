//! One module per page. Handlers read through the session's client (`Ctx::client`), check
//! every form's CSRF token (`Ctx::check_post`), and return the broker's errors as pages.

pub mod groups;
pub mod messages;
pub mod overview;
pub mod pipelines;
pub mod plugins;
pub mod security;
pub mod topics;

use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use weir::PluginUse;

use super::layout::PageError;
use super::session::Ctx;

/// Largest request body: a plugin upload (the broker's own module limit is checked there).
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;

/// A form that does something irreversible to `name`: it goes through only when the person
/// types the name again (`confirm`), as Redpanda Console and kafka-ui ask.
pub fn confirm_form(ctx: &Ctx, action: &str, what: &str, name: &str, button: &str) -> Markup {
    confirm_form_fields(ctx, action, what, name, button, html! {})
}

/// A [`confirm_form`] with more fields before the confirmation.
pub fn confirm_form_fields(
    ctx: &Ctx,
    action: &str,
    what: &str,
    name: &str,
    button: &str,
    fields: Markup,
) -> Markup {
    html! {
        form.danger method="post" action=(action) {
            input type="hidden" name="csrf" value=(ctx.csrf);
            (fields)
            label {
                span { "Type the " (what) " name " code { (name) } " to confirm" }
                input.confirm type="text" name="confirm" autocomplete="off" required;
            }
            button.danger type="submit" { (button) }
        }
    }
}

/// Checks a [`confirm_form`]'s answer.
pub fn confirmed(confirm: &str, name: &str) -> Result<(), PageError> {
    if confirm.trim() == name {
        Ok(())
    } else {
        Err(PageError::BadRequest(format!(
            "not done: type {name:?} to confirm"
        )))
    }
}

/// What a [`confirm_form`] posts.
#[derive(Deserialize)]
pub struct ConfirmForm {
    csrf: String,
    confirm: String,
}

/// A [`confirm_form`]'s deletion of the `what` named `name`: checks the form, runs `delete`,
/// and goes back to `list` with a notice.
pub async fn delete_confirmed<F, Fut>(
    ctx: &Ctx,
    form: ConfirmForm,
    what: &str,
    name: String,
    list: &str,
    delete: F,
) -> Result<Response, PageError>
where
    F: FnOnce(weir::Admin, String) -> Fut,
    Fut: Future<Output = weir::Result<()>>,
{
    let client = ctx.check_post(&form.csrf)?;
    confirmed(&form.confirm, &name)?;
    let done = format!("{list}?done=deleted+{what}+{}", seg(&name));
    delete(client.admin(), name).await?;
    Ok(Redirect::to(&done).into_response())
}

/// Plugin uses, one `NAME[=JSON]` per line (as the CLI's `--plugin`).
pub fn plugin_uses(text: &str) -> Result<Vec<PluginUse>, PageError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let u = PluginUse::parse(l);
            if let Some(p) = &u.params {
                serde_json::from_str::<serde_json::Value>(p).map_err(|e| {
                    PageError::BadRequest(format!(
                        "params of plugin {:?} are not JSON: {e}",
                        u.name
                    ))
                })?;
            }
            Ok(u)
        })
        .collect()
}

/// `NAME` or `NAME=JSON`, as typed.
pub fn plugin_use_text(u: &PluginUse) -> String {
    match &u.params {
        Some(p) => format!("{}={p}", u.name),
        None => u.name.clone(),
    }
}

/// A URL path segment for a name (names are `[A-Za-z0-9._-]`, so this only guards).
pub fn seg(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A notice after an action that redirected here (`?done=...`).
pub fn notice(done: Option<&str>) -> Markup {
    html! {
        @if let Some(d) = done { p.notice #notice { (d) } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_lines_and_names_in_paths() {
        let u = plugin_uses("uppercase\n\n filter-contains={\"substring\":\"x\"} \n").unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].params.as_deref(), Some("{\"substring\":\"x\"}"));
        assert_eq!(
            plugin_use_text(&u[1]),
            "filter-contains={\"substring\":\"x\"}"
        );
        assert!(plugin_uses("p={oops").is_err());
        assert_eq!(seg("a.b-c_d"), "a.b-c_d");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
        assert!(confirmed(" t ", "t").is_ok());
        assert!(confirmed("u", "t").is_err());
    }
}
