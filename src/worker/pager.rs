//! The pager: incidents owe pages when they open and a resolved notice when they resolve.
//! What is owed is kept with the incident (written in the intake's own transaction), and
//! handed to the queue here as ordinary messages — so pages get retries, failover,
//! degradation and priority lanes — each under an idempotency key of (incident, notice,
//! recipient): a crash between the two, or two nodes paging the same incident, never
//! pages twice. Woken by the intake; a sweep every 2 s catches the rest.

use crate::api::AppState;
use crate::core::alerts::routes::Route;
use crate::core::incident::Severity;
use crate::core::message::{Idempotency, NewMessage};
use crate::core::types::{Channel, now_millis};
use crate::core::validate::{self, Context};
use crate::store::{Accepted, IncidentRecord, NoticeKind};
use crate::telemetry::{Kind, Timed, TraceParent};
use serde_json::{Value, json};
use std::time::Duration;

/// The `to` of a message for a person paged (`chat:<id>` names a chat group).
pub fn page_to(person: &str) -> Value {
    match person.strip_prefix("chat:") {
        Some(c) => json!({"chat": c}),
        None => json!({"user": person}),
    }
}

/// The first line people see: severity, number, title.
pub fn headline(i: &IncidentRecord) -> String {
    format!("[{}] #{} {}", i.severity, i.number, i.title)
}

/// The page's text: the headline, the service, the description and the links people need.
pub fn page_text(i: &IncidentRecord) -> String {
    let mut lines = vec![headline(i), format!("service: {}", i.service)];
    let ann = &i.details["annotations"];
    if let Some(d) = ann["description"].as_str().filter(|d| !d.is_empty()) {
        lines.push(d.chars().take(300).collect());
    }
    if let Some(r) = ann["runbook_url"].as_str().filter(|r| !r.is_empty()) {
        lines.push(format!("runbook: {r}"));
    }
    if let Some(g) = i.details["generator_url"]
        .as_str()
        .filter(|g| !g.is_empty())
    {
        lines.push(format!("source: {g}"));
    }
    lines.join("\n")
}

/// Who gets what: `(recipient key, message body)` for each user and chat group of the route.
fn notices(
    i: &IncidentRecord,
    route: &Route,
    kind: NoticeKind,
    usable: &dyn Fn(&str, Channel) -> bool,
) -> Vec<(String, Value)> {
    let resolved = kind == NoticeKind::Resolved;
    let (subject, text) = if resolved {
        (
            format!("[RESOLVED] #{} {}", i.number, i.title),
            format!(
                "Resolved: #{} {} (service {})",
                i.number, i.title, i.service
            ),
        )
    } else {
        (headline(i), page_text(i))
    };
    let priority = if resolved {
        "normal"
    } else {
        i.severity.priority().as_str()
    };
    let metadata = json!({
        "incident": i.id, "incident_number": i.number, "category": "incident",
        "collapse_key": format!("inc-{}", i.number),
    });
    let content = |body: &mut Value| match (&route.cfg.template, resolved) {
        (Some(t), false) => {
            body["template"] = json!(t);
            body["params"] = json!({
                "id": i.id, "number": i.number, "title": i.title, "severity": i.severity,
                "service": i.service, "status": i.status, "details": i.details, "text": text,
            });
        }
        _ => body["content"] = json!({"subject": subject, "text": text}),
    };
    let mut out = Vec::new();
    for u in &route.cfg.users {
        let mut channels: Vec<Channel> = route
            .channels_for(i.severity)
            .into_iter()
            .filter(|c| !(resolved && *c == Channel::Voice))
            .filter(|c| usable(u, *c))
            .collect();
        if channels.is_empty() {
            channels.push(Channel::Inbox);
        }
        let mut body = json!({"to": {"user": u}, "channels": channels, "priority": priority,
                              "strategy": "all", "metadata": metadata});
        content(&mut body);
        out.push((format!("user:{u}"), body));
    }
    if i.severity <= Severity::P2 {
        for c in &route.cfg.chat {
            let mut body = json!({"to": {"chat": c}, "channels": ["chat"], "priority": priority,
                                  "metadata": metadata});
            content(&mut body);
            out.push((format!("chat:{c}"), body));
        }
    }
    out
}

/// Whether the contact can be reached on `channel` (an address there and a provider).
pub fn reachable(
    state: &AppState,
    contact: Option<&crate::core::contact::Contact>,
    c: Channel,
) -> bool {
    if !state.channels.contains(&c) {
        return false;
    }
    match (c, contact) {
        (Channel::Inbox, _) => true,
        (_, None) => false,
        (Channel::Sms | Channel::Voice, Some(k)) => !k.phones.is_empty(),
        (Channel::Email, Some(k)) => !k.emails.is_empty(),
        (Channel::Chat, Some(k)) => !k.chat.is_empty(),
        (Channel::Push, Some(k)) => {
            !(k.push.webpush.is_empty() && k.push.fcm.is_empty() && k.push.apns.is_empty())
        }
        (Channel::Webhook, _) => false,
    }
}

