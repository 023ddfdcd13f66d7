//! The public status page. Each node keeps a snapshot in memory, rebuilt every
//! `[status] refresh` from what it knows (circuits and switches are in memory, so component
//! states stay current) and what storage holds (posted incidents, 90 days of figures). The
//! public routes read only the snapshot: while storage is unreachable they keep serving it,
//! stamped with the time its stored part was read. The snapshot is also written to a file,
//! so a node restarted during an outage serves the last one it had.

pub mod render;
pub mod state;

use crate::api::AppState;
use crate::core::types::{Channel, Millis, now_millis};
use crate::store::{StatusDay, StatusIncident, StatusSample};
use serde::{Deserialize, Serialize};
use state::State;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Days of history the page shows.
pub const DAYS: i64 = 90;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Day {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The worst state of the day; `None` without data.
    pub state: Option<String>,
    pub uptime: Option<f64>,
    /// Minutes in partial or major outage.
    pub down_minutes: i64,
    pub degraded_minutes: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Component {
    pub id: String,
    pub name: String,
    pub status: String,
    pub position: usize,
    /// Over the days with data.
    pub uptime: Option<f64>,
    pub days: Vec<Day>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub name: String,
    pub built_at: Millis,
    /// When posted incidents and history were last read from storage.
    pub stored_at: Millis,
    /// Whether the last build could read storage.
    pub live: bool,
    pub indicator: String,
    pub description: String,
    pub components: Vec<Component>,
    /// Posted incidents (as `StatusIncident` serialises), newest first.
    pub incidents: Vec<serde_json::Value>,
}

/// The snapshot every public route reads.
pub struct StatusPage {
    current: RwLock<Option<Arc<Snapshot>>>,
    file: PathBuf,
    /// One build at a time: a slow build must not replace a newer one (after a post).
    building: tokio::sync::Mutex<()>,
}

impl StatusPage {
    /// Starts from the snapshot file, if an earlier run left one.
    pub fn new(file: PathBuf) -> Self {
        let loaded = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Snapshot>(&b).ok())
            .map(|mut s| {
                s.live = false;
                Arc::new(s)
            });
        StatusPage {
            current: RwLock::new(loaded),
            file,
            building: tokio::sync::Mutex::new(()),
        }
    }

    pub fn get(&self) -> Option<Arc<Snapshot>> {
        self.current.read().ok().and_then(|s| s.clone())
    }

    fn set(&self, s: Snapshot, save: bool) {
        if save && let Ok(bytes) = serde_json::to_vec(&s) {
            let tmp = self.file.with_extension("json.tmp");
            let ok = std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, &self.file));
            if let Err(e) = ok {
                tracing::debug!(error = %e, file = %self.file.display(), "status snapshot not saved");
            }
        }
        if let Ok(mut cur) = self.current.write() {
            *cur = Some(Arc::new(s));
        }
    }
}

pub fn component_name(c: Channel) -> &'static str {
    match c {
        Channel::Sms => "SMS",
        Channel::Email => "Email",
        Channel::Push => "Push notifications",
        Channel::Chat => "Chat",
        Channel::Webhook => "Webhooks",
        Channel::Inbox => "Inbox",
        Channel::Voice => "Voice calls",
    }
}

/// `YYYY-MM-DD` of a time (UTC).
pub fn day_of(ms: Millis) -> String {
    crate::core::types::rfc3339(ms)
        .get(..10)
        .unwrap_or("1970-01-01")
        .to_string()
}

/// The 90 days ending today, oldest first, from the stored figures of one component.
fn days_of(stored: &[&StatusDay], now: Millis) -> Vec<Day> {
    let by: HashMap<&str, &StatusDay> = stored.iter().map(|d| (d.day.as_str(), *d)).collect();
    (0..DAYS)
        .rev()
        .map(|back| {
            let day = day_of(now - back * 86_400_000);
            match by.get(day.as_str()) {
                Some(d) => Day {
                    state: state::day_state(
                        d.sampled,
                        d.degraded,
                        d.partial,
                        d.major,
                        d.maintenance,
                    )
                    .map(|s| s.as_str().to_string()),
                    uptime: state::uptime(d.sampled, d.partial, d.major),
                    down_minutes: d.partial + d.major,
                    degraded_minutes: d.degraded,
                    day,
                },
                None => Day {
                    day,
                    state: None,
                    uptime: None,
                    down_minutes: 0,
                    degraded_minutes: 0,
                },
            }
        })
        .collect()
}

/// What posted, unresolved incidents put each component in.
fn posted_states(incidents: &[serde_json::Value]) -> HashMap<String, Vec<State>> {
    let mut out: HashMap<String, Vec<State>> = HashMap::new();
    for i in incidents {
        if i["resolved_at"].is_string() {
            continue;
        }
        for c in i["components"].as_array().into_iter().flatten() {
            if let (Some(id), Some(st)) = (
                c["id"].as_str(),
                c["status"].as_str().and_then(State::parse),
            ) {
                out.entry(id.to_string()).or_default().push(st);
            }
        }
    }
    out
}

