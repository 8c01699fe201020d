//! Sessions, logins and CSRF tokens.
//!
//! Every browser gets a session (an unguessable id in an `HttpOnly`, `SameSite=Strict`
//! cookie) that holds a CSRF token: every form that changes something carries it, and its
//! POST is refused without it. When the broker runs with `--auth`, a session also holds the
//! client of the user who logged in through it, and every call of that session is made as
//! that user: the console has no rights of its own to lend. Without `--auth`, every session
//! shares the console's client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{FromRequestParts, Request};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use weir::{Client, Credentials, WhoAmI};

use super::layout::{self, PageError};
use super::{Console, State};
use crate::Target;

/// The cookie that names a session.
pub const SESSION_COOKIE: &str = "weir_session";
/// A session unused this long is forgotten (its user logs in again).
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept at once; past it the longest idle ones go first.
pub const MAX_SESSIONS: usize = 10_000;
/// Longest user name or password a login form may send.
const MAX_CREDENTIAL_LEN: usize = 4096;

/// Who is using the console, and the client that acts as them.
pub struct User {
    pub client: Client,
    pub who: WhoAmI,
}

struct Session {
    csrf: String,
    user: Option<Arc<User>>,
    touched: Instant,
}

pub struct Sessions {
    target: Target,
    /// Without `--auth` at the broker: the console's own client, for everyone.
    shared: Option<Arc<User>>,
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn new(target: &Target, client: &Client, who: WhoAmI) -> Self {
        let shared = (!who.auth_enabled).then(|| {
            Arc::new(User {
                client: client.clone(),
                who,
            })
        });
        Self {
            target: target.clone(),
            shared,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn login_required(&self) -> bool {
        self.shared.is_none()
    }

    /// The session `sid` names, or a new one (`true`: its cookie must be set).
    fn get_or_create(&self, sid: Option<&str>) -> (String, Ctx, bool) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(s) = sid.and_then(|sid| map.get_mut(sid).map(|s| (sid, s)))
            && now.duration_since(s.1.touched) < SESSION_IDLE
        {
            let (sid, s) = s;
            s.touched = now;
            let ctx = self.ctx(&s.csrf, s.user.clone());
            return (sid.to_string(), ctx, false);
        }
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| now.duration_since(s.touched) < SESSION_IDLE);
            while map.len() >= MAX_SESSIONS {
                let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.touched)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                map.remove(&oldest);
            }
        }
        let sid = random_token();
        let csrf = random_token();
        let ctx = self.ctx(&csrf, None);
        map.insert(
            sid.clone(),
            Session {
                csrf,
                user: None,
                touched: now,
            },
        );
        (sid, ctx, true)
    }

    fn ctx(&self, csrf: &str, user: Option<Arc<User>>) -> Ctx {
        Ctx {
            csrf: csrf.to_string(),
            user: user.or_else(|| self.shared.clone()),
            login_required: self.login_required(),
            read_only: false,
        }
    }

    /// A new session (new id: the one used before logging in is dropped) for `user`.
    fn start(&self, old_sid: Option<&str>, user: User) -> String {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = old_sid {
            map.remove(old);
        }
        let sid = random_token();
        map.insert(
            sid.clone(),
            Session {
                csrf: random_token(),
                user: Some(Arc::new(user)),
                touched: Instant::now(),
            },
        );
        sid
    }

    fn end(&self, sid: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(sid);
    }
}

/// 128 random bits, hex.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    // The OS's randomness cannot be missing on Linux; a failure here would be a broken host.
    getrandom::fill(&mut bytes).expect("the OS's random number generator failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares in time independent of where the strings differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn session_cookie(sid: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("weir_session=; Path=/"))
}

/// What a handler knows about the person using the console.
#[derive(Clone)]
pub struct Ctx {
    pub csrf: String,
    pub user: Option<Arc<User>>,
    pub login_required: bool,
    pub read_only: bool,
}

impl Ctx {
    /// The client acting as this person; a session that has not logged in is sent to the
    /// login page.
    pub fn client(&self) -> Result<&Client, PageError> {
        self.user
            .as_ref()
            .map(|u| &u.client)
            .ok_or(PageError::LoginRequired)
    }

    /// The user's name when logins are on.
    pub fn user_name(&self) -> Option<&str> {
        self.user
            .as_ref()
            .filter(|_| self.login_required)
            .map(|u| u.who.name.as_str())
    }

    /// Whether this person may do `operation` on `resource_type` `name` (`*`: a new one)
    /// through this console: `--read-only` allows reads only; the broker's ACLs decide the
    /// rest (the buttons shown follow this; the broker checks again).
    pub fn may(&self, operation: &str, resource_type: &str, name: &str) -> bool {
        if self.read_only && operation != "read" {
            return false;
        }
        self.user
            .as_ref()
            .is_some_and(|u| u.who.may(operation, resource_type, name))
    }

