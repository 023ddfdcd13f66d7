//! `[[heartbeats]]`: dead man's switches. Something pings a heartbeat (`POST
//! /v1/heartbeats/{id}/ping`, or Alertmanager's always-firing `Watchdog` alert); when it has
//! been silent past `interval + grace`, an incident opens on its route; the next ping
//! resolves it. The decision is pure: [`silent_since`].

use super::matchers::Matcher;
use crate::config::Dur;
use crate::core::incident::{Occurrence, Severity};
use crate::core::types::Millis;
use crate::store::{AlertBatch, NewIncident};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    pub id: String,
    /// How often it is expected.
    pub interval: Dur,
    /// Slack after `interval` before it counts as silent (default 30s).
    #[serde(default = "default_grace")]
    pub grace: Dur,
    #[serde(default = "default_severity")]
    pub severity: String,
    /// The alert route whose people are paged.
    pub route: String,
    /// Alertmanager alerts that count as pings (matchers), e.g. `['alertname="Watchdog"']`.
    #[serde(default)]
    pub watchdog: Vec<String>,
}

fn default_grace() -> Dur {
    Dur::secs(30)
}

fn default_severity() -> String {
    "P1".into()
}

#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub cfg: HeartbeatConfig,
    pub severity: Severity,
    pub watchdog: Vec<Matcher>,
}

impl Heartbeat {
    pub fn compile(cfg: &HeartbeatConfig, at: &str, routes: &[&str]) -> Result<Heartbeat, String> {
        if crate::core::addresses::valid_user(&cfg.id).is_err() {
            return Err(format!("{at}.id: must be 1 to 128 letters, digits or ._-"));
        }
        if cfg.interval.0.as_millis() < 1000 {
            return Err(format!("{at}.interval: must be at least 1s"));
        }
        let severity = Severity::parse(&cfg.severity)
            .ok_or_else(|| format!("{at}.severity: must be P0, P1, P2 or P3"))?;
        if !routes.contains(&cfg.route.as_str()) {
            return Err(format!("{at}.route: `{}` is not an alert route", cfg.route));
        }
        let watchdog = cfg
            .watchdog
            .iter()
            .enumerate()
            .map(|(i, m)| Matcher::parse(m).map_err(|e| format!("{at}.watchdog[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Heartbeat {
            cfg: cfg.clone(),
            severity,
            watchdog,
        })
    }

    fn limit_ms(&self) -> i64 {
        (self.cfg.interval.0 + self.cfg.grace.0).as_millis() as i64
    }

    /// The incident key of this heartbeat.
    pub fn key(&self) -> String {
        format!("hb:{}", self.cfg.id)
    }

    /// When it went silent (`last_ping + interval + grace`), if that is before `now`.
    pub fn silent_since(&self, last_ping: Millis, now: Millis) -> Option<Millis> {
        let due = last_ping + self.limit_ms();
        (now > due).then_some(due)
    }

    /// The batch that opens (firing: `Some(since)`) or resolves (`None`) its incident. The
    /// occurrence is named by when the silence began, so checking again changes nothing.
    pub fn batch(
        &self,
        silent: Option<Millis>,
        last_ping: Millis,
        id: String,
        now: Millis,
    ) -> AlertBatch {
        let occurrences = match silent {
            Some(since) => vec![Occurrence {
                fingerprint: self.key(),
                starts_at: since,
                status: "firing".into(),
                ends_at: None,
                labels: json!({"alertname": "HeartbeatSilent", "heartbeat": self.cfg.id}),
                annotations: json!({"summary": format!("no ping since {}", crate::core::types::rfc3339(last_ping))}),
                generator_url: String::new(),
            }],
            None => vec![],
        };
        AlertBatch {
            dedup_key: self.key(),
            complete: true,
            occurrences,
            open: NewIncident {
                id,
                source: "heartbeat".into(),
                route: self.cfg.route.clone(),
                service: self.cfg.id.clone(),
                severity: self.severity,
                title: format!("Heartbeat {} is silent", self.cfg.id),
                details: json!({"heartbeat": self.cfg.id, "last_ping": crate::core::types::rfc3339(last_ping),
                                "interval_s": self.cfg.interval.0.as_secs(), "grace_s": self.cfg.grace.0.as_secs()}),
                suppressed: false,
                notify_resolved: true,
            },
            at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb() -> Heartbeat {
        Heartbeat::compile(
            &HeartbeatConfig {
                id: "backup".into(),
                interval: Dur::secs(60),
                grace: Dur::secs(10),
                severity: "P2".into(),
                route: "sre".into(),
                watchdog: vec!["alertname=\"Watchdog\"".into()],
            },
            "heartbeats[0]",
            &["sre"],
        )
        .unwrap()
    }

    #[test]
    fn silent_only_past_interval_and_grace() {
        let h = hb();
        assert_eq!(
            h.silent_since(0, 70_000),
            None,
            "exactly at the limit is not yet silent"
        );
        assert_eq!(h.silent_since(0, 70_001), Some(70_000));
        assert_eq!(h.silent_since(100_000, 120_000), None);
        let open = h.batch(Some(70_000), 0, "inc_1".into(), 70_001);
        let again = h.batch(Some(70_000), 0, "inc_2".into(), 80_000);
        assert_eq!(
            open.occurrences, again.occurrences,
            "checking again is a repeat"
        );
        assert_eq!(open.open.severity, Severity::P2);
        assert!(
            h.batch(None, 90_000, "x".into(), 90_000)
                .occurrences
                .is_empty()
        );
    }

    #[test]
    fn heartbeats_are_checked_by_field() {
        let mut c = hb().cfg;
        c.route = "nope".into();
        assert!(
            Heartbeat::compile(&c, "heartbeats[1]", &["sre"])
                .unwrap_err()
                .contains(".route")
        );
        c.route = "sre".into();
        c.interval = Dur::millis(10);
        assert!(
            Heartbeat::compile(&c, "heartbeats[1]", &["sre"])
                .unwrap_err()
                .contains(".interval")
        );
    }
}
