//! Storms and inhibition, around the store's triage: the rules it applies (every route's
//! inhibit rules, `[oncall.storm]`), the audit of storms beginning and ending, the
//! `herald_storm_active` gauge, and what follows a resolve — a storm incident resolves
//! when every incident grouped into it has, and what a resolved incident inhibited pages.

use crate::api::AppState;
use crate::core::types::{Millis, new_id, now_millis};
use crate::metrics::ScopeLabels;
use crate::store::{
    AuditEntry, IncidentAction, IncidentRecord, StoreError, StormRow, StormRule, TriageRules,
    Triaged,
};
use serde_json::json;

/// The scopes whose `herald_storm_active` this process has set.
static SHOWN: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The rules triage applies now.
pub fn rules(state: &AppState) -> TriageRules {
    let s = &state.cfg.oncall.storm;
    TriageRules {
        inhibit: state
            .routes
            .iter()
            .flat_map(|r| r.inhibits.iter().cloned())
            .collect(),
        storm: (s.threshold > 0).then(|| StormRule {
            threshold: s.threshold,
            window_ms: s.window.0.as_millis() as i64,
            per_service: s.scope != "all",
            new_id: new_id("in"),
        }),
    }
}

async fn audit(state: &AppState, action: &str, s: &StormRow, reason: String, now: Millis) {
    let entry = AuditEntry {
        id: 0,
        at: now,
        actor: "system".into(),
        action: action.into(),
        target: s.incident_id.clone(),
        before: None,
        after: Some(json!({"scope": s.scope, "count": s.count})),
        reason: Some(reason),
    };
    if let Err(e) = state.store.operations.audit(entry).await {
        tracing::warn!(storm = s.incident_id, error = %e, "a storm's change was not audited");
    }
}

/// Triage of an incident owing pages: whether the pager pages it.
pub async fn triage(state: &AppState, i: &IncidentRecord) -> Result<bool, StoreError> {
    let rules = rules(state);
    // No inhibit rule and no storm detection: nothing to decide, no store write (and no
    // cluster-wide lock) on the way to every page.
    if rules.inhibit.is_empty() && rules.storm.is_none() {
        return Ok(true);
    }
    let now = now_millis();
    match state.store.storms.triage(&i.id, rules, now).await? {
        Triaged::Page => Ok(true),
        Triaged::Inhibited(by) => {
            tracing::info!(incident = i.id, by, "inhibited: nobody is paged");
            Ok(false)
        }
        Triaged::Grouped { storm, started } => {
            if started {
                let scope = state.cfg.oncall.storm.scope.clone();
                let scope = if scope == "all" {
                    "all".to_string()
                } else {
                    format!("service:{}", i.service)
                };
                tracing::warn!(
                    storm,
                    scope,
                    "alert storm: new incidents are grouped into one"
                );
                state
                    .metrics
                    .storms
                    .get_or_create(&ScopeLabels {
                        scope: scope.clone(),
                    })
                    .inc();
                let row = StormRow {
                    incident_id: storm.clone(),
                    scope,
                    started_at: now,
                    ended_at: None,
                    count: 0,
                };
                let cfg = &state.cfg.oncall.storm;
                let why = format!(
                    "{} or more incidents opened within {} s",
                    cfg.threshold,
                    cfg.window.0.as_secs()
                );
                audit(state, "storm.start", &row, why, now).await;
                state.pager_wake.notify_one();
            }
            Ok(false)
        }
    }
}

/// Ends the storms that calmed down (audited) and sets the gauge; run by the pager's sweep.
pub async fn sweep(state: &AppState) {
    let cfg = &state.cfg.oncall.storm;
    if cfg.threshold == 0 {
        return;
    }
    let now = now_millis();
    let window = cfg.window.0.as_millis() as i64;
    match state
        .store
        .storms
        .end_quiet_storms(cfg.threshold, window, now)
        .await
    {
        Ok(ended) => {
            for s in ended {
                tracing::info!(storm = s.incident_id, scope = s.scope, "alert storm over");
                let why = format!(
                    "fewer than {} incidents opened within {} s",
                    cfg.threshold,
                    cfg.window.0.as_secs()
                );
                audit(state, "storm.end", &s, why, now).await;
                let labels = ScopeLabels { scope: s.scope };
                state.metrics.storm_active.get_or_create(&labels).set(0);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot end quiet storms yet"),
    }
    // The gauge follows the store (a storm another node ended, or one closed in triage):
    // every scope this node has shown is set again each sweep.
    if let Ok(active) = state.store.storms.active_storms().await {
        let mut shown = SHOWN.lock().unwrap_or_else(|p| p.into_inner());
        shown.extend(active.iter().map(|s| s.scope.clone()));
        for scope in shown.iter() {
            let on = active.iter().any(|s| &s.scope == scope);
            let labels = ScopeLabels {
                scope: scope.clone(),
            };
            state
                .metrics
                .storm_active
                .get_or_create(&labels)
                .set(on as i64);
        }
    }
}

/// What follows an answer to a storm incident: the incidents grouped into it take it too.
pub async fn answered(
    state: &AppState,
    i: &IncidentRecord,
    action: IncidentAction,
    actor: &str,
) -> Result<(), StoreError> {
    if i.source != "storm" {
        return Ok(());
    }
    let now = now_millis();
    let why = format!("with storm #{}", i.number);
    for m in state.store.storms.storm_members(&i.id).await? {
        state
            .store
            .incidents
            .act_incident(&m, action, actor, &why, now)
            .await?;
        // What a member inhibited pages now that it is resolved.
        if action == IncidentAction::Resolve
            && !state
                .store
                .storms
                .lift_inhibition(&m, now)
                .await?
                .is_empty()
        {
            state.pager_wake.notify_one();
        }
    }
    Ok(())
}

/// After an incident resolved: its storm resolves once every member has, and what it
/// inhibited pages now.
pub async fn resolved(state: &AppState, i: &IncidentRecord) -> Result<(), StoreError> {
    let now = now_millis();
    let lifted = state.store.storms.lift_inhibition(&i.id, now).await?;
    if !lifted.is_empty() {
        tracing::info!(
            incident = i.id,
            lifted = lifted.len(),
            "inhibition lifted: those incidents page now"
        );
        state.pager_wake.notify_one();
    }
    let Some(storm) = &i.grouped_into else {
        return Ok(());
    };
    let mut open = 0;
    for m in state.store.storms.storm_members(storm).await? {
        if let Some(v) = state.store.incidents.get_incident(&m).await?
            && v.incident.status != crate::core::incident::Status::Resolved
        {
            open += 1;
        }
    }
    if open == 0 {
        let acted = state
            .store
            .incidents
            .act_incident(
                storm,
                IncidentAction::Resolve,
                "alerts",
                "every grouped incident resolved",
                now,
            )
            .await?;
        if matches!(acted, crate::store::Acted::Done(_)) {
            Box::pin(super::answer::resolved_elsewhere(state, storm)).await;
        }
    }
    Ok(())
}
