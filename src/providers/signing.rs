//! Request signatures: Standard Webhooks (our own webhooks), Aliyun RPC v1 (HMAC-SHA1),
//! Twilio's `X-Twilio-Signature`, DingTalk and Feishu robots. The simulator checks with the
//! same functions; the published test vectors below pin them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The signing key of a secret: the base64 after `whsec_`, or the raw bytes of a secret
/// without that prefix.
pub fn key_bytes(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => STANDARD
            .decode(b64)
            .unwrap_or_else(|_| secret.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    }
}

/// HMAC-SHA256 of the concatenated `parts` under `key` (any key length).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| {
        // HMAC accepts keys of any length; this branch cannot be taken.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&[0u8; 32]).unwrap_or_else(|_| unreachable!())
    });
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The `webhook-signature` header value.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", STANDARD.encode(mac))
}

/// Checks a `webhook-signature` header (space-separated `v1,…` entries) against the body.
pub fn verify(key: &[u8], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let want = sign(key, id, timestamp, body);
    header
        .split(' ')
        .any(|sig| constant_time_eq(sig.as_bytes(), want.as_bytes()))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    match <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(), // HMAC takes keys of any length
    }
}

/// RFC 3986 percent-encoding as Aliyun signs it: unreserved characters stay, every other
/// byte becomes `%XY` (uppercase), space is `%20`.
pub fn aliyun_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The sorted, encoded query Aliyun signs (every parameter but `Signature`).
pub fn aliyun_canonical_query(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> =
        params.iter().filter(|(k, _)| k != "Signature").collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", aliyun_encode(k), aliyun_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Aliyun RPC signature v1: Base64(HMAC-SHA1(secret + "&", METHOD&%2F&pe(query))).
pub fn aliyun_rpc_signature(method: &str, params: &[(String, String)], secret: &str) -> String {
    let to_sign = format!(
        "{method}&%2F&{}",
        aliyun_encode(&aliyun_canonical_query(params))
    );
    STANDARD.encode(hmac_sha1(
        format!("{secret}&").as_bytes(),
        to_sign.as_bytes(),
    ))
}

/// Twilio's `X-Twilio-Signature` for a form request: Base64(HMAC-SHA1(token, url + the
/// parameters sorted by name, then value, each written as name followed by value)).
pub fn twilio_signature(url: &str, params: &[(String, String)], auth_token: &str) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    STANDARD.encode(hmac_sha1(auth_token.as_bytes(), data.as_bytes()))
}

/// Checks a Twilio signature, accepting the URL with or without its default port, as
/// Twilio's own libraries do.
pub fn twilio_verify(
    url: &str,
    params: &[(String, String)],
    auth_token: &str,
    signature: &str,
) -> bool {
    twilio_url_variants(url).iter().any(|c| {
        constant_time_eq(
            twilio_signature(c, params, auth_token).as_bytes(),
            signature.as_bytes(),
        )
    })
}

/// The URL as given, and the same with the default port added or removed.
fn twilio_url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once(':') {
        Some((host, port)) if port == default => out.push(format!("{scheme}://{host}{tail}")),
        Some((_, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {}
        _ => out.push(format!("{scheme}://{authority}:{default}{tail}")),
    }
    out
}

/// DingTalk robot signing: Base64(HMAC-SHA256(key = secret, msg = "{ms}\n{secret}")),
/// URL-encoded by the caller.
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    STANDARD.encode(hmac_sha256(
        secret.as_bytes(),
        &[format!("{timestamp_ms}\n{secret}").as_bytes()],
    ))
}

