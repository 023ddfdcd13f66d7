//! `[oncall]`: how escalations run and how people answer pages (reply codes, signed
//! acknowledge links, acknowledgement timeouts per severity).

use super::{Dur, Secret};
use crate::core::incident::Severity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnCallConfig {
    /// How often each node looks for due escalation steps.
    pub tick: Dur,
    /// How long a node holds an escalation it is firing; another node takes it after.
    pub lease: Dur,
    /// An acknowledged incident still open after this re-enters escalation at the step
    /// where it was acknowledged. Keys `P0`…`P3`; defaults 30m, 1h, 4h, 12h.
    pub ack_timeout: BTreeMap<String, Dur>,
    /// A reply code is not given again to the same phone for this long.
    pub reply_code_window: Dur,
    /// Answers sent to one phone's replies, at most this many per hour (more are ignored).
    pub replies_per_hour: u32,
    /// The address people open acknowledge links at (`https://herald.example.com`); no
    /// links in pages without it.
    pub public_url: Option<String>,
    /// The key links are signed with (32+ characters). Every node needs the same one.
    pub link_secret: Option<Secret>,
    /// How long a link works.
    pub link_ttl: Dur,
    /// Phone number prefixes whose SMS pages carry no link (`+86`: mainland China
    /// carriers refuse SMS with links).
    pub no_links_for: Vec<String>,
    /// Pages due for one person on one contact method within this window go out as one
    /// message. Keys `P0`…`P3`; defaults 5s, 30s, 2m, 5m; `0s` sends each page at once.
    pub bundle_window: BTreeMap<String, Dur>,
    /// While bundles keep coming for a person, each waits twice as long as the one before,
    /// up to this (a storm reaches a phone as a handful of messages, not hundreds).
    pub bundle_max_gap: Dur,
    /// Storm detection: above a rate of new incidents, new ones are grouped into one.
    pub storm: StormConfig,
}

/// `[oncall.storm]`: when `threshold` incidents open within `window` in one scope (a
/// service, or all), Herald opens a storm incident and groups every new one of that scope
/// into it until fewer than `threshold` join within a `window`. `threshold = 0`: off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StormConfig {
    pub threshold: u32,
    pub window: Dur,
    /// `service` (one storm per service) or `all`.
    pub scope: String,
}

impl Default for StormConfig {
    fn default() -> Self {
        StormConfig {
            threshold: 0,
            window: Dur::secs(60),
            scope: "service".into(),
        }
    }
}

impl Default for OnCallConfig {
    fn default() -> Self {
        OnCallConfig {
            tick: Dur::secs(1),
            lease: Dur::secs(15),
            ack_timeout: BTreeMap::new(),
            reply_code_window: Dur::secs(72 * 3600),
            replies_per_hour: 10,
            public_url: None,
            link_secret: None,
            link_ttl: Dur::secs(24 * 3600),
            no_links_for: vec!["+86".into()],
            bundle_window: BTreeMap::new(),
            bundle_max_gap: Dur::secs(120),
            storm: StormConfig::default(),
        }
    }
}

impl OnCallConfig {
    /// How long an acknowledgement holds before the incident escalates again.
    pub fn ack_timeout_for(&self, s: Severity) -> i64 {
        if let Some(d) = self.ack_timeout.get(s.as_str()) {
            return d.0.as_millis() as i64;
        }
        const MIN: i64 = 60_000;
        match s {
            Severity::P0 => 30 * MIN,
            Severity::P1 => 60 * MIN,
            Severity::P2 => 240 * MIN,
            Severity::P3 => 720 * MIN,
        }
    }

    /// How long a page of this severity waits for others to the same person; 0: none.
    pub fn bundle_window_for(&self, s: Severity) -> i64 {
        if let Some(d) = self.bundle_window.get(s.as_str()) {
            return d.0.as_millis() as i64;
        }
        match s {
            Severity::P0 => 5_000,
            Severity::P1 => 30_000,
            Severity::P2 => 120_000,
            Severity::P3 => 300_000,
        }
    }

    /// Faults, each naming its field.
    pub fn check(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (field, keys) in [
            ("ack_timeout", &self.ack_timeout),
            ("bundle_window", &self.bundle_window),
        ] {
            for k in keys.keys() {
                if Severity::parse(k).is_none() {
                    out.push(format!("oncall.{field}: `{k}` is not P0, P1, P2 or P3"));
                }
            }
        }
        if self.storm.scope != "service" && self.storm.scope != "all" {
            out.push("oncall.storm.scope: must be `service` or `all`".into());
        }
        if self.storm.threshold > 0 && self.storm.window.0.is_zero() {
            out.push("oncall.storm.window: must be more than 0".into());
        }
        if self.tick.0.is_zero() {
            out.push("oncall.tick: must be more than 0".into());
        }
        if self.lease.0 < self.tick.0 * 2 {
            out.push("oncall.lease: must be at least twice oncall.tick".into());
        }
        if let Some(u) = &self.public_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            out.push("oncall.public_url: must be an http(s) URL".into());
        }
        match (&self.public_url, &self.link_secret) {
            (Some(_), None) => out.push(
                "oncall.link_secret: needed with public_url (every node signs and checks links with it)"
                    .into(),
            ),
            (_, Some(s)) if s.expose().len() < 32 => {
                out.push("oncall.link_secret: must be at least 32 characters".into())
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_timeouts_default_per_severity_and_can_be_set() {
        let mut c = OnCallConfig::default();
        assert_eq!(c.ack_timeout_for(Severity::P0), 1_800_000);
        assert_eq!(c.ack_timeout_for(Severity::P3), 43_200_000);
        c.ack_timeout.insert("P0".into(), Dur::secs(5));
        assert_eq!(c.ack_timeout_for(Severity::P0), 5_000);
        assert_eq!(c.bundle_window_for(Severity::P0), 5_000);
        assert_eq!(c.bundle_window_for(Severity::P3), 300_000);
        c.bundle_window.insert("P3".into(), Dur::secs(0));
        assert_eq!(c.bundle_window_for(Severity::P3), 0);
        assert!(c.check().is_empty());
    }

    #[test]
    fn faults_name_their_field() {
        let mut c = OnCallConfig::default();
        c.ack_timeout.insert("P9".into(), Dur::secs(5));
        c.bundle_window.insert("P7".into(), Dur::secs(5));
        c.storm.scope = "region".into();
        c.public_url = Some("ftp://x".into());
        let f = c.check();
        assert!(f[0].starts_with("oncall.ack_timeout"));
        assert!(f.iter().any(|m| m.starts_with("oncall.public_url")));
        assert!(f.iter().any(|m| m.starts_with("oncall.link_secret")));
        assert!(f.iter().any(|m| m.starts_with("oncall.bundle_window")));
        assert!(f.iter().any(|m| m.starts_with("oncall.storm.scope")));
    }
}
