//! `herald sink`: a local webhook receiver for trying Herald out and for benchmarks. It
//! prints each webhook, checks Standard Webhooks signatures when given the secret, and
//! answers `GET /stats` with what it counted.

use crate::providers::signing;
use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use clap::Args;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Args, Debug, Clone)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: String,
    /// Signing secret (`whsec_…`): verify `webhook-signature` and answer 401 when it is wrong.
    #[arg(long, env = "HERALD_SINK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Status to answer with (to try failures: 400, 503 …).
    #[arg(long, default_value_t = 200)]
    pub status: u16,
    /// Print nothing per webhook.
    #[arg(long)]
    pub quiet: bool,
    /// Wait this long before answering (a slow receiver: calls stay in flight).
    #[arg(long, default_value = "0s", value_parser = parse_delay)]
    pub delay: std::time::Duration,
}

fn parse_delay(s: &str) -> Result<std::time::Duration, String> {
    crate::config::Dur::parse(s).map(|d| d.0)
}

#[derive(Default)]
struct Counts {
    received: u64,
    bad_signatures: u64,
    ids: HashSet<String>,
    /// OTLP trace exports taken at `/v1/traces` (so a benchmark can point spans here).
    trace_exports: u64,
}

#[derive(Clone)]
struct Sink {
    args: SinkArgs,
    counts: Arc<Mutex<Counts>>,
}

pub async fn run(args: SinkArgs) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!("herald sink listening on http://{}", listener.local_addr()?);
    let sink = Sink {
        args,
        counts: Arc::default(),
    };
    let app = Router::new()
        .route("/stats", get(stats))
        .route("/ids", get(ids))
        .route("/v1/traces", post(traces))
        .fallback(receive)
        .with_state(sink);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn stats(State(s): State<Sink>) -> impl IntoResponse {
    let c = s.counts.lock().map(|c| json!({"received": c.received, "unique": c.ids.len(), "bad_signatures": c.bad_signatures, "trace_exports": c.trace_exports}));
    axum::Json(c.unwrap_or_default())
}

/// An OTLP/HTTP export: taken (200, an empty answer) and counted, not kept.
async fn traces(State(s): State<Sink>) -> impl IntoResponse {
    if let Ok(mut c) = s.counts.lock() {
        c.trace_exports += 1;
    }
    (
        StatusCode::OK,
        [("content-type", "application/x-protobuf")],
        Bytes::new(),
    )
}

/// Every distinct `webhook-id` received (a drill counts what arrived, not what Herald says).
async fn ids(State(s): State<Sink>) -> impl IntoResponse {
    let ids: Vec<String> = s
        .counts
        .lock()
        .map(|c| c.ids.iter().cloned().collect())
        .unwrap_or_default();
    axum::Json(ids)
}

async fn receive(State(s): State<Sink>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let id = h("webhook-id");
    let verified = s.args.secret.as_ref().map(|secret| {
        let ts = h("webhook-timestamp").parse().unwrap_or(0);
        signing::verify(
            &signing::key_bytes(secret),
            &id,
            ts,
            &body,
            &h("webhook-signature"),
        )
    });
    if let Ok(mut c) = s.counts.lock() {
        c.received += 1;
        if verified == Some(false) {
            c.bad_signatures += 1;
        } else {
            c.ids.insert(id.clone());
        }
    }
    if !s.args.quiet {
        let sig = match verified {
            Some(true) => " signature=ok",
            Some(false) => " signature=BAD",
            None => "",
        };
        crate::cli::out(format!(
            "webhook id={id}{sig} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    if verified == Some(false) {
        return (StatusCode::UNAUTHORIZED, "bad signature");
    }
    if !s.args.delay.is_zero() {
        tokio::time::sleep(s.args.delay).await;
    }
    (
        StatusCode::from_u16(s.args.status).unwrap_or(StatusCode::OK),
        "",
    )
}
