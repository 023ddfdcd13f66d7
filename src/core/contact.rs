//! A contact: a person `to.user` names, with the addresses that reach them and their
//! preferences (channel and category opt-outs, quiet hours in their own time zone). The
//! document is validated here, field by field; what a message to a contact becomes is
//! decided here too ([`Contact::opt_out`], [`Contact::release_at`]). Pure.

use super::addresses::{valid_email, valid_phone, valid_user};
use super::contact_checks::{check_list, simple, valid_apns, valid_locale, valid_token};
pub use super::contact_checks::{
    check_webpush, known_time_zone, valid_category, valid_push_endpoint,
};
use super::quiet::{self, Window};
use super::types::{Channel, Millis, Priority};
use super::validate::FieldError;
use serde::{Deserialize, Serialize};

/// Most addresses of one kind a contact may hold.
pub const MAX_ADDRESSES: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// IANA time zone; quiet hours are kept in it. `UTC` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub phones: Vec<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    /// Ids of chat providers (group robots) that reach this person.
    #[serde(default)]
    pub chat: Vec<String>,
    #[serde(default)]
    pub push: PushAddresses,
    #[serde(default)]
    pub preferences: Preferences,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushAddresses {
    #[serde(default)]
    pub webpush: Vec<WebPushSubscription>,
    #[serde(default)]
    pub fcm: Vec<String>,
    #[serde(default)]
    pub apns: Vec<ApnsToken>,
}

/// A browser's `PushSubscription.toJSON()` (`expirationTime` is accepted and kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebPushSubscription {
    pub endpoint: String,
    pub keys: WebPushKeys,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebPushKeys {
    pub p256dh: String,
    pub auth: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsToken {
    pub token: String,
    /// `production` (the default) or `sandbox`.
    #[serde(default = "production")]
    pub environment: String,
}

fn production() -> String {
    "production".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    #[serde(default)]
    pub opt_out: OptOut,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    /// How an on-call page reaches this person: which channels, each after how long
    /// (`[{"channel": "sms", "after_seconds": 0}, {"channel": "voice", "after_seconds": 120}]`).
    /// Empty: the channels of the incident's route for its severity, all at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paging: Vec<PagingRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagingRule {
    pub channel: String,
    #[serde(default)]
    pub after_seconds: u64,
}

/// At most this many paging rules per contact, each waiting at most an hour.
pub const MAX_PAGING_RULES: usize = 6;
pub const MAX_PAGING_AFTER_SECONDS: u64 = 3600;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptOut {
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub start: String,
    pub end: String,
}

fn check_paging(rules: &[PagingRule], errs: &mut Vec<FieldError>) {
    if rules.len() > MAX_PAGING_RULES {
        errs.push(FieldError::new(
            "preferences.paging",
            format!("at most {MAX_PAGING_RULES} rules"),
        ));
    }
    let mut seen = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let f = |k: &str| format!("preferences.paging[{i}].{k}");
        match r.channel.parse::<Channel>() {
            Ok(Channel::Webhook | Channel::Chat) | Err(_) => errs.push(FieldError::new(
                f("channel"),
                "must be sms, voice, email, push or inbox",
            )),
            Ok(c) if seen.contains(&c) => {
                errs.push(FieldError::new(f("channel"), "is listed twice"))
            }
            Ok(c) => seen.push(c),
        }
        if r.after_seconds > MAX_PAGING_AFTER_SECONDS {
            errs.push(FieldError::new(
                f("after_seconds"),
                format!("must be 0 to {MAX_PAGING_AFTER_SECONDS}"),
            ));
        }
    }
}

/// Where a push delivery goes, fixed at accept time: the contact's Web Push subscriptions,
/// FCM registration tokens and APNs device tokens (what the delivery's `to` holds, as JSON).
/// Each push provider sends to the devices of its own kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushTarget {
    pub contact: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webpush: Vec<WebPushSubscription>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fcm: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apns: Vec<ApnsToken>,
}

