//! Signing in and out. An API key is exchanged for a session: a random token in a
//! `HttpOnly`, `SameSite=Strict` (and, unless configured off, `Secure`) cookie scoped to
//! `/console`, with an expiry. Storage keeps only hashes (of the token, of the key it
//! stands for, and of its CSRF token), so every node serves every session. Each request
//! looks the key up again: a revoked key ends its sessions.

use super::view;
use crate::api::AppState;
use crate::api::auth::{Principal, hash_key};
use crate::core::types::now_millis;
use crate::providers::signing::constant_time_eq;
use crate::store::{AuditEntry, SessionRecord};
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use serde_json::json;

pub const COOKIE: &str = "herald_session";
const SIGNIN_COOKIE: &str = "herald_signin";

/// A signed-in operator.
#[derive(Clone, Debug)]
pub struct Session {
    pub who: Principal,
    /// The token every form of this session carries.
    pub csrf: String,
    token_hash: String,
}

impl Session {
    pub fn token_hash(&self) -> &str {
        &self.token_hash
    }

    /// Whether a submitted form token is this session's.
    pub fn csrf_ok(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| constant_time_eq(t.as_bytes(), self.csrf.as_bytes()))
    }
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The CSRF token of a session, derived from its token (so it needs no storage of its own).
fn csrf_of(token: &str) -> String {
    hash_key(&format!("herald-console-csrf:{token}"))
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

fn set_cookie(state: &AppState, name: &str, value: &str, path: &str, max_age: u64) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if state.cfg.console.secure_cookie {
            "; Secure"
        } else {
            ""
        }
    )
}

/// Why a request has no session, answered as a page (GET: to the sign-in form).
pub struct NoSession {
    method: Method,
    why: &'static str,
    state: AppState,
    status: StatusCode,
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        if self.method == Method::GET && self.status == StatusCode::UNAUTHORIZED {
            return view::secure(Redirect::to("/console/signin").into_response());
        }
        signin_page(&self.state, Some(self.why), None, self.status)
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = NoSession;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, NoSession> {
        let refuse = |why: &'static str, status: StatusCode| NoSession {
            method: parts.method.clone(),
            why,
            state: state.clone(),
            status,
        };
        let Some(token) = cookie(&parts.headers, COOKIE) else {
            return Err(refuse(
                "You are not signed in (or your session has ended). Sign in again.",
                StatusCode::UNAUTHORIZED,
            ));
        };
        let token_hash = hash_key(&token);
        let found = state
            .store
            .console
            .session(&token_hash, now_millis())
            .await
            .map_err(|_| {
                refuse(
                    "Storage does not answer, so sessions cannot be checked. Try again shortly.",
                    StatusCode::SERVICE_UNAVAILABLE,
                )
            })?;
        let Some(rec) = found else {
            return Err(refuse(
                "Your session has ended. Sign in again.",
                StatusCode::UNAUTHORIZED,
            ));
        };
        let who = state
            .auth
            .by_hash(rec.key_hash.clone())
            .await
            .map_err(|e| match e.status {
                StatusCode::UNAUTHORIZED => refuse(
                    "The key this session was opened with is no longer valid. Sign in again.",
                    StatusCode::UNAUTHORIZED,
                ),
                _ => refuse(
                    "Storage does not answer, so the key cannot be checked. Try again shortly.",
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
            })?;
        Ok(Session {
            who,
            csrf: csrf_of(&token),
            token_hash,
        })
    }
}

