//! Signed acknowledge links: `/a/{token}` where the token binds one person to one incident
//! until an expiry, signed with HMAC-SHA-256 under `[oncall] link_secret`. Opening the link
//! only shows the incident; acting on it (a POST) spends the token's nonce, so a link works
//! once. Pure: making and checking tokens.

use crate::core::types::Millis;
use crate::providers::signing::{constant_time_eq, hmac_sha256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Incident id.
    pub i: String,
    /// The person paged (contact id).
    pub p: String,
    /// Expiry, ms since the epoch.
    pub e: Millis,
    /// Spent when the link acts.
    pub n: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Not a token, or not signed with this key.
    Forged,
    Expired,
}

fn mac(secret: &[u8], payload: &str) -> String {
    URL_SAFE_NO_PAD.encode(hmac_sha256(
        secret,
        &[b"herald-ack-link:", payload.as_bytes()],
    ))
}

/// The token of a link for these claims.
pub fn make(secret: &[u8], c: &Claims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).unwrap_or_default());
    let sig = mac(secret, &payload);
    format!("{payload}.{sig}")
}

/// The claims of a token signed with `secret` and not expired at `now`.
pub fn check(secret: &[u8], token: &str, now: Millis) -> Result<Claims, LinkError> {
    if token.len() > 1024 {
        return Err(LinkError::Forged);
    }
    let (payload, sig) = token.split_once('.').ok_or(LinkError::Forged)?;
    if !constant_time_eq(mac(secret, payload).as_bytes(), sig.as_bytes()) {
        return Err(LinkError::Forged);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| LinkError::Forged)?;
    let c: Claims = serde_json::from_slice(&bytes).map_err(|_| LinkError::Forged)?;
    if now >= c.e {
        return Err(LinkError::Expired);
    }
    Ok(c)
}

/// Whether an SMS page to `phone` may carry a link (some countries' carriers drop SMS with
/// links: `no_links_for` lists their prefixes).
pub fn links_allowed(phone: &str, no_links_for: &[String]) -> bool {
    !no_links_for
        .iter()
        .any(|p| !p.is_empty() && phone.starts_with(p.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            i: "inc_1".into(),
            p: "ana".into(),
            e: 1_000,
            n: "nonce".into(),
        }
    }

    #[test]
    fn a_token_round_trips_until_it_expires() {
        let t = make(b"k", &claims());
        assert_eq!(check(b"k", &t, 999), Ok(claims()));
        assert_eq!(check(b"k", &t, 1_000), Err(LinkError::Expired));
    }

    #[test]
    fn another_key_a_changed_payload_or_garbage_is_forged() {
        let t = make(b"k", &claims());
        assert_eq!(check(b"other", &t, 0), Err(LinkError::Forged));
        let (p, s) = t.split_once('.').unwrap();
        let mut other = claims();
        other.i = "inc_2".into();
        let p2 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
        assert_ne!(p, p2);
        assert_eq!(check(b"k", &format!("{p2}.{s}"), 0), Err(LinkError::Forged));
        for junk in ["", ".", "abc", "a.b", &"x".repeat(2000)] {
            assert_eq!(check(b"k", junk, 0), Err(LinkError::Forged), "{junk}");
        }
    }

    #[test]
    fn links_are_left_out_for_listed_prefixes() {
        let no = vec!["+86".to_string()];
        assert!(!links_allowed("+8613800138000", &no));
        assert!(links_allowed("+14155550100", &no));
        assert!(links_allowed("+8613800138000", &[]));
    }
}
