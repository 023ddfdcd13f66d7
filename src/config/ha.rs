//! `herald config check --ha`: single points of failure and risky settings in a
//! configuration, each with its reason and a fix. A pure function of the configuration.

use super::{Backend, Config};
use crate::core::types::Channel;
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// A single point of failure: one fault stops a promise.
    Error,
    /// A risk: survivable, but worse than it needs to be.
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub level: Level,
    /// The configuration key it is about.
    pub key: String,
    pub finding: String,
    pub fix: String,
}

fn f(level: Level, key: &str, finding: String, fix: String) -> Finding {
    Finding {
        level,
        key: key.to_string(),
        finding,
        fix,
    }
}

/// Channels Herald carries itself (no outside provider can fail them).
fn built_in(c: Channel) -> bool {
    matches!(c, Channel::Inbox | Channel::Webhook)
}

/// What templates and alert routes send through: (channel, who uses it).
fn used_channels(cfg: &Config) -> Vec<(Channel, String)> {
    let mut used = Vec::new();
    for t in &cfg.templates {
        for c in &t.channels {
            used.push((*c, format!("template `{}`", t.id)));
        }
    }
    for r in &cfg.alert_routes {
        let pages_people = !r.users.is_empty() || r.escalation_policy.is_some();
        if r.channels.is_empty() && pages_people {
            // The default channels of a page: P0 by SMS and voice, P1/P2 email.
            for c in [Channel::Sms, Channel::Voice, Channel::Email] {
                used.push((c, format!("alert route `{}`", r.id)));
            }
        }
        for chans in r.channels.values() {
            for c in chans {
                used.push((*c, format!("alert route `{}`", r.id)));
            }
        }
        if !r.chat.is_empty() {
            used.push((Channel::Chat, format!("alert route `{}`", r.id)));
        }
    }
    used
}

fn is_public_listener(listen: &str) -> bool {
    let host = listen
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(listen)
        .trim_matches(['[', ']']);
    !(host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()))
}

