//! The HTTP API (SPEC §2): one file per resource, one shared state.

mod ack_links;
pub mod actions;
mod alerts;
pub mod approvals;
pub mod auth;
pub mod body;
mod contacts;
mod dead_letters;
mod drills;
mod heartbeats;
mod inbound;
pub(crate) mod inbox;
mod incident_ops;
mod incidents;
mod keys;
mod maintenance;
mod messages;
pub mod oncall;
mod operators;
mod ops;
mod receipts;
pub mod serve;
mod status;
mod traces;
mod voice_receipts;

use crate::config::Config;
use crate::core::ssrf::HostPolicy;
use crate::core::types::Channel;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::InboxItem;
use auth::{Auth, Principal};
use axum::Router;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{delete, get, post};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::{Notify, broadcast};

#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    /// Storage, through each of its domains.
    pub store: crate::store::Domains,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    pub hosts: Arc<HostPolicy>,
    pub channels: Arc<HashSet<Channel>>,
    pub templates: Arc<crate::templates::Templates>,
    pub providers: Arc<crate::providers::Registry>,
    /// Ids of chat providers (what `to.chat` may name).
    pub chat_targets: Arc<std::collections::HashMap<String, &'static str>>,
    pub wake: Arc<Notify>,
    pub inbox_events: broadcast::Sender<InboxItem>,
    /// `[[alert_routes]]`, compiled.
    pub routes: Arc<Vec<crate::core::alerts::routes::Route>>,
    /// `[[heartbeats]]`, compiled.
    pub heartbeats: Arc<Vec<crate::core::alerts::heartbeats::Heartbeat>>,
    /// Wakes the pager (an incident owes pages).
    pub pager_wake: Arc<Notify>,
    /// Answers sent to each phone's replies in the last hour (this node's bound).
    pub reply_answers: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<i64>>>>,
    /// Wakes the escalator (an escalation was started or made due now).
    pub escalator_wake: Arc<Notify>,
    /// Keys pressed during calls (acknowledging a page by phone).
    pub keypresses: broadcast::Sender<crate::core::keypress::Keypress>,
    /// When the dispatcher last had a claim answered or every slot busy (Unix ms; 0 before
    /// it starts): `/readyz` says the workers run only while this is recent, so a
    /// dispatcher that died, hangs or whose claims keep failing shows.
    pub workers_beat: Arc<std::sync::atomic::AtomicI64>,
    /// The gateway's mode, refreshed from storage (modes are shared by all nodes).
    pub mode: Arc<std::sync::RwLock<crate::store::ModeRecord>>,
    /// Deliveries waiting or in flight, refreshed every second (for load shedding).
    pub queue_depth: Arc<std::sync::atomic::AtomicU64>,
    /// Where accepts go while storage is unreachable (PostgreSQL only).
    pub spool: Option<Arc<crate::spool::Spool>>,
    /// This node's id (in `/v1/nodes`, and as the owner of the leases it takes).
    pub node_id: String,
    /// Where finished spans go (nowhere without `[telemetry] otlp_endpoint`).
    pub tracer: crate::telemetry::Tracer,
    /// The public status page's snapshot.
    pub status: Arc<crate::status::StatusPage>,
    /// Cancelled at shutdown: long-lived responses (event streams) end.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl FromRef<AppState> for Arc<Auth> {
    fn from_ref(s: &AppState) -> Self {
        s.auth.clone()
    }
}

/// The authenticated caller of a `/v1` route.
pub struct Caller(pub Principal);

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<Auth>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Arc::<Auth>::from_ref(state);
        // The console signs its own requests in: it sets this extension on the requests it
        // hands to the router (no client on the network can set one).
        if let Some(crate::console::SignedIn(p)) =
            parts.extensions.get::<crate::console::SignedIn>()
        {
            auth.admit(p, crate::core::types::now_millis()).await?;
            return Ok(Caller(p.clone()));
        }
        let mut values = parts
            .headers
            .get_all(axum::http::header::AUTHORIZATION)
            .iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "bad_request",
                "the request has more than one Authorization header",
            ));
        }
        let header = first.and_then(|v| v.to_str().ok());
        let p = auth.authenticate(header).await?;
        auth.admit(&p, crate::core::types::now_millis()).await?;
        Ok(Caller(p))
    }
}

