//! The bundler: pages (and notices to people paged) are held a short window per severity;
//! every node, each `[oncall] tick`, looks at what is held per person and contact method
//! and, when the window of the first ends (later while bundles keep going to that person),
//! takes them all into one bundle and sends it as one ordinary message — retries,
//! failover, degradation — under the bundle's idempotency key. Taking is one store write
//! that only takes rows no bundle has, so each row is in exactly one bundle; a node that
//! dies after taking leaves a bundle without a message, which any node sends after the
//! lease, under the same key.

use crate::api::AppState;
use crate::core::incident::Severity;
use crate::core::oncall::bundle::{self, Held, Item};
use crate::core::types::{Millis, new_id, now_millis};
use crate::metrics::MethodLabels;
use crate::store::{BundleRow, IncidentRecord, PageRow, StoreError};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// Held rows read per tick.
const HELD: usize = 5_000;

type Group = (String, String, String);

/// Takes and sends the bundles that are due; how many went.
pub async fn tick(state: &AppState) -> usize {
    match run_once(state).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "bundles not sent yet; retrying");
            0
        }
    }
}

async fn run_once(state: &AppState) -> Result<usize, StoreError> {
    let now = now_millis();
    let cfg = &state.cfg.oncall;
    let max_gap = cfg.bundle_max_gap.0.as_millis() as i64;
    let store = &state.store.bundles;
    let held = store.held_pages(HELD).await?;
    let mut sent = 0;
    if !held.is_empty() {
        let mut groups: BTreeMap<Group, Vec<Held>> = BTreeMap::new();
        for p in &held {
            let Some(hold_until) = p.hold_until else {
                continue;
            };
            groups
                .entry((p.person.clone(), p.method.clone(), p.kind.clone()))
                .or_default()
                .push(Held {
                    created_at: p.created_at,
                    not_before: p.not_before,
                    hold_until,
                });
        }
        let mut recent: HashMap<Group, Vec<Millis>> = HashMap::new();
        for b in store.bundles_since(now - 3 * max_gap).await? {
            recent
                .entry((b.person, b.method, b.kind))
                .or_default()
                .push(b.created_at);
        }
        let since = now - cfg.reply_code_window.0.as_millis() as i64;
        for (g, rows) in groups {
            let last = recent.get(&g).map(Vec::as_slice).unwrap_or(&[]);
            if bundle::due(&rows, last, max_gap).is_none_or(|d| d > now) {
                continue;
            }
            let b = BundleRow {
                id: new_id("bn"),
                person: g.0,
                method: g.1,
                kind: g.2,
                address: None,
                reply_code: None,
                size: 0,
                message_id: None,
                created_at: now,
            };
            if let Some((b, rows)) = store.take_bundle(b, now, since).await? {
                send(state, &b, &rows).await?;
                sent += 1;
            }
        }
    }
    // Bundles a node took and died before sending.
    let lease = cfg.lease.0.as_millis() as i64;
    for (b, rows) in store.unsent_bundles(now - lease).await? {
        send(state, &b, &rows).await?;
        sent += 1;
    }
    Ok(sent)
}

