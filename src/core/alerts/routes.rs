//! `[[alert_routes]]`: which alerts a route takes (matchers in Alertmanager's syntax, first
//! match wins unless `continue`), the severity and service it gives them, who is paged and
//! on which channels per severity. Compiled once at start-up; matching is pure.

use super::matchers::{Matcher, all_match};
use crate::config::Secret;
use crate::core::incident::Severity;
use crate::core::types::Channel;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub id: String,
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Fixed severity; otherwise the alert's `severity` label decides.
    #[serde(default)]
    pub severity: Option<String>,
    /// The service incidents are filed under; otherwise the `service` label, else `job`,
    /// else the route's id.
    #[serde(default)]
    pub service: Option<String>,
    /// Contacts paged (`to.user`).
    #[serde(default)]
    pub users: Vec<String>,
    /// The escalation policy (`/v1/escalation-policies`) that pages people, step by step,
    /// until someone acknowledges. With it, `users` and `chat` are told at once as well.
    #[serde(default)]
    pub escalation_policy: Option<String>,
    /// Chat providers (group robots) told.
    #[serde(default)]
    pub chat: Vec<String>,
    /// Channels for the contacts, per severity (default P0 sms+voice, P1/P2 email, P3 inbox).
    #[serde(default)]
    pub channels: BTreeMap<String, Vec<Channel>>,
    /// A template for the page (its params: the incident's fields); otherwise Herald's text.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Tell the people and groups paged when the incident resolves (default true).
    #[serde(default = "yes")]
    pub notify_resolved: bool,
    /// A bearer token Alertmanager may send instead of an API key: it reaches this route only.
    #[serde(default)]
    pub token: Option<Secret>,
    /// The Events v2 `routing_key` that files events under this route.
    #[serde(default)]
    pub routing_key: Option<Secret>,
    /// While an alert of this route fires, incidents whose alerts match a rule's targets
    /// (with equal labels) page no one (`super::inhibit`).
    #[serde(default)]
    pub inhibit: Vec<super::inhibit::InhibitConfig>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone)]
pub struct Route {
    pub cfg: RouteConfig,
    pub matchers: Vec<Matcher>,
    pub severity: Option<Severity>,
    pub channels: BTreeMap<Severity, Vec<Channel>>,
    pub inhibits: Vec<super::inhibit::InhibitRule>,
}

/// The channels a contact is paged on at `s` unless a route says otherwise.
pub fn default_channels(s: Severity) -> Vec<Channel> {
    match s {
        Severity::P0 => vec![Channel::Sms, Channel::Voice],
        Severity::P1 | Severity::P2 => vec![Channel::Email],
        Severity::P3 => vec![Channel::Inbox],
    }
}

