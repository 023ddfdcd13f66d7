//! A message to a contact: `to.user` resolved into the contact's addresses at accept time,
//! and the contact's preferences applied to the deliveries. Pure; `validate` calls it.

use super::contact::{Contact, PushTarget, valid_category};
use super::message::{NewDelivery, SkipNote};
use super::types::{Channel, Millis, Priority};
use super::validate::To;
use serde_json::{Map, Value};

/// Fills the addresses a request left out from the contact (the first phone, email and
/// configured chat of each kind; an address given in the request wins). Returns the
/// channels whose address came from the contact: those are used by default only where a
/// provider exists, where an address given explicitly with no provider is an error.
pub fn fill(to: &mut To, contact: &Contact, chat_ok: &dyn Fn(&str) -> bool) -> Vec<Channel> {
    let mut derived = Vec::new();
    if to.phone.is_none()
        && let Some(p) = contact.phones.first()
    {
        to.phone = Some(p.clone());
        derived.extend([Channel::Sms, Channel::Voice]);
    }
    if to.email.is_none()
        && let Some(e) = contact.emails.first()
    {
        to.email = Some(e.clone());
        derived.push(Channel::Email);
    }
    if to.chat.is_none()
        && let Some(c) = contact.chat.iter().find(|c| chat_ok(c))
    {
        to.chat = Some(c.clone());
        derived.push(Channel::Chat);
    }
    let devices = &contact.push;
    if to.push.is_none()
        && !(devices.webpush.is_empty() && devices.fcm.is_empty() && devices.apns.is_empty())
    {
        let target = PushTarget {
            contact: contact.id.clone(),
            webpush: devices.webpush.clone(),
            fcm: devices.fcm.clone(),
            apns: devices.apns.clone(),
        };
        if let Ok(t) = serde_json::to_string(&target) {
            to.push = Some(vec![t]);
            derived.push(Channel::Push);
        }
    }
    derived
}

/// The message's category: `metadata.category`, else the template's. `Err` names what is
/// wrong with `metadata.category`.
pub fn category(
    metadata: Option<&Map<String, Value>>,
    template_category: Option<&str>,
) -> Result<Option<String>, String> {
    match metadata.and_then(|m| m.get("category")) {
        None => Ok(template_category.map(str::to_string)),
        Some(Value::String(s)) => valid_category(s).map(|_| Some(s.clone())),
        Some(_) => Err("must be a string".into()),
    }
}

/// Marks the deliveries to the contact's own addresses that its opt-outs decline.
pub fn apply_opt_outs(
    deliveries: &mut [NewDelivery],
    contact: &Contact,
    category: Option<&str>,
    priority: Priority,
) {
    for d in deliveries.iter_mut() {
        if contact.owns(d.channel, &d.to)
            && let Some(s) = contact.opt_out(d.channel, category, priority)
        {
            d.skip = Some(SkipNote {
                code: s.code.into(),
                detail: s.detail,
            });
        }
    }
}

/// When the message may go: after the contact's quiet hours when any delivery reaches the
/// contact and the message is not `critical`.
pub fn send_at(
    at: Millis,
    deliveries: &[NewDelivery],
    contact: &Contact,
    priority: Priority,
) -> Millis {
    if deliveries
        .iter()
        .any(|d| d.skip.is_none() && contact.owns(d.channel, &d.to))
    {
        contact.release_at(at, priority)
    } else {
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn contact() -> Contact {
        serde_json::from_value(json!({
            "id": "u-1", "phones": ["+8613800138000", "+8613900139000"],
            "emails": ["a@example.com"], "chat": ["gone", "ops"],
            "time_zone": "Europe/Berlin",
            "preferences": {"opt_out": {"channels": ["email"], "categories": ["marketing"]},
                            "quiet_hours": {"start": "22:00", "end": "08:00"}}
        }))
        .unwrap()
    }

    fn delivery(channel: Channel, to: &str) -> NewDelivery {
        NewDelivery {
            id: "dlv_x".into(),
            channel,
            to: to.into(),
            content: None,
            skip: None,
        }
    }

    #[test]
    fn the_request_wins_and_the_first_usable_address_fills_the_rest() {
        let mut to = To {
            user: Some("u-1".into()),
            email: Some("other@example.com".into()),
            ..Default::default()
        };
        let derived = fill(&mut to, &contact(), &|c| c == "ops");
        assert_eq!(to.phone.as_deref(), Some("+8613800138000"));
        assert_eq!(to.email.as_deref(), Some("other@example.com"));
        assert_eq!(to.chat.as_deref(), Some("ops"));
        assert_eq!(derived, vec![Channel::Sms, Channel::Voice, Channel::Chat]);
        let mut bare = To::default();
        assert!(fill(&mut bare, &Contact::default(), &|_| true).is_empty());
    }

    #[test]
    fn categories_come_from_metadata_then_the_template() {
        let m = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(category(None, Some("billing")), Ok(Some("billing".into())));
        assert_eq!(
            category(Some(&m(json!({"category": "marketing"}))), Some("billing")),
            Ok(Some("marketing".into()))
        );
        assert_eq!(category(Some(&m(json!({"x": 1}))), None), Ok(None));
        assert!(category(Some(&m(json!({"category": 5}))), None).is_err());
        assert!(category(Some(&m(json!({"category": "a b"}))), None).is_err());
    }

    #[test]
    fn opt_outs_touch_only_the_contacts_own_addresses() {
        let c = contact();
        let mut ds = vec![
            delivery(Channel::Email, "a@example.com"),
            delivery(Channel::Email, "other@example.com"),
            delivery(Channel::Sms, "+8613800138000"),
        ];
        apply_opt_outs(&mut ds, &c, None, Priority::Normal);
        assert_eq!(
            ds[0].skip.as_ref().map(|s| s.code.as_str()),
            Some("opted_out_channel")
        );
        assert!(ds[1].skip.is_none());
        assert!(ds[2].skip.is_none());
        apply_opt_outs(&mut ds, &c, Some("marketing"), Priority::Critical);
        assert_eq!(
            ds[2].skip.as_ref().map(|s| s.code.as_str()),
            Some("opted_out_category")
        );
    }

    #[test]
    fn quiet_hours_apply_when_the_contact_is_reached() {
        let c = contact();
        // 23:30 in Berlin (winter) → 08:00 next day.
        let at = "2026-01-10T22:30:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        let end = "2026-01-11T07:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        let own = [delivery(Channel::Sms, "+8613800138000")];
        let other = [delivery(Channel::Sms, "+8613700137000")];
        assert_eq!(send_at(at, &own, &c, Priority::Normal), end);
        assert_eq!(send_at(at, &own, &c, Priority::Critical), at);
        assert_eq!(send_at(at, &other, &c, Priority::Normal), at);
        let mut skipped = own.clone();
        skipped[0].skip = Some(SkipNote {
            code: "opted_out_channel".into(),
            detail: String::new(),
        });
        assert_eq!(send_at(at, &skipped, &c, Priority::Normal), at);
    }
}
