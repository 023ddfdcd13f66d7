//! Turning rows into message views, once for both backends. A backend reads a page of
//! messages, then every delivery of the page in one query and every attempt of those
//! deliveries in another (three round trips whatever the page size), all inside one read
//! transaction so a view never pairs a finished message with a delivery still in flight.

use super::{Attempt, AttemptError, DeliveryView, MessageView, StoreError, corrupt, parse};
use crate::core::types::{DeliveryStatus, Millis, Priority};
use serde_json::Value;
use std::collections::HashMap;

pub struct MessageRow {
    pub id: String,
    pub status: String,
    pub priority: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub send_at: Millis,
    pub expires_at: Millis,
    pub body: String,
}

pub struct DeliveryRow {
    pub message_id: String,
    pub id: String,
    pub channel: String,
    pub to: String,
    pub status: String,
    pub provider: Option<String>,
    pub note_code: Option<String>,
    pub note_detail: Option<String>,
}

pub struct AttemptRow {
    pub delivery_id: String,
    pub n: i64,
    pub provider: String,
    pub at: Millis,
    pub duration_ms: i64,
    pub outcome: String,
    pub error_class: Option<String>,
    pub error_code: Option<String>,
    pub error_detail: Option<String>,
    pub provider_message_id: Option<String>,
}

/// The columns each row type is read from, in order.
pub const MESSAGE_COLS: &str =
    "id, status, priority, created_at, updated_at, send_at, expires_at, body";
/// Read from `deliveries d LEFT JOIN delivery_notes n ON n.delivery_id = d.id`.
pub const DELIVERY_COLS: &str =
    "d.message_id, d.id, d.channel, d.recipient, d.status, d.provider, n.code, n.detail";
pub const ATTEMPT_COLS: &str = "a.delivery_id, a.n, a.provider, a.at, a.duration_ms, a.outcome, \
     a.error_class, a.error_code, a.error_detail, a.provider_message_id";