/// Hands one owed notice of `i` to the queue; the ids of the messages it became.
async fn hand_over(
    state: &AppState,
    i: &IncidentRecord,
    route: &Route,
    kind: NoticeKind,
) -> Result<Vec<String>, String> {
    let mut contacts = std::collections::HashMap::new();
    for u in &route.cfg.users {
        let c = state
            .store
            .contacts
            .get_contact(u)
            .await
            .map_err(|e| e.to_string())?;
        contacts.insert(u.clone(), c.map(|r| r.contact));
    }
    let usable =
        |u: &str, c: Channel| reachable(state, contacts.get(u).and_then(|x| x.as_ref()), c);
    let kind_name = if kind == NoticeKind::Page {
        "page"
    } else {
        "resolved"
    };
    let owed: Vec<(String, Value, String)> = notices(i, route, kind, &usable)
        .into_iter()
        .map(|(who, body)| {
            let key = format!("{}:{kind_name}:{who}", i.id);
            (who, body, key)
        })
        .collect();
    if kind == NoticeKind::Resolved {
        // The people an escalation paged: their notices are bundled like their pages.
        let paged = resolved_to_paged(state, i, &mut contacts).await?;
        super::bundler::notify(state, i, paged, &contacts).await?;
    }
    let ids = accept(state, &i.id, owed, &contacts).await?;
    Ok(ids.into_iter().map(|(_, id)| id).collect())
}

/// The resolved notice for the people an escalation paged, beside the route's own recipients.
async fn resolved_to_paged(
    state: &AppState,
    i: &IncidentRecord,
    contacts: &mut Contacts,
) -> Result<Vec<(String, Value, String)>, String> {
    let subject = format!("[RESOLVED] #{} {}", i.number, i.title);
    let text = format!(
        "Resolved: #{} {} (service {})",
        i.number, i.title, i.service
    );
    notices_to_paged(state, i, "resolved:page", None, &subject, &text, contacts).await
}

type Contacts = std::collections::HashMap<String, Option<crate::core::contact::Contact>>;

/// One notice to everyone an escalation paged for `i` — each person and method once, no
/// calls, `skip` left out — as `(who, body, key)` keyed `<incident>:<what>:<person>:<method>`;
/// the contacts they name are loaded into `contacts` (what [`accept`] needs).
pub async fn notices_to_paged(
    state: &AppState,
    i: &IncidentRecord,
    what: &str,
    skip: Option<&str>,
    subject: &str,
    text: &str,
    contacts: &mut Contacts,
) -> Result<Vec<(String, Value, String)>, String> {
    let pages = state
        .store
        .escalations
        .pages_of(&i.id)
        .await
        .map_err(|e| e.to_string())?;
    let told: std::collections::BTreeSet<(String, String)> = pages
        .into_iter()
        .filter(|p| p.method != "voice" && Some(p.person.as_str()) != skip)
        // Only those a page reached: not one still held, nor one dropped unsent.
        .filter(|p| p.message_id.is_some() || p.bundle_id.as_deref().is_some_and(|b| b != "-"))
        .map(|p| (p.person, p.method))
        .collect();
    let mut out = Vec::new();
    for (person, method) in told {
        if !person.starts_with("chat:") && !contacts.contains_key(&person) {
            let c = state
                .store
                .contacts
                .get_contact(&person)
                .await
                .ok()
                .flatten();
            contacts.insert(person.clone(), c.map(|r| r.contact));
        }
        let body = json!({
            "to": page_to(&person), "channels": [method], "priority": "normal",
            "content": {"subject": subject, "text": text},
            "metadata": {"incident": i.id, "category": "incident"},
        });
        let key = format!("{}:{what}:{person}:{method}", i.id);
        out.push((person, body, key));
    }
    Ok(out)
}