impl PushTarget {
    /// The devices of each kind, counted (what a reader of the delivery is shown).
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.webpush.len(), "web push subscription(s)"),
            (self.fcm.len(), "FCM token(s)"),
            (self.apns.len(), "APNs token(s)"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        format!("contact {}: {}", self.contact, parts.join(", "))
    }
}

/// Why a delivery to a contact is not made: a code and a sentence for the message's reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub code: &'static str,
    pub detail: String,
}

impl Contact {
    /// Every field checked; errors name the field (`phones[1]`, `push.webpush[0].keys.auth`).
    /// `chat_ids` are the configured chat providers a contact's `chat` may name.
    pub fn validate(&self, chat_ids: &dyn Fn(&str) -> bool) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        simple(valid_user(&self.id), "id", &mut errs);
        if let Some(n) = &self.name
            && (n.trim().is_empty() || n.chars().count() > 200 || n.chars().any(char::is_control))
        {
            errs.push(FieldError::new(
                "name",
                "must be 1 to 200 printable characters",
            ));
        }
        if let Some(l) = &self.locale
            && !valid_locale(l)
        {
            errs.push(FieldError::new(
                "locale",
                "must be a language tag such as zh-CN or en",
            ));
        }
        if let Some(tz) = &self.time_zone
            && !known_time_zone(tz)
        {
            errs.push(FieldError::new(
                "time_zone",
                format!(
                    "`{}` is not an IANA time zone such as Europe/Berlin",
                    tz.chars().take(64).collect::<String>()
                ),
            ));
        }
        check_list(&self.phones, "phones", &mut errs, |p, f, e| {
            simple(valid_phone(p), f, e)
        });
        check_list(&self.emails, "emails", &mut errs, |p, f, e| {
            simple(valid_email(p), f, e)
        });
        check_list(&self.chat, "chat", &mut errs, |c, f, e| {
            if valid_user(c).is_err() || !chat_ids(c) {
                e.push(FieldError::new(
                    f,
                    format!(
                        "`{}` is not the id of a configured chat provider",
                        c.chars().take(64).collect::<String>()
                    ),
                ));
            }
        });
        check_list(&self.push.webpush, "push.webpush", &mut errs, check_webpush);
        check_list(&self.push.fcm, "push.fcm", &mut errs, |t, f, e| {
            simple(valid_token(t), f, e)
        });
        check_list(&self.push.apns, "push.apns", &mut errs, valid_apns);
        let o = &self.preferences.opt_out;
        check_list(
            &o.channels,
            "preferences.opt_out.channels",
            &mut errs,
            |c, f, e| {
                if let Err(m) = c.parse::<Channel>() {
                    e.push(FieldError::new(f, m));
                }
            },
        );
        check_list(
            &o.categories,
            "preferences.opt_out.categories",
            &mut errs,
            |c, f, e| simple(valid_category(c), f, e),
        );
        if let Some(q) = &self.preferences.quiet_hours
            && let Err((part, m)) = Window::new(&q.start, &q.end)
        {
            errs.push(FieldError::new(
                format!("preferences.quiet_hours.{part}"),
                m,
            ));
        }
        check_paging(&self.preferences.paging, &mut errs);
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    /// Whether `to` on `channel` is one of this contact's own addresses (preferences apply
    /// to those only: an address given beside `to.user` may be someone else's).
    pub fn owns(&self, channel: Channel, to: &str) -> bool {
        match channel {
            Channel::Sms | Channel::Voice => self.phones.iter().any(|p| p == to),
            Channel::Email => self.emails.iter().any(|e| e.eq_ignore_ascii_case(to)),
            Channel::Chat => self.chat.iter().any(|c| c == to),
            Channel::Inbox => self.id == to,
            Channel::Push => {
                serde_json::from_str::<PushTarget>(to).is_ok_and(|t| t.contact == self.id)
            }
            Channel::Webhook => false,
        }
    }