/// Every finding, errors first.
pub fn findings(cfg: &Config) -> Vec<Finding> {
    use Level::{Error, Warning};
    let mut out = Vec::new();
    let providers = |c: Channel| -> Vec<&str> {
        cfg.providers
            .iter()
            .filter(|p| p.channel == c)
            .map(|p| p.id.as_str())
            .collect()
    };

    // Channels that are used, and what carries them.
    let mut seen = BTreeSet::new();
    for (c, user) in used_channels(cfg) {
        if built_in(c) || !seen.insert(c) {
            continue;
        }
        match providers(c).as_slice() {
            [] => out.push(f(
                Error,
                "providers",
                format!("no provider carries {c}, which {user} sends through"),
                format!("add a [[providers]] entry with channel = \"{c}\" (two, of different vendors)"),
            )),
            [one] => out.push(f(
                Error,
                "providers",
                format!("only `{one}` carries {c} ({user} sends through it): when that vendor fails, {c} stops"),
                format!("add a second {c} provider of another vendor; Herald fails over by priority"),
            )),
            _ => {}
        }
    }
    // Channels with providers and no fallback channel.
    let configured: BTreeSet<Channel> = cfg.providers.iter().map(|p| p.channel).collect();
    for c in &configured {
        if !built_in(*c) && !cfg.degrade.contains_key(c) {
            out.push(f(
                Warning,
                "degrade",
                format!("{c} has no fallback channel: a message whose {c} providers all fail is not tried elsewhere"),
                format!("add `{c} = [\"inbox\"]` (or another channel) under [degrade]"),
            ));
        }
    }
    for (from, to) in &cfg.degrade {
        for t in to {
            if !built_in(*t) && !configured.contains(t) {
                out.push(f(
                    Warning,
                    &format!("degrade.{from}"),
                    format!("{from} falls back to {t}, which no provider carries"),
                    format!("add a {t} provider, or take {t} out of the fallback"),
                ));
            }
        }
    }

    // Storage and backups.
    match cfg.backend() {
        Ok(Backend::Sqlite(_)) => out.push(f(
            Warning,
            "storage.url",
            "SQLite holds one node: no second node can take over when this one is lost".into(),
            "run two or more nodes on PostgreSQL (storage.url = \"postgres://…\")".into(),
        )),
        Ok(_) => {}
        Err(e) => out.push(f(Error, "storage.url", e.to_string(), "fix the URL".into())),
    }
    if cfg.backup.every.is_none() {
        out.push(f(
            Error,
            "backup.every",
            "no backups are scheduled: a lost or damaged database loses everything since the last manual one".into(),
            "set backup.every (e.g. \"6h\") and backup.keep".into(),
        ));
    }
    if cfg.backup.encrypt_to.is_none() {
        out.push(f(
            Warning,
            "backup.encrypt_to",
            "backups are not encrypted: whoever reads a copy reads every message and key hash"
                .into(),
            "set backup.encrypt_to to an age recipient (age1…) whose identity is kept elsewhere"
                .into(),
        ));
    }
    let on_data_disk = match &cfg.backup.dir {
        None => true,
        Some(d) => d.starts_with(&cfg.server.data_dir),
    };
    if on_data_disk {
        out.push(f(
            Warning,
            "backup.dir",
            "backups are kept beside the database, on the same disk: one disk loss takes both"
                .into(),
            "point backup.dir at another volume, and copy backups off the machine".into(),
        ));
    }
    if cfg.backup.offsite.is_none() {
        out.push(f(
            Warning,
            "backup.offsite",
            "no off-site copy of the backups: losing the site or region loses them too".into(),
            "set [backup.offsite] to an S3-compatible bucket in another region".into(),
        ));
    }

    // Limits and exposure.
    for c in [Channel::Sms, Channel::Voice] {
        if cfg.limits.recipient.get(&c).is_none_or(Vec::is_empty) {
            out.push(f(
                Warning,
                &format!("limits.recipient.{c}"),
                format!("no per-recipient limit on {c}: a leaked key or a bot can pump paid {c} to any number"),
                format!("set limits.recipient.{c} (the default is {:?})", default_limit(c)),
            ));
        }
    }
    if cfg.server.metrics_open && is_public_listener(&cfg.server.listen) {
        out.push(f(
            Warning,
            "server.metrics_open",
            format!(
                "/metrics needs no key and the API listens on {}: anyone who reaches it reads provider names and traffic",
                cfg.server.listen
            ),
            "set metrics_open = false (Prometheus then sends a viewer key), or listen on loopback behind a proxy".into(),
        ));
    }

    // Pages.
    for r in &cfg.alert_routes {
        let may_be_p0 = r
            .severity
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("P0"));
        if may_be_p0 && r.escalation_policy.is_none() {
            out.push(f(
                Error,
                &format!("alert_routes.{}.escalation_policy", r.id),
                format!(
                    "route `{}` may open P0 incidents and has no escalation policy: when the first person does not answer, nobody else is paged",
                    r.id
                ),
                "set escalation_policy to a policy with at least two steps (POST /v1/escalation-policies)".into(),
            ));
        }
    }
    out.sort_by_key(|x| x.level);
    out
}

fn default_limit(c: Channel) -> Vec<&'static str> {
    super::LimitsConfig::DEFAULT_RECIPIENT
        .iter()
        .find(|(ch, _)| *ch == c)
        .map(|(_, r)| r.to_vec())
        .unwrap_or_default()
}

