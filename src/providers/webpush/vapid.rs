//! VAPID (RFC 8292): the application server's ES256 key, the JWT a push service checks, and
//! (for the Web Push simulator) that check itself.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a JWT Herald makes is valid (RFC 8292 allows at most 24 h).
pub const LIFETIME_SECS: i64 = 12 * 3600;
/// A cached JWT is replaced when it has less than this left.
pub const RENEW_BEFORE_SECS: i64 = 3600;

pub struct VapidKey {
    signing: SigningKey,
    public: Vec<u8>,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VapidKey({})", self.public_b64())
    }
}

impl VapidKey {
    /// From the private key as `herald push keygen` prints it: 32 bytes, base64url.
    pub fn from_private_b64(s: &str) -> Result<VapidKey, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s.trim().trim_end_matches('='))
            .map_err(|_| "is not base64url".to_string())?;
        let signing = SigningKey::from_slice(&bytes)
            .map_err(|_| "is not a P-256 private key (32 bytes, base64url)".to_string())?;
        Ok(Self::from_signing(signing))
    }

    fn from_signing(signing: SigningKey) -> VapidKey {
        let public = signing
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        VapidKey { signing, public }
    }

    pub fn generate() -> VapidKey {
        let secret = super::ece::random_secret();
        Self::from_signing(SigningKey::from(secret))
    }

    pub fn private_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.signing.to_bytes())
    }

    /// The browsers' `applicationServerKey`: the 65-byte uncompressed point, base64url.
    pub fn public_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.public)
    }

    /// A JWT for a push service at `aud` (an origin), expiring at `exp` (Unix seconds).
    pub fn jwt(&self, aud: &str, exp: i64, sub: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims =
            URL_SAFE_NO_PAD.encode(json!({"aud": aud, "exp": exp, "sub": sub}).to_string());
        let input = format!("{header}.{claims}");
        let sig: Signature = self.signing.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    /// The `Authorization` header value for a JWT.
    pub fn authorization(&self, jwt: &str) -> String {
        format!("vapid t={jwt}, k={}", self.public_b64())
    }
}

/// JWTs kept per push-service origin until an hour before they expire: one signature per
/// origin per ~11 hours, not one per message.
#[derive(Default)]
pub struct JwtCache {
    by_origin: Mutex<HashMap<String, (String, i64)>>,
}

impl JwtCache {
    /// The JWT for `origin` at `now` (Unix seconds), made when none is kept or it is near its
    /// end; `made` is told when a new one was signed.
    pub fn get(
        &self,
        key: &VapidKey,
        origin: &str,
        sub: &str,
        now: i64,
        made: impl FnOnce(),
    ) -> String {
        let mut map = match self.by_origin.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some((jwt, exp)) = map.get(origin)
            && exp - now > RENEW_BEFORE_SECS
        {
            return jwt.clone();
        }
        let exp = now + LIFETIME_SECS;
        let jwt = key.jwt(origin, exp, sub);
        made();
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(origin.to_string(), (jwt.clone(), exp));
        jwt
    }
}