    /// Whether the contact declines a delivery on `channel` of a message of `category`.
    /// The rule for `critical`: it passes a channel opt-out (a page or a security code must
    /// reach the person on the channel the sender chose), never a category opt-out (a
    /// category is something the person declined outright).
    pub fn opt_out(
        &self,
        channel: Channel,
        category: Option<&str>,
        priority: Priority,
    ) -> Option<Skip> {
        let o = &self.preferences.opt_out;
        if let Some(cat) = category
            && o.categories.iter().any(|c| c == cat)
        {
            return Some(Skip {
                code: "opted_out_category",
                detail: format!("contact `{}` opted out of category `{cat}`", self.id),
            });
        }
        if priority != Priority::Critical && o.channels.iter().any(|c| c == channel.as_str()) {
            return Some(Skip {
                code: "opted_out_channel",
                detail: format!("contact `{}` opted out of channel `{channel}`", self.id),
            });
        }
        None
    }

    /// When a message due at `at` may go to this contact: after their quiet hours, unless it
    /// is `critical` (which never waits).
    pub fn release_at(&self, at: Millis, priority: Priority) -> Millis {
        let Some(q) = &self.preferences.quiet_hours else {
            return at;
        };
        if priority == Priority::Critical {
            return at;
        }
        let Ok(window) = Window::new(&q.start, &q.end) else {
            return at;
        };
        let tz = self
            .time_zone
            .as_deref()
            .and_then(|t| jiff::tz::TimeZone::get(t).ok())
            .unwrap_or(jiff::tz::TimeZone::UTC);
        quiet::release_at(at, &tz, window)
    }
}

