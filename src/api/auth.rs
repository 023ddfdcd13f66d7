//! API keys: the bootstrap admin key, keys from the configuration, and keys created through
//! the API (stored as SHA-256 hashes). Roles are checked per route.

use crate::config::Config;
use crate::core::types::{Role, new_id};
use crate::error::ApiError;
use crate::store::{Cluster, Keys};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// What identifies the caller for idempotency, rate buckets and limits: the key's id
    /// (`admin` for the bootstrap key, `cfg:<name>` for keys from the configuration), never
    /// its name, so that a new key named like a revoked one starts afresh.
    pub id: String,
    /// The key's name, unique among live keys; `admin` is the bootstrap key's alone.
    pub name: String,
    pub role: Role,
    pub rate_limit: Option<crate::config::Rate>,
    /// May approve critical switches another key asked for.
    pub approver: bool,
}

impl Principal {
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role.allows(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the `{role}` role; key `{}` has `{}`",
                self.name, self.role
            )))
        }
    }
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key: `hk_` and 43 URL-safe characters (256 bits).
pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "hk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

const CACHE_TTL: Duration = Duration::from_secs(10);

pub struct Auth {
    fixed: HashMap<String, Principal>,
    keys: Arc<dyn Keys>,
    /// Where key rate limits are kept when nodes share storage.
    cluster: Arc<dyn Cluster>,
    cache: Mutex<HashMap<String, (Option<Principal>, Instant)>>,
    buckets: Mutex<HashMap<String, crate::core::ratelimit::Bucket>>,
}

impl Auth {
    pub fn new(
        cfg: &Config,
        admin_key: &str,
        keys: Arc<dyn Keys>,
        cluster: Arc<dyn Cluster>,
    ) -> Self {
        let mut fixed = HashMap::new();
        fixed.insert(
            hash_key(admin_key),
            Principal {
                id: "admin".into(),
                name: "admin".into(),
                role: Role::Admin,
                rate_limit: None,
                // The bootstrap key may approve what another key asked for (never its own).
                approver: true,
            },
        );
        for k in &cfg.api_keys {
            fixed.insert(
                hash_key(k.key.expose()),
                Principal {
                    id: format!("cfg:{}", k.name),
                    name: k.name.clone(),
                    role: k.role,
                    rate_limit: k.rate_limit,
                    approver: k.approver,
                },
            );
        }
        Auth {
            fixed,
            keys,
            cluster,
            cache: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves an `Authorization` header value.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, ApiError> {
        let header = header
            .ok_or_else(|| ApiError::unauthorized("send `Authorization: Bearer <api key>`"))?;
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let key = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, k)| k.trim())
            .filter(|k| !k.is_empty() && k.len() <= 256)
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <api key>`")
            })?;
        self.by_hash(hash_key(key)).await
    }

    /// Resolves a key by its hash (a console session keeps only the hash of its key).
    pub async fn by_hash(&self, hash: String) -> Result<Principal, ApiError> {
        if let Some(p) = self.fixed.get(&hash) {
            return Ok(p.clone());
        }
        if let Ok(cache) = self.cache.lock()
            && let Some((p, at)) = cache.get(&hash)
            && at.elapsed() < CACHE_TTL
        {
            return p
                .clone()
                .ok_or_else(|| ApiError::unauthorized("unknown or revoked API key"));
        }
        let found = self.keys.find_api_key(&hash).await?.map(|r| Principal {
            id: r.id,
            name: r.name,
            role: r.role,
            rate_limit: r.rate_limit,
            approver: r.approver,
        });
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(hash, (found.clone(), Instant::now()));
        }
        found.ok_or_else(|| ApiError::unauthorized("unknown or revoked API key"))
    }

    /// Counts a request against the key's rate limit: `429 rate_limited` with `Retry-After`
    /// and `RateLimit-*` headers when over it.
    pub async fn admit(&self, p: &Principal, now: i64) -> Result<(), ApiError> {
        let Some(rate) = p.rate_limit else {
            return Ok(());
        };
        self.admit_here(p, rate, now)?;
        // With many nodes the key's budget is shared: count it in storage too.
        if self.cluster.shared()
            && let Some(wait_ms) = self
                .cluster
                .take_rate_slot(&format!("key:{}", p.id), &[rate], now)
                .await?
        {
            let secs = ((wait_ms + 999) / 1000).max(1) as u64;
            return Err(limited(p, rate, secs, secs));
        }
        Ok(())
    }

    fn admit_here(
        &self,
        p: &Principal,
        rate: crate::config::Rate,
        now: i64,
    ) -> Result<(), ApiError> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let bucket = buckets
            .entry(p.id.clone())
            .or_insert_with(|| crate::core::ratelimit::Bucket::new(rate, now));
        bucket
            .take(now)
            .map(|_| ())
            .map_err(|r| limited(p, rate, r.retry_after_s, r.reset_s))
    }

    /// Forgets cached lookups (after a key is created or revoked on this node).
    pub fn forget(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }
}

/// The bootstrap admin key: `HERALD_ADMIN_KEY`, else `<data_dir>/admin.key`, created with
/// mode 0600 on first start. Returns the key and, when the file was used, its path.
pub fn bootstrap_admin_key(
    data_dir: &Path,
) -> std::io::Result<(String, Option<std::path::PathBuf>)> {
    if let Ok(k) = std::env::var("HERALD_ADMIN_KEY")
        && !k.trim().is_empty()
    {
        return Ok((k.trim().to_string(), None));
    }
    crate::private_fs::dir(data_dir)?;
    let path = data_dir.join("admin.key");
    // A key file others could read is no secret any more: refuse it rather than use it.
    if let Ok(meta) = std::fs::metadata(&path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} is readable by others (mode {mode:o}): treat the key as leaked; delete the file to have a new one made at start, or `chmod 600` it if no one else could read it",
                    path.display()
                ),
            ));
        }
    }
    match std::fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => return Ok((k.trim().to_string(), Some(path))),
        _ => {}
    }
    let key = generate_key();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&path)?;
    std::io::Write::write_all(&mut f, format!("{key}\n").as_bytes())?;
    f.sync_all()?;
    Ok((key, Some(path)))
}

pub fn new_key_id() -> String {
    new_id("key")
}

/// `429 rate_limited` with `Retry-After` and the `RateLimit-*` headers.
fn limited(p: &Principal, rate: crate::config::Rate, retry_after_s: u64, reset_s: u64) -> ApiError {
    ApiError {
        retry_after: Some(retry_after_s),
        headers: vec![
            ("ratelimit-limit", rate.count.to_string()),
            ("ratelimit-remaining", "0".into()),
            ("ratelimit-reset", reset_s.to_string()),
            (
                "ratelimit-policy",
                format!("{};w={}", rate.count, rate.per.as_secs()),
            ),
        ],
        ..ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("key `{}` is limited to {rate}", p.name),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_admin_key_file_others_can_read_is_refused() {
        assert!(
            std::env::var("HERALD_ADMIN_KEY").is_err(),
            "run without HERALD_ADMIN_KEY: it replaces the key file"
        );
        let t = tempfile::tempdir().unwrap();
        let (key, path) = bootstrap_admin_key(t.path()).unwrap();
        let path = path.unwrap();
        assert_eq!(
            bootstrap_admin_key(t.path()).unwrap().0,
            key,
            "reused when private"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = bootstrap_admin_key(t.path()).unwrap_err();
        assert!(e.to_string().contains("readable by others"), "{e}");
    }
}
