//! The escalator: every node, each `[oncall] tick`, claims the escalations that are due
//! (under a lease, with a fence) and fires them — who the step names (contacts, whoever a
//! schedule has on call now, chat groups), one page per person and contact method under
//! the page's key, then the row moves to the next step. A node killed mid-step leaves its
//! lease to run out; the next claimant finds the pages already recorded under the same
//! keys and the messages already queued under the same idempotency keys, so nobody is
//! paged twice.

use super::pager::reachable;
use crate::api::AppState;
use crate::core::alerts::routes::default_channels;
use crate::core::incident::Status;
use crate::core::oncall::escalation::{
    Decision, IncidentNow, Position, Rule, Target, after, decide, notifications, page_key,
};
use crate::core::oncall::policy_doc::PolicyDoc;
use crate::core::types::{Channel, Millis, now_millis, rfc3339};
use crate::store::{
    DocKind, EscState, EscalationMove, EscalationRow, Fired, IncidentRecord, PageRow, StoreError,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// Rows claimed per tick.
const CLAIM: usize = 50;

fn position(row: &EscalationRow) -> (Position, Option<Position>) {
    let p = |s: i64, pass: i64| Position {
        step: s.max(0) as usize,
        pass: pass.max(0) as u32,
        round: row.round.max(0) as u32,
    };
    (
        p(row.step, row.pass),
        row.fired_step
            .map(|s| p(s, row.fired_pass.unwrap_or(row.pass))),
    )
}

/// Claims and fires what is due; how many rows were handled.
pub async fn tick(state: &AppState) -> usize {
    let now = now_millis();
    let lease = state.cfg.oncall.lease.0.as_millis() as i64;
    let rows = match state
        .store
        .escalations
        .claim_escalations(&state.node_id, now, lease, CLAIM)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot claim due escalations");
            return 0;
        }
    };
    let n = rows.len();
    for row in rows {
        if let Err(e) = fire(state, &row).await {
            tracing::warn!(incident = row.incident_id, error = %e, "escalation step not finished; it is taken again when its lease ends");
        }
    }
    n
}

