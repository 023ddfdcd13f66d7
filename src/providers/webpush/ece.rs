//! Web Push message encryption: RFC 8291 over the `aes128gcm` content coding of RFC 8188.
//! The sender's side (one record, a fresh ephemeral key and salt per message) and the
//! receiver's (what a browser does; the Web Push simulator uses it to check Herald).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use p256::ecdh::diffie_hellman;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};

/// Record size Herald writes (one record; RFC 8291 §4).
pub const RECORD_SIZE: u32 = 4096;
/// Header of an RFC 8291 body: salt, record size, key id length, the 65-byte key.
pub const HEADER_LEN: usize = 16 + 4 + 1 + 65;
/// The most plaintext one record of [`RECORD_SIZE`] holds (delimiter and tag take 17).
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - HEADER_LEN - 17;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EceError {
    /// The browser's key is not a point on P-256.
    BadPublicKey,
    /// More plaintext than one record holds.
    TooLong(usize),
    /// A body that does not decrypt (receiver side): the reason.
    Undecryptable(&'static str),
}

impl std::fmt::Display for EceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EceError::BadPublicKey => f.write_str("the subscription's p256dh is not a P-256 point"),
            EceError::TooLong(n) => {
                write!(f, "{n} bytes: a push message holds at most {MAX_PLAINTEXT}")
            }
            EceError::Undecryptable(why) => write!(f, "cannot decrypt: {why}"),
        }
    }
}

use crate::providers::signing::hmac_sha256 as hmac;

/// RFC 5869 with one output block (every length here is at most 32).
fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let prk = hmac(salt, &[ikm]);
    hmac(&prk, &[info, &[1]])
}

/// RFC 8291 §3.3–3.4: the input key of the content coding, from the ECDH secret, the auth
/// secret and both public keys.
fn ikm(ecdh: &[u8], auth: &[u8], ua_public: &[u8], as_public: &[u8]) -> [u8; 32] {
    let mut key_info = Vec::with_capacity(14 + 130);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public);
    hkdf(auth, ecdh, &key_info)
}

/// The content key and nonce from the ECDH secret (RFC 8291 §3.3–3.4, RFC 8188 §2.2–2.3).
fn derive(
    ecdh: &[u8],
    auth: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8],
) -> ([u8; 16], [u8; 12]) {
    let ikm = ikm(ecdh, auth, ua_public, as_public);
    let cek = hkdf(salt, &ikm, b"Content-Encoding: aes128gcm\0");
    let nonce = hkdf(salt, &ikm, b"Content-Encoding: nonce\0");
    let mut c = [0u8; 16];
    c.copy_from_slice(&cek[..16]);
    let mut n = [0u8; 12];
    n.copy_from_slice(&nonce[..12]);
    (c, n)
}

fn uncompressed(k: &PublicKey) -> Vec<u8> {
    k.to_encoded_point(false).as_bytes().to_vec()
}

/// The record: header and sealed `plaintext || 0x02`, from the ECDH secret.
fn seal(
    plaintext: &[u8],
    ecdh: &[u8],
    auth: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8; 16],
) -> Result<Vec<u8>, EceError> {
    let (cek, nonce) = derive(ecdh, auth, ua_public, as_public, salt);
    let mut padded = plaintext.to_vec();
    padded.push(0x02); // the last (only) record's delimiter
    let sealed = Aes128Gcm::new(&cek.into())
        .encrypt(&Nonce::from(nonce), padded.as_slice())
        .map_err(|_| EceError::Undecryptable("AES-GCM refused the record"))?;
    let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
    out.extend_from_slice(salt);
    out.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    out.push(as_public.len() as u8);
    out.extend_from_slice(as_public);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Encrypts `plaintext` for a subscription (`ua_public`: 65-byte point; `auth`: its secret)
/// with the given ephemeral key and salt: what tests use to reproduce RFC 8291's vector.
/// [`encrypt`] draws fresh ones (and uses ring's faster P-256).
pub fn encrypt_with(
    plaintext: &[u8],
    ua_public: &[u8],
    auth: &[u8],
    ephemeral: &SecretKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, EceError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EceError::TooLong(plaintext.len()));
    }
    // Rejects points not on the curve (RFC 8291 §7).
    let ua = PublicKey::from_sec1_bytes(ua_public).map_err(|_| EceError::BadPublicKey)?;
    let as_public = uncompressed(&ephemeral.public_key());
    let shared = diffie_hellman(ephemeral.to_nonzero_scalar(), ua.as_affine());
    seal(
        plaintext,
        &shared.raw_secret_bytes()[..],
        auth,
        &uncompressed(&ua),
        &as_public,
        salt,
    )
}

/// 32 random bytes as a P-256 secret (drawn again in the vanishing case of an invalid one).
pub fn random_secret() -> SecretKey {
    loop {
        let bytes: [u8; 32] = rand::random();
        if let Ok(k) = SecretKey::from_slice(&bytes) {
            return k;
        }
    }
}

