//! The console's main pages, each read through the API as the signed-in key.

use super::client::{call, list, query, seg};
use super::figures;
use super::session::Session;
use super::view::page;
use crate::api::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::HashMap;

type Q = Query<HashMap<String, String>>;

fn q<'a>(q: &'a HashMap<String, String>, k: &str) -> &'a str {
    q.get(k).map(String::as_str).unwrap_or("")
}

pub async fn overview(State(state): State<AppState>, s: Session) -> Response {
    let (f, _) = figures::read(&state, None).await;
    let (providers, a) = list(&state, &s.who, "/v1/providers").await;
    let (pending, b) = list(&state, &s.who, "/v1/approvals?status=pending&limit=20").await;
    // A read that failed says so rather than look like an empty list.
    let problem = a.refusal().or_else(|| b.refusal());
    let status = if a.ok() { b.status } else { a.status };
    page(
        &state,
        Some(&s),
        "overview.html",
        "overview",
        "Overview",
        json!({"f": f, "providers": providers, "pending": pending, "problem": problem}),
        status,
    )
}

pub async fn messages(State(state): State<AppState>, s: Session, Query(p): Q) -> Response {
    if let Some(id) = p.get("id").map(|i| i.trim()).filter(|i| !i.is_empty()) {
        return message(State(state), s, Path(id.to_string())).await;
    }
    let path = format!(
        "/v1/messages{}",
        query(&[
            ("status", q(&p, "status")),
            ("channel", q(&p, "channel")),
            ("after", q(&p, "after")),
            ("limit", "50"),
        ])
    );
    let (data, a) = list(&state, &s.who, &path).await;
    let next = a.body["next_after"].as_str().map(|after| {
        format!(
            "/console/messages{}",
            query(&[
                ("status", q(&p, "status")),
                ("channel", q(&p, "channel")),
                ("after", after),
            ])
        )
    });
    page(
        &state,
        Some(&s),
        "messages.html",
        "messages",
        "Messages",
        json!({
            "data": data, "next": next, "problem": a.refusal(),
            "status": q(&p, "status"), "channel": q(&p, "channel"),
            "statuses": ["queued", "sending", "sent", "delivered", "failed", "expired", "cancelled"],
            "channels": crate::core::types::Channel::ALL.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        }),
        a.status,
    )
}

pub async fn message(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
) -> Response {
    let a = call(
        &state,
        &s.who,
        Method::GET,
        &format!("/v1/messages/{}", seg(&id)),
        None,
    )
    .await;
    page(
        &state,
        Some(&s),
        "message.html",
        "messages",
        "Message",
        json!({"m": a.body, "id": id, "problem": a.refusal()}),
        a.status,
    )
}

pub async fn dead_letters(State(state): State<AppState>, s: Session, Query(p): Q) -> Response {
    let path = format!(
        "/v1/dead-letters{}",
        query(&[
            ("channel", q(&p, "channel")),
            ("after", q(&p, "after")),
            ("limit", "100"),
        ])
    );
    let (data, a) = list(&state, &s.who, &path).await;
    let next = a.body["next_after"].as_str().map(|after| {
        format!(
            "/console/dead-letters{}",
            query(&[("channel", q(&p, "channel")), ("after", after)])
        )
    });
    page(
        &state,
        Some(&s),
        "dead_letters.html",
        "dead_letters",
        "Dead letters",
        json!({
            "data": data, "next": next, "problem": a.refusal(), "channel": q(&p, "channel"),
            "replay_over": state.cfg.approvals.replay_over,
            "needs_approval": state.cfg.approvals.requires("dead_letters.replay"),
        }),
        a.status,
    )
}

pub async fn providers(State(state): State<AppState>, s: Session) -> Response {
    let (data, a) = list(&state, &s.who, "/v1/providers").await;
    page(
        &state,
        Some(&s),
        "providers.html",
        "providers",
        "Providers",
        json!({"data": data, "problem": a.refusal()}),
        a.status,
    )
}

