//! `/a/{token}`: the signed link in a page. Opening it (GET) only shows the incident and
//! two buttons — mail scanners and link previews open links, and must not acknowledge
//! anything; the POST acts, once, as the person the link was made for.

use super::AppState;
use crate::core::oncall::ack_link::{self, LinkError};
use crate::core::types::now_millis;
use crate::store::{Acted, IncidentAction, IncidentRecord};
use crate::worker::answer::{Via, answer, answer_all};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Text made safe inside HTML and XML (also TwiML answers).
pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A whole small page: no script, no outside resources, not framed, not cached.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · Herald</title><style>body{{font-family:system-ui,sans-serif;max-width:36rem;\
         margin:2rem auto;padding:0 1rem;line-height:1.5}}button{{font-size:1.1rem;padding:.6rem 1.2rem;\
         margin:.3rem .6rem .3rem 0}}.meta{{color:#555}}@media (prefers-color-scheme:dark){{body{{background:#111;\
         color:#eee}}.meta{{color:#aaa}}}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        html,
    )
        .into_response()
}

fn refused(e: LinkError) -> Response {
    match e {
        LinkError::Forged => page(
            StatusCode::FORBIDDEN,
            "This link is not valid",
            "<p>The link is damaged or was not made by this Herald. Answer from the page itself \
             (reply code) or ask an operator.</p>",
        ),
        LinkError::Expired => page(
            StatusCode::GONE,
            "This link has expired",
            "<p>Links in pages work for a limited time. Reply to the page by SMS, or ask an operator.</p>",
        ),
    }
}

fn secret(state: &AppState) -> Option<Vec<u8>> {
    state
        .cfg
        .oncall
        .link_secret
        .as_ref()
        .map(|s| s.expose().as_bytes().to_vec())
}

fn off() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Links are off",
        "<p>This Herald does not make acknowledge links.</p>",
    )
}

fn describe(i: &IncidentRecord) -> String {
    format!(
        "<p><strong>[{}] #{} {}</strong></p><p class=\"meta\">service {} · {}</p>",
        i.severity,
        i.number,
        esc(&i.title),
        esc(&i.service),
        i.status.as_str()
    )
}

fn unavailable() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "<p>Herald cannot read its storage just now.</p>",
    )
}

/// The incidents of a bundle, for its one link.
async fn bundle_incidents(state: &AppState, id: &str) -> Result<Vec<IncidentRecord>, Response> {
    let ids: Vec<String> = match state.store.bundles.get_bundle(id).await {
        Ok(Some((b, rows))) => {
            // The link answers the whole run of bundles, as the bundle's code does.
            let Ok(earlier) = crate::worker::bundler::earlier_open(state, &b, &rows).await else {
                return Err(unavailable());
            };
            rows.into_iter()
                .map(|r| r.incident_id)
                .chain(earlier)
                .collect()
        }
        Ok(None) => {
            return Err(page(
                StatusCode::NOT_FOUND,
                "Pages gone",
                "<p>These pages no longer exist.</p>",
            ));
        }
        Err(_) => return Err(unavailable()),
    };
    let mut out: Vec<IncidentRecord> = Vec::new();
    for id in ids {
        if out.iter().any(|i| i.id == id) {
            continue;
        }
        match state.store.incidents.get_incident(&id).await {
            Ok(Some(v)) => out.push(v.incident),
            Ok(None) => {}
            Err(_) => return Err(unavailable()),
        }
    }
    out.sort_by_key(|i| (i.severity, i.number));
    Ok(out)
}

