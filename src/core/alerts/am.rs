//! Alertmanager's webhook payload, version 4, read strictly enough to trust and loosely
//! enough to take what Alertmanager adds over time (unknown fields are ignored). Pure.

use crate::core::types::{Millis, parse_rfc3339};
use crate::core::validate::FieldError;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub version: String,
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: String,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
}

/// An alert with its times read: `starts_at`, and `ends_at` for a resolved one.
#[derive(Debug, Clone)]
pub struct Checked {
    pub alert: Alert,
    pub starts_at: Millis,
    pub ends_at: Option<Millis>,
}

/// Most alerts one payload may carry.
pub const MAX_ALERTS: usize = 10_000;

/// Checks a decoded payload; errors name the field (`alerts[3].startsAt`).
pub fn check(p: Payload) -> Result<(Payload, Vec<Checked>), Vec<FieldError>> {
    let mut errs = Vec::new();
    if p.version != "4" {
        errs.push(FieldError::new(
            "version",
            "must be \"4\" (Alertmanager's webhook payload version)",
        ));
    }
    if p.group_key.is_empty() || p.group_key.chars().count() > 1024 {
        errs.push(FieldError::new("groupKey", "must be 1 to 1024 characters"));
    }
    if !matches!(p.status.as_str(), "firing" | "resolved") {
        errs.push(FieldError::new("status", "must be firing or resolved"));
    }
    if p.truncated_alerts > 1_000_000_000 {
        errs.push(FieldError::new(
            "truncatedAlerts",
            "must be at most 1000000000",
        ));
    }
    if p.alerts.len() > MAX_ALERTS {
        errs.push(FieldError::new(
            "alerts",
            format!("at most {MAX_ALERTS} alerts per payload"),
        ));
    }
    let mut out = Vec::with_capacity(p.alerts.len());
    for (i, a) in p.alerts.iter().enumerate() {
        let f = |name: &str| format!("alerts[{i}].{name}");
        if !matches!(a.status.as_str(), "firing" | "resolved") {
            errs.push(FieldError::new(f("status"), "must be firing or resolved"));
        }
        let starts = parse_rfc3339(&a.starts_at).ok();
        if starts.is_none() {
            errs.push(FieldError::new(f("startsAt"), "must be an RFC 3339 time"));
        }
        // Firing alerts carry a zero `endsAt` (0001-01-01): only a resolved one's counts.
        let ends = if a.status == "resolved" {
            parse_rfc3339(&a.ends_at).ok().filter(|t| *t > 0)
        } else {
            None
        };
        let fp_ok = !a.fingerprint.is_empty()
            && a.fingerprint.len() <= 64
            && a.fingerprint.bytes().all(|b| b.is_ascii_alphanumeric());
        if !fp_ok {
            errs.push(FieldError::new(
                f("fingerprint"),
                "must be Alertmanager's fingerprint (hex)",
            ));
        }
        if a.labels.is_empty() {
            errs.push(FieldError::new(f("labels"), "must hold the alert's labels"));
        }
        if let Some(s) = starts {
            out.push(Checked {
                alert: a.clone(),
                starts_at: s,
                ends_at: ends,
            });
        }
    }
    if errs.is_empty() {
        Ok((p, out))
    } else {
        Err(errs)
    }
}