pub async fn mode(State(state): State<AppState>, s: Session) -> Response {
    let a = call(&state, &s.who, Method::GET, "/v1/mode", None).await;
    page(
        &state,
        Some(&s),
        "mode.html",
        "mode",
        "Mode",
        json!({
            "m": a.body, "problem": a.refusal(),
            "modes": ["normal", "core_only", "read_only"],
            "needs_approval": state.cfg.approvals.requires("mode.set"),
        }),
        a.status,
    )
}

pub async fn approvals(State(state): State<AppState>, s: Session) -> Response {
    let (pending, a) = list(&state, &s.who, "/v1/approvals?status=pending&limit=100").await;
    let (recent, _) = list(&state, &s.who, "/v1/approvals?limit=50").await;
    // Acts done alone are recorded executed; the 1000 newest are searched for unreviewed ones.
    let (done, _) = list(&state, &s.who, "/v1/approvals?status=executed&limit=1000").await;
    let review: Vec<&Value> = done
        .iter()
        .filter(|r| r["break_glass"] == true && r["reviewed_by"].is_null())
        .collect();
    page(
        &state,
        Some(&s),
        "approvals.html",
        "approvals",
        "Approvals",
        json!({"pending": pending, "recent": recent, "review": review, "problem": a.refusal()}),
        a.status,
    )
}

/// Whether an audit entry matches the page's filters (actor exact, action and target as
/// parts of the text).
pub fn audit_matches(e: &Value, actor: &str, action: &str, target: &str) -> bool {
    let has = |field: &str, part: &str| {
        part.is_empty()
            || e[field]
                .as_str()
                .is_some_and(|v| v.to_lowercase().contains(&part.to_lowercase()))
    };
    (actor.is_empty() || e["actor"].as_str() == Some(actor))
        && has("action", action)
        && has("target", target)
}

pub async fn audit(State(state): State<AppState>, s: Session, Query(p): Q) -> Response {
    let verdict = call(&state, &s.who, Method::GET, "/v1/audit/verify", None).await;
    let (actor, action, target) = (q(&p, "actor"), q(&p, "action"), q(&p, "target"));
    // Filters read up to five pages of 200 (1000 entries) from the cursor; the next page
    // goes on after the last entry read, or after the 100th shown when the page filled.
    let mut after = q(&p, "after").to_string();
    let mut shown: Vec<Value> = Vec::new();
    let mut last = None;
    let mut status = StatusCode::OK;
    let mut problem = None;
    'pages: for _ in 0..5 {
        let (data, a) = list(
            &state,
            &s.who,
            &format!("/v1/audit{}", query(&[("limit", "200"), ("after", &after)])),
        )
        .await;
        if !a.ok() {
            status = a.status;
            problem = a.refusal();
            break;
        }
        last = a.body["next_after"].as_i64();
        for (i, e) in data.iter().enumerate() {
            if !audit_matches(e, actor, action, target) {
                continue;
            }
            shown.push(e.clone());
            if shown.len() == 100 {
                // Entries after this one on the page are still to be shown.
                if i + 1 < data.len() {
                    last = e["id"].as_i64();
                }
                break 'pages;
            }
        }
        match last {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    let next = last.map(|n| {
        format!(
            "/console/audit{}",
            query(&[
                ("actor", actor),
                ("action", action),
                ("target", target),
                ("after", &n.to_string())
            ])
        )
    });
    page(
        &state,
        Some(&s),
        "audit.html",
        "audit",
        "Audit log",
        json!({
            "data": shown, "next": next, "problem": problem,
            "verdict": verdict.body, "verdict_ok": verdict.ok(),
            "actor": actor, "action": action, "target": target,
        }),
        status,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_filters_match_actor_exactly_and_the_rest_in_part() {
        let e = json!({"actor": "alice", "action": "provider.disable", "target": "aliyun-main"});
        assert!(audit_matches(&e, "", "", ""));
        assert!(audit_matches(&e, "alice", "disable", "ALIYUN"));
        assert!(!audit_matches(&e, "ali", "", ""), "actor is exact");
        assert!(!audit_matches(&e, "", "mode", ""));
        assert!(
            !audit_matches(&json!({"actor": "x"}), "", "", "t"),
            "no target, no match"
        );
    }
}