/// Whether a session still stands: not signed out, not expired, its key not revoked.
/// Storage that does not answer keeps it standing (the next request checks again).
pub async fn still_signed_in(state: &AppState, token_hash: &str) -> bool {
    match state.store.console.session(token_hash, now_millis()).await {
        Ok(Some(rec)) => match state.auth.by_hash(rec.key_hash).await {
            Ok(_) => true,
            Err(e) => e.status != StatusCode::UNAUTHORIZED,
        },
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Form fields (`application/x-www-form-urlencoded`), repeated names kept in order.
pub fn fields(body: &Bytes) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The sign-in form, with a token of its own in a short-lived cookie (double submit), so
/// another site cannot sign a browser in with a key of its choosing.
pub async fn form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    signin_page(
        &state,
        None,
        cookie(&headers, SIGNIN_COOKIE),
        StatusCode::OK,
    )
}

/// The sign-in form with its token (the one the browser has, or a new one) in the form and
/// in its cookie, so that the form shown always works.
fn signin_page(
    state: &AppState,
    error: Option<&str>,
    token: Option<String>,
    status: StatusCode,
) -> Response {
    let token = token.unwrap_or_else(random_token);
    let mut r = view::page(
        state,
        None,
        "signin.html",
        "signin",
        "Sign in",
        json!({"error": error, "signin_csrf": token}),
        status,
    );
    if let Ok(v) = set_cookie(state, SIGNIN_COOKIE, &token, "/console/signin", 3600).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn signin_refused(state: &AppState, why: &str, token: &str, status: StatusCode) -> Response {
    let token = (!token.is_empty()).then(|| token.to_string());
    signin_page(state, Some(why), token, status)
}

pub async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let f = fields(&body);
    let expected = cookie(&headers, SIGNIN_COOKIE);
    let sent = field(&f, "csrf");
    let token = expected.clone().unwrap_or_default();
    if !matches!((&expected, sent), (Some(e), Some(s)) if constant_time_eq(e.as_bytes(), s.as_bytes()))
    {
        return signin_refused(
            &state,
            "This sign-in form has expired or did not come from this console. Reload the page and try again.",
            &token,
            StatusCode::FORBIDDEN,
        );
    }
    let key = field(&f, "key").unwrap_or("").trim().to_string();
    if key.is_empty() {
        return signin_refused(
            &state,
            "key: paste an API key.",
            &token,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let who = match state
        .auth
        .authenticate(Some(&format!("Bearer {key}")))
        .await
    {
        Ok(p) => p,
        Err(e) => {
            return signin_refused(&state, &format!("key: {}", e.detail), &token, e.status);
        }
    };
    let session = random_token();
    let now = now_millis();
    let ttl = state.cfg.console.session_ttl.0;
    let rec = SessionRecord {
        token_hash: hash_key(&session),
        key_hash: hash_key(&key),
        csrf_hash: hash_key(&csrf_of(&session)),
        created_at: now,
        expires_at: now.saturating_add(ttl.as_millis() as i64),
    };
    // Sessions past their expiry are dropped as others sign in (and out).
    let _ = state.store.console.end_session("", now).await;
    if state.store.console.create_session(rec).await.is_err() {
        return signin_refused(
            &state,
            "Storage does not answer, so no session can be opened. Try again shortly.",
            &token,
            StatusCode::SERVICE_UNAVAILABLE,
        );
    }
    audit_session(&state, &who, "console.sign_in", now).await;
    let mut r = view::secure(Redirect::to("/console").into_response());
    *r.status_mut() = StatusCode::SEE_OTHER;
    for c in [
        set_cookie(&state, COOKIE, &session, "/console", ttl.as_secs()),
        set_cookie(&state, SIGNIN_COOKIE, "", "/console/signin", 0),
    ] {
        if let Ok(v) = c.parse() {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

async fn audit_session(state: &AppState, who: &Principal, action: &str, at: i64) {
    let entry = AuditEntry {
        id: 0,
        at,
        actor: who.name.clone(),
        action: action.into(),
        target: who.id.clone(),
        before: None,
        after: None,
        reason: None,
    };
    if let Err(e) = state.store.operations.audit(entry).await {
        tracing::warn!(error = %e, action, "console session not audited");
    }
}

pub async fn sign_out(State(state): State<AppState>, s: Session, body: Bytes) -> Response {
    let f = fields(&body);
    if !s.csrf_ok(field(&f, "csrf")) {
        return super::act::forged(&state, &s);
    }
    let now = now_millis();
    if let Err(e) = state.store.console.end_session(&s.token_hash, now).await {
        tracing::warn!(error = %e, "session not ended in storage");
    }
    audit_session(&state, &s.who, "console.sign_out", now).await;
    let mut r = view::secure(Redirect::to("/console/signin").into_response());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = set_cookie(&state, COOKIE, "", "/console", 0).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "other=1; herald_session_x=2; herald_session=abc"
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
        h.insert(header::COOKIE, "herald_session=".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), None, "an empty cookie is none");
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_exactly() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(csrf_of(&a), csrf_of(&b));
    }

    #[test]
    fn form_fields_keep_repeats() {
        let f = fields(&Bytes::from_static(b"ids=a&ids=b&reason=x+y"));
        assert_eq!(f.len(), 3);
        assert_eq!(field(&f, "reason"), Some("x y"));
        assert_eq!(field(&f, "ids"), Some("a"));
    }
}
