//! Inhibition, as Alertmanager's inhibit rules but on Herald's side: while an alert
//! matching a rule's source matchers fires, incidents whose alerts all match its target
//! matchers — with the same values for the `equal` labels — page no one. A
//! `DatacenterDown{dc="fra"}` silences every `InstanceDown{dc="fra"}`, not those of `ams`.
//! Pure.

use super::matchers::{Matcher, all_match};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[[alert_routes.inhibit]]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitConfig {
    /// What the inhibiting alert matches; default: the route's own matchers.
    #[serde(default)]
    pub source_matchers: Vec<String>,
    /// What the inhibited alerts match.
    pub target_matchers: Vec<String>,
    /// Labels whose values must be the same on both (`["dc"]`).
    #[serde(default)]
    pub equal: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct InhibitRule {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

pub type Labels = BTreeMap<String, String>;

impl InhibitRule {
    /// Compiles one rule; `route` is the route's own matchers (the source by default).
    pub fn compile(c: &InhibitConfig, route: &[Matcher], at: &str) -> Result<InhibitRule, String> {
        let parse = |ms: &[String], field: &str| {
            ms.iter()
                .enumerate()
                .map(|(i, m)| Matcher::parse(m).map_err(|e| format!("{at}.{field}[{i}]: {e}")))
                .collect::<Result<Vec<_>, _>>()
        };
        let source = if c.source_matchers.is_empty() {
            route.to_vec()
        } else {
            parse(&c.source_matchers, "source_matchers")?
        };
        if source.is_empty() {
            return Err(format!(
                "{at}.source_matchers: needed when the route matches every alert"
            ));
        }
        let target = parse(&c.target_matchers, "target_matchers")?;
        if target.is_empty() {
            return Err(format!("{at}.target_matchers: give at least one matcher"));
        }
        Ok(InhibitRule {
            source,
            target,
            equal: c.equal.clone(),
        })
    }

    fn inhibits(&self, source: &Labels, target: &Labels) -> bool {
        all_match(&self.source, source)
            && all_match(&self.target, target)
            && self.equal.iter().all(|l| source.get(l) == target.get(l))
    }
}

/// The incident that inhibits one whose firing alerts are `targets`: the first of
/// `sources` (`(incident, labels of one firing alert)`) that inhibits every one of them
/// by some rule. `None`: nothing inhibits it (or it has no firing alert).
pub fn inhibitor<'a>(
    rules: &[InhibitRule],
    targets: &[Labels],
    sources: &'a [(String, Labels)],
) -> Option<&'a str> {
    if targets.is_empty() || rules.is_empty() {
        return None;
    }
    sources
        .iter()
        .find(|(_, s)| {
            targets
                .iter()
                .all(|t| s != t && rules.iter().any(|r| r.inhibits(s, t)))
        })
        .map(|(id, _)| id.as_str())
}

/// Labels as a map, from an occurrence's JSON object (values not strings are left out).
pub fn labels_of(v: &serde_json::Value) -> Labels {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn dc_rule() -> InhibitRule {
        let c = InhibitConfig {
            source_matchers: vec![],
            target_matchers: vec!["alertname=\"InstanceDown\"".into()],
            equal: vec!["dc".into()],
        };
        let route = [Matcher::parse("alertname=\"DatacenterDown\"").unwrap()];
        InhibitRule::compile(&c, &route, "alert_routes[0].inhibit[0]").unwrap()
    }

    #[test]
    fn a_datacenter_down_inhibits_its_instances_only() {
        let rules = [dc_rule()];
        let sources = vec![(
            "inc-dc".to_string(),
            l(&[("alertname", "DatacenterDown"), ("dc", "fra")]),
        )];
        let fra = l(&[
            ("alertname", "InstanceDown"),
            ("dc", "fra"),
            ("instance", "a"),
        ]);
        let ams = l(&[
            ("alertname", "InstanceDown"),
            ("dc", "ams"),
            ("instance", "b"),
        ]);
        assert_eq!(
            inhibitor(&rules, std::slice::from_ref(&fra), &sources),
            Some("inc-dc")
        );
        assert_eq!(
            inhibitor(&rules, std::slice::from_ref(&ams), &sources),
            None
        );
        // Every firing alert of the incident must be inhibited.
        assert_eq!(inhibitor(&rules, &[fra.clone(), ams], &sources), None);
        // Another alert name is not a target; no alert at all is never inhibited.
        let disk = l(&[("alertname", "DiskFull"), ("dc", "fra")]);
        assert_eq!(inhibitor(&rules, &[disk], &sources), None);
        assert_eq!(inhibitor(&rules, &[], &sources), None);
        assert_eq!(inhibitor(&[], &[fra], &sources), None);
    }

    #[test]
    fn a_missing_equal_label_counts_as_equal_only_when_missing_on_both() {
        let rules = [dc_rule()];
        let sources = vec![("s".to_string(), l(&[("alertname", "DatacenterDown")]))];
        let no_dc = l(&[("alertname", "InstanceDown")]);
        let with_dc = l(&[("alertname", "InstanceDown"), ("dc", "fra")]);
        assert_eq!(inhibitor(&rules, &[no_dc], &sources), Some("s"));
        assert_eq!(inhibitor(&rules, &[with_dc], &sources), None);
    }

    #[test]
    fn faults_name_their_field() {
        let c = InhibitConfig {
            source_matchers: vec!["bad matcher".into()],
            target_matchers: vec![],
            equal: vec![],
        };
        let e = InhibitRule::compile(&c, &[], "alert_routes[1].inhibit[0]").unwrap_err();
        assert!(
            e.starts_with("alert_routes[1].inhibit[0].source_matchers[0]"),
            "{e}"
        );
        let c = InhibitConfig {
            source_matchers: vec![],
            target_matchers: vec!["a=\"b\"".into()],
            equal: vec![],
        };
        let e = InhibitRule::compile(&c, &[], "r").unwrap_err();
        assert!(e.starts_with("r.source_matchers"), "{e}");
    }

    #[test]
    fn labels_come_from_the_occurrences_json() {
        let v = serde_json::json!({"a": "1", "n": 2});
        assert_eq!(labels_of(&v), l(&[("a", "1")]));
    }
}