fn attempt(a: AttemptRow) -> Result<Attempt, StoreError> {
    let error = match a.error_class {
        Some(class) => Some(AttemptError {
            class: parse(&class)?,
            code: a.error_code.unwrap_or_default(),
            detail: a.error_detail.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(Attempt {
        n: a.n,
        provider: a.provider,
        at: a.at,
        duration_ms: a.duration_ms,
        outcome: if a.outcome == "sent" { "sent" } else { "error" },
        error,
        provider_message_id: a.provider_message_id,
    })
}

/// What a reader sees of a delivery's address. A push delivery holds the contact's browser
/// subscriptions with their keys (the auth secret among them): shown as the contact and a
/// count, since messages are readable with a `viewer` key.
fn shown_to(channel: crate::core::types::Channel, to: String) -> String {
    if channel != crate::core::types::Channel::Push {
        return to;
    }
    match serde_json::from_str::<crate::core::contact::PushTarget>(&to) {
        Ok(t) => t.summary(),
        Err(_) => "push targets".into(),
    }
}

/// Builds the views of `messages` (kept in their order). Deliveries must come in their
/// position order and attempts in number order; rows of other messages are ignored.
pub fn views(
    messages: Vec<MessageRow>,
    deliveries: Vec<DeliveryRow>,
    attempts: Vec<AttemptRow>,
) -> Result<Vec<MessageView>, StoreError> {
    let mut tries: HashMap<String, Vec<Attempt>> = HashMap::new();
    for a in attempts {
        tries
            .entry(a.delivery_id.clone())
            .or_default()
            .push(attempt(a)?);
    }
    let mut by_message: HashMap<String, Vec<DeliveryView>> = HashMap::new();
    for d in deliveries {
        let status: DeliveryStatus = parse(&d.status)?;
        let channel = parse(&d.channel)?;
        let view = DeliveryView {
            attempts: tries.remove(&d.id).unwrap_or_default(),
            to: shown_to(channel, d.to),
            channel,
            provider: d.provider.filter(|_| status.is_success()),
            reason: d.note_code.map(|code| super::DeliveryReason {
                code,
                detail: d.note_detail.unwrap_or_default(),
            }),
            status,
            id: d.id,
        };
        by_message.entry(d.message_id).or_default().push(view);
    }
    messages
        .into_iter()
        .map(|m| {
            let body: Value = serde_json::from_str(&m.body).map_err(corrupt)?;
            Ok(MessageView {
                status: parse(&m.status)?,
                priority: Priority::from_rank(m.priority),
                created_at: m.created_at,
                updated_at: m.updated_at,
                send_at: m.send_at,
                expires_at: m.expires_at,
                metadata: serde_json::from_value(body["metadata"].clone()).unwrap_or_default(),
                deliveries: by_message.remove(&m.id).unwrap_or_default(),
                id: m.id,
            })
        })
        .collect()
}

/// A claimed delivery as read from either backend (fence and tries as they are after the
/// claim); [`ClaimedRow::into_claimed`] parses the message body once for both.
pub struct ClaimedRow {
    pub id: String,
    pub fence: i64,
    pub tries: i64,
    pub message_id: String,
    pub channel: String,
    pub to: String,
    pub priority: i64,
    pub skip_providers: Option<String>,
    pub last_provider: Option<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub body: String,
    pub own_content: Option<String>,
    pub activated_at: Millis,
    pub has_next_channel: bool,
}

impl ClaimedRow {
    pub fn into_claimed(self) -> Result<super::Claimed, StoreError> {
        let body: Value = serde_json::from_str(&self.body).map_err(corrupt)?;
        Ok(super::Claimed {
            lease: super::Lease {
                delivery_id: self.id,
                fence: self.fence,
            },
            message_id: self.message_id,
            channel: parse(&self.channel)?,
            to: self.to,
            priority: Priority::from_rank(self.priority),
            created_at: self.created_at,
            expires_at: self.expires_at,
            tries: self.tries.max(0) as u32,
            content: match self.own_content {
                Some(c) => serde_json::from_str(&c).map_err(corrupt)?,
                None => serde_json::from_value(body["content"].clone()).unwrap_or_default(),
            },
            template: body["template"].as_str().map(String::from),
            params: serde_json::from_value(body["params"].clone()).unwrap_or(None),
            metadata: serde_json::from_value(body["metadata"].clone()).unwrap_or_default(),
            skip_providers: self
                .skip_providers
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default(),
            last_provider: self.last_provider,
            has_next_channel: self.has_next_channel,
            activated_at: self.activated_at,
            trace: body["trace"]
                .as_str()
                .and_then(crate::telemetry::TraceParent::parse),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str) -> MessageRow {
        MessageRow {
            id: id.into(),
            status: "sent".into(),
            priority: 2,
            created_at: 1,
            updated_at: 2,
            send_at: 1,
            expires_at: 9,
            body: r#"{"metadata":{"k":"v"}}"#.into(),
        }
    }

    fn dlv(message_id: &str, id: &str, status: &str) -> DeliveryRow {
        DeliveryRow {
            message_id: message_id.into(),
            id: id.into(),
            channel: "webhook".into(),
            to: "https://a.example/x".into(),
            status: status.into(),
            provider: Some("webhook".into()),
            note_code: None,
            note_detail: None,
        }
    }

    fn att(delivery_id: &str, n: i64, class: Option<&str>) -> AttemptRow {
        AttemptRow {
            delivery_id: delivery_id.into(),
            n,
            provider: "webhook".into(),
            at: n,
            duration_ms: 3,
            outcome: if class.is_some() { "error" } else { "sent" }.into(),
            error_class: class.map(String::from),
            error_code: class.map(|_| "http_503".into()),
            error_detail: None,
            provider_message_id: None,
        }
    }

    #[test]
    fn rows_are_grouped_under_their_message_and_delivery_in_order() {
        let v = views(
            vec![msg("m2"), msg("m1")],
            vec![
                dlv("m1", "d1", "sent"),
                dlv("m2", "d2", "failed"),
                dlv("m2", "d3", "sent"),
                dlv("gone", "d9", "sent"),
            ],
            vec![
                att("d2", 1, Some("transient")),
                att("d2", 2, Some("transient")),
                att("d3", 1, None),
                att("d1", 1, None),
            ],
        )
        .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].id, "m2");
        let ids: Vec<&str> = v[0].deliveries.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["d2", "d3"]);
        assert_eq!(v[0].deliveries[0].attempts.len(), 2);
        assert_eq!(v[0].deliveries[0].attempts[1].n, 2);
        assert_eq!(v[0].deliveries[0].attempts[0].outcome, "error");
        assert_eq!(v[0].deliveries[0].provider, None, "failed: no provider");
        assert_eq!(v[0].deliveries[1].provider.as_deref(), Some("webhook"));
        assert_eq!(v[1].deliveries.len(), 1);
        assert_eq!(v[1].metadata["k"], "v");
    }

    #[test]
    fn a_message_without_deliveries_has_an_empty_list() {
        let v = views(vec![msg("m1")], vec![], vec![]).unwrap();
        assert!(v[0].deliveries.is_empty());
    }

    #[test]
    fn an_unknown_status_is_reported_corrupt_not_guessed() {
        let mut m = msg("m1");
        m.status = "weird".into();
        assert!(matches!(
            views(vec![m], vec![], vec![]),
            Err(StoreError::Corrupt(_))
        ));
        let bad = views(vec![msg("m1")], vec![dlv("m1", "d1", "nope")], vec![]);
        assert!(matches!(bad, Err(StoreError::Corrupt(_))));
    }
}
