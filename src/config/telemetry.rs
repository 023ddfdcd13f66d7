//! `[telemetry]`: where traces go.

use super::{Dur, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// An OTLP/HTTP receiver (a collector, Jaeger, Tempo…): `http://host:4318` gets
    /// `/v1/traces` appended; a URL with a path is used as it is. Unset: no spans are sent
    /// (trace context is still taken from requests, kept and passed on to webhooks).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Headers sent with each export (a vendor's API key, for example).
    pub headers: BTreeMap<String, Secret>,
    /// How long one export may take before it is given up.
    pub timeout: Dur,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: "herald".into(),
            headers: BTreeMap::new(),
            timeout: Dur::secs(10),
        }
    }
}