/// Encrypts with a fresh ephemeral key and salt, as every message must (RFC 8291 §3.1).
pub fn encrypt(plaintext: &[u8], ua_public: &[u8], auth: &[u8]) -> Result<Vec<u8>, EceError> {
    use ring::agreement;
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EceError::TooLong(plaintext.len()));
    }
    let rng = ring::rand::SystemRandom::new();
    let ephemeral = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
        .map_err(|_| EceError::Undecryptable("no ephemeral key"))?;
    let as_public = ephemeral
        .compute_public_key()
        .map_err(|_| EceError::Undecryptable("no ephemeral key"))?;
    // ring checks that the browser's point is on the curve (RFC 8291 §7).
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, ua_public);
    let shared = agreement::agree_ephemeral(ephemeral, &peer, |s| s.to_vec())
        .map_err(|_| EceError::BadPublicKey)?;
    let salt: [u8; 16] = rand::random();
    seal(
        plaintext,
        &shared,
        auth,
        ua_public,
        as_public.as_ref(),
        &salt,
    )
}

/// RFC 8188 decoding of any number of records; `ikm_for` gives the input keying material
/// for the body's key id.
pub fn decode_aes128gcm(
    body: &[u8],
    ikm_for: impl Fn(&[u8]) -> Result<Vec<u8>, EceError>,
) -> Result<Vec<u8>, EceError> {
    let bad = EceError::Undecryptable;
    if body.len() < 21 {
        return Err(bad("shorter than the header"));
    }
    let salt = &body[..16];
    let rs = u32::from_be_bytes([body[16], body[17], body[18], body[19]]) as usize;
    if rs < 18 {
        return Err(bad("record size below 18"));
    }
    let idlen = body[20] as usize;
    let Some(keyid) = body.get(21..21 + idlen) else {
        return Err(bad("key id longer than the body"));
    };
    let ikm = ikm_for(keyid)?;
    let cek = hkdf(salt, &ikm, b"Content-Encoding: aes128gcm\0");
    let nonce_base = hkdf(salt, &ikm, b"Content-Encoding: nonce\0");
    let cipher = Aes128Gcm::new_from_slice(&cek[..16]).map_err(|_| bad("key"))?;
    let records: Vec<&[u8]> = body[21 + idlen..].chunks(rs).collect();
    if records.is_empty() {
        return Err(bad("no record"));
    }
    let mut out = Vec::new();
    for (seq, rec) in records.iter().enumerate() {
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&nonce_base[..12]);
        for (i, b) in (seq as u64).to_be_bytes().iter().enumerate() {
            nonce[4 + i] ^= b;
        }
        let mut plain = cipher
            .decrypt(&Nonce::from(nonce), *rec)
            .map_err(|_| bad("authentication failed"))?;
        while plain.last() == Some(&0) {
            plain.pop();
        }
        let last = seq + 1 == records.len();
        match (plain.pop(), last) {
            (Some(2), true) | (Some(1), false) => out.extend_from_slice(&plain),
            _ => return Err(bad("wrong record delimiter")),
        }
    }
    Ok(out)
}

