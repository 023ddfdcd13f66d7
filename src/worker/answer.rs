//! A person's answer to an incident — acknowledge or resolve — however it came (the API,
//! a signed link, an SMS reply, a key pressed during a call): one path, so each is on the
//! timeline and in the audit log with who and how, holds or ends the escalation, is
//! counted for MTTA/MTTR, and the others paged are told.

use crate::api::AppState;
use crate::core::types::{Millis, now_millis};
use crate::metrics::{AckLabels, SeverityLabels};
use crate::store::{Acted, AuditEntry, EscalationMove, IncidentAction, IncidentRecord, StoreError};
use serde_json::json;
use std::collections::HashMap;

/// How an answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Api,
    Link,
    Sms,
    Voice,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Api => "api",
            Via::Link => "link",
            Via::Sms => "sms",
            Via::Voice => "voice",
        }
    }
}

/// Acts on the incident as `actor` and does everything that follows when it took effect.
pub async fn answer(
    state: &AppState,
    incident: &str,
    action: IncidentAction,
    actor: &str,
    via: Via,
    reason: &str,
) -> Result<Acted, StoreError> {
    let now = now_millis();
    let said = if reason.is_empty() {
        format!("via {}", via.as_str())
    } else {
        format!("via {}: {reason}", via.as_str())
    };
    let acted = state
        .store
        .incidents
        .act_incident(incident, action, actor, &said, now)
        .await?;
    let outcome = match (&acted, action) {
        (Acted::Done(_), IncidentAction::Acknowledge) => "acknowledged",
        (Acted::Done(_), IncidentAction::Resolve) => "resolved",
        _ => "refused",
    };
    state
        .metrics
        .acks
        .get_or_create(&AckLabels {
            via: via.as_str().into(),
            outcome: outcome.into(),
        })
        .inc();
    let Acted::Done(i) = &acted else {
        return Ok(acted);
    };
    state
        .store
        .operations
        .audit(AuditEntry {
            id: 0,
            at: now,
            actor: actor.into(),
            action: format!(
                "incident.{}",
                if outcome == "resolved" {
                    "resolve"
                } else {
                    "acknowledge"
                }
            ),
            target: i.id.clone(),
            before: None,
            after: Some(json!({"status": i.status, "via": via.as_str()})),
            reason: (!reason.is_empty()).then(|| reason.to_string()),
        })
        .await?;
    after_answer(state, i, action, actor, via, now).await?;
    Ok(acted)
}

/// What answering every incident of a bundle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnsweredAll {
    pub done: usize,
    /// Already in a state the answer does not apply to (resolved before).
    pub not_now: usize,
    pub gone: usize,
}

/// Answers each incident a bundle held (once each), as one person, the same way as one.
pub async fn answer_all(
    state: &AppState,
    incidents: &[String],
    action: IncidentAction,
    actor: &str,
    via: Via,
    reason: &str,
) -> Result<AnsweredAll, StoreError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = AnsweredAll::default();
    for id in incidents.iter().filter(|i| seen.insert(i.as_str())) {
        match answer(state, id, action, actor, via, reason).await? {
            Acted::Done(_) => out.done += 1,
            Acted::NotNow(_) => out.not_now += 1,
            Acted::NotFound => out.gone += 1,
        }
    }
    Ok(out)
}