async fn show_bundle(state: &AppState, id: &str, claims: &ack_link::Claims) -> Response {
    let incidents = match bundle_incidents(state, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let open = incidents
        .iter()
        .filter(|i| i.status == crate::core::incident::Status::Triggered)
        .count();
    let list: String = incidents.iter().map(describe).collect();
    let buttons = if open == 0 {
        "<p>They are all resolved: nothing to do.</p>".to_string()
    } else {
        format!(
            "<form method=\"post\"><input type=\"hidden\" name=\"incident\" value=\"bundle:{}\">\
             <button name=\"action\" value=\"acknowledge\">Acknowledge all {open}</button>\
             <button name=\"action\" value=\"resolve\">Resolve all {open}</button></form>\
             <p class=\"meta\">You act as {}. The link works once.</p>",
            esc(id),
            esc(&claims.p)
        )
    };
    page(
        StatusCode::OK,
        &format!("{} incidents", incidents.len()),
        &format!("{buttons}{list}"),
    )
}

async fn act_bundle(
    state: &AppState,
    id: &str,
    claims: &ack_link::Claims,
    action: IncidentAction,
) -> Response {
    let incidents = match bundle_incidents(state, id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let ids: Vec<String> = incidents.iter().map(|i| i.id.clone()).collect();
    let why = format!("link for {} incidents", ids.len());
    match answer_all(state, &ids, action, &claims.p, Via::Link, &why).await {
        Ok(r) => page(
            StatusCode::OK,
            &format!("{} incidents {}", r.done, action.done()),
            &format!(
                "<p>Done: {} recorded as {}; {} were taken or resolved already.</p>",
                r.done,
                esc(&claims.p),
                r.not_now
            ),
        ),
        Err(_) => unavailable(),
    }
}

pub async fn show(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(key) = secret(&state) else {
        return off();
    };
    let claims = match ack_link::check(&key, &token, now_millis()) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    if let Some(b) = claims.i.strip_prefix("bundle:") {
        return show_bundle(&state, b, &claims).await;
    }
    let i = match state.store.incidents.get_incident(&claims.i).await {
        Ok(Some(v)) => v.incident,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "Incident gone",
                "<p>This incident no longer exists.</p>",
            );
        }
        Err(_) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<p>Herald cannot read its storage just now.</p>",
            );
        }
    };
    let buttons = if i.status.as_str() == "resolved" {
        "<p>It is resolved: nothing to do.</p>".to_string()
    } else {
        format!(
            "<form method=\"post\"><input type=\"hidden\" name=\"incident\" value=\"{}\">\
             <button name=\"action\" value=\"acknowledge\">Acknowledge</button>\
             <button name=\"action\" value=\"resolve\">Resolve</button></form>\
             <p class=\"meta\">You act as {}. The link works once.</p>",
            esc(&i.id),
            esc(&claims.p)
        )
    };
    page(
        StatusCode::OK,
        &format!("Incident #{}", i.number),
        &format!("{}{buttons}", describe(&i)),
    )
}

pub async fn act(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let Some(key) = secret(&state) else {
        return off();
    };
    let claims = match ack_link::check(&key, &token, now_millis()) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("incident").is_some_and(|i| i != claims.i) {
        return page(
            StatusCode::FORBIDDEN,
            "This link is for another incident",
            "<p>Open the link of the page you are answering.</p>",
        );
    }
    let action = match get("action") {
        Some("acknowledge") | None => IncidentAction::Acknowledge,
        Some("resolve") => IncidentAction::Resolve,
        Some(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Unknown action",
                "<p>Choose Acknowledge or Resolve.</p>",
            );
        }
    };
    match state
        .store
        .escalations
        .spend_link(&format!("link:{}", claims.n), now_millis())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return page(
                StatusCode::GONE,
                "This link was used already",
                "<p>A link works once. The incident's state is on the page that sent it.</p>",
            );
        }
        Err(_) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<p>Herald cannot write to its storage just now.</p>",
            );
        }
    }
    if let Some(b) = claims.i.strip_prefix("bundle:") {
        return act_bundle(&state, b, &claims, action).await;
    }
    match answer(&state, &claims.i, action, &claims.p, Via::Link, "").await {
        Ok(Acted::Done(i)) => page(
            StatusCode::OK,
            &format!("#{} {}", i.number, i.status.as_str()),
            &format!(
                "{}<p>Done: recorded as {}.</p>",
                describe(&i),
                esc(&claims.p)
            ),
        ),
        Ok(Acted::NotNow(i)) => page(
            StatusCode::CONFLICT,
            &format!("#{} is {} already", i.number, i.status.as_str()),
            &describe(&i),
        ),
        Ok(Acted::NotFound) => page(
            StatusCode::NOT_FOUND,
            "Incident gone",
            "<p>This incident no longer exists.</p>",
        ),
        Err(_) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "<p>Herald cannot write to its storage just now.</p>",
        ),
    }
}
