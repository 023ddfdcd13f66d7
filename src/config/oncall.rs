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

    /// Faults, each naming its field.
    pub fn check(&self) -> Vec<String> {
        let mut out = Vec::new();
        for k in self.ack_timeout.keys() {
            if Severity::parse(k).is_none() {
                out.push(format!("oncall.ack_timeout: `{k}` is not P0, P1, P2 or P3"));
            }
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
        assert!(c.check().is_empty());
    }

    #[test]
    fn faults_name_their_field() {
        let mut c = OnCallConfig::default();
        c.ack_timeout.insert("P9".into(), Dur::secs(5));
        c.public_url = Some("ftp://x".into());
        let f = c.check();
        assert!(f[0].starts_with("oncall.ack_timeout"));
        assert!(f.iter().any(|m| m.starts_with("oncall.public_url")));
        assert!(f.iter().any(|m| m.starts_with("oncall.link_secret")));
    }
}
