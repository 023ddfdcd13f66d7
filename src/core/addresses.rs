//! What an address of each kind must look like: phone numbers (E.164), emails, user ids,
//! webhook URLs (the SSRF policy applied). Used by message validation; one place for every
//! part of Herald that takes an address.

use super::ssrf::HostPolicy;

/// E.164: `+`, a non-zero digit, 6 to 14 more digits.
pub fn valid_phone(s: &str) -> Result<(), String> {
    let digits = s.strip_prefix('+').unwrap_or("");
    let ok = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err("must be an E.164 number such as +8613800138000".into())
    }
}

pub fn valid_email(s: &str) -> Result<(), String> {
    let bad = || Err("must be an email address such as ops@example.com".to_string());
    let Some((local, domain)) = s.rsplit_once('@') else {
        return bad();
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !"<>()[]\\,;:\"@".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok { Ok(()) } else { bad() }
}

/// Inbox users and chat targets: 1–128 of letters, digits and `._@:-`.
pub fn valid_user(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@:-".contains(c));
    if ok {
        Ok(())
    } else {
        Err("must be 1 to 128 letters, digits or `._@:-`".into())
    }
}

/// Checks a webhook URL and returns it in canonical form.
pub fn valid_webhook(s: &str, hosts: &HostPolicy) -> Result<String, String> {
    if s.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    // The URL parser drops tabs and line breaks silently; a URL carrying them is refused.
    if s.chars().any(|c| c.is_control() || c == ' ') {
        return Err("must not contain spaces or control characters (CR, LF, tab)".into());
    }
    let u = url::Url::parse(s).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "scheme `{}` is not allowed: use http or https",
            u.scheme()
        ));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry credentials; use a signing secret instead".into());
    }
    let host = match u.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err("must have a host".into()),
    };
    hosts.check_host(&host)?;
    Ok(u.to_string())
}
