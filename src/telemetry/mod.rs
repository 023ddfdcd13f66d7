//! Traces: one per message, from its accept to each delivery's outcome, in W3C Trace
//! Context, exported over OTLP/HTTP (protobuf) when `[telemetry] otlp_endpoint` is set.
//!
//! A message's spans are made at different times and often on different nodes (accepted on
//! one, claimed on another, retried an hour later), so the trace context is stored with the
//! message and each span is recorded whole when it ends, rather than kept open in process.

mod context;
mod export;
pub mod otlp;
mod span;

pub use context::TraceParent;
pub use export::{OnDrop, Tracer, export_url};
pub use span::{Kind, SpanRecord, Timed, Value, now_ns};
