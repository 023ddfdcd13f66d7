//! The console's other pages: nodes, API keys, contacts, incidents and who is on call,
//! backups and drill reports, and the public status page's posts.

use super::client::{call, list, seg};
use super::session::Session;
use super::view::page;
use crate::api::AppState;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

pub async fn nodes(State(state): State<AppState>, s: Session) -> Response {
    let a = call(&state, &s.who, Method::GET, "/v1/nodes", None).await;
    page(
        &state,
        Some(&s),
        "nodes.html",
        "nodes",
        "Nodes",
        json!({
            "data": a.body["data"], "this_node": a.body["this_node"], "problem": a.refusal(),
            "backend": if state.store.cluster.shared() { "PostgreSQL (shared by every node)" } else { "SQLite (this node only)" },
        }),
        a.status,
    )
}

pub async fn keys(State(state): State<AppState>, s: Session) -> Response {
    let (data, a) = list(&state, &s.who, "/v1/api-keys").await;
    page(
        &state,
        Some(&s),
        "keys.html",
        "keys",
        "API keys",
        json!({"data": data, "problem": a.refusal(), "roles": ["viewer", "sender", "operator", "admin"]}),
        a.status,
    )
}

pub async fn contacts(State(state): State<AppState>, s: Session) -> Response {
    let (data, a) = list(&state, &s.who, "/v1/contacts?limit=100").await;
    page(
        &state,
        Some(&s),
        "contacts.html",
        "contacts",
        "Contacts",
        json!({"data": data, "problem": a.refusal()}),
        a.status,
    )
}

pub async fn incidents(State(state): State<AppState>, s: Session) -> Response {
    let (data, a) = list(&state, &s.who, "/v1/incidents?limit=50").await;
    // Who is on call now, for the first 20 schedules (a call each).
    let (schedules, _) = list(&state, &s.who, "/v1/schedules?limit=20").await;
    let mut on_call = Vec::new();
    for sc in &schedules {
        let Some(id) = sc["id"].as_str() else {
            continue;
        };
        let now = call(
            &state,
            &s.who,
            Method::GET,
            &format!("/v1/schedules/{}/on-call", seg(id)),
            None,
        )
        .await;
        on_call.push(json!({"schedule": sc, "now": now.body}));
    }
    page(
        &state,
        Some(&s),
        "incidents.html",
        "incidents",
        "Incidents and on-call",
        json!({"data": data, "on_call": on_call, "problem": a.refusal()}),
        a.status,
    )
}

/// Drill reports written under `<data_dir>/drills/` (`herald drill run … --report
/// <data_dir>/drills/<name>`), newest first.
fn drill_reports(dir: &std::path::Path) -> Vec<Value> {
    // Report names carry no time, so every file's start time is read; files over 1 MiB are
    // not reports.
    let mut out: Vec<(String, Value)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter(|e| e.metadata().is_ok_and(|m| m.len() <= 1 << 20))
        .filter_map(|e| {
            let bytes = std::fs::read(e.path()).ok()?;
            let v: Value = serde_json::from_slice(&bytes).ok()?;
            Some((e.file_name().to_string_lossy().to_string(), v))
        })
        .collect();
    out.sort_by(|a, b| b.1["started_at"].as_str().cmp(&a.1["started_at"].as_str()));
    out.into_iter()
        .take(100)
        .map(|(file, v)| json!({"file": file, "r": v}))
        .collect()
}

pub async fn backups(State(state): State<AppState>, s: Session) -> Response {
    // Backup paths and drill reports are for operators (as the backup CLI is).
    if let Err(e) = s.who.require(crate::core::types::Role::Operator) {
        return page(
            &state,
            Some(&s),
            "backups.html",
            "backups",
            "Backups and drills",
            json!({"problem": e.detail}),
            e.status,
        );
    }
    let dir = state.cfg.backup_dir();
    let drills_dir = state.cfg.server.data_dir.join("drills");
    let (listed, drills) = {
        let (dir, drills_dir) = (dir.clone(), drills_dir.clone());
        match tokio::task::spawn_blocking(move || {
            (crate::backup::list(&dir), drill_reports(&drills_dir))
        })
        .await
        {
            Ok(r) => r,
            Err(_) => (Ok(vec![]), vec![]),
        }
    };
    let (backups, listing_problem) = match &listed {
        Ok(l) => (
            l.iter()
                .rev()
                .map(|b| {
                    json!({
                        "file": b.path.file_name().map(|n| n.to_string_lossy().to_string()),
                        "bytes": b.bytes,
                        "encrypted": b.encrypted,
                        "created_at": b.manifest.as_ref().map(|m| m.created_at.clone()),
                        "source": b.manifest.as_ref().map(|m| m.source.clone()),
                        "tables": b.manifest.as_ref().map(|m| m.tables.len()),
                    })
                })
                .collect::<Vec<_>>(),
            None,
        ),
        Err(e) => (vec![], Some(e.to_string())),
    };
    page(
        &state,
        Some(&s),
        "backups.html",
        "backups",
        "Backups and drills",
        json!({
            "backups": backups, "dir": dir.display().to_string(), "listing_problem": listing_problem,
            "drills": drills, "drills_dir": drills_dir.display().to_string(),
        }),
        StatusCode::OK,
    )
}

pub async fn status_posts(State(state): State<AppState>, s: Session) -> Response {
    let (data, a) = list(&state, &s.who, "/v1/status/incidents").await;
    let components: Vec<Value> = crate::status::component_ids(&state)
        .into_iter()
        .map(|(id, name)| json!({"id": id, "name": name}))
        .collect();
    page(
        &state,
        Some(&s),
        "status_posts.html",
        "status",
        "Status page posts",
        json!({
            "data": data, "problem": a.refusal(), "components": components,
            "statuses": ["investigating", "identified", "monitoring", "resolved"],
            "impacts": ["none", "minor", "major", "critical"],
            "component_states": ["operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage"],
        }),
        a.status,
    )
}