/// As people read it: one finding per block, errors first, and a count.
pub fn text(found: &[Finding]) -> String {
    let mut s = String::new();
    for x in found {
        let level = match x.level {
            Level::Error => "error  ",
            Level::Warning => "warning",
        };
        s.push_str(&format!(
            "{level} {}: {}\n        fix: {}\n",
            x.key, x.finding, x.fix
        ));
    }
    let errors = found.iter().filter(|x| x.level == Level::Error).count();
    s.push_str(&format!(
        "# {} findings: {errors} errors, {} warnings\n",
        found.len(),
        found.len() - errors
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderConfig;
    use crate::templates::TemplateConfig;

    fn provider(id: &str, channel: Channel, kind: &str) -> ProviderConfig {
        toml::from_str(&format!(
            "id = \"{id}\"\nchannel = \"{channel}\"\nkind = \"{kind}\"\n"
        ))
        .unwrap()
    }

    fn keys(found: &[Finding]) -> Vec<(Level, &str)> {
        found.iter().map(|x| (x.level, x.key.as_str())).collect()
    }

    /// A deployment with nothing to flag.
    fn good() -> Config {
        let mut c = Config::default();
        c.storage.url = Some("postgres://herald@postgres-rw:5432/herald".into());
        c.server.listen = "0.0.0.0:8080".into();
        c.server.metrics_open = false;
        c.backup.every = Some(crate::config::Dur::secs(6 * 3600));
        c.backup.encrypt_to = Some("age1example".into());
        c.backup.dir = Some("/mnt/backups".into());
        c.backup.offsite = Some(crate::config::OffsiteConfig {
            endpoint: "https://s3.eu-west-1.amazonaws.com".into(),
            bucket: "herald-backups".into(),
            region: "eu-west-1".into(),
            prefix: "herald/".into(),
            access_key_id: crate::config::Secret::new("id"),
            secret_access_key: crate::config::Secret::new("secret"),
            keep: 30,
            path_style: true,
        });
        c.providers = vec![
            provider("aliyun", Channel::Sms, "aliyun"),
            provider("twilio", Channel::Sms, "twilio"),
        ];
        c.degrade.insert(Channel::Sms, vec![Channel::Inbox]);
        c.templates = vec![TemplateConfig {
            id: "code".into(),
            channels: vec![Channel::Sms, Channel::Inbox],
            ..Default::default()
        }];
        c
    }

    #[test]
    fn a_good_deployment_is_clean() {
        assert_eq!(findings(&good()), vec![], "{}", text(&findings(&good())));
    }

    #[test]
    fn one_provider_for_a_used_channel_is_an_error() {
        let mut c = good();
        c.providers.pop();
        let found = findings(&c);
        assert_eq!(keys(&found), vec![(Level::Error, "providers")]);
        assert!(
            found[0].finding.contains("only `aliyun` carries sms"),
            "{found:?}"
        );
        assert!(found[0].finding.contains("template `code`"));
        c.providers.clear();
        let found = findings(&c);
        assert!(
            found[0].finding.starts_with("no provider carries sms"),
            "{found:?}"
        );
        // Inbox and webhooks are Herald's own: never flagged.
        assert!(!found.iter().any(|x| x.finding.contains("inbox,")));
    }

    #[test]
    fn fallbacks_storage_backups_limits_and_exposure_are_flagged() {
        let mut c = good();
        c.degrade.clear();
        c.degrade.insert(Channel::Sms, vec![Channel::Push]);
        c.storage.url = None;
        c.backup = Default::default();
        c.limits.recipient.insert(Channel::Sms, vec![]);
        c.server.metrics_open = true;
        let found = findings(&c);
        assert_eq!(
            keys(&found),
            vec![
                (Level::Error, "backup.every"),
                (Level::Warning, "degrade.sms"),
                (Level::Warning, "storage.url"),
                (Level::Warning, "backup.encrypt_to"),
                (Level::Warning, "backup.dir"),
                (Level::Warning, "backup.offsite"),
                (Level::Warning, "limits.recipient.sms"),
                (Level::Warning, "server.metrics_open"),
            ]
        );
        c.degrade.clear();
        assert!(
            findings(&c)
                .iter()
                .any(|x| x.key == "degrade" && x.finding.starts_with("sms has no fallback"))
        );
        // On loopback an open /metrics is fine.
        c.server.listen = "127.0.0.1:8080".into();
        assert!(!findings(&c).iter().any(|x| x.key == "server.metrics_open"));
        c.server.listen = "[::1]:8080".into();
        assert!(!findings(&c).iter().any(|x| x.key == "server.metrics_open"));
    }

    #[test]
    fn a_route_that_may_page_p0_needs_an_escalation_policy() {
        let mut c = good();
        let route: crate::core::alerts::routes::RouteConfig = toml::from_str(
            "id = \"db\"\nusers = [\"li\"]\nchannels = { P0 = [\"sms\"], P1 = [\"inbox\"] }\n",
        )
        .unwrap();
        c.alert_routes = vec![route.clone()];
        let found = findings(&c);
        assert_eq!(
            keys(&found),
            vec![(Level::Error, "alert_routes.db.escalation_policy")]
        );
        let mut p3 = route.clone();
        p3.severity = Some("P3".into());
        c.alert_routes = vec![p3];
        assert_eq!(findings(&c), vec![], "a P3-only route may page one person");
        let mut with_policy = route;
        with_policy.escalation_policy = Some("db".into());
        c.alert_routes = vec![with_policy];
        assert_eq!(findings(&c), vec![]);
    }

    #[test]
    fn the_text_counts_errors_and_warnings() {
        let mut c = good();
        c.backup.every = None;
        c.backup.encrypt_to = None;
        let t = text(&findings(&c));
        assert!(t.starts_with("error   backup.every: "), "{t}");
        assert!(t.contains("        fix: set backup.every"));
        assert!(t.ends_with("# 2 findings: 1 errors, 1 warnings\n"), "{t}");
    }
}