/// `/status` and its documents, open to anyone, when `[status] enabled`.
fn status_routes(state: &AppState) -> Router<AppState> {
    if !state.cfg.status.enabled {
        return Router::new();
    }
    Router::new()
        .route("/status", get(status::page))
        .route("/status/style.css", get(status::css))
        .route("/status/history.atom", get(status::atom))
        .route(
            "/status/api/v2/incidents/unresolved.json",
            get(status::unresolved),
        )
        .route("/status/api/v2/{doc}", get(status::api))
        .route("/status/badge/{file}", get(status::badge))
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/v1/messages", post(messages::send).get(messages::list))
        .route("/v1/messages/batch", post(messages::send_batch))
        .route("/v1/messages/{id}", get(messages::get_one))
        .route("/v1/messages/{id}/cancel", post(messages::cancel))
        .route("/v1/dead-letters", get(dead_letters::list))
        .route("/v1/dead-letters/replay", post(dead_letters::replay))
        .route("/v1/inbox/{user}", get(inbox::list))
        .route("/v1/inbox/{user}/stream", get(inbox::stream))
        .route("/v1/inbox/{user}/{id}/read", post(inbox::mark_read))
        .route("/v1/contacts", post(contacts::create).get(contacts::list))
        .route(
            "/v1/contacts/{id}",
            get(contacts::get_one)
                .put(contacts::put)
                .patch(contacts::patch)
                .delete(contacts::delete),
        )
        .route(
            "/v1/contacts/{id}/push-subscriptions",
            post(contacts::add_push_subscription),
        )
        .route("/v1/push/vapid-public-key", get(ops::vapid_public_key))
        .route("/v1/api-keys", post(keys::create).get(keys::list))
        .route("/v1/api-keys/{id}", delete(keys::revoke))
        .route("/v1/audit", get(ops::audit))
        .route("/v1/audit/verify", get(ops::audit_verify))
        .route(
            "/v1/status/incidents",
            get(status::list_incidents).post(status::post_incident),
        )
        .route(
            "/v1/status/incidents/{id}/updates",
            post(status::post_update),
        )
        .route("/v1/approvals", get(approvals::list))
        .route("/v1/approvals/{id}", get(approvals::get))
        .route("/v1/approvals/{id}/approve", post(approvals::approve))
        .route("/v1/approvals/{id}/reject", post(approvals::reject))
        .route("/v1/approvals/{id}/review", post(approvals::review))
        .route("/v1/providers", get(operators::providers))
        .route("/v1/providers/{id}/disable", post(operators::disable))
        .route("/v1/providers/{id}/enable", post(operators::enable))
        .route(
            "/v1/mode",
            get(operators::get_mode).put(operators::set_mode),
        )
        .route("/v1/nodes", get(operators::nodes))
        .route("/v1/alerts/alertmanager", post(alerts::alertmanager))
        .route("/v1/alerts/events", post(alerts::events))
        .route("/v1/heartbeats", get(heartbeats::list))
        .route("/v1/heartbeats/{id}/ping", post(heartbeats::ping))
        .route(
            "/v1/maintenance-windows",
            get(maintenance::list).post(maintenance::create),
        )
        .route("/v1/maintenance-windows/{id}", delete(maintenance::delete))
        .route("/v1/incidents", get(incidents::list))
        .route("/v1/incidents/{id}", get(incidents::get_one))
        .route(
            "/v1/incidents/{id}/acknowledge",
            post(incidents::acknowledge),
        )
        .route("/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route("/v1/incidents/{id}/escalate", post(incident_ops::escalate))
        .route("/v1/incidents/{id}/snooze", post(incident_ops::snooze))
        .route("/v1/incidents/stats", get(incident_ops::stats))
        .route("/v1/drills/page", post(drills::page))
        .route(
            "/v1/schedules",
            post(oncall::create_schedule).get(oncall::list_schedules),
        )
        .route(
            "/v1/schedules/{id}",
            get(oncall::get_schedule)
                .put(oncall::put_schedule)
                .delete(oncall::delete_schedule),
        )
        .route("/v1/schedules/{id}/on-call", get(oncall::schedule_on_call))
        .route(
            "/v1/escalation-policies",
            post(oncall::create_policy).get(oncall::list_policies),
        )
        .route(
            "/v1/escalation-policies/{id}",
            get(oncall::get_policy)
                .put(oncall::put_policy)
                .delete(oncall::delete_policy),
        )
        .route("/v1/inbound/{provider}", post(inbound::inbound))
        .route("/a/{token}", get(ack_links::show).post(ack_links::act))
        .route("/v1/receipts/twilio/{provider}", post(receipts::twilio))
        .route("/v1/receipts/aliyun/{provider}", post(receipts::aliyun))
        .route(
            "/v1/receipts/twilio/{provider}/keypress",
            post(voice_receipts::twilio_keypress),
        )
        .merge(status_routes(&state))
        .merge(crate::console::routes(&state))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn(head_limits))
        .with_state(state)
}