/// The components: the API itself, then each channel that has providers.
pub fn component_ids(state: &AppState) -> Vec<(String, String)> {
    components_of(&state.providers.views(now_millis()))
}

fn components_of(views: &[crate::providers::registry::ProviderView]) -> Vec<(String, String)> {
    let mut out = vec![("api".to_string(), "API".to_string())];
    for c in Channel::ALL {
        if views.iter().any(|v| v.channel == *c) {
            out.push((c.to_string(), component_name(*c).to_string()));
        }
    }
    out
}

struct Stored {
    incidents: Vec<serde_json::Value>,
    days: Vec<StatusDay>,
    at: Millis,
}

async fn read_stored(state: &AppState, now: Millis) -> Option<Stored> {
    let console = &state.store.console;
    let incidents: Vec<StatusIncident> = console.status_incidents(50).await.ok()?;
    let days = console
        .status_days(day_of(now - (DAYS - 1) * 86_400_000))
        .await
        .ok()?;
    Some(Stored {
        incidents: incidents.iter().map(|i| serde_json::json!(i)).collect(),
        days,
        at: now,
    })
}

/// Builds a snapshot from memory and, when it answers, storage.
async fn build(
    state: &AppState,
    prev: Option<&Snapshot>,
    last_minute: &mut i64,
) -> (Snapshot, bool) {
    let now = now_millis();
    // Reading the posts and the history is the storage check: no separate ping.
    let stored = read_stored(state, now).await;
    let live = stored.is_some();
    let (incidents, at) = match (&stored, prev) {
        (Some(s), _) => (s.incidents.clone(), s.at),
        (None, Some(p)) => (p.incidents.clone(), p.stored_at),
        (None, None) => (Vec::new(), 0),
    };
    let mode = state
        .mode
        .read()
        .map(|m| m.mode.clone())
        .unwrap_or_else(|_| "normal".into());
    let views = state.providers.views(now);
    let posted = posted_states(&incidents);
    let mut comps = Vec::new();
    for (pos, (id, name)) in components_of(&views).into_iter().enumerate() {
        let providers: Vec<&str> = views
            .iter()
            .filter(|v| v.channel.to_string() == id)
            .map(|v| v.state)
            .collect();
        let st = state::component_state(
            &providers,
            &mode,
            posted.get(&id).map(Vec::as_slice).unwrap_or(&[]),
            live,
        );
        let days = match &stored {
            Some(s) => {
                let mine: Vec<&StatusDay> = s.days.iter().filter(|d| d.component == id).collect();
                days_of(&mine, now)
            }
            None => prev
                .and_then(|p| p.components.iter().find(|c| c.id == id))
                .map(|c| c.days.clone())
                .unwrap_or_else(|| days_of(&[], now)),
        };
        let (up, n) = days
            .iter()
            .filter_map(|d| d.uptime)
            .fold((0.0, 0usize), |(s, n), u| (s + u, n + 1));
        comps.push(Component {
            id,
            name,
            status: st.as_str().to_string(),
            position: pos + 1,
            uptime: (n > 0).then(|| up / n as f64),
            days,
        });
    }
    // Each minute, once: today's figures count this minute's states.
    let minute = now / 60_000;
    if live && minute > *last_minute {
        let samples: Vec<StatusSample> = comps
            .iter()
            .map(|c| StatusSample {
                component: c.id.clone(),
                day: day_of(now),
                minute,
                column: crate::store::rules::status_column(&c.status),
            })
            .collect();
        if state.store.console.status_sample(samples).await.is_ok() {
            *last_minute = minute;
        }
    }
    let states: Vec<State> = comps
        .iter()
        .filter_map(|c| State::parse(&c.status))
        .collect();
    let (indicator, description) = state::indicator(&states);
    (
        Snapshot {
            name: state.cfg.status.name.clone(),
            built_at: now,
            stored_at: at,
            live,
            indicator: indicator.into(),
            description: description.into(),
            components: comps,
            incidents,
        },
        live,
    )
}

/// Rebuilds the snapshot every `[status] refresh` until `stop`.
pub async fn run(state: AppState, stop: tokio_util::sync::CancellationToken) {
    let mut last_minute = 0;
    loop {
        {
            let _one = state.status.building.lock().await;
            let prev = state.status.get();
            let (snap, live) = build(&state, prev.as_deref(), &mut last_minute).await;
            state.status.set(snap, live);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(state.cfg.status.refresh.0) => {}
        }
    }
}

/// Rebuilds at once (after an operator posted an update).
pub async fn refresh_now(state: &AppState) {
    let _one = state.status.building.lock().await;
    let prev = state.status.get();
    let mut minute = i64::MAX;
    let (snap, live) = build(state, prev.as_deref(), &mut minute).await;
    state.status.set(snap, live);
}
