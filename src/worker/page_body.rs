//! What a page says: the message one page becomes on its contact method (reply code,
//! link, keypress menu), and the signed link people answer with.

use super::pager::{headline, page_text};
use crate::api::AppState;
use crate::core::oncall::ack_link::{self, Claims};
use crate::core::types::{Millis, new_id};
use crate::store::{IncidentRecord, PageRow};
use serde_json::{Value, json};

/// The link a person opens to answer (`target`: an incident id, or `bundle:<id>`), when `[oncall]` has a public URL.
pub fn link(state: &AppState, target: &str, person: &str, now: Millis) -> Option<String> {
    let cfg = &state.cfg.oncall;
    let (base, secret) = (cfg.public_url.as_ref()?, cfg.link_secret.as_ref()?);
    let claims = Claims {
        i: target.to_string(),
        p: person.to_string(),
        e: now.saturating_add(cfg.link_ttl.0.as_millis() as i64),
        n: new_id("ln"),
    };
    let token = ack_link::make(secret.expose().as_bytes(), &claims);
    Some(format!("{}/a/{token}", base.trim_end_matches('/')))
}

/// The message a page becomes.
pub fn body_of(state: &AppState, i: &IncidentRecord, p: &PageRow, now: Millis) -> Value {
    let drill = if i.source == "drill" { "[DRILL] " } else { "" };
    let code = p.reply_code.unwrap_or(0);
    let mut metadata = json!({
        "incident": i.id, "incident_number": i.number, "category": "incident",
        "page_key": p.key, "collapse_key": format!("inc-{}", i.number),
    });
    let (subject, text) = match p.method.as_str() {
        "voice" => {
            metadata["voice_keypress"] = json!(true);
            (
                headline(i),
                format!(
                    "{drill}This is a Herald page. {} incident {}: {}. Press 4 to acknowledge, 6 to resolve.",
                    i.severity, i.number, i.title
                ),
            )
        }
        "sms" => {
            let mut t = format!(
                "{drill}{}\nReply {code}a to acknowledge, {code}r to resolve",
                page_text(i)
            );
            let allowed = p
                .address
                .as_deref()
                .is_some_and(|a| ack_link::links_allowed(a, &state.cfg.oncall.no_links_for));
            if allowed && let Some(l) = link(state, &i.id, &p.person, now) {
                t.push_str(&format!("\n{l}"));
            }
            (headline(i), t)
        }
        "chat" => (headline(i), format!("{drill}{}", page_text(i))),
        _ => {
            let mut t = format!("{drill}{}", page_text(i));
            if let Some(l) = link(state, &i.id, &p.person, now) {
                t.push_str(&format!("\n\nAcknowledge or resolve: {l}"));
            }
            (format!("{drill}{}", headline(i)), t)
        }
    };
    if p.reply_code.is_some() {
        metadata["reply_code"] = json!(code);
    }
    let to = super::pager::page_to(&p.person);
    json!({
        "to": to, "channels": [p.method], "priority": i.severity.priority().as_str(),
        "content": {"subject": subject, "text": text}, "metadata": metadata,
    })
}
