//! What every configured provider shares: reading its credentials and options strictly,
//! its place in routing (priority, weight), its timeout and its endpoint.

use crate::config::{ProviderConfig, Secret};
use std::time::Duration;

/// The `Provider` methods every configured provider answers from its [`Base`] (`self.base`).
#[macro_export]
macro_rules! provider_basics {
    ($kind:literal, $channel:expr) => {
        $crate::provider_basics!($kind, $channel, base);
    };
    // The [`Base`] at another place (`rpc.base`).
    ($kind:literal, $channel:expr, $($base:ident).+) => {
        fn id(&self) -> &str {
            &self.$($base).+.id
        }
        fn kind(&self) -> &'static str {
            $kind
        }
        fn channel(&self) -> $crate::core::types::Channel {
            $channel
        }
        fn priority(&self) -> u32 {
            self.$($base).+.priority
        }
        fn weight(&self) -> u32 {
            self.$($base).+.weight
        }
    };
}

/// Routing facts and the endpoint of one configured provider.
#[derive(Debug, Clone)]
pub struct Base {
    pub id: String,
    pub priority: u32,
    pub weight: u32,
    pub timeout: Duration,
    /// Scheme, host and port of the provider's API (`endpoint` in the configuration).
    pub endpoint: String,
}

impl Base {
    pub fn new(cfg: &ProviderConfig, default_endpoint: &str) -> Result<Self, String> {
        let endpoint = cfg
            .endpoint
            .clone()
            .unwrap_or_else(|| default_endpoint.to_string());
        let parsed = url::Url::parse(&endpoint)
            .map_err(|e| format!("providers `{}`: endpoint: {e}", cfg.id))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "providers `{}`: endpoint must be http or https",
                cfg.id
            ));
        }
        Ok(Base {
            id: cfg.id.clone(),
            priority: cfg.priority,
            weight: cfg.weight,
            timeout: cfg.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(10)),
            endpoint: endpoint.trim_end_matches('/').to_string(),
        })
    }

    /// For providers that are not HTTP (SMTP): routing and timeout only.
    pub fn without_endpoint(cfg: &ProviderConfig, hint: &str) -> Result<Self, String> {
        if cfg.endpoint.is_some() {
            return Err(format!(
                "providers `{}`: endpoint does not apply to this kind; {hint}",
                cfg.id
            ));
        }
        Ok(Base {
            id: cfg.id.clone(),
            priority: cfg.priority,
            weight: cfg.weight,
            timeout: cfg.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(10)),
            endpoint: String::new(),
        })
    }

    /// A full URL configured for a robot (`options.url`), with its scheme, host and port
    /// replaced by `endpoint` when one is configured (to point it at a simulator or proxy).
    pub fn robot_url(cfg: &ProviderConfig) -> Result<url::Url, String> {
        let raw = opt_string(cfg, "url")?
            .ok_or_else(|| format!("providers `{}`: options.url is required", cfg.id))?;
        let mut u = url::Url::parse(&raw)
            .map_err(|e| format!("providers `{}`: options.url: {e}", cfg.id))?;
        if let Some(ep) = &cfg.endpoint {
            let ep = url::Url::parse(ep)
                .map_err(|e| format!("providers `{}`: endpoint: {e}", cfg.id))?;
            let path = format!("{}{}", ep.path().trim_end_matches('/'), u.path());
            let query = u.query().map(String::from);
            u = ep;
            u.set_path(&path);
            u.set_query(query.as_deref());
        }
        Ok(u)
    }
}

/// Refuses credentials and options the provider kind does not know, by name.
pub fn check_keys(cfg: &ProviderConfig, creds: &[&str], opts: &[&str]) -> Result<(), String> {
    if let Some(k) = cfg
        .credentials
        .keys()
        .find(|k| !creds.contains(&k.as_str()))
    {
        return Err(format!(
            "providers `{}`: unknown credential `{k}` (kind {:?} takes: {})",
            cfg.id,
            cfg.kind,
            creds.join(", ")
        ));
    }
    if let Some(k) = cfg.options.keys().find(|k| !opts.contains(&k.as_str())) {
        return Err(format!(
            "providers `{}`: unknown option `{k}` (kind {:?} takes: {})",
            cfg.id,
            cfg.kind,
            opts.join(", ")
        ));
    }
    Ok(())
}