/// What a browser does with a push body: one record, the sender's key as key id, the
/// subscription's private key and auth secret (RFC 8291).
pub fn decrypt(body: &[u8], ua_secret: &SecretKey, auth: &[u8]) -> Result<Vec<u8>, EceError> {
    let ua_public = uncompressed(&ua_secret.public_key());
    if body.get(20) != Some(&65) {
        return Err(EceError::Undecryptable(
            "the key id is not a 65-byte P-256 key",
        ));
    }
    let rs = body
        .get(16..20)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .unwrap_or(0);
    if body.len() > HEADER_LEN + rs {
        return Err(EceError::Undecryptable("more than one record"));
    }
    decode_aes128gcm(body, |keyid| {
        let as_public = PublicKey::from_sec1_bytes(keyid).map_err(|_| EceError::BadPublicKey)?;
        let shared = diffie_hellman(ua_secret.to_nonzero_scalar(), as_public.as_affine());
        Ok(ikm(&shared.raw_secret_bytes()[..], auth, &ua_public, keyid).to_vec())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn b(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const PLAINTEXT: &str = "When I grow up, I want to be a watermelon";
    const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    /// RFC 8291 Appendix A, byte for byte, with its ephemeral key and salt injected.
    #[test]
    fn rfc8291_appendix_a_is_reproduced() {
        let eph = SecretKey::from_slice(&b(AS_PRIVATE)).unwrap();
        let salt: [u8; 16] = b(SALT).try_into().unwrap();
        let body =
            encrypt_with(PLAINTEXT.as_bytes(), &b(UA_PUBLIC), &b(AUTH), &eph, &salt).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.encode(&body), BODY);
        assert_eq!(
            body.len(),
            144,
            "the RFC's prose says 145; the body is 144 octets"
        );
        // The intermediate values of RFC 8291 §5.
        let ua = PublicKey::from_sec1_bytes(&b(UA_PUBLIC)).unwrap();
        let shared = diffie_hellman(eph.to_nonzero_scalar(), ua.as_affine());
        assert_eq!(
            URL_SAFE_NO_PAD.encode(shared.raw_secret_bytes()),
            "kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs"
        );
        let (cek, nonce) = derive(
            &shared.raw_secret_bytes()[..],
            &b(AUTH),
            &b(UA_PUBLIC),
            &uncompressed(&eph.public_key()),
            &salt,
        );
        assert_eq!(URL_SAFE_NO_PAD.encode(cek), "oIhVW04MRdy2XN9CiKLxTg");
        assert_eq!(URL_SAFE_NO_PAD.encode(nonce), "4h_95klXJ5E_qnoN");
    }

    #[test]
    fn the_browser_side_decrypts_the_rfc_body_and_refuses_a_changed_one() {
        let ua = SecretKey::from_slice(&b(UA_PRIVATE)).unwrap();
        let plain = decrypt(&b(BODY), &ua, &b(AUTH)).unwrap();
        assert_eq!(plain, PLAINTEXT.as_bytes());
        let mut bad = b(BODY);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            decrypt(&bad, &ua, &b(AUTH)),
            Err(EceError::Undecryptable("authentication failed"))
        );
        assert!(
            decrypt(&b(BODY), &ua, &[0u8; 16]).is_err(),
            "another auth secret"
        );
        assert!(decrypt(&b(BODY)[..30], &ua, &b(AUTH)).is_err());
    }

    #[test]
    fn fresh_keys_round_trip_and_limits_hold() {
        let ua = random_secret();
        let ua_pub = uncompressed(&ua.public_key());
        let auth: [u8; 16] = rand::random();
        let one = encrypt(b"{\"title\":\"db01 down\"}", &ua_pub, &auth).unwrap();
        let two = encrypt(b"{\"title\":\"db01 down\"}", &ua_pub, &auth).unwrap();
        assert_ne!(one, two, "a fresh salt and key for every message");
        assert_eq!(
            decrypt(&one, &ua, &auth).unwrap(),
            b"{\"title\":\"db01 down\"}"
        );
        let max = vec![b'x'; MAX_PLAINTEXT];
        let body = encrypt(&max, &ua_pub, &auth).unwrap();
        assert_eq!(
            body.len(),
            RECORD_SIZE as usize,
            "a full record fills 4096 octets"
        );
        assert_eq!(
            encrypt(&[b'x'; MAX_PLAINTEXT + 1], &ua_pub, &auth),
            Err(EceError::TooLong(MAX_PLAINTEXT + 1))
        );
        let mut off_curve = ua_pub.clone();
        off_curve[64] ^= 1;
        assert_eq!(
            encrypt(b"x", &off_curve, &auth),
            Err(EceError::BadPublicKey)
        );
    }

    /// RFC 8188 §3.1 (one record) and §3.2 (two records, padding, a key id): the generic
    /// decoder, nonce counter included; a record without its delimiter is refused.
    #[test]
    fn rfc8188_vectors_decode() {
        let key = |k: &'static str| move |_: &[u8]| Ok(b(k));
        let one = b("I1BsxtFttlv3u_Oo94xnmwAAEAAA-NAVub2qFgBEuQKRapoZu-IxkIva3MEB1PD-ly8Thjg");
        assert_eq!(
            one.len(),
            53,
            "the RFC's prose says 54; the body is 53 octets"
        );
        assert_eq!(
            decode_aes128gcm(&one, key("yqdlZ-tYemfogSmv7Ws5PQ")).unwrap(),
            b"I am the walrus"
        );
        let two = b(
            "uNCkWiNYzKTnBN9ji3-qWAAAABkCYTHOG8chz_gnvgOqdGYovxyjuqRyJFjEDyoF1Fvkj6hQPdPHI51OEUKEpgz3SsLWIqS_uA",
        );
        assert_eq!(
            decode_aes128gcm(&two, key("BO3ZVPxUlnLORbVGMpbT1Q")).unwrap(),
            b"I am the walrus"
        );
        assert!(decode_aes128gcm(&two, key("yqdlZ-tYemfogSmv7Ws5PQ")).is_err());
        // The second record alone is not "the last one with 0x02" at position 0... drop the
        // last record: the first then ends with 0x01, which is wrong for a last record.
        let first_only = &two[..21 + 2 + 25];
        assert_eq!(
            decode_aes128gcm(first_only, key("BO3ZVPxUlnLORbVGMpbT1Q")),
            Err(EceError::Undecryptable("wrong record delimiter"))
        );
    }
}
