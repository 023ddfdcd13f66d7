//! A small S3 client: PUT, GET, DELETE and ListObjectsV2 of one bucket, signed with SigV4.
//! Enough for backups, against AWS S3, MinIO, Ceph or any S3-compatible service.

use super::sigv4::{self, Credentials, Request, sha256_hex, uri_encode};
use crate::backup::BackupError;
use crate::config::OffsiteConfig;
use std::time::Duration;

pub struct Bucket {
    http: reqwest::Client,
    cfg: OffsiteConfig,
    base: url::Url,
}

/// An object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its name without the prefix.
    pub name: String,
    pub size: u64,
    pub last_modified: String,
}

fn failed(what: &str, e: impl std::fmt::Display) -> BackupError {
    BackupError::Offsite(format!("{what}: {e}"))
}

impl Bucket {
    pub fn new(cfg: &OffsiteConfig) -> Result<Self, BackupError> {
        if let Some((key, m)) = cfg.check() {
            return Err(BackupError::Usage(format!("{key}: {m}")));
        }
        crate::tls::init();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| failed("http client", e))?;
        let base = url::Url::parse(&cfg.endpoint).map_err(|e| failed("endpoint", e))?;
        Ok(Bucket {
            http,
            cfg: cfg.clone(),
            base,
        })
    }

    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.cfg.bucket, self.cfg.prefix)
    }

    /// The URL, the Host header and the canonical path of `key` (none: the bucket).
    fn locate(&self, key: Option<&str>) -> Result<(url::Url, String, String), BackupError> {
        let host = self.base.host_str().unwrap_or_default().to_string();
        let port = self
            .base
            .port()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        let key_path = key.map(|k| uri_encode(k, true)).unwrap_or_default();
        let (host, path) = if self.cfg.path_style {
            (
                format!("{host}{port}"),
                format!("/{}/{key_path}", self.cfg.bucket),
            )
        } else {
            (
                format!("{}.{host}{port}", self.cfg.bucket),
                format!("/{key_path}"),
            )
        };
        let url = format!("{}://{host}{path}", self.base.scheme());
        let url = url::Url::parse(&url).map_err(|e| failed("object URL", e))?;
        Ok((url, host, path))
    }

    /// A signed request whose answer must be a success; any other is an error naming
    /// the service's code and message.
    async fn call(
        &self,
        method: reqwest::Method,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<reqwest::Response, BackupError> {
        let resp = self.send(method, key, query, headers, body).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.refusal(resp).await)
    }

    async fn refusal(&self, resp: reqwest::Response) -> BackupError {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let code = xml_values(&text, "Code").into_iter().next();
        let message = xml_values(&text, "Message").into_iter().next();
        BackupError::Offsite(format!(
            "{} answered {status}{}{}",
            self.describe(),
            code.map(|c| format!(": {c}")).unwrap_or_default(),
            message.map(|m| format!(" ({m})")).unwrap_or_default(),
        ))
    }

    /// A signed request, whatever it is answered.
    async fn send(
        &self,
        method: reqwest::Method,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<reqwest::Response, BackupError> {
        let (mut url, host, path) = self.locate(key)?;
        if !query.is_empty() {
            url.set_query(Some(&sigv4::canonical_query(query)));
        }
        let payload = sha256_hex(&body);
        let amz_date = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .map_err(|e| failed("clock", e))?;
        let auth = sigv4::authorization(
            &Credentials {
                access_key_id: self.cfg.access_key_id.expose(),
                secret_access_key: self.cfg.secret_access_key.expose(),
                region: &self.cfg.region,
            },
            &Request {
                method: method.as_str(),
                path: &path,
                query,
                headers,
                host: &host,
                payload_sha256: &payload,
                amz_date: &amz_date,
            },
        );
        let mut req = self
            .http
            .request(method, url)
            .header("x-amz-date", &amz_date)
            .header("x-amz-content-sha256", &payload)
            .header("authorization", auth);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| failed(&self.describe(), e))?;
        Ok(resp)
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.cfg.prefix)
    }

    /// Uploads `bytes` as `name` with their SHA-256 (checked by the service through
    /// `x-amz-content-sha256`, and kept as metadata for every later fetch).
    /// `parent`: for an incremental, the backup it follows (kept as metadata, so that a
    /// fetch brings the whole chain).
    pub async fn put(
        &self,
        name: &str,
        bytes: Vec<u8>,
        sha256: &str,
        parent: Option<&str>,
    ) -> Result<(), BackupError> {
        let key = self.key(name);
        let mut headers = vec![
            ("content-type", "application/octet-stream"),
            ("x-amz-meta-sha256", sha256),
        ];
        if let Some(p) = parent {
            headers.push(("x-amz-meta-herald-parent", p));
        }
        self.call(reqwest::Method::PUT, Some(&key), &[], &headers, bytes)
            .await?;
        Ok(())
    }

    /// The object's bytes, the SHA-256 it was uploaded with and its parent, if any.
    pub async fn get(&self, name: &str) -> Result<Fetched, BackupError> {
        let key = self.key(name);
        let resp = self
            .call(reqwest::Method::GET, Some(&key), &[], &[], Vec::new())
            .await?;
        let (sha256, parent) = metadata(resp.headers());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| failed(&self.describe(), e))?;
        Ok(Fetched {
            bytes: bytes.to_vec(),
            sha256,
            parent,
        })
    }

    /// Whether the object is there (HEAD).
    pub async fn exists(&self, name: &str) -> Result<bool, BackupError> {
        let key = self.key(name);
        let resp = self
            .send(reqwest::Method::HEAD, Some(&key), &[], &[], Vec::new())
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            reqwest::StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refusal(resp).await),
        }
    }

    /// The parent an object was uploaded with (HEAD: no body).
    pub async fn parent_of(&self, name: &str) -> Result<Option<String>, BackupError> {
        let key = self.key(name);
        let resp = self
            .call(reqwest::Method::HEAD, Some(&key), &[], &[], Vec::new())
            .await?;
        Ok(metadata(resp.headers()).1)
    }

    pub async fn delete(&self, name: &str) -> Result<(), BackupError> {
        let key = self.key(name);
        self.call(reqwest::Method::DELETE, Some(&key), &[], &[], Vec::new())
            .await?;
        Ok(())
    }

    /// Every object under the prefix, by name.
    pub async fn list(&self) -> Result<Vec<Object>, BackupError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        // Bounded: 1,000 pages of 1,000 objects.
        for _ in 0..1000 {
            let mut query = vec![("list-type", "2"), ("prefix", self.cfg.prefix.as_str())];
            if let Some(t) = &token {
                query.push(("continuation-token", t.as_str()));
            }
            let resp = self
                .call(reqwest::Method::GET, None, &query, &[], Vec::new())
                .await?;
            let text = resp.text().await.map_err(|e| failed(&self.describe(), e))?;
            for c in xml_raw(&text, "Contents") {
                let key = xml_values(c, "Key").into_iter().next().unwrap_or_default();
                let Some(name) = key.strip_prefix(&self.cfg.prefix) else {
                    continue;
                };
                out.push(Object {
                    name: name.to_string(),
                    size: xml_values(c, "Size")
                        .first()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                    last_modified: xml_values(c, "LastModified")
                        .into_iter()
                        .next()
                        .unwrap_or_default(),
                });
            }
            let truncated =
                xml_values(&text, "IsTruncated").first().map(String::as_str) == Some("true");
            token = xml_values(&text, "NextContinuationToken")
                .into_iter()
                .next();
            if !truncated || token.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// A downloaded object.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub sha256: Option<String>,
    pub parent: Option<String>,
}