/// Validates and queues messages made for an incident — `(who, body, idempotency key)` —
/// under the scope `herald.incidents`, so the same key never makes a second message. The
/// `(key, message id)` of each accepted; refused ones are logged (a route or policy naming
/// a person who cannot be reached), never retried.
pub async fn accept(
    state: &AppState,
    incident: &str,
    owed: Vec<(String, Value, String)>,
    contacts: &std::collections::HashMap<String, Option<crate::core::contact::Contact>>,
) -> Result<Vec<(String, String)>, String> {
    let mut batch: Vec<NewMessage> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let mut pages = Vec::new();
    for (who, body, key) in owed {
        let req = match validate::decode(body) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(incident, who, error = ?e, "a page could not be made");
                continue;
            }
        };
        let user = req.to.user.clone();
        let ctx = Context {
            contact: user
                .as_ref()
                .and_then(|u| contacts.get(u))
                .and_then(|c| c.as_ref()),
            now: now_millis(),
            channels_available: &state.channels,
            hosts: &state.hosts,
            sender: "herald-incidents",
            templates: &state.templates,
            chat_targets: &state.chat_targets,
            degrade: &state.cfg.degrade,
            recipient_limits: &state.cfg.limits.recipient,
        };
        let idem = Idempotency {
            scope: "herald.incidents".into(),
            key: key.clone(),
            body_hash: "incident".into(),
        };
        match validate::validate(req, &ctx, Some(idem)) {
            Ok(mut m) => {
                // A page starts its own trace: a `page` span, then its deliveries'.
                let mut span = state
                    .tracer
                    .on()
                    .then(|| Timed::with_id(TraceParent::root(), None, "page", Kind::Internal));
                m.trace = Some(
                    span.as_ref()
                        .map_or_else(TraceParent::root, Timed::ctx)
                        .to_string(),
                );
                if let Some(s) = span.as_mut() {
                    s.attr("herald.incident_id", incident);
                    s.attr("herald.message_id", m.id.as_str());
                }
                pages.push(span);
                batch.push(m);
                keys.push(key);
            }
            Err(errs) => {
                tracing::error!(incident, who, errors = ?errs, "a page was refused; check the route's or policy's people and channels")
            }
        }
    }
    let accepted = state
        .store
        .queue
        .accept(batch)
        .await
        .map_err(|e| e.to_string())?;
    for s in pages.into_iter().flatten() {
        state.tracer.record(s.end());
    }
    let mut ids = Vec::new();
    for (a, key) in accepted.into_iter().zip(keys) {
        match a {
            Accepted::New(r) | Accepted::Existing(r) => ids.push((key, r.id)),
            Accepted::RecipientLimited { channel, .. } => {
                tracing::warn!(incident, %channel, "a page was over a recipient limit: not sent")
            }
            Accepted::Mismatch => {}
        }
    }
    state.wake.notify_one();
    Ok(ids)
}

/// Hands every owed notice to the queue; returns how many incidents were served.
pub async fn sweep(state: &AppState) -> usize {
    let owed = match state.store.incidents.owed_notices(100).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read owed pages");
            return 0;
        }
    };
    let mut served = 0;
    for i in &owed {
        let Some(route) = state.routes.iter().find(|r| r.cfg.id == i.route) else {
            // The route left the configuration: nobody to page; nothing stays owed.
            for k in [NoticeKind::Page, NoticeKind::Resolved] {
                let _ = state
                    .store
                    .incidents
                    .notices_sent(&i.id, k, vec![], now_millis())
                    .await;
            }
            continue;
        };
        let mut kinds = Vec::new();
        if i.page_state == "pending" {
            kinds.push(NoticeKind::Page);
        }
        if i.notice_state == "pending" {
            kinds.push(NoticeKind::Resolved);
        }
        for k in kinds {
            // Inhibited or grouped into a storm: nobody is paged for it.
            if k == NoticeKind::Page {
                match super::storms::triage(state, i).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(incident = i.id, error = %e, "incident not triaged yet; retrying");
                        continue;
                    }
                }
            }
            if k == NoticeKind::Page
                && let Some(policy) = &route.cfg.escalation_policy
            {
                match state
                    .store
                    .escalations
                    .start_escalation(&i.id, policy, now_millis())
                    .await
                {
                    Ok(_) => state.escalator_wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(incident = i.id, error = %e, "escalation not started yet; retrying");
                        continue;
                    }
                }
            }
            match hand_over(state, i, route, k).await {
                Ok(ids) => {
                    if k == NoticeKind::Page {
                        let waited = (now_millis() - i.opened_at).max(0) as f64 / 1000.0;
                        state.metrics.alert_to_page.observe(waited);
                    }
                    if let Err(e) = state
                        .store
                        .incidents
                        .notices_sent(&i.id, k, ids, now_millis())
                        .await
                    {
                        tracing::warn!(incident = i.id, error = %e, "pages handed over but not marked; they will be recognised next time");
                    }
                    served += 1;
                }
                Err(e) => {
                    tracing::warn!(incident = i.id, error = %e, "pages not handed over yet; retrying")
                }
            }
        }
    }
    served
}

/// Runs until shutdown: a sweep when woken, and every 2 s.
pub async fn run(state: AppState) {
    loop {
        sweep(&state).await;
        super::storms::sweep(&state).await;
        tokio::select! {
            _ = state.pager_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = state.shutdown.cancelled() => return,
        }
    }
}