/// The top-level fields that differ between two versions of a contact (all those set, for
/// a new one): what the audit log records of a change.
pub fn changed_fields(before: Option<&Contact>, after: &Contact) -> Vec<String> {
    let obj = |c: &Contact| match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let a = obj(after);
    let b = before.map(obj).unwrap_or_default();
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    fn p256dh() -> String {
        let mut k = vec![4u8];
        k.extend([7u8; 64]);
        URL_SAFE_NO_PAD.encode(k)
    }

    fn full() -> Contact {
        serde_json::from_value(json!({
            "id": "u-42", "name": "Li Wei", "locale": "zh-CN", "time_zone": "Asia/Shanghai",
            "phones": ["+8613800138000"], "emails": ["li@example.com"], "chat": ["ops-dingtalk"],
            "push": {"webpush": [{"endpoint": "https://push.example/abc",
                                  "keys": {"p256dh": p256dh(), "auth": URL_SAFE_NO_PAD.encode([1u8; 16])}}],
                     "fcm": ["tok-1"], "apns": [{"token": "ab".repeat(32)}]},
            "preferences": {"opt_out": {"channels": ["email"], "categories": ["marketing"]},
                            "quiet_hours": {"start": "22:00", "end": "08:00"}}
        }))
        .unwrap()
    }

    fn fields(c: &Contact) -> Vec<String> {
        c.validate(&|id| id == "ops-dingtalk")
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_full_contact_is_valid_and_apns_defaults_to_production() {
        let c = full();
        assert_eq!(fields(&c), Vec::<String>::new());
        assert_eq!(c.push.apns[0].environment, "production");
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut c = full();
        c.id = "has space".into();
        c.name = Some(" ".into());
        c.locale = Some("chinese!".into());
        c.time_zone = Some("Mars/Olympus".into());
        c.phones = vec![
            "+8613800138000".into(),
            "12345".into(),
            "+8613800138000".into(),
        ];
        c.emails = vec!["nope".into()];
        c.chat = vec!["not-configured".into()];
        c.push.webpush[0].endpoint = "ftp://x".into();
        c.push.webpush[0].keys.p256dh = URL_SAFE_NO_PAD.encode([4u8; 10]);
        c.push.webpush[0].keys.auth = "***".into();
        c.push.fcm = vec!["with space".into()];
        c.push.apns = vec![ApnsToken {
            token: "xyz".into(),
            environment: "staging".into(),
        }];
        c.preferences.opt_out.channels = vec!["fax".into()];
        c.preferences.opt_out.categories = vec!["a b".into()];
        c.preferences.quiet_hours = Some(QuietHours {
            start: "22:00".into(),
            end: "25:00".into(),
        });
        assert_eq!(
            fields(&c),
            vec![
                "id",
                "name",
                "locale",
                "time_zone",
                "phones[1]",
                "phones[2]",
                "emails[0]",
                "chat[0]",
                "push.webpush[0].endpoint",
                "push.webpush[0].keys.p256dh",
                "push.webpush[0].keys.auth",
                "push.fcm[0]",
                "push.apns[0].token",
                "push.apns[0].environment",
                "preferences.opt_out.channels[0]",
                "preferences.opt_out.categories[0]",
                "preferences.quiet_hours.end",
            ]
        );
    }

    #[test]
    fn lists_are_bounded() {
        let mut c = full();
        c.phones = (0..21).map(|i| format!("+86138001380{i:02}")).collect();
        assert_eq!(fields(&c), vec!["phones"]);
    }

    #[test]
    fn opt_outs_and_what_critical_passes() {
        let c = full();
        let skip = |ch, cat, p| c.opt_out(ch, cat, p).map(|s| s.code);
        assert_eq!(
            skip(Channel::Email, None, Priority::Normal),
            Some("opted_out_channel")
        );
        assert_eq!(
            skip(Channel::Email, None, Priority::High),
            Some("opted_out_channel")
        );
        assert_eq!(skip(Channel::Email, None, Priority::Critical), None);
        assert_eq!(skip(Channel::Sms, None, Priority::Normal), None);
        assert_eq!(
            skip(Channel::Sms, Some("marketing"), Priority::Normal),
            Some("opted_out_category")
        );
        assert_eq!(
            skip(Channel::Sms, Some("marketing"), Priority::Critical),
            Some("opted_out_category")
        );
        assert_eq!(skip(Channel::Sms, Some("billing"), Priority::Low), None);
    }

    #[test]
    fn quiet_hours_hold_all_but_critical_in_the_contacts_zone() {
        let c = full(); // Asia/Shanghai (UTC+8), 22:00–08:00
        let at: Millis = "2026-03-01T15:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond(); // 23:00 in Shanghai
        let end: Millis = "2026-03-02T00:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond(); // 08:00 in Shanghai
        assert_eq!(c.release_at(at, Priority::Normal), end);
        assert_eq!(c.release_at(at, Priority::High), end);
        assert_eq!(c.release_at(at, Priority::Critical), at);
        let mut none = full();
        none.preferences.quiet_hours = None;
        assert_eq!(none.release_at(at, Priority::Low), at);
    }

    #[test]
    fn own_addresses() {
        let c = full();
        assert!(c.owns(Channel::Sms, "+8613800138000"));
        assert!(c.owns(Channel::Voice, "+8613800138000"));
        assert!(!c.owns(Channel::Sms, "+8613900139000"));
        assert!(c.owns(Channel::Email, "LI@example.com"));
        assert!(c.owns(Channel::Inbox, "u-42"));
        assert!(!c.owns(Channel::Webhook, "https://x.example/"));
    }

    #[test]
    fn changes_are_named_by_field() {
        let a = full();
        let mut b = a.clone();
        assert!(changed_fields(Some(&a), &b).is_empty());
        b.name = None;
        b.phones.push("+8613900139000".into());
        assert_eq!(changed_fields(Some(&a), &b), vec!["name", "phones"]);
        assert!(changed_fields(None, &a).contains(&"id".to_string()));
    }

    #[test]
    fn paging_rules_name_usable_channels_once_within_an_hour() {
        let mut c: Contact = serde_json::from_value(serde_json::json!({"id": "ana",
            "preferences": {"paging": [{"channel": "sms"}, {"channel": "voice", "after_seconds": 120}]}}))
        .unwrap();
        assert!(c.validate(&|_| false).is_ok());
        c.preferences.paging.push(PagingRule {
            channel: "sms".into(),
            after_seconds: 5,
        });
        c.preferences.paging.push(PagingRule {
            channel: "webhook".into(),
            after_seconds: 3601,
        });
        let fields: Vec<String> = c
            .validate(&|_| false)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "preferences.paging[2].channel",
                "preferences.paging[3].channel",
                "preferences.paging[3].after_seconds"
            ]
        );
    }
}
