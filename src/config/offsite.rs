//! `[backup.offsite]`: off-site copies of backups in S3-compatible object storage.

use super::Secret;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsiteConfig {
    /// The service's URL: `https://s3.eu-central-1.amazonaws.com`, a MinIO or Ceph address.
    pub endpoint: String,
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// Prepended to each object's name (`herald/` by default).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    /// Copies kept there; older ones are deleted after each upload.
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// `https://endpoint/bucket/key` (true, what MinIO and most others expect) or
    /// `https://bucket.endpoint/key` (false).
    #[serde(default = "default_path_style")]
    pub path_style: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_prefix() -> String {
    "herald/".into()
}

fn default_keep() -> usize {
    30
}

fn default_path_style() -> bool {
    true
}

impl OffsiteConfig {
    /// The first problem, as `(key, message)`.
    pub fn check(&self) -> Option<(&'static str, String)> {
        match url::Url::parse(&self.endpoint) {
            Ok(u)
                if (u.scheme() == "https" || u.scheme() == "http")
                    && u.host_str().is_some()
                    && (u.path().is_empty() || u.path() == "/")
                    && u.query().is_none() => {}
            _ => {
                return Some((
                    "backup.offsite.endpoint",
                    format!(
                        "`{}` is not an http(s) URL without a path (the bucket goes in `bucket`)",
                        self.endpoint
                    ),
                ));
            }
        }
        let b = &self.bucket;
        if b.len() < 3
            || b.len() > 63
            || !b
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        {
            return Some((
                "backup.offsite.bucket",
                "3 to 63 characters: lower-case letters, digits, `-` and `.`".into(),
            ));
        }
        if self.keep == 0 {
            return Some(("backup.offsite.keep", "must be at least 1".into()));
        }
        if self.prefix.len() > 200 || self.prefix.starts_with('/') {
            return Some((
                "backup.offsite.prefix",
                "at most 200 characters, not starting with `/`".into(),
            ));
        }
        if self.access_key_id.expose().is_empty() || self.secret_access_key.expose().is_empty() {
            return Some((
                "backup.offsite.access_key_id",
                "the access key id and secret are required".into(),
            ));
        }
        None
    }
}
