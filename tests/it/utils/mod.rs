//! Helpers: start Herald in-process, a webhook receiver, polling with deadlines.

pub mod pg;
pub mod process;
pub mod receiver;
pub mod rig;
pub mod smtp;
pub mod webdriver;

use herald::app::{Server, start};
use herald::config::Config;
use serde_json::Value;
use std::time::{Duration, Instant};

pub use receiver::Receiver;

pub const ADMIN: &str = "it-admin-key-0123456789abcdef";

pub struct TestHerald {
    pub server: Option<Server>,
    pub base: String,
    pub http: reqwest::Client,
    #[allow(dead_code)] // kept so the data directory lives as long as the server
    pub dir: tempfile::TempDir,
}

impl TestHerald {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, tweak).await
    }

    /// Starts on a listener bound beforehand (so others can be told its address first).
    /// `server.public_url` is the listener's address.
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        herald::tls::init();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::for_tests(dir.path());
        cfg.server.public_url = Some(format!("http://{}", listener.local_addr().unwrap()));
        tweak(&mut cfg);
        let server = start(cfg, listener, ADMIN).await.unwrap();
        let base = format!("http://{}", server.addr);
        TestHerald {
            server: Some(server),
            base,
            http: http(),
            dir,
        }
    }

    /// Makes an API key through the API (as the admin): the key and its id.
    pub async fn api_key(&self, name: &str, role: &str, approver: bool) -> (String, String) {
        let (code, k) = self
            .call(
                reqwest::Method::POST,
                "/v1/api-keys",
                Some(serde_json::json!({"name": name, "role": role, "approver": approver})),
            )
            .await;
        assert_eq!(code, 201, "{k}");
        (
            k["key"].as_str().unwrap().to_string(),
            k["id"].as_str().unwrap().to_string(),
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with the admin key.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_as(ADMIN, method, path, body).await
    }

    pub async fn call_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn send(&self, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, "/v1/messages", Some(body))
            .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Polls the message until `pred` holds; fails the test, showing the message, when it
    /// has not within 20 s.
    pub async fn wait_message(&self, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, m) = self.get(&format!("/v1/messages/{id}")).await;
            assert_eq!(code, 200, "{m}");
            if pred(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "message {id} never reached the awaited state in 20 s: {m:#}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        let m = self.wait_message(id, |m| m["status"] == status).await;
        assert_eq!(m["status"], status, "message never became {status}: {m:#}");
        m
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The sum of every series of the metric `name` (any labels) in `GET /metrics`.
    pub async fn metric_sum(&self, name: &str) -> f64 {
        metric_sum(&self.metrics().await, name)
    }

    /// Waits until the metric `name` (summed over its labels) reaches `at_least`; fails
    /// the test when it has not in 20 s.
    pub async fn wait_metric(&self, name: &str, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.metric_sum(name).await;
            if v >= at_least {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} reached {v}, not {at_least}, in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// The test venv's Python, with the peers from PyPI (aiosmtpd, kubernetes-validate,
/// opentelemetry-proto, moto[server]); a test that needs it fails loudly without it.
pub fn python() -> String {
    std::env::var("HERALD_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("HERALD_TEST_PYTHON is not set: run ./scripts/test.sh, which makes the test venv with the Python peers and sets it")
    })
}

/// The sum of every series of the metric `name` in a text exposition.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An HTTP client for tests (the process's TLS provider installed first).
pub fn http() -> reqwest::Client {
    http_builder().build().expect("a test HTTP client")
}

/// A client builder for tests. Kept-alive connections are given up after 5 s idle, before
/// Herald closes them (`header_read_timeout`, 10 s): a request never races the server's
/// close of the connection it reuses.
pub fn http_builder() -> reqwest::ClientBuilder {
    herald::tls::init();
    reqwest::Client::builder().pool_idle_timeout(std::time::Duration::from_secs(5))
}