/// Sends one bundle as one message and records it.
async fn send(state: &AppState, b: &BundleRow, rows: &[PageRow]) -> Result<(), StoreError> {
    let now = now_millis();
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let mut incidents: HashMap<String, IncidentRecord> = HashMap::new();
    for r in rows {
        if !incidents.contains_key(&r.incident_id)
            && let Some(v) = state.store.incidents.get_incident(&r.incident_id).await?
        {
            incidents.insert(r.incident_id.clone(), v.incident);
        }
    }
    let made = if b.kind == "notice" {
        notice_body(b, rows).map(|body| (body, format!("bundle:{}", b.id)))
    } else if rows.len() == 1 {
        incidents.get(&first.incident_id).map(|i| {
            (
                super::page_body::body_of(state, i, first, now),
                first.key.clone(),
            )
        })
    } else {
        let open = earlier_open(state, b, rows).await?.len();
        let body = page_body(state, b, rows, &incidents, open, now);
        Some((body, format!("bundle:{}", b.id)))
    };
    let Some((body, key)) = made else {
        // Its incidents are gone: nothing to say.
        return state.store.bundles.bundle_sent(&b.id, "-", now).await;
    };
    let mut contacts = HashMap::new();
    if !b.person.starts_with("chat:") {
        let c = state.store.contacts.get_contact(&b.person).await?;
        contacts.insert(b.person.clone(), c.map(|r| r.contact));
    }
    let accepted = super::pager::accept(
        state,
        &first.incident_id,
        vec![(b.person.clone(), body, key)],
        &contacts,
    )
    .await
    .map_err(StoreError::Unavailable)?;
    // Refused (the person cannot be reached on it any more): recorded, not retried.
    let message = accepted.first().map(|(_, m)| m.as_str()).unwrap_or("-");
    state.store.bundles.bundle_sent(&b.id, message, now).await?;
    let m = &state.metrics;
    let labels = MethodLabels {
        method: b.method.clone(),
    };
    if rows.len() > 1 {
        m.bundles.get_or_create(&labels).inc();
    }
    if b.kind == "page" {
        if rows.len() > 1 {
            m.pages_bundled
                .get_or_create(&labels)
                .inc_by(rows.len() as u64);
        } else {
            m.pages.get_or_create(&labels).inc();
        }
    }
    Ok(())
}

/// The incidents still open (triggered, not grouped into a storm) of the bundles of pages
/// that went to the same person and method just before `b`, in the same run (each within
/// `bundle_max_gap`, or the longest window, of the next), leaving out `own`: what `b`'s
/// code, link and keys answer beside its own rows — one reply for a whole storm. The
/// count a bundle says and the set an answer acts on are both this.
pub async fn earlier_open(
    state: &AppState,
    b: &BundleRow,
    own: &[PageRow],
) -> Result<Vec<String>, StoreError> {
    let cfg = &state.cfg.oncall;
    let longest = [Severity::P0, Severity::P1, Severity::P2, Severity::P3]
        .into_iter()
        .map(|s| cfg.bundle_window_for(s))
        .max()
        .unwrap_or(0);
    let tolerance =
        (cfg.bundle_max_gap.0.as_millis() as i64).max(longest) + cfg.lease.0.as_millis() as i64;
    let since = b.created_at - cfg.reply_code_window.0.as_millis() as i64;
    let same: Vec<BundleRow> = state
        .store
        .bundles
        .bundles_since(since)
        .await?
        .into_iter()
        .filter(|o| o.person == b.person && o.method == b.method && o.kind == "page")
        .filter(|o| o.id != b.id && o.created_at <= b.created_at && o.message_id.is_some())
        .collect();
    let times: Vec<Millis> = same.iter().map(|o| o.created_at).collect();
    let start = bundle::streak_start(&times, b.created_at, tolerance);
    let mut out: Vec<String> = Vec::new();
    for o in same.iter().filter(|o| o.created_at >= start) {
        let Some((_, rows)) = state.store.bundles.get_bundle(&o.id).await? else {
            continue;
        };
        for r in rows {
            if own.iter().any(|x| x.incident_id == r.incident_id) || out.contains(&r.incident_id) {
                continue;
            }
            if let Some(v) = state.store.incidents.get_incident(&r.incident_id).await?
                && v.incident.status == crate::core::incident::Status::Triggered
                && v.incident.grouped_into.is_none()
            {
                out.push(r.incident_id);
            }
        }
    }
    Ok(out)
}

