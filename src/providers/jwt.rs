//! Compact JWS tokens (RFC 7515/7519) as FCM's OAuth grant (RS256) and APNs' provider tokens
//! (ES256) need them: PEM keys read, tokens signed, and (for the simulators) tokens split and
//! checked. ring does the arithmetic.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{self, KeyPair};
use serde_json::Value;

/// The DER inside a PEM block labelled `label` (`PRIVATE KEY`).
pub fn pem_der(pem: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .ok_or_else(|| format!("has no `{begin}` block"))?
        + begin.len();
    let stop = pem[start..]
        .find(&end)
        .ok_or_else(|| format!("has no `{end}` line"))?
        + start;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD
        .decode(b64)
        .map_err(|_| "is not base64 inside its PEM block".to_string())
}

/// A private key a token is signed with.
pub enum SigningKey {
    Rs256(signature::RsaKeyPair),
    Es256(signature::EcdsaKeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SigningKey::Rs256(_) => "SigningKey(RS256)",
            SigningKey::Es256(_) => "SigningKey(ES256)",
        })
    }
}

impl SigningKey {
    /// An RSA key in PKCS#8 PEM (a Google service account's `private_key`).
    pub fn rs256_pem(pem: &str) -> Result<SigningKey, String> {
        let der = pem_der(pem, "PRIVATE KEY")?;
        signature::RsaKeyPair::from_pkcs8(&der)
            .map(SigningKey::Rs256)
            .map_err(|e| format!("is not an RSA private key in PKCS#8 ({e})"))
    }

    /// A P-256 key in PKCS#8 PEM (an APNs `.p8` key).
    pub fn es256_pem(pem: &str) -> Result<SigningKey, String> {
        let der = pem_der(pem, "PRIVATE KEY")?;
        signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &der,
            &ring::rand::SystemRandom::new(),
        )
        .map(SigningKey::Es256)
        .map_err(|e| format!("is not a P-256 private key in PKCS#8 ({e})"))
    }

    fn alg(&self) -> &'static str {
        match self {
            SigningKey::Rs256(_) => "RS256",
            SigningKey::Es256(_) => "ES256",
        }
    }

    /// The public key a verifier needs: RSAPublicKey DER, or the uncompressed P-256 point.
    pub fn public(&self) -> Vec<u8> {
        match self {
            SigningKey::Rs256(k) => k.public().as_ref().to_vec(),
            SigningKey::Es256(k) => k.public_key().as_ref().to_vec(),
        }
    }

    /// A signed token: `header` gets `alg` (and `typ` when the caller put it there).
    pub fn sign(&self, mut header: Value, claims: &Value) -> Result<String, String> {
        header["alg"] = Value::from(self.alg());
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = ring::rand::SystemRandom::new();
        let sig = match self {
            SigningKey::Rs256(k) => {
                let mut out = vec![0u8; k.public().modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut out,
                )
                .map_err(|_| "RSA signing failed".to_string())?;
                out
            }
            SigningKey::Es256(k) => k
                .sign(&rng, input.as_bytes())
                .map_err(|_| "ECDSA signing failed".to_string())?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// A token taken apart: header and claims as JSON, checked against `public` under the
/// header's `alg` (RS256 or ES256 only; `none` and the rest are refused).
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: Value,
    pub claims: Value,
}

/// Why a token was refused, in a sentence.
pub fn verify(token: &str, public: &[u8]) -> Result<Verified, &'static str> {
    let (header, claims, input, sig) = split(token)?;
    let alg: &dyn signature::VerificationAlgorithm = match header["alg"].as_str() {
        Some("RS256") => &signature::RSA_PKCS1_2048_8192_SHA256,
        Some("ES256") => &signature::ECDSA_P256_SHA256_FIXED,
        _ => return Err("alg is not RS256 or ES256"),
    };
    signature::UnparsedPublicKey::new(alg, public)
        .verify(input.as_bytes(), &sig)
        .map_err(|_| "the signature does not verify")?;
    Ok(Verified { header, claims })
}

/// Header, claims, signing input and signature of a compact token, unverified.
pub fn split(token: &str) -> Result<(Value, Value, String, Vec<u8>), &'static str> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWS compact token");
    };
    let json = |p: &str| -> Option<Value> {
        URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    };
    let header = json(h).ok_or("the header is not base64url JSON")?;
    let claims = json(c).ok_or("the claims are not base64url JSON")?;
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "the signature is not base64url")?;
    Ok((header, claims, format!("{h}.{c}"), sig))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RSA: &str = include_str!("../simulate/keys/fcm-sim-rsa.pem");
    const EC: &str = include_str!("../simulate/keys/apns-sim-p256.p8");

    #[test]
    fn tokens_verify_under_their_own_key_only() {
        for (key, other) in [
            (
                SigningKey::rs256_pem(RSA).unwrap(),
                SigningKey::es256_pem(EC).unwrap(),
            ),
            (
                SigningKey::es256_pem(EC).unwrap(),
                SigningKey::rs256_pem(RSA).unwrap(),
            ),
        ] {
            let t = key
                .sign(json!({"typ": "JWT", "kid": "k1"}), &json!({"iss": "me"}))
                .unwrap();
            let v = verify(&t, &key.public()).unwrap();
            assert_eq!(v.claims["iss"], "me");
            assert_eq!(v.header["kid"], "k1");
            assert_eq!(v.header["alg"], key.alg());
            assert!(verify(&t, &other.public()).is_err());
            let mut forged = t.clone();
            forged.push('A');
            assert!(verify(&forged, &key.public()).is_err());
        }
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode("{}")
        );
        assert_eq!(verify(&none, &[]).unwrap_err(), "alg is not RS256 or ES256");
        assert!(verify("a.b", &[]).is_err());
    }

    #[test]
    fn keys_of_the_wrong_kind_or_shape_are_refused_by_name() {
        assert!(SigningKey::rs256_pem(EC).is_err());
        assert!(SigningKey::es256_pem(RSA).is_err());
        assert!(
            SigningKey::es256_pem("no pem here")
                .unwrap_err()
                .contains("BEGIN PRIVATE KEY")
        );
        assert!(
            SigningKey::es256_pem("-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----")
                .unwrap_err()
                .contains("base64")
        );
    }
}