async fn fire(state: &AppState, row: &EscalationRow) -> Result<(), StoreError> {
    let now = now_millis();
    let esc = &state.store.escalations;
    let view = state.store.incidents.get_incident(&row.incident_id).await?;
    let Some(i) = view.map(|v| v.incident) else {
        esc.advance_escalation(
            &row.incident_id,
            row.fence,
            EscalationMove::Done,
            Fired::default(),
            now,
        )
        .await?;
        return Ok(());
    };
    let status = match i.status {
        Status::Resolved => IncidentNow::Over,
        Status::Triggered => IncidentNow::Triggered,
        Status::Acknowledged => IncidentNow::Acknowledged {
            at: i.acknowledged_at.unwrap_or(now),
        },
    };
    let (next, fired) = position(row);
    let timeout = state.cfg.oncall.ack_timeout_for(i.severity);
    let decision = decide(
        row.state == EscState::Waiting,
        next,
        fired,
        status,
        timeout,
        now,
    );
    let (pos, retrigger) = match decision {
        Decision::Stop => {
            esc.advance_escalation(
                &i.id,
                row.fence,
                EscalationMove::Done,
                Fired::default(),
                now,
            )
            .await?;
            return Ok(());
        }
        Decision::WaitUntil(due) => {
            esc.advance_escalation(
                &i.id,
                row.fence,
                EscalationMove::Wait { due },
                Fired::default(),
                now,
            )
            .await?;
            return Ok(());
        }
        Decision::Fire { pos, retrigger } => (pos, retrigger),
    };
    state
        .metrics
        .escalation_fire_lag
        .observe((now - row.due_at).max(0) as f64 / 1000.0);
    let Some(policy) = load_policy(state, &row.policy_id).await? else {
        tracing::error!(
            incident = i.id,
            policy = row.policy_id,
            "the incident's escalation policy is gone: nobody more is paged"
        );
        let summary = json!({"error": format!("escalation policy `{}` not found", row.policy_id)});
        let fired = Fired {
            summary: Some(summary),
            ..Fired::default()
        };
        esc.advance_escalation(&i.id, row.fence, EscalationMove::Done, fired, now)
            .await?;
        return Ok(());
    };
    let policy = policy.compile(i.severity);
    let Some(step) = policy.steps.get(pos.step) else {
        esc.advance_escalation(
            &i.id,
            row.fence,
            EscalationMove::Done,
            Fired::default(),
            now,
        )
        .await?;
        return Ok(());
    };
    let (mut wanted, contacts) =
        pages_for(state, &i, pos, &step.targets, &row.policy_id, now).await?;
    // Pages to people wait a short window for others to the same person (one message for
    // many in a storm); chat groups are posted to at once.
    // Drill pages go alone (never inside a bundle of real pages, nor answered by its code).
    let window = state.cfg.oncall.bundle_window_for(i.severity);
    if window > 0 && i.source != "drill" {
        for p in wanted.iter_mut().filter(|p| p.method != "chat") {
            p.not_before = later(contacts.get(&p.person).and_then(Option::as_ref), p);
            p.hold_until = Some(p.not_before.unwrap_or(now).saturating_add(window));
        }
    }
    let since = now - state.cfg.oncall.reply_code_window.0.as_millis() as i64;
    let Some(pages) = esc.reserve_pages(&i.id, row.fence, wanted, since).await? else {
        return Ok(()); // another node holds it now
    };
    // The acknowledgement timed out: back to triggered, now that this node still holds the
    // row (a stale holder never undoes a fresh answer).
    if retrigger {
        esc.retrigger_incident(&i.id, "system", "acknowledgement timed out", now)
            .await?;
    }
    let owed: Vec<(String, Value, String)> = pages
        .iter()
        .filter(|p| p.hold_until.is_none())
        .map(|p| {
            let mut body = super::page_body::body_of(state, &i, p, now);
            if let Some(at) = later(contacts.get(&p.person).and_then(Option::as_ref), p) {
                body["send_at"] = json!(rfc3339(at));
            }
            (p.person.clone(), body, p.key.clone())
        })
        .collect();
    let messages = super::pager::accept(state, &i.id, owed, &contacts)
        .await
        .map_err(StoreError::Unavailable)?;
    for p in &pages {
        if messages.iter().any(|(k, _)| *k == p.key) {
            state
                .metrics
                .pages
                .get_or_create(&crate::metrics::MethodLabels {
                    method: p.method.clone(),
                })
                .inc();
        }
    }
    let to = match after(&policy, pos, now) {
        Some((n, due)) => EscalationMove::Next {
            step: n.step as i64,
            pass: n.pass as i64,
            round: n.round as i64,
            due,
        },
        None => EscalationMove::Done,
    };
    let people: Vec<Value> = pages
        .iter()
        .map(|p| json!({"person": p.person, "method": p.method}))
        .collect();
    let fired = Fired {
        at: Some((pos.step as i64, pos.pass as i64, pos.round as i64)),
        messages,
        summary: Some(json!({
            "step": pos.step + 1, "pass": pos.pass + 1, "round": pos.round,
            "pages": people, "late_ms": (now - row.due_at).max(0),
        })),
    };
    let queued: Vec<String> = fired.messages.iter().map(|(_, m)| m.clone()).collect();
    if !esc
        .advance_escalation(&i.id, row.fence, to, fired, now)
        .await?
    {
        // Someone answered (or escalated) while this step was being sent: what is still
        // waiting to go out is cancelled if the incident no longer needs it.
        let open = state.store.incidents.get_incident(&i.id).await?;
        if open.is_none_or(|v| v.incident.status != Status::Triggered) {
            for m in queued {
                if let Ok(Some(v)) = state.store.messages.get_message(&m).await
                    && v.status == crate::core::types::MessageStatus::Queued
                {
                    let _ = state.store.messages.cancel(&m, "system").await;
                }
            }
        }
    }
    Ok(())
}

/// A channel that reaches the contact and that they have not turned off (an SMS `STOP`
/// adds `sms` to their opt-outs).
fn usable(state: &AppState, c: Option<&crate::core::contact::Contact>, m: Channel) -> bool {
    reachable(state, c, m)
        && !c.is_some_and(|c| {
            c.preferences
                .opt_out
                .channels
                .iter()
                .any(|o| o == m.as_str())
        })
}

/// When a page goes out if its person's paging rules delay its channel (voice after two
/// minutes…), counted from when the step fired; `None`: at once.
fn later(c: Option<&crate::core::contact::Contact>, p: &PageRow) -> Option<Millis> {
    let rules: Vec<Rule> = c?
        .preferences
        .paging
        .iter()
        .map(|r| Rule {
            method: r.channel.clone(),
            after: (r.after_seconds.min(3600) * 1000) as i64,
        })
        .collect();
    notifications(&rules, p.created_at, &p.method)
        .into_iter()
        .find(|(m, _)| *m == p.method)
        .map(|(_, at)| at)
        .filter(|at| *at > p.created_at)
}

