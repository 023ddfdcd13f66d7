//! A finished span as the exporter sends it, and a helper that times one.

use super::TraceParent;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal,
    /// Handling a request from a client (the accept).
    Server,
    /// A call to another service (a provider).
    Client,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<u32> for Value {
    fn from(i: u32) -> Self {
        Value::Int(i64::from(i))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    /// The span's trace and id.
    pub ctx: TraceParent,
    /// The span it runs under (none: the trace's root).
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: Kind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attrs: Vec<(String, Value)>,
    /// Set when what the span covers failed: the status message.
    pub error: Option<String>,
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
        .unwrap_or(0)
}

/// A span being timed: started now, under `parent`, finished by [`Timed::end`].
#[derive(Debug)]
pub struct Timed(SpanRecord);

impl Timed {
    /// A new span as a child of `parent` (its trace, a new id).
    pub fn child_of(parent: &TraceParent, name: impl Into<String>, kind: Kind) -> Self {
        Self::with_id(parent.child(), Some(parent.span_id), name, kind)
    }

    /// A span whose context is already chosen (its id was handed on before it ended).
    pub fn with_id(
        ctx: TraceParent,
        parent: Option<[u8; 8]>,
        name: impl Into<String>,
        kind: Kind,
    ) -> Self {
        Timed(SpanRecord {
            ctx,
            parent,
            name: name.into(),
            kind,
            start_ns: now_ns(),
            end_ns: 0,
            attrs: Vec::new(),
            error: None,
        })
    }

    pub fn ctx(&self) -> TraceParent {
        self.0.ctx
    }

    pub fn starting_at(mut self, start_ns: u64) -> Self {
        self.0.start_ns = start_ns;
        self
    }

    pub fn attr(&mut self, key: &str, value: impl Into<Value>) {
        self.0.attrs.push((key.to_string(), value.into()));
    }

    pub fn fail(&mut self, message: impl Into<String>) {
        self.0.error = Some(message.into());
    }

    /// Ends it now.
    pub fn end(mut self) -> SpanRecord {
        self.0.end_ns = now_ns();
        self.0
    }
}