/// Longest request target, and most and largest request headers, answered as problem+json
/// (hyper alone would answer 414 and 431 with an empty body).
const MAX_URI: usize = 8 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_HEADER_BYTES: usize = 32 * 1024;

async fn head_limits(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let uri_len = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().len())
        .unwrap_or(0);
    if uri_len > MAX_URI {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is longer than {MAX_URI} bytes"),
        )
        .into_response();
    }
    if let Some(name) = repeated_parameter(req.uri()) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the query parameter `{name}` is given more than once"),
        )
        .into_response();
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request has more than {MAX_HEADERS} headers or more than {MAX_HEADER_BYTES} bytes of them"
            ),
        )
        .into_response();
    }
    problem_only(next.run(req).await).await
}

/// A query parameter named twice on a `/v1` route (providers' callbacks excepted): which
/// one would count is not for the server to guess.
fn repeated_parameter(uri: &axum::http::Uri) -> Option<String> {
    let path = uri.path();
    if !path.starts_with("/v1/")
        || path.starts_with("/v1/receipts/")
        || path.starts_with("/v1/inbound/")
    {
        return None;
    }
    let mut seen = std::collections::HashSet::new();
    url::form_urlencoded::parse(uri.query()?.as_bytes())
        .map(|(k, _)| k.into_owned())
        .find(|k| !seen.insert(k.clone()))
        .map(|k| k.chars().take(64).collect())
}

/// Every error is problem+json: an answer the framework made itself (a path segment that is
/// not UTF-8, a body over a route's limit: plain text) is rewritten with its text as the
/// detail. A JSON body a route chose (`/readyz`'s checks with its 503) is left as it is, and
/// so is an HTML page (`/a/{token}` answers the people who open a link with pages).
async fn problem_only(resp: axum::response::Response) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let status = resp.status();
    let is_problem = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(b"application/problem+json")
            || v.starts_with(b"application/json")
            || v.starts_with(b"text/html")
    });
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text.chars().take(500).collect()
    };
    ApiError::new(status, code, detail).into_response()
}

/// The query of a list route: `status`, `channel`, `limit` (1–1000, default 50) and the
/// `after` cursor. Parameters a route does not filter on are ignored by its store call.
pub fn list_filter(
    q: &std::collections::HashMap<String, String>,
) -> Result<crate::store::ListFilter, ApiError> {
    fn parsed<T: std::str::FromStr<Err = String>>(
        q: &std::collections::HashMap<String, String>,
        key: &str,
    ) -> Result<Option<T>, ApiError> {
        q.get(key)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<T>().map_err(|m| ApiError::field(key, m)))
            .transpose()
    }
    Ok(crate::store::ListFilter {
        status: parsed(q, "status")?,
        channel: parsed(q, "channel")?,
        limit: page_limit(q.get("limit").map(String::as_str))?,
        after: q.get("after").filter(|s| !s.is_empty()).cloned(),
    })
}

/// A page of a list: `{"data": [...], "next_after": cursor-or-null}`.
pub fn page<T: serde::Serialize, C: serde::Serialize>(
    items: Vec<T>,
    limit: usize,
    cursor: impl Fn(&T) -> C,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let next = if items.len() == limit {
        items.last().map(&cursor)
    } else {
        None
    };
    axum::Json(serde_json::json!({ "data": items, "next_after": next })).into_response()
}

/// What a replacing `PUT` expects to find: the `version` its document says it read (an edit
/// made in between is then not overwritten unseen), or anything when it names none.
pub fn expected_version(doc: &serde_json::Value) -> Result<crate::store::Expect, ApiError> {
    use crate::store::Expect;
    match doc.get("version") {
        None | Some(serde_json::Value::Null) => Ok(Expect::Any),
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= 1)
            .map(Expect::Version)
            .ok_or_else(|| {
                ApiError::field(
                    "version",
                    "must be the version read (a whole number from 1)",
                )
            }),
    }
}

/// Paging parameters shared by list routes.
pub fn page_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    match limit {
        None | Some("") => Ok(50),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(ApiError::field(
                "limit",
                "must be a whole number from 1 to 1000",
            )),
        },
    }
}
