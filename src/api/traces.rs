//! The accept span of a request that takes messages: a child of the caller's W3C
//! `traceparent` when it sent a valid one, else the root of a new trace. Its context is
//! stored with each message it accepts, so the deliveries' spans join the same trace.

use crate::telemetry::{Kind, Timed, TraceParent, Tracer};
use axum::http::HeaderMap;
use axum::response::Response;

pub struct AcceptSpan {
    /// What the accepted messages carry: this span's context while spans are exported;
    /// otherwise the caller's own (passed on unchanged) or a new trace.
    pub ctx: TraceParent,
    timed: Option<Timed>,
}

impl AcceptSpan {
    pub fn start(tracer: &Tracer, headers: &HeaderMap, name: &str) -> Self {
        let caller = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse);
        if !tracer.on() {
            return AcceptSpan {
                ctx: caller.unwrap_or_else(TraceParent::root),
                timed: None,
            };
        }
        let timed = match caller {
            Some(p) => Timed::child_of(&p, name, Kind::Server),
            None => Timed::with_id(TraceParent::root(), None, name, Kind::Server),
        };
        AcceptSpan {
            ctx: timed.ctx(),
            timed: Some(timed),
        }
    }

    /// A span under this one (`store`), when spans are exported.
    pub fn child(&self, name: &str) -> Option<Timed> {
        self.timed
            .as_ref()
            .map(|t| Timed::child_of(&t.ctx(), name, Kind::Internal))
    }

    pub fn attr(&mut self, key: &str, value: impl Into<crate::telemetry::Value>) {
        if let Some(t) = &mut self.timed {
            t.attr(key, value);
        }
    }

    /// Ends it with the answer's status.
    pub fn finish(self, tracer: &Tracer, answer: &Result<Response, super::ApiError>) {
        let Some(mut t) = self.timed else { return };
        let status = match answer {
            Ok(r) => r.status(),
            Err(e) => e.status,
        };
        t.attr("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            t.fail(status.to_string());
        }
        tracer.record(t.end());
    }
}