    /// A mutating request: its CSRF token must be this session's, and the console must not
    /// be read-only.
    pub fn check_post(&self, token: &str) -> Result<&Client, PageError> {
        if !same_token(token, &self.csrf) {
            return Err(PageError::Csrf);
        }
        if self.read_only {
            return Err(PageError::Forbidden(
                "this console is read-only (weir console --read-only)".into(),
            ));
        }
        self.client()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, PageError> {
        parts
            .extensions
            .get::<Ctx>()
            .cloned()
            .ok_or_else(|| PageError::Internal("no session".into()))
    }
}

/// Finds or starts the session, hands it to the handler, sets its cookie, and adds the
/// headers that keep untrusted content inert (no inline script runs: the Content Security
/// Policy allows only the console's own script file).
pub async fn middleware(
    axum::extract::State(console): axum::extract::State<State>,
    mut req: Request,
    next: Next,
) -> Response {
    let sid = cookie(req.headers(), SESSION_COOKIE).map(str::to_string);
    let (sid, mut ctx, fresh) = console.sessions.get_or_create(sid.as_deref());
    ctx.read_only = console.read_only;
    req.extensions_mut().insert(ctx);
    req.extensions_mut().insert(SessionId(sid.clone()));
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if fresh && !h.contains_key(SET_COOKIE) {
        h.append(SET_COOKIE, session_cookie(&sid));
    }
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    resp
}

#[derive(Clone)]
pub struct SessionId(String);

impl<S: Send + Sync> FromRequestParts<S> for SessionId {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, PageError> {
        parts
            .extensions
            .get::<SessionId>()
            .cloned()
            .ok_or_else(|| PageError::Internal("no session".into()))
    }
}

fn login_page(ctx: &Ctx, error: Option<&str>) -> Markup {
    layout::bare(
        "Log in",
        html! {
            form.login method="post" action="/login" {
                h1 { "Weir Console" }
                p.muted { "The broker asks who you are: log in as one of its users." }
                @if let Some(e) = error { p.error #login-error { (e) } }
                input type="hidden" name="csrf" value=(ctx.csrf);
                label { "User" input #user type="text" name="user" autocomplete="username" autofocus; }
                label { "Password" input #password type="password" name="password" autocomplete="current-password"; }
                p.muted { "or" }
                label { "Token" input #token type="password" name="token" autocomplete="off"; }
                button #login type="submit" { "Log in" }
            }
        },
    )
}

pub async fn login_form(
    axum::extract::State(console): axum::extract::State<State>,
    ctx: Ctx,
) -> Response {
    if !console.sessions.login_required() {
        return Redirect::to("/").into_response();
    }
    login_page(&ctx, None).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
}

pub async fn login(
    axum::extract::State(console): axum::extract::State<State>,
    ctx: Ctx,
    SessionId(sid): SessionId,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    if !same_token(&form.csrf, &ctx.csrf) {
        return Err(PageError::Csrf);
    }
    let refuse =
        |msg: &str| Ok((StatusCode::UNAUTHORIZED, login_page(&ctx, Some(msg))).into_response());
    if [&form.user, &form.password, &form.token]
        .iter()
        .any(|s| s.len() > MAX_CREDENTIAL_LEN)
    {
        return refuse("user name, password or token too long");
    }
    let credentials = match (form.user.trim(), form.password.as_str(), form.token.trim()) {
        (user, password, "") if !user.is_empty() => Credentials::password(user, password),
        ("", _, token) if !token.is_empty() => Credentials::token(token),
        _ => return refuse("give a user and password, or a token"),
    };
    let user = match authenticate(&console, credentials).await {
        Ok(user) => user,
        Err(weir::Error::Unauthenticated(_)) => {
            tracing::info!(user = %form.user.trim(), "console login refused");
            return refuse("wrong user name, password or token");
        }
        Err(e) => return Err(PageError::Broker(e)),
    };
    tracing::info!(user = %user.who.name, "console login");
    let sid = console.sessions.start(Some(&sid), user);
    let mut resp = Redirect::to("/").into_response();
    resp.headers_mut().append(SET_COOKIE, session_cookie(&sid));
    Ok(resp)
}

async fn authenticate(console: &Console, credentials: Credentials) -> weir::Result<User> {
    let target = &console.sessions.target;
    let options = target.options.clone().credentials(credentials);
    let client = Client::connect_with(&target.addr, options).await?;
    let who = client.admin().whoami().await?;
    if who.name.is_empty() {
        return Err(weir::Error::Unauthenticated("not logged in".into()));
    }
    Ok(User { client, who })
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

pub async fn logout(
    axum::extract::State(console): axum::extract::State<State>,
    ctx: Ctx,
    SessionId(sid): SessionId,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    if !same_token(&form.csrf, &ctx.csrf) {
        return Err(PageError::Csrf);
    }
    console.sessions.end(&sid);
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        SET_COOKIE,
        HeaderValue::from_static("weir_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_tokens_and_their_comparison() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; weir_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        let t = random_token();
        assert_eq!(t.len(), 32);
        assert_ne!(t, random_token());
        assert!(same_token(&t, &t.clone()));
        assert!(!same_token(&t, &random_token()));
        assert!(!same_token(&t, ""));
    }

    #[test]
    fn read_only_allows_reads_only() {
        let ctx = Ctx {
            csrf: "x".into(),
            user: None,
            login_required: true,
            read_only: true,
        };
        assert!(!ctx.may("read", "topic", "t"), "no user: nothing");
        assert!(matches!(ctx.check_post("y"), Err(PageError::Csrf)));
        assert!(matches!(ctx.check_post("x"), Err(PageError::Forbidden(_))));
    }
}
