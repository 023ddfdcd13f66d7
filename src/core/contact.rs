//! A contact: a person `to.user` names, with the addresses that reach them and their
//! preferences (channel and category opt-outs, quiet hours in their own time zone). The
//! document is validated here, field by field; what a message to a contact becomes is
//! decided here too ([`Contact::opt_out`], [`Contact::release_at`]). Pure.

use super::addresses::{valid_email, valid_phone, valid_user};
use super::quiet::{self, Window};
use super::types::{Channel, Millis, Priority};
use super::validate::FieldError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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
}

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

/// Where a push delivery goes, fixed at accept time: the contact's Web Push subscriptions
/// (what the delivery's `to` holds, as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushTarget {
    pub contact: String,
    #[serde(default)]
    pub webpush: Vec<WebPushSubscription>,
}

/// Why a delivery to a contact is not made: a code and a sentence for the message's reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub code: &'static str,
    pub detail: String,
}

/// A category name: what `metadata.category` and a template's `category` hold.
pub fn valid_category(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err("must be 1 to 64 letters, digits or `._-`".into())
    }
}

/// Unpadded base64url, as browsers give subscription keys (canonical: no stray bits).
fn decoded(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// A dotted-quad IPv4 address without leading zeros.
fn ipv4(host: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

/// A host name: up to nine labels of letters, digits and `-`, the last starting with a
/// letter.
fn domain(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let ok_label = |l: &&str| {
        (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    labels.len() <= 9
        && labels.iter().all(ok_label)
        && labels
            .last()
            .is_some_and(|l| l.len() <= 63 && l.as_bytes()[0].is_ascii_alphabetic())
}

/// A push service endpoint: `http(s)://host[:port][/path]`, the host a name or an IPv4
/// address, the path printable ASCII, at most 2048 characters (what the OpenAPI document
/// states, exactly).
pub fn valid_push_endpoint(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    if url.len() > 2048
        || !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
    {
        return false;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    // As the document's pattern: up to four digits, or five without a leading zero ≤ 65535.
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p.len() < 5 || (!p.starts_with('0') && p.parse::<u32>().is_ok_and(|n| n <= 65535)))
    });
    (ipv4(host) || domain(host)) && port_ok && path.bytes().all(|b| (b'!'..=b'~').contains(&b))
}

/// Checks a Web Push subscription: an http(s) endpoint, a P-256 public key (65 bytes,
/// uncompressed) and a 16-byte auth secret, both base64url.
pub fn check_webpush(s: &WebPushSubscription, field: &str, errs: &mut Vec<FieldError>) {
    if !valid_push_endpoint(&s.endpoint) {
        errs.push(FieldError::new(
            format!("{field}.endpoint"),
            "must be the push service's http(s) URL (a host name or IPv4 address, at most 2048 characters)",
        ));
    }
    match decoded(&s.keys.p256dh) {
        Some(k) if k.len() == 65 && k[0] == 4 => {}
        _ => errs.push(FieldError::new(
            format!("{field}.keys.p256dh"),
            "must be the browser's P-256 public key: 65 bytes, uncompressed, base64url",
        )),
    }
    match decoded(&s.keys.auth) {
        Some(k) if k.len() == 16 => {}
        _ => errs.push(FieldError::new(
            format!("{field}.keys.auth"),
            "must be the browser's auth secret: 16 bytes, base64url",
        )),
    }
}

/// Checks a list: at most [`MAX_ADDRESSES`], no item twice, each item by `check`.
fn check_list<T: PartialEq>(
    items: &[T],
    field: &str,
    errs: &mut Vec<FieldError>,
    mut check: impl FnMut(&T, &str, &mut Vec<FieldError>),
) {
    if items.len() > MAX_ADDRESSES {
        errs.push(FieldError::new(
            field,
            format!("must hold at most {MAX_ADDRESSES} items"),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if items[..i].contains(item) {
            errs.push(FieldError::new(&f, "is listed twice"));
        }
        check(item, &f, errs);
    }
}

fn simple(r: Result<(), String>, field: &str, errs: &mut Vec<FieldError>) {
    if let Err(m) = r {
        errs.push(FieldError::new(field, m));
    }
}

fn valid_token(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 4096 || !s.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        Err("must be a registration token: 1 to 4096 printable ASCII characters, no spaces".into())
    } else {
        Ok(())
    }
}

fn valid_apns(t: &ApnsToken, field: &str, errs: &mut Vec<FieldError>) {
    let hex = t.token.len() >= 64
        && t.token.len() <= 200
        && t.token.len().is_multiple_of(2)
        && t.token.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        errs.push(FieldError::new(
            format!("{field}.token"),
            "must be a device token in hex (64 to 200 digits)",
        ));
    }
    if !matches!(t.environment.as_str(), "production" | "sandbox") {
        errs.push(FieldError::new(
            format!("{field}.environment"),
            "must be `production` or `sandbox`",
        ));
    }
}

fn valid_locale(s: &str) -> bool {
    let mut parts = s.split(['-', '_']);
    let first_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    first_ok
        && s.len() <= 35
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether `name` is a time zone of the bundled IANA database, spelled as it spells it.
pub fn known_time_zone(name: &str) -> bool {
    jiff::tz::db().available().any(|n| n.as_str() == name)
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
    fn push_endpoints_are_what_the_document_says() {
        for ok in [
            "https://updates.push.services.mozilla.com/wpush/v2/gAAAA",
            "HTTP://127.0.0.1:8443/push/abc?x=1",
            "https://fcm.googleapis.com/fcm/send/abc:def",
            "http://localhost:65535",
            "https://a-b.example",
        ] {
            assert!(valid_push_endpoint(ok), "{ok}");
        }
        for bad in [
            "ftp://a.example/",
            "https://",
            "https://1.2.3/",
            "https://01.2.3.4/",
            "https://256.1.1.1/",
            "https://a.example:65536/",
            "https://a.example:01234/",
            "https://a.example:/",
            "https://a.1/",
            "https://a b.example/",
            "https://a.example/ space",
            "https://user@a.example/",
            "https://[::1]/",
            "https://a.example/é",
        ] {
            assert!(!valid_push_endpoint(bad), "{bad}");
        }
        assert!(known_time_zone("Europe/Berlin"));
        assert!(known_time_zone("UTC"));
        assert!(!known_time_zone("europe/berlin"));
        assert!(!known_time_zone("Mars/Olympus"));
    }

    #[test]
    fn locales() {
        for ok in ["en", "zh-CN", "zh-Hans-CN", "de_DE", "yue"] {
            assert!(valid_locale(ok), "{ok}");
        }
        for bad in ["", "e", "english", "en-", "en--US", "12-US"] {
            assert!(!valid_locale(bad), "{bad}");
        }
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
    fn categories() {
        assert!(valid_category("marketing").is_ok());
        assert!(valid_category("billing.invoices-v2").is_ok());
        assert!(valid_category("").is_err());
        assert!(valid_category("a b").is_err());
        assert!(valid_category(&"x".repeat(65)).is_err());
    }
}

#[cfg(test)]
mod document {
    /// The OpenAPI document lists the time zones a contact may name: exactly the bundled
    /// database's, so that what the document calls valid is what the server takes.
    #[test]
    fn the_documents_time_zones_are_the_bundled_ones() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../api/openapi.json")).unwrap();
        let listed: Vec<String> = doc["components"]["schemas"]["TimeZone"]["enum"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut bundled: Vec<String> = jiff::tz::db()
            .available()
            .map(|n| n.as_str().to_string())
            .collect();
        bundled.sort();
        assert!(
            listed == bundled,
            "components.schemas.TimeZone.enum should be: {}",
            serde_json::to_string(&bundled).unwrap()
        );
    }
}