pub fn required_cred(cfg: &ProviderConfig, name: &str) -> Result<Secret, String> {
    match cfg.credentials.get(name) {
        Some(s) if !s.expose().is_empty() => Ok(s.clone()),
        _ => Err(format!(
            "providers `{}`: credentials.{name} is required",
            cfg.id
        )),
    }
}

pub fn opt_string(cfg: &ProviderConfig, name: &str) -> Result<Option<String>, String> {
    match cfg.options.get(name) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!(
            "providers `{}`: options.{name} must be a string",
            cfg.id
        )),
    }
}

/// The client for providers' own APIs (not webhooks): rustls, connection reuse (up to `idle`
/// open connections per host between calls), timeouts per request.
pub fn vendor_client(idle: usize) -> Result<reqwest::Client, reqwest::Error> {
    crate::tls::init();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(idle)
        .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Looks a provider's error code up in its table.
pub fn lookup<T: Copy>(table: &[(&str, T)], code: &str) -> Option<T> {
    table.iter().find(|(c, _)| *c == code).map(|(_, t)| *t)
}

/// What a robot answered.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub text: String,
}

/// POSTs a JSON body; transport failures are classified, any HTTP answer is returned.
pub async fn post_json(
    http: &reqwest::Client,
    url: url::Url,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<Answer, super::SendError> {
    let resp = http
        .post(url)
        .json(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| super::classify_transport(&e))?;
    let status = resp.status().as_u16();
    let retry_after = super::retry_after(resp.headers());
    let text = resp
        .text()
        .await
        .map_err(|e| super::classify_transport(&e))?;
    Ok(Answer {
        status,
        retry_after,
        text,
    })
}

/// Turns a class and code into the error the worker records.
pub fn error(
    class: crate::core::types::ErrorClass,
    code: String,
    detail: String,
    retry_after: Option<Duration>,
) -> super::SendError {
    use crate::core::types::ErrorClass as C;
    match class {
        C::Transient => super::SendError::Transient {
            code,
            detail,
            retry_after,
        },
        C::Recipient => super::SendError::Recipient { code, detail },
        C::Provider => super::SendError::Provider { code, detail },
        C::Rejected => super::SendError::Rejected { code, detail },
    }
}

/// Robots' answers of the `{"errcode": N, "errmsg": "..."}` shape (DingTalk, WeCom), or
/// `{"code": N, "msg": "..."}` (Feishu): success is code 0; otherwise the table decides.
pub fn robot_outcome(
    a: &Answer,
    code_field: &str,
    msg_field: &str,
    table: &[(&str, crate::core::types::ErrorClass)],
    throttled: Option<&str>,
) -> Result<(), super::SendError> {
    use crate::core::types::ErrorClass as C;
    if a.status >= 500 || a.status == 429 {
        return Err(error(
            C::Transient,
            format!("http_{}", a.status),
            a.text.chars().take(200).collect(),
            a.retry_after,
        ));
    }
    let json: serde_json::Value = serde_json::from_str(&a.text).unwrap_or(serde_json::Value::Null);
    let code = match &json[code_field] {
        serde_json::Value::Number(n) => n.to_string(),
        _ if (200..300).contains(&a.status) => {
            return Err(error(
                C::Transient,
                "bad_answer".into(),
                format!(
                    "HTTP {}: {}",
                    a.status,
                    a.text.chars().take(200).collect::<String>()
                ),
                None,
            ));
        }
        _ => {
            return Err(error(
                C::Rejected,
                format!("http_{}", a.status),
                a.text.chars().take(200).collect(),
                None,
            ));
        }
    };
    if code == "0" {
        return Ok(());
    }
    let detail = format!("{code}: {}", json[msg_field].as_str().unwrap_or(""));
    let class = lookup(table, &code).unwrap_or(C::Rejected);
    // A robot over its minute budget is throttled for the rest of the window.
    let retry_after = (throttled == Some(code.as_str())).then_some(Duration::from_secs(60));
    Err(error(class, code, detail, retry_after))
}