/// The one message of a bundle of several pages.
fn page_body(
    state: &AppState,
    b: &BundleRow,
    rows: &[PageRow],
    incidents: &HashMap<String, IncidentRecord>,
    earlier_open: usize,
    now: Millis,
) -> Value {
    let items = bundle::ordered(
        rows.iter()
            .filter_map(|r| {
                incidents.get(&r.incident_id).map(|i| Item {
                    severity: i.severity,
                    number: i.number,
                    title: i.title.clone(),
                    code: r.reply_code,
                })
            })
            .collect(),
    );
    let drill = incidents.values().all(|i| i.source == "drill");
    let allowed = b.method != "sms"
        || b.address.as_deref().is_some_and(|a| {
            crate::core::oncall::ack_link::links_allowed(a, &state.cfg.oncall.no_links_for)
        });
    let link = allowed
        .then(|| super::page_body::link(state, &format!("bundle:{}", b.id), &b.person, now))
        .flatten();
    let span = now - rows.iter().map(|r| r.created_at).min().unwrap_or(now);
    let (subject, text) = bundle::page_text(
        &items,
        earlier_open,
        &b.method,
        b.reply_code,
        link.as_deref(),
        span,
        drill,
    );
    let top = items.first().map(|i| i.severity).unwrap_or(Severity::P3);
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r.incident_id.as_str())
        .take(100)
        .collect();
    let mut metadata = json!({
        "category": "incident", "bundle": b.id, "incidents": ids,
        "collapse_key": format!("bundle-{}", b.person),
    });
    if b.method == "voice" {
        metadata["voice_keypress"] = json!(true);
    }
    if let Some(c) = b.reply_code {
        metadata["reply_code"] = json!(c);
    }
    json!({
        "to": super::pager::page_to(&b.person), "channels": [b.method],
        "priority": top.priority().as_str(),
        "content": {"subject": subject, "text": text}, "metadata": metadata,
    })
}

/// The one message of a bundle of notices (or one notice alone).
fn notice_body(b: &BundleRow, rows: &[PageRow]) -> Option<Value> {
    let notes: Vec<String> = rows.iter().filter_map(|r| r.note.clone()).collect();
    let (subject, text) = match notes.as_slice() {
        [] => return None,
        [one] => (
            one.lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(120)
                .collect(),
            one.clone(),
        ),
        _ => {
            let span = rows.iter().map(|r| r.created_at).max().unwrap_or(0)
                - rows.iter().map(|r| r.created_at).min().unwrap_or(0);
            bundle::notice_text(&notes, span)
        }
    };
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r.incident_id.as_str())
        .take(100)
        .collect();
    Some(json!({
        "to": super::pager::page_to(&b.person), "channels": [b.method], "priority": "normal",
        "content": {"subject": subject, "text": text},
        "metadata": {"category": "incident", "bundle": b.id, "incidents": ids},
    }))
}

/// Notices to people paged — `(who, body, key)` as `pager::notices_to_paged` makes them —
/// held for a bundle when the incident's severity has a window, else queued at once.
pub async fn notify(
    state: &AppState,
    i: &IncidentRecord,
    owed: Vec<(String, Value, String)>,
    contacts: &HashMap<String, Option<crate::core::contact::Contact>>,
) -> Result<(), String> {
    if owed.is_empty() {
        return Ok(());
    }
    let window = state.cfg.oncall.bundle_window_for(i.severity);
    if window == 0 {
        return super::pager::accept(state, &i.id, owed, contacts)
            .await
            .map(|_| ());
    }
    let now = now_millis();
    let rows = owed
        .into_iter()
        .map(|(who, body, key)| {
            let method = body["channels"][0].as_str().unwrap_or("inbox").to_string();
            let mut p = PageRow::new(key, &i.id, (-1, -1, -1), &who, &method, None, now);
            p.kind = "notice".into();
            p.note = body["content"]["text"].as_str().map(str::to_string);
            p.hold_until = Some(now + window);
            p
        })
        .collect();
    state
        .store
        .bundles
        .hold_notices(rows)
        .await
        .map_err(|e| e.to_string())
}
