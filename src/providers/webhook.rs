//! The `webhook` channel: POST a JSON document of the message to `to.webhook`, signed per
//! Standard Webhooks when the provider has a `secret`. The SSRF guard runs in the DNS
//! resolver, so the address connected to is the address checked.

use super::signing;
use super::{Provider, Receipt, SendError, classify_http, classify_transport};
use crate::config::{ProviderConfig, Secret};
use crate::core::ssrf::HostPolicy;
use crate::core::types::{Channel, rfc3339};
use crate::store::Claimed;
use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// A resolver that refuses names whose addresses the policy does not allow.
struct GuardedResolver {
    policy: HostPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            policy.check_host(&host).map_err(|e| format!("ssrf: {e}"))?;
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = allowed_addrs(&policy, &host, addrs).map_err(|e| format!("ssrf: {e}"))?;
            let it: Addrs = Box::new(allowed.into_iter());
            Ok(it)
        })
    }
}

/// The addresses of `host` that may be connected to; an error when none may.
pub fn allowed_addrs(
    policy: &HostPolicy,
    host: &str,
    addrs: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, String> {
    let mut allowed = Vec::new();
    let mut refused = None;
    for a in addrs {
        match policy.check_ip(host, a.ip()) {
            Ok(()) => allowed.push(a),
            Err(e) => refused = Some(e),
        }
    }
    if allowed.is_empty() {
        Err(refused.unwrap_or_else(|| format!("`{host}` has no address")))
    } else {
        Ok(allowed)
    }
}

/// The HTTP client for webhooks: guarded resolver, no redirects, connection reuse. `idle`
/// is how many connections per host stay open between calls: as many as calls can be in
/// flight at once, so that a busy endpoint never closes one connection to open another.
pub fn client(
    policy: &HostPolicy,
    timeout: Duration,
    idle: usize,
) -> Result<reqwest::Client, reqwest::Error> {
    crate::tls::init();
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver {
            policy: policy.clone(),
        }))
        .redirect(reqwest::redirect::Policy::none())
        // Through a proxy the guarded resolver would only ever see the proxy's name.
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_max_idle_per_host(idle)
        .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
        .build()
}

pub struct WebhookProvider {
    id: String,
    priority: u32,
    weight: u32,
    secret: Option<Vec<u8>>,
    timeout: Option<Duration>,
    policy: HostPolicy,
    http: reqwest::Client,
}

impl WebhookProvider {
    /// The built-in provider used when none of kind `webhook` is configured: unsigned.
    pub fn builtin(http: reqwest::Client, policy: HostPolicy) -> Self {
        WebhookProvider {
            id: "webhook".into(),
            priority: 1,
            weight: 100,
            secret: None,
            timeout: None,
            policy,
            http,
        }
    }

    pub fn from_config(
        cfg: &ProviderConfig,
        http: reqwest::Client,
        policy: HostPolicy,
    ) -> Result<Self, String> {
        for k in cfg.credentials.keys() {
            if k != "secret" {
                return Err(format!(
                    "providers `{}`: unknown credential `{k}` (webhook takes `secret`)",
                    cfg.id
                ));
            }
        }
        if let Some(k) = cfg.options.keys().next() {
            return Err(format!(
                "providers `{}`: unknown option `{k}` (webhook takes none)",
                cfg.id
            ));
        }
        Ok(WebhookProvider {
            id: cfg.id.clone(),
            priority: cfg.priority,
            weight: cfg.weight,
            secret: cfg
                .credentials
                .get("secret")
                .map(Secret::expose)
                .map(signing::key_bytes),
            timeout: cfg.timeout.map(|d| d.0),
            policy,
            http,
        })
    }
}

/// The JSON document a webhook receives.
pub fn document(m: &Claimed) -> serde_json::Value {
    json!({
        "id": m.message_id,
        "delivery_id": m.lease.delivery_id,
        "channel": "webhook",
        "priority": m.priority,
        "subject": m.content.subject,
        "text": m.content.text,
        "html": m.content.html,
        "params": m.params,
        "metadata": m.metadata,
        "created_at": rfc3339(m.created_at),
    })
}