async fn load_policy(state: &AppState, id: &str) -> Result<Option<PolicyDoc>, StoreError> {
    let Some(r) = state.store.oncall.get_doc(DocKind::Policy, id).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_value(r.body).ok())
}

type Contacts = HashMap<String, Option<crate::core::contact::Contact>>;

/// The pages a step makes now: each person the targets name (schedules resolved at `now`),
/// once, on each contact method of the incident's severity they can be reached on.
async fn pages_for(
    state: &AppState,
    i: &IncidentRecord,
    pos: Position,
    targets: &[Target],
    policy: &str,
    now: Millis,
) -> Result<(Vec<PageRow>, Contacts), StoreError> {
    let mut people: Vec<String> = Vec::new();
    let mut chats: Vec<String> = Vec::new();
    for t in targets {
        match t {
            Target::Contact(c) => people.push(c.clone()),
            Target::Schedule(s) => match crate::api::oncall::on_call_at(state, s, now).await {
                Ok(Some(p)) => people.extend(p),
                Ok(None) => tracing::warn!(
                    incident = i.id,
                    schedule = s,
                    "a step names a schedule that is gone"
                ),
                Err(e) => {
                    tracing::warn!(incident = i.id, schedule = s, error = ?e, "a schedule could not be read")
                }
            },
            Target::Chat(c) => chats.push(c.clone()),
        }
    }
    let mut seen = std::collections::HashSet::new();
    people.retain(|p| seen.insert(p.clone()));
    // The incident's route says the channels per severity; a drill (no route) takes those of
    // the first route that names its policy.
    let channels = state
        .routes
        .iter()
        .find(|r| r.cfg.id == i.route)
        .or_else(|| {
            state
                .routes
                .iter()
                .find(|r| r.cfg.escalation_policy.as_deref() == Some(policy))
        })
        .map(|r| r.channels_for(i.severity))
        .unwrap_or_else(|| default_channels(i.severity));
    let mut contacts: Contacts = HashMap::new();
    let mut out = Vec::new();
    let page = |person: &str, method: Channel, address: Option<String>| {
        let key = page_key(&i.id, pos, person, method.as_str());
        let at = (pos.step as i64, pos.pass as i64, pos.round as i64);
        PageRow::new(key, &i.id, at, person, method.as_str(), address, now)
    };
    for p in &people {
        let c = state
            .store
            .contacts
            .get_contact(p)
            .await?
            .map(|r| r.contact);
        // The person's own paging rules choose the channels, where they have some.
        let own: Vec<Channel> = c
            .as_ref()
            .map(|c| &c.preferences.paging)
            .into_iter()
            .flatten()
            .filter_map(|r| r.channel.parse::<Channel>().ok())
            .collect();
        let wanted = if own.is_empty() { &channels } else { &own };
        let mut methods: Vec<Channel> = wanted
            .iter()
            .copied()
            .filter(|m| *m != Channel::Chat && usable(state, c.as_ref(), *m))
            .collect();
        // Nothing of the severity's channels reaches them: the first that does, of SMS,
        // push, email, then the inbox (always there).
        if methods.is_empty() {
            let fallback = [Channel::Sms, Channel::Push, Channel::Email, Channel::Inbox];
            methods.extend(fallback.into_iter().find(|m| usable(state, c.as_ref(), *m)));
        }
        if methods.is_empty() {
            methods.push(Channel::Inbox);
        }
        for m in methods {
            let phone = matches!(m, Channel::Sms | Channel::Voice)
                .then(|| c.as_ref().and_then(|c| c.phones.first().cloned()))
                .flatten();
            out.push(page(p, m, phone));
        }
        contacts.insert(p.clone(), c);
    }
    for c in chats {
        out.push(page(&format!("chat:{c}"), Channel::Chat, None));
    }
    Ok((out, contacts))
}

/// Runs until shutdown: a tick each `[oncall] tick`, at once when woken.
pub async fn run(state: AppState) {
    let every = state.cfg.oncall.tick.0.max(Duration::from_millis(50));
    loop {
        while tick(&state).await == CLAIM {}
        super::bundler::tick(&state).await;
        tokio::select! {
            _ = state.escalator_wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
            _ = state.shutdown.cancelled() => return,
        }
    }
}