/// What a push service finds wrong with a request's VAPID authorization (RFC 8292 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `vapid t=…, k=…` (401).
    Missing(&'static str),
    /// A token that does not verify or does not fit (403).
    Invalid(&'static str),
}

/// Parses `Authorization: vapid t=…, k=…` into (t, k).
pub fn parse_authorization(value: &str) -> Option<(String, String)> {
    let rest = value
        .strip_prefix("vapid ")
        .or_else(|| value.strip_prefix("Vapid "))?;
    let (mut t, mut k) = (None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("t=") {
            t = Some(v.to_string());
        } else if let Some(v) = part.strip_prefix("k=") {
            k = Some(v.to_string());
        }
    }
    Some((t?, k?))
}

/// Checks a VAPID JWT as a push service does: ES256 signature by `k`, `aud` the service's
/// own origin, `exp` in the future and at most 24 h ahead, `sub` a `mailto:` or `https:`
/// contact. Returns the claims.
pub fn verify(jwt: &str, k: &str, origin: &str, now: i64) -> Result<Value, Refusal> {
    let inv = Refusal::Invalid;
    let key = URL_SAFE_NO_PAD
        .decode(k.trim_end_matches('='))
        .ok()
        .filter(|b| VerifyingKey::from_sec1_bytes(b).is_ok())
        .ok_or(inv("k is not a P-256 public key"))?;
    // The compact token split and checked by the JWS code FCM and APNs use too.
    let (header, ..) = crate::providers::jwt::split(jwt).map_err(inv)?;
    if header["alg"] != "ES256" {
        return Err(inv("alg is not ES256"));
    }
    let claims = crate::providers::jwt::verify(jwt, &key)
        .map_err(|e| {
            inv(if e == "the signature does not verify" {
                "the signature does not verify with k"
            } else {
                e
            })
        })?
        .claims;
    if claims["aud"].as_str() != Some(origin) {
        return Err(inv("aud is not this push service's origin"));
    }
    let exp = claims["exp"]
        .as_i64()
        .ok_or(inv("exp is missing or not a number"))?;
    if exp <= now {
        return Err(inv("the token has expired"));
    }
    if exp > now + 86_400 {
        return Err(inv("exp is more than 24 hours ahead"));
    }
    let sub = claims["sub"].as_str().unwrap_or("");
    if !(sub.starts_with("mailto:") || sub.starts_with("https://")) {
        return Err(inv("sub is not a mailto: or https: contact"));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8292 §2.4's token, checked at a time inside its validity (2016-01-23T00:00Z).
    #[test]
    fn rfc8292_example_token_verifies() {
        let t = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJodHRwczovL3B1c2guZXhhbXBsZS5uZXQiLCJleHAiOjE0NTM1MjM3NjgsInN1YiI6Im1haWx0bzpwdXNoQGV4YW1wbGUuY29tIn0.i3CYb7t4xfxCDquptFOepC9GAu_HLGkMlMuCGSK2rpiUfnK9ojFwDXb1JrErtmysazNjjvW2L9OkSSHzvoD1oA";
        let k = "BA1Hxzyi1RUM1b5wjxsn7nGxAszw2u61m164i3MrAIxHF6YK5h4SDYic-dRuU_RCPCfA5aq9ojSwk5Y2EmClBPs";
        let now = 1_453_507_200;
        let claims = verify(t, k, "https://push.example.net", now).unwrap();
        assert_eq!(claims["sub"], "mailto:push@example.com");
        let (parsed_t, parsed_k) = parse_authorization(&format!("vapid t={t}, k={k}")).unwrap();
        assert_eq!((parsed_t.as_str(), parsed_k.as_str()), (t, k));
        assert_eq!(
            verify(t, k, "https://other.example", now),
            Err(Refusal::Invalid("aud is not this push service's origin"))
        );
        assert_eq!(
            verify(t, k, "https://push.example.net", 1_453_523_768),
            Err(Refusal::Invalid("the token has expired"))
        );
        assert_eq!(
            verify(t, k, "https://push.example.net", 1_453_523_768 - 86_401),
            Err(Refusal::Invalid("exp is more than 24 hours ahead"))
        );
        let mut forged = t.to_string();
        forged.replace_range(forged.len() - 2.., "oB");
        assert!(verify(&forged, k, "https://push.example.net", now).is_err());
        let other = VapidKey::generate();
        assert_eq!(
            verify(t, &other.public_b64(), "https://push.example.net", now),
            Err(Refusal::Invalid("the signature does not verify with k"))
        );
    }

    #[test]
    fn herald_tokens_verify_and_are_cached_per_origin() {
        let key = VapidKey::generate();
        let again = VapidKey::from_private_b64(&key.private_b64()).unwrap();
        assert_eq!(again.public_b64(), key.public_b64());
        assert_eq!(URL_SAFE_NO_PAD.decode(key.public_b64()).unwrap().len(), 65);
        let now = 1_800_000_000;
        let cache = JwtCache::default();
        let mut signed = 0;
        let a = cache.get(
            &key,
            "https://push.example",
            "mailto:ops@example.com",
            now,
            || signed += 1,
        );
        let b = cache.get(
            &key,
            "https://push.example",
            "mailto:ops@example.com",
            now + 3600,
            || signed += 1,
        );
        assert_eq!(
            (a == b, signed),
            (true, 1),
            "one token per origin while it lasts"
        );
        cache.get(
            &key,
            "https://fcm.example",
            "mailto:ops@example.com",
            now,
            || signed += 1,
        );
        assert_eq!(signed, 2, "another origin, another token");
        let late = cache.get(
            &key,
            "https://push.example",
            "mailto:ops@example.com",
            now + LIFETIME_SECS - 60,
            || signed += 1,
        );
        assert_eq!(signed, 3, "renewed near its end");
        let claims = verify(
            &late,
            &key.public_b64(),
            "https://push.example",
            now + LIFETIME_SECS,
        )
        .unwrap();
        assert!(claims["exp"].as_i64().unwrap() - (now + LIFETIME_SECS - 60) <= 86_400);
        assert!(VapidKey::from_private_b64("not base64!").is_err());
        assert!(VapidKey::from_private_b64("AAAA").is_err());
        assert!(parse_authorization("Bearer x").is_none());
        assert!(parse_authorization("vapid t=abc").is_none());
    }
}
