//! The page around every page (navigation, who is logged in), the error pages, and the
//! console's two static files.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::Ctx;

const CSS: &str = include_str!("../../assets/console.css");
const JS: &str = include_str!("../../assets/console.js");

/// The sections of the navigation bar: (path, label).
const SECTIONS: [(&str, &str); 6] = [
    ("/", "Overview"),
    ("/topics", "Topics"),
    ("/groups", "Groups"),
    ("/plugins", "Plugins"),
    ("/pipelines", "Pipelines"),
    ("/security", "Security"),
];

/// A full page: `section` is the navigation entry to highlight.
pub fn shell(ctx: &Ctx, section: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                (head(title))
                script src="/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "Weir" }
                    nav {
                        @for (path, label) in SECTIONS {
                            a href=(path) class=[(path == section).then_some("active")] { (label) }
                        }
                    }
                    div.who {
                        @if ctx.read_only { span.badge #read-only { "read-only" } }
                        @if let Some(name) = ctx.user_name() {
                            span #user-name { (name) }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(ctx.csrf);
                                button.link #logout type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · Weir Console" }
        link rel="stylesheet" href="/assets/console.css";
    }
}

/// A page without navigation (login, errors before a session exists).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body { main.narrow { (body) } }
        }
    }
}

/// Why a page could not be shown. Each becomes a readable page with the right status code:
/// the broker's own message for its errors, never a stack trace or a blank page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{0}")]
    Broker(#[from] weir::Error),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("log in first")]
    LoginRequired,
    #[error("the form is stale or did not come from this console: reload the page and try again")]
    Csrf,
    #[error("{0}")]
    Internal(String),
}

impl PageError {
    fn status(&self) -> StatusCode {
        use weir::Error as E;
        match self {
            PageError::Broker(e) => match e {
                E::TopicNotFound(_)
                | E::PartitionNotFound(_)
                | E::PluginNotFound(_)
                | E::PipelineNotFound(_)
                | E::GroupNotFound(_)
                | E::UserNotFound(_) => StatusCode::NOT_FOUND,
                E::TopicExists(_)
                | E::PluginExists(_)
                | E::PipelineExists(_)
                | E::PluginInUse(_)
                | E::GroupNotEmpty(_)
                | E::ViewConflict(_)
                | E::UserExists(_) => StatusCode::CONFLICT,
                E::InvalidArgument { .. } | E::OffsetOutOfRange { .. } | E::PluginFailed(_) => {
                    StatusCode::BAD_REQUEST
                }
                E::PermissionDenied(_) => StatusCode::FORBIDDEN,
                E::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                E::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            },
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Forbidden(_) | PageError::Csrf => StatusCode::FORBIDDEN,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::LoginRequired => StatusCode::UNAUTHORIZED,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if matches!(self, PageError::LoginRequired) {
            return Redirect::to("/login").into_response();
        }
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "console page failed");
        }
        let body = bare(
            "Error",
            html! {
                h1 { (status.canonical_reason().unwrap_or("Error")) }
                p.error #error { (self.to_string()) }
                p { a href="/" { "Overview" } }
            },
        );
        (status, body).into_response()
    }
}

pub async fn not_found() -> PageError {
    PageError::NotFound("no such page".into())
}

pub async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

pub async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
}
