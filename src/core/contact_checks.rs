//! Checks of a contact's fields, each as the OpenAPI document states it (so that what the
//! document calls valid is what the server takes): push endpoints and keys, tokens, locales,
//! categories, time zones.

use super::contact::{ApnsToken, MAX_ADDRESSES, WebPushSubscription};
use super::validate::FieldError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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
pub(super) fn check_list<T: PartialEq>(
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

pub(super) fn simple(r: Result<(), String>, field: &str, errs: &mut Vec<FieldError>) {
    if let Err(m) = r {
        errs.push(FieldError::new(field, m));
    }
}

pub(super) fn valid_token(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 4096 || !s.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        Err("must be a registration token: 1 to 4096 printable ASCII characters, no spaces".into())
    } else {
        Ok(())
    }
}

pub(super) fn valid_apns(t: &ApnsToken, field: &str, errs: &mut Vec<FieldError>) {
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

pub(super) fn valid_locale(s: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
