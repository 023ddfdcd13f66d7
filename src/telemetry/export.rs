//! Sends finished spans to an OTLP/HTTP receiver in batches, off the message path: a span is
//! handed over with a non-blocking send into a bounded buffer (full: it is dropped and
//! counted), and one task POSTs what has gathered every second or at 4,096 spans.

use super::SpanRecord;
use super::otlp::{Origin, encode};
use crate::config::TelemetryConfig;
use crate::metrics::{Metrics, WhatLabels};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BUFFER: usize = 65_536;
const BATCH: usize = 4096;
const EVERY: Duration = Duration::from_secs(1);

/// Where spans go; a clone is cheap. Without an endpoint it takes spans and does nothing.
#[derive(Clone, Default)]
pub struct Tracer {
    tx: Option<mpsc::Sender<SpanRecord>>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("exporting", &self.tx.is_some())
            .finish()
    }
}

/// The URL spans are POSTed to: a base URL (no path) gets `/v1/traces`, as OTLP's
/// `OTEL_EXPORTER_OTLP_ENDPOINT` does; a URL with a path is taken as it is.
pub fn export_url(endpoint: &str) -> Result<url::Url, String> {
    let mut u = url::Url::parse(endpoint).map_err(|e| format!("`{endpoint}`: {e}"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!("`{endpoint}` is not an http or https URL"));
    }
    if u.host_str().is_none() {
        return Err(format!("`{endpoint}` has no host"));
    }
    if u.path().is_empty() || u.path() == "/" {
        u.set_path("/v1/traces");
    }
    Ok(u)
}

impl Tracer {
    /// Starts the export task when `cfg` names an endpoint; it flushes what it holds when
    /// `stop` is cancelled, and the returned handle ends after that.
    pub fn start(
        cfg: &TelemetryConfig,
        node: &str,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Result<(Tracer, Option<tokio::task::JoinHandle<()>>), String> {
        let Some(endpoint) = &cfg.otlp_endpoint else {
            return Ok((Tracer::default(), None));
        };
        let url = export_url(endpoint)?;
        crate::tls::init();
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("telemetry.headers.{k}: {e}"))?;
            let mut value = reqwest::header::HeaderValue::from_str(v.expose())
                .map_err(|e| format!("telemetry.headers.{k}: {e}"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(cfg.timeout.0)
            .default_headers(headers)
            .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("telemetry: {e}"))?;
        let (tx, rx) = mpsc::channel(BUFFER);
        let sender = Sender {
            http,
            url,
            origin: Origin {
                service: cfg.service_name.clone(),
                node: node.to_string(),
            },
            metrics: metrics.clone(),
            warned: None,
        };
        let task = tokio::spawn(sender.run(rx, stop));
        Ok((
            Tracer {
                tx: Some(tx),
                metrics: Some(metrics),
            },
            Some(task),
        ))
    }

    /// Whether spans are sent anywhere (so callers can skip building them).
    pub fn on(&self) -> bool {
        self.tx.is_some()
    }

    /// Hands a finished span over; never waits. Unsampled spans are not sent.
    pub fn record(&self, span: SpanRecord) {
        let Some(tx) = &self.tx else { return };
        if !span.ctx.sampled {
            return;
        }
        if tx.try_send(span).is_err()
            && let Some(m) = &self.metrics
        {
            m.trace_spans
                .get_or_create(&WhatLabels {
                    what: "dropped".into(),
                })
                .inc();
        }
    }
}

/// Records its span when dropped, whichever way the code it covers ends.
pub struct OnDrop {
    span: Option<super::Timed>,
    tracer: Tracer,
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(s) = self.span.take() {
            self.tracer.record(s.end());
        }
    }
}

impl Tracer {
    pub fn until_dropped(&self, span: Option<super::Timed>) -> OnDrop {
        OnDrop {
            span,
            tracer: self.clone(),
        }
    }
}

struct Sender {
    http: reqwest::Client,
    url: url::Url,
    origin: Origin,
    metrics: Arc<Metrics>,
    warned: Option<std::time::Instant>,
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::Receiver<SpanRecord>, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let deadline = tokio::time::sleep(EVERY);
            tokio::pin!(deadline);
            let stopping = loop {
                tokio::select! {
                    _ = stop.cancelled() => break true,
                    _ = &mut deadline => break false,
                    got = rx.recv() => match got {
                        Some(s) => {
                            batch.push(s);
                            if batch.len() >= BATCH {
                                break false;
                            }
                        }
                        None => break true,
                    },
                }
            };
            if stopping {
                // What was handed over before the stop goes too (bounded: the buffer).
                while let Ok(s) = rx.try_recv() {
                    batch.push(s);
                }
            }
            for chunk in std::mem::take(&mut batch).chunks(BATCH) {
                self.send(chunk).await;
            }
            if stopping {
                return;
            }
        }
    }

    /// One POST; a refused or failed export is dropped (counted and logged), never retried
    /// past the batch: traces must not hold memory a message needs.
    async fn send(&mut self, spans: &[SpanRecord]) {
        if spans.is_empty() {
            return;
        }
        let body = encode(&self.origin, spans);
        let outcome = match self
            .http
            .post(self.url.clone())
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("the receiver answered {}", r.status())),
            Err(e) => Err(format!("{e}")),
        };
        let what = match outcome {
            Ok(()) => "exported",
            Err(why) => {
                // Once a minute at most while the receiver stays away.
                if self
                    .warned
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                {
                    self.warned = Some(std::time::Instant::now());
                    tracing::warn!(spans = spans.len(), error = %crate::log_escape::escape_line(&why), "could not export spans; they are dropped (counted in herald_trace_spans_total)");
                }
                "dropped"
            }
        };
        self.metrics
            .trace_spans
            .get_or_create(&WhatLabels { what: what.into() })
            .inc_by(spans.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_traces_path_and_a_full_one_is_kept() {
        assert_eq!(
            export_url("http://127.0.0.1:4318").unwrap().as_str(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            export_url("https://otel.example/").unwrap().as_str(),
            "https://otel.example/v1/traces"
        );
        assert_eq!(
            export_url("http://c:4318/custom/traces").unwrap().path(),
            "/custom/traces"
        );
        assert!(export_url("ftp://c/").is_err());
        assert!(export_url("not a url").is_err());
    }
}
