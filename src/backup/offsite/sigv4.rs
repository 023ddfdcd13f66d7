//! AWS Signature Version 4 for S3 requests (header form, signed payload). Pure: the caller
//! gives the time. Pinned by the GET example of the AWS S3 documentation
//! ("Examples of the complete Version 4 signing process", `examplebucket`, 2013-05-24).

use crate::providers::signing::hmac_sha256;
use sha2::{Digest, Sha256};

pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub region: &'a str,
}

/// What is signed of one request.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent, already percent-encoded (`/bucket/key`).
    pub path: &'a str,
    /// Query parameters, not encoded; sorted here.
    pub query: &'a [(&'a str, &'a str)],
    /// Headers to sign besides `host`, `x-amz-date` and `x-amz-content-sha256` (lower-case
    /// names).
    pub headers: &'a [(&'a str, &'a str)],
    pub host: &'a str,
    /// Hex SHA-256 of the body.
    pub payload_sha256: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// RFC 3986 unreserved characters stay; everything else is `%XX` (upper case); `/` too
/// unless `keep_slash`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The canonical query string: encoded names and values, sorted.
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    q.sort();
    q.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `Authorization` header value.
pub fn authorization(c: &Credentials, r: &Request) -> String {
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), r.host.to_string()),
        ("x-amz-content-sha256".into(), r.payload_sha256.to_string()),
        ("x-amz-date".into(), r.amz_date.to_string()),
    ];
    for (k, v) in r.headers {
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    headers.sort();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        r.method,
        r.path,
        canonical_query(r.query),
        canonical_headers,
        signed,
        r.payload_sha256
    );
    let day = &r.amz_date[..8.min(r.amz_date.len())];
    let scope = format!("{day}/{}/s3/aws4_request", c.region);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        r.amz_date,
        sha256_hex(canonical.as_bytes())
    );
    let k_date = hmac_sha256(
        format!("AWS4{}", c.secret_access_key).as_bytes(),
        &[day.as_bytes()],
    );
    let k_region = hmac_sha256(&k_date, &[c.region.as_bytes()]);
    let k_service = hmac_sha256(&k_region, &[b"s3"]);
    let k_signing = hmac_sha256(&k_service, &[b"aws4_request"]);
    let signature = hex::encode(hmac_sha256(&k_signing, &[to_sign.as_bytes()]));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed},Signature={signature}",
        c.access_key_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn creds() -> Credentials<'static> {
        Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
        }
    }

    #[test]
    fn the_aws_documentation_get_object_example() {
        let auth = authorization(
            &creds(),
            &Request {
                method: "GET",
                path: "/test.txt",
                query: &[],
                headers: &[("range", "bytes=0-9")],
                host: "examplebucket.s3.amazonaws.com",
                payload_sha256: EMPTY,
                amz_date: "20130524T000000Z",
            },
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn the_aws_documentation_list_objects_example() {
        let auth = authorization(
            &creds(),
            &Request {
                method: "GET",
                path: "/",
                query: &[("max-keys", "2"), ("prefix", "J")],
                headers: &[],
                host: "examplebucket.s3.amazonaws.com",
                payload_sha256: EMPTY,
                amz_date: "20130524T000000Z",
            },
        );
        assert!(
            auth.ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ),
            "{auth}"
        );
    }

    #[test]
    fn encoding_follows_rfc_3986() {
        assert_eq!(uri_encode("a b/c~d+é", true), "a%20b/c~d%2B%C3%A9");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(
            canonical_query(&[("prefix", "x/"), ("list-type", "2")]),
            "list-type=2&prefix=x%2F"
        );
    }
}