/// The escalation, the figures and the notices that follow an answer that took effect.
async fn after_answer(
    state: &AppState,
    i: &IncidentRecord,
    action: IncidentAction,
    actor: &str,
    via: Via,
    now: Millis,
) -> Result<(), StoreError> {
    let drill = i.source == "drill";
    let labels = SeverityLabels {
        severity: i.severity.as_str().into(),
    };
    let esc = state.store.escalations.get_escalation(&i.id).await?;
    match action {
        IncidentAction::Acknowledge => {
            let until = now.saturating_add(state.cfg.oncall.ack_timeout_for(i.severity));
            if let Some(e) = &esc {
                state
                    .store
                    .escalations
                    .set_escalation(&i.id, EscalationMove::Wait { due: until }, true, now)
                    .await?;
                if e.first_ack_at.is_none()
                    && !drill
                    && let Some(first) = e.first_page_at
                {
                    let tta = (now - first).max(0) as f64 / 1000.0;
                    state
                        .metrics
                        .incident_tta
                        .get_or_create(&labels)
                        .observe(tta);
                }
            }
            tell_others(state, i, actor, via, esc.as_ref().map_or(0, |e| e.round)).await;
            super::storms::answered(state, i, action, actor).await?;
        }
        IncidentAction::Resolve => {
            if esc.is_some() {
                state
                    .store
                    .escalations
                    .set_escalation(&i.id, EscalationMove::Done, false, now)
                    .await?;
            }
            if !drill {
                let ttr = (i.resolved_at.unwrap_or(now) - i.opened_at).max(0) as f64 / 1000.0;
                state
                    .metrics
                    .incident_ttr
                    .get_or_create(&labels)
                    .observe(ttr);
            }
            if actor != "alerts" {
                super::storms::answered(state, i, action, actor).await?;
            }
            super::storms::resolved(state, i).await?;
            // The pager sends the resolved notice the store now owes.
            state.pager_wake.notify_one();
        }
    }
    // After the escalation moved (its fence raised): a step being fired now cannot add a
    // page this misses — its own move fails and it cancels what it queued.
    cancel_waiting_pages(state, &i.id, actor).await;
    Ok(())
}

/// Pages not sent yet (held for a bundle, a call a paging rule holds back two minutes, a
/// retry waiting) are dropped or cancelled once someone answered: nobody is called about an incident already taken.
async fn cancel_waiting_pages(state: &AppState, incident: &str, actor: &str) {
    if let Err(e) = state.store.bundles.drop_held(incident).await {
        tracing::warn!(incident, error = %e, "held pages not dropped; the bundler drops them when it takes them");
    }
    let Ok(pages) = state.store.escalations.pages_of(incident).await else {
        return;
    };
    for m in pages.iter().filter_map(|p| p.message_id.as_deref()) {
        match state.store.messages.get_message(m).await {
            Ok(Some(v)) if v.status == crate::core::types::MessageStatus::Queued => {
                if let Err(e) = state.store.messages.cancel(m, actor).await {
                    tracing::warn!(incident, message = m, error = %e, "a waiting page was not cancelled");
                }
            }
            _ => {}
        }
    }
}

/// An incident resolved by its alerts (Alertmanager, Events v2): its escalation ends and
/// its time to resolve is counted, as for a person's resolve.
pub async fn resolved_elsewhere(state: &AppState, id: &str) {
    let i = match state.store.incidents.get_incident(id).await {
        Ok(Some(v)) => v.incident,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(incident = id, error = %e, "cannot read a resolved incident; its escalation ends at its next step");
            return;
        }
    };
    let now = now_millis();
    if let Err(e) = after_answer(state, &i, IncidentAction::Resolve, "alerts", Via::Api, now).await
    {
        tracing::warn!(incident = id, error = %e, "a resolved incident's escalation was not ended; it ends at its next step");
    }
}

/// "Acknowledged by X": everyone paged for the incident but the one who answered, once
/// per person and method (no calls: a voice page's person is told by SMS if they got one).
async fn tell_others(state: &AppState, i: &IncidentRecord, actor: &str, via: Via, round: i64) {
    let subject = format!("[ACK] #{} {}", i.number, i.title);
    let text = format!(
        "#{} {} acknowledged by {actor} ({}).",
        i.number,
        i.title,
        via.as_str()
    );
    let mut contacts = HashMap::new();
    let what = format!("acked:{round}");
    let told = super::pager::notices_to_paged(
        state,
        i,
        &what,
        Some(actor),
        &subject,
        &text,
        &mut contacts,
    )
    .await;
    let sent = match told {
        Ok(owed) => super::bundler::notify(state, i, owed, &contacts).await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        tracing::warn!(incident = i.id, error = %e, "the others paged were not told of the acknowledgement");
    }
}