/// Feishu robot signing: Base64(HMAC-SHA256(key = "{s}\n{secret}", msg = empty)). Not the
/// DingTalk arrangement: the string is the key and the message is empty.
pub fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    STANDARD.encode(hmac_sha256(
        format!("{timestamp_s}\n{secret}").as_bytes(),
        &[],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Aliyun vector A (PROVIDERS.md §1.4), VERIFIED.
    #[test]
    fn aliyun_vector_a() {
        let p = params(&[
            ("AccessKeyId", "testId"),
            ("Action", "SendSms"),
            ("Format", "XML"),
            ("OutId", "123"),
            ("PhoneNumbers", "15300000001"),
            ("RegionId", "cn-hangzhou"),
            ("SignName", "阿里云短信测试专用"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "45e25e9b-0a6f-4070-8c85-2956eda1b466"),
            ("SignatureVersion", "1.0"),
            ("TemplateCode", "SMS_71390007"),
            ("TemplateParam", "{\"customer\":\"test\"}"),
            ("Timestamp", "2017-07-12T02:42:19Z"),
            ("Version", "2017-05-25"),
        ]);
        assert_eq!(
            aliyun_canonical_query(&p),
            "AccessKeyId=testId&Action=SendSms&Format=XML&OutId=123&PhoneNumbers=15300000001&RegionId=cn-hangzhou&SignName=%E9%98%BF%E9%87%8C%E4%BA%91%E7%9F%AD%E4%BF%A1%E6%B5%8B%E8%AF%95%E4%B8%93%E7%94%A8&SignatureMethod=HMAC-SHA1&SignatureNonce=45e25e9b-0a6f-4070-8c85-2956eda1b466&SignatureVersion=1.0&TemplateCode=SMS_71390007&TemplateParam=%7B%22customer%22%3A%22test%22%7D&Timestamp=2017-07-12T02%3A42%3A19Z&Version=2017-05-25"
        );
        let sig = aliyun_rpc_signature("GET", &p, "testSecret");
        assert_eq!(sig, "zJDF+Lrzhj/ThnlvIToysFRq6t4=");
        assert_eq!(aliyun_encode(&sig), "zJDF%2BLrzhj%2FThnlvIToysFRq6t4%3D");
    }

    /// Aliyun vector B (the generic RPC v2 doc's fixed example), VERIFIED math.
    #[test]
    fn aliyun_vector_b() {
        let p = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeDedicatedHosts"),
            ("Format", "JSON"),
            ("RegionId", "cn-beijing"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "edb2b34af0af9a6d14deaf7c1a5315eb"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2023-03-13T08:34:30Z"),
            ("Version", "2014-05-26"),
        ]);
        assert_eq!(
            aliyun_rpc_signature("GET", &p, "testsecret"),
            "9NaGiOspFP5UPcwX8Iwt2YJXXuk="
        );
        assert_eq!(aliyun_encode("a b*~"), "a%20b%2A~");
    }

    /// Twilio vectors from twilio-python's request validator tests (PROVIDERS.md §2.3).
    #[test]
    fn twilio_vectors() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let p = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            twilio_signature(url, &p, "12345"),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert_eq!(
            twilio_signature(
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                &p,
                "12345"
            ),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        );
        // Either form of the URL verifies either signature.
        assert!(twilio_verify(
            url,
            &p,
            "12345",
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        ));
        assert!(twilio_verify(
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &p,
            "12345",
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!twilio_verify(
            url,
            &p,
            "54321",
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        let dup = params(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            twilio_signature(url, &dup, "12345"),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
        let docs = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            twilio_signature(url, &docs, "12345"),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
        let body = br#"{"property": "value", "boolean": true}"#;
        let hash = hex::encode(Sha256::digest(body));
        assert_eq!(
            hash,
            "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        assert_eq!(
            twilio_signature(&format!("{url}&bodySHA256={hash}"), &[], "12345"),
            "a9nBmqA0ju/hNViExpshrM61xv4="
        );
    }

    /// SELF-COMPUTED fixtures from PROVIDERS.md §4.1 and §4.2.
    #[test]
    fn robot_signatures() {
        let d = dingtalk_sign("this is secret", 1577262236757);
        assert_eq!(d, "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM=");
        assert_eq!(
            aliyun_encode(&d),
            "hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"
        );
        assert_eq!(
            feishu_sign("this is secret", 1599360473),
            "/eYKrXQBzTjUZJ3s6NX16VxGbTwmK7AEs8/FnvC1CSw="
        );
        // The pitfall: signing Feishu the DingTalk way gives another value.
        assert_eq!(
            STANDARD.encode(hmac_sha256(
                b"this is secret",
                &[b"1599360473\nthis is secret"]
            )),
            "Aa897dtSTyHzD0ZCF2+ph58VjSQ6lUYLT11QvLTQCnU="
        );
    }

    /// The test vector published with the Standard Webhooks specification and its libraries.
    #[test]
    fn matches_the_published_standard_webhooks_vector() {
        let key = key_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
            "v1,bad v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        ));
        assert!(!verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265331,
            br#"{"test": 2432232314}"#,
            &sig
        ));
    }
}