#[async_trait]
impl Provider for WebhookProvider {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "webhook"
    }
    fn channel(&self) -> Channel {
        Channel::Webhook
    }
    fn priority(&self) -> u32 {
        self.priority
    }
    fn weight(&self) -> u32 {
        self.weight
    }

    fn endpoint(&self, to: &str) -> Option<String> {
        crate::core::fair::origin(to)
    }
    fn per_endpoint(&self) -> bool {
        true
    }

    async fn send(&self, m: &Claimed) -> Result<Receipt, SendError> {
        let url = url::Url::parse(&m.to).map_err(|e| SendError::Rejected {
            code: "bad_url".into(),
            detail: e.to_string(),
        })?;
        // IP literals never reach the resolver: check them here.
        let literal: Option<IpAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            self.policy
                .check_ip(&ip.to_string(), ip)
                .map_err(|e| SendError::Rejected {
                    code: "ssrf_blocked".into(),
                    detail: e,
                })?;
        }
        let body = serde_json::to_vec(&document(m)).map_err(|e| SendError::Rejected {
            code: "encode".into(),
            detail: e.to_string(),
        })?;
        let ts = crate::core::types::now_millis() / 1000;
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &m.message_id)
            .header("webhook-timestamp", ts.to_string());
        if let Some(key) = &self.secret {
            req = req.header(
                "webhook-signature",
                signing::sign(key, &m.message_id, ts, &body),
            );
        }
        if let Some(t) = &m.trace {
            // W3C Trace Context: the receiver's work joins the message's trace, under
            // this call's span.
            req = req.header("traceparent", t.to_string());
        }
        if let Some(t) = self.timeout {
            req = req.timeout(t);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let hint = if status.is_success() {
            String::new()
        } else {
            resp.text().await.unwrap_or_default()
        };
        classify_http(status, &headers, &hint)?;
        Ok(Receipt::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Lease;

    fn claimed(to: &str) -> Claimed {
        Claimed {
            lease: Lease {
                delivery_id: "dlv_1".into(),
                fence: 1,
            },
            message_id: "msg_1".into(),
            channel: Channel::Webhook,
            to: to.into(),
            priority: crate::core::types::Priority::Normal,
            created_at: 0,
            expires_at: i64::MAX,
            tries: 1,
            content: Default::default(),
            template: None,
            params: None,
            metadata: Default::default(),
            skip_providers: vec![],
            last_provider: None,
            has_next_channel: false,
            activated_at: 0,
            trace: None,
        }
    }

    #[test]
    fn resolved_addresses_are_filtered_by_the_policy() {
        let p = HostPolicy::new(&["*".to_string()]);
        let public: SocketAddr = "93.184.216.34:0".parse().unwrap();
        let private: SocketAddr = "10.0.0.7:0".parse().unwrap();
        let metadata: SocketAddr = "169.254.169.254:0".parse().unwrap();
        assert_eq!(
            allowed_addrs(&p, "h.example", vec![private, public]).unwrap(),
            vec![public]
        );
        assert!(allowed_addrs(&p, "rebind.example", vec![private, metadata]).is_err());
        assert!(allowed_addrs(&p, "nothing.example", vec![]).is_err());
    }

    /// What validation lets through is checked again when sending; a refusal is final.
    #[tokio::test]
    async fn refused_targets_are_rejected_not_retried() {
        let policy = HostPolicy::new(&["*".to_string()]);
        let http = client(&policy, Duration::from_secs(2), 8).unwrap();
        let p = WebhookProvider::builtin(http, policy);
        for to in [
            "http://localhost:9/x",
            "http://127.0.0.1:9/x",
            "http://[::1]:9/x",
            "http://169.254.169.254/latest",
        ] {
            let e = p.send(&claimed(to)).await.unwrap_err();
            assert_eq!(
                e.class(),
                crate::core::types::ErrorClass::Rejected,
                "{to}: {e}"
            );
            assert_eq!(e.code(), "ssrf_blocked", "{to}: {e}");
        }
    }

    #[tokio::test]
    async fn connection_refused_is_transient() {
        let policy = HostPolicy::new(&["127.0.0.1".to_string()]);
        let http = client(&policy, Duration::from_secs(2), 8).unwrap();
        let p = WebhookProvider::builtin(http, policy);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = p
            .send(&claimed(&format!("http://127.0.0.1:{port}/x")))
            .await
            .unwrap_err();
        assert_eq!(e.class(), crate::core::types::ErrorClass::Transient, "{e}");
    }

    /// As many connections stay open as calls can be in flight: a second wave of concurrent
    /// calls to one endpoint reuses the first wave's connections instead of opening new ones
    /// (with a smaller idle pool, every call past it closed its connection and opened another).
    #[tokio::test]
    async fn concurrent_calls_reuse_their_connections() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        const CALLS: usize = 100;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let opened = Arc::new(AtomicUsize::new(0));
        let counted = opened.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(String::from("ok")))
            });
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let io = hyper_util::rt::TokioIo::new(tcp);
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, svc));
            }
        });
        let policy = HostPolicy::new(&["127.0.0.1".to_string()]);
        let http = client(&policy, Duration::from_secs(5), CALLS).unwrap();
        let p = Arc::new(WebhookProvider::builtin(http, policy));
        let to = format!("http://127.0.0.1:{port}/hook");
        for wave in 0..2 {
            if wave > 0 {
                // Connections go back to the pool as their responses end: let the last ones.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..CALLS {
                let (p, c) = (p.clone(), claimed(&to));
                calls.spawn(async move { p.send(&c).await.map(|_| ()) });
            }
            while let Some(r) = calls.join_next().await {
                r.unwrap().unwrap();
            }
        }
        let n = opened.load(Ordering::SeqCst);
        // A few may still be on their way back when the second wave starts; a pool smaller
        // than the calls opened nearly one per call (192 for 200).
        assert!(
            n <= CALLS + CALLS / 4,
            "{n} connections opened for two waves of {CALLS} calls"
        );
    }
}