fn metadata(h: &reqwest::header::HeaderMap) -> (Option<String>, Option<String>) {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    (get("x-amz-meta-sha256"), get("x-amz-meta-herald-parent"))
}

/// The text of every `<tag>…</tag>` in `xml`, entities decoded (S3's answers are flat
/// enough that this is all that is needed of XML).
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    xml_raw(xml, tag).into_iter().map(unescape).collect()
}

/// The raw text of every `<tag>…</tag>`, entities as they are (for elements that hold
/// others: decoded once, at the leaves).
fn xml_raw<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_answers_are_read_for_keys_sizes_and_the_next_page() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult><Name>b</Name><IsTruncated>true</IsTruncated>
<Contents><Key>herald/a&amp;b.tar.zst</Key><Size>12</Size><LastModified>2026-12-03T10:00:00.000Z</LastModified></Contents>
<Contents><Key>herald/c</Key><Size>7</Size></Contents>
<NextContinuationToken>tok+1</NextContinuationToken></ListBucketResult>"#;
        let c = xml_raw(xml, "Contents");
        assert_eq!(c.len(), 2);
        assert_eq!(xml_values(c[0], "Key"), vec!["herald/a&b.tar.zst"]);
        assert_eq!(xml_values(c[1], "Size"), vec!["7"]);
        // Decoded once: `&amp;lt;` is the text `&lt;`.
        assert_eq!(
            xml_values("<Contents><Key>a&amp;lt;b</Key></Contents>", "Key"),
            vec!["a&lt;b"]
        );
        assert_eq!(xml_values(xml, "NextContinuationToken"), vec!["tok+1"]);
        assert!(xml_values(xml, "Missing").is_empty());
        assert!(xml_values("<Key>unclosed", "Key").is_empty());
    }
}