impl Route {
    pub fn compile(cfg: &RouteConfig, at: &str) -> Result<Route, String> {
        if crate::core::addresses::valid_user(&cfg.id).is_err() {
            return Err(format!("{at}.id: must be 1 to 128 letters, digits or ._-"));
        }
        let matchers = cfg
            .matchers
            .iter()
            .enumerate()
            .map(|(i, m)| Matcher::parse(m).map_err(|e| format!("{at}.matchers[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let severity = match &cfg.severity {
            None => None,
            Some(s) => Some(
                Severity::parse(s)
                    .ok_or_else(|| format!("{at}.severity: must be P0, P1, P2 or P3"))?,
            ),
        };
        let mut channels = BTreeMap::new();
        for (k, v) in &cfg.channels {
            let s = Severity::parse(k)
                .ok_or_else(|| format!("{at}.channels: `{k}` is not P0, P1, P2 or P3"))?;
            channels.insert(s, v.clone());
        }
        for (i, u) in cfg.users.iter().enumerate() {
            if crate::core::addresses::valid_user(u).is_err() {
                return Err(format!("{at}.users[{i}]: `{u}` is not a contact id"));
            }
        }
        if let Some(p) = &cfg.escalation_policy
            && crate::core::addresses::valid_user(p).is_err()
        {
            return Err(format!("{at}.escalation_policy: `{p}` is not a policy id"));
        }
        if cfg.users.is_empty() && cfg.chat.is_empty() && cfg.escalation_policy.is_none() {
            return Err(format!(
                "{at}: pages nobody: give `escalation_policy`, `users` or `chat`"
            ));
        }
        let inhibits = cfg
            .inhibit
            .iter()
            .enumerate()
            .map(|(i, r)| {
                super::inhibit::InhibitRule::compile(r, &matchers, &format!("{at}.inhibit[{i}]"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Route {
            cfg: cfg.clone(),
            matchers,
            severity,
            channels,
            inhibits,
        })
    }

    /// The severity of an alert with these labels on this route.
    pub fn severity_of(&self, labels: &BTreeMap<String, String>) -> Severity {
        self.severity
            .unwrap_or_else(|| Severity::from_label(labels.get("severity").map(String::as_str)))
    }

    pub fn service_of(&self, labels: &BTreeMap<String, String>) -> String {
        self.cfg
            .service
            .clone()
            .or_else(|| labels.get("service").cloned())
            .or_else(|| labels.get("job").cloned())
            .unwrap_or_else(|| self.cfg.id.clone())
    }

    pub fn channels_for(&self, s: Severity) -> Vec<Channel> {
        self.channels
            .get(&s)
            .cloned()
            .unwrap_or_else(|| default_channels(s))
    }
}

/// The routes an alert with `labels` goes to: in order, the first match, and the ones after
/// it while the matched route says `continue`.
pub fn matching<'a>(routes: &'a [Route], labels: &BTreeMap<String, String>) -> Vec<&'a Route> {
    let mut out = Vec::new();
    for r in routes {
        if all_match(&r.matchers, labels) {
            out.push(r);
            if !r.cfg.continue_matching {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(id: &str, matchers: &[&str], cont: bool) -> Route {
        Route::compile(
            &RouteConfig {
                id: id.into(),
                matchers: matchers.iter().map(|s| s.to_string()).collect(),
                users: vec!["u-1".into()],
                continue_matching: cont,
                ..Default::default()
            },
            "alert_routes[0]",
        )
        .unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn first_match_wins_unless_continue() {
        let routes = vec![
            route("db", &["team=\"db\""], false),
            route("all", &[], false),
        ];
        let ids = |l| {
            matching(&routes, &l)
                .iter()
                .map(|r| r.cfg.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(labels(&[("team", "db")])), ["db"]);
        assert_eq!(ids(labels(&[("team", "web")])), ["all"]);
        let routes = vec![
            route("audit", &[], true),
            route("db", &["team=\"db\""], false),
        ];
        let ids: Vec<_> = matching(&routes, &labels(&[("team", "db")]))
            .iter()
            .map(|r| r.cfg.id.clone())
            .collect();
        assert_eq!(ids, ["audit", "db"]);
        assert!(matching(&[route("db", &["team=\"db\""], false)], &labels(&[])).is_empty());
    }

    #[test]
    fn severity_service_and_channels() {
        let r = route("db", &[], false);
        assert_eq!(
            r.severity_of(&labels(&[("severity", "critical")])),
            Severity::P0
        );
        assert_eq!(r.severity_of(&labels(&[])), Severity::P1);
        assert_eq!(r.service_of(&labels(&[("job", "node")])), "node");
        assert_eq!(
            r.service_of(&labels(&[("service", "api"), ("job", "node")])),
            "api"
        );
        assert_eq!(r.service_of(&labels(&[])), "db");
        assert_eq!(r.channels_for(Severity::P0), [Channel::Sms, Channel::Voice]);
        assert_eq!(r.channels_for(Severity::P3), [Channel::Inbox]);
    }

    #[test]
    fn bad_routes_are_refused_by_field() {
        let bad = |cfg: RouteConfig| Route::compile(&cfg, "alert_routes[2]").unwrap_err();
        let base = RouteConfig {
            id: "r".into(),
            users: vec!["u".into()],
            ..Default::default()
        };
        assert!(
            bad(RouteConfig {
                matchers: vec!["x".into()],
                ..base.clone()
            })
            .starts_with("alert_routes[2].matchers[0]")
        );
        assert!(
            bad(RouteConfig {
                severity: Some("P9".into()),
                ..base.clone()
            })
            .contains(".severity")
        );
        assert!(
            bad(RouteConfig {
                users: vec![],
                ..base.clone()
            })
            .contains("pages nobody")
        );
        assert!(
            bad(RouteConfig {
                id: "bad id".into(),
                ..base
            })
            .contains(".id")
        );
    }
}
