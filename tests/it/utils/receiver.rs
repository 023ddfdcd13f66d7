//! A webhook receiver on 127.0.0.1:0 that records what arrives and answers as told.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// When a request arrived, and its body.
type Arrival = (std::time::Instant, Vec<u8>);

#[derive(Clone, Default)]
struct Inner {
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    started: Arc<AtomicU64>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
}

pub struct Receiver {
    pub url: String,
    inner: Inner,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// A receiver on `addr` (another loopback address, `[::1]:0`).
    pub async fn start_on(addr: &str) -> Self {
        let inner = Inner::default();
        inner.status.store(200, Ordering::SeqCst);
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, inner }
    }

    /// Status to answer from now on.
    pub fn answer(&self, status: u16) {
        self.inner.status.store(status, Ordering::SeqCst);
    }

    pub fn delay(&self, d: Duration) {
        self.inner
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.got.lock().unwrap().clone()
    }

    /// Requests that have arrived (including those still being answered).
    pub fn started(&self) -> u64 {
        self.inner.started.load(Ordering::SeqCst)
    }

    /// When each request arrived (before its answer), with its body.
    pub fn arrivals(&self) -> Vec<(std::time::Instant, Value)> {
        self.inner
            .arrivals
            .lock()
            .unwrap()
            .iter()
            .map(|(t, b)| (*t, serde_json::from_slice(b).unwrap_or(Value::Null)))
            .collect()
    }

    /// How many times each `webhook-id` was answered 2xx.
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for r in self.received() {
            if let Some(id) = r.headers.get("webhook-id") {
                *m.entry(id.clone()).or_insert(0) += 1;
            }
        }
        m
    }
}

async fn handle(State(s): State<Inner>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    s.started.fetch_add(1, Ordering::SeqCst);
    s.arrivals
        .lock()
        .unwrap()
        .push((std::time::Instant::now(), body.to_vec()));
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = s.status.load(Ordering::SeqCst);
    if (200..300).contains(&status) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        s.got.lock().unwrap().push(Received {
            headers,
            body: body.to_vec(),
        });
    }
    let mut resp = (StatusCode::from_u16(status).unwrap(), "{}").into_response();
    if status == 503 || status == 429 {
        resp.headers_mut()
            .insert("retry-after", "0".parse().unwrap());
    }
    resp
}
