//! Incidents: what alerts become. Severities P0–P3, the status an incident moves through
//! (triggered → acknowledged → resolved; a resolved incident never reopens), and the pure
//! merge of an alert batch into an incident's occurrences (an occurrence is one firing of one
//! alert: fingerprint + `startsAt`). Pure.

use super::types::Millis;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    P0,
    P1,
    P2,
    P3,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P0 => "P0",
            Severity::P1 => "P1",
            Severity::P2 => "P2",
            Severity::P3 => "P3",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "P0" | "p0" => Some(Severity::P0),
            "P1" | "p1" => Some(Severity::P1),
            "P2" | "p2" => Some(Severity::P2),
            "P3" | "p3" => Some(Severity::P3),
            _ => None,
        }
    }

    /// The severity an alert's `severity` label (or an Events v2 `payload.severity`) means:
    /// critical → P0, error → P1, warning → P2, info → P3, `P0`…`P3` as they are; missing or
    /// unknown → P1 (an alert nobody classified is taken seriously).
    pub fn from_label(v: Option<&str>) -> Severity {
        match v.map(str::to_ascii_lowercase).as_deref() {
            Some("critical" | "page" | "p0") => Severity::P0,
            Some("error" | "high" | "p1") => Severity::P1,
            Some("warning" | "warn" | "p2") => Severity::P2,
            Some("info" | "low" | "p3") => Severity::P3,
            _ => Severity::P1,
        }
    }

    /// The priority of the pages an incident of this severity sends.
    pub fn priority(self) -> super::types::Priority {
        use super::types::Priority;
        match self {
            Severity::P0 => Priority::Critical,
            Severity::P1 => Priority::High,
            Severity::P2 => Priority::Normal,
            Severity::P3 => Priority::Low,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Triggered,
    Acknowledged,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Triggered => "triggered",
            Status::Acknowledged => "acknowledged",
            Status::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "triggered" => Some(Status::Triggered),
            "acknowledged" => Some(Status::Acknowledged),
            "resolved" => Some(Status::Resolved),
            _ => None,
        }
    }
}

/// One firing of one alert inside an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occurrence {
    pub fingerprint: String,
    pub starts_at: Millis,
    /// `firing` or `resolved`.
    pub status: String,
    pub ends_at: Option<Millis>,
    pub labels: serde_json::Value,
    pub annotations: serde_json::Value,
    pub generator_url: String,
}

impl Occurrence {
    pub fn firing(&self) -> bool {
        self.status == "firing"
    }
}

/// What an alert batch does to one incident's occurrences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merge {
    /// Occurrences to write (new ones, and known ones whose state changed).
    pub upserts: Vec<Occurrence>,
    /// Whether anything new fires (an incident is opened for it when none is open).
    pub new_firing: bool,
    /// Whether every occurrence is resolved afterwards.
    pub all_resolved: bool,
}

/// Merges `seen` (the alerts of one payload for this incident) into `known`. A resolved
/// alert resolves its occurrence; a resolved occurrence never fires again (a new firing has
/// a new `startsAt`); with `complete` (the payload holds the group's whole set: Alertmanager's
/// `truncatedAlerts` is 0), a firing occurrence absent from it has left the group and is
/// resolved at `now`. Repeats change nothing.
pub fn merge(known: &[Occurrence], seen: &[Occurrence], complete: bool, now: Millis) -> Merge {
    use std::collections::HashMap;
    let mut out = Merge::default();
    let mut state: Vec<Occurrence> = known.to_vec();
    // Occurrences by (fingerprint, startsAt): a payload of a thousand alerts is merged in
    // linear time.
    let mut at: HashMap<(&str, Millis), usize> = HashMap::with_capacity(known.len() + seen.len());
    for (i, k) in known.iter().enumerate() {
        at.insert((k.fingerprint.as_str(), k.starts_at), i);
    }
    let mut present = vec![false; known.len()];
    for s in seen {
        match at.get(&(s.fingerprint.as_str(), s.starts_at)).copied() {
            Some(i) => {
                if let Some(p) = present.get_mut(i) {
                    *p = true;
                }
                let k = &mut state[i];
                if k.firing() && !s.firing() {
                    k.status = "resolved".into();
                    k.ends_at = s.ends_at.or(Some(now));
                    out.upserts.push(k.clone());
                }
            }
            None => {
                if s.firing() {
                    out.new_firing = true;
                }
                at.insert((s.fingerprint.as_str(), s.starts_at), state.len());
                state.push(s.clone());
                out.upserts.push(s.clone());
            }
        }
    }
    if complete {
        for (i, k) in state.iter_mut().enumerate().take(known.len()) {
            if k.firing() && !present[i] {
                k.status = "resolved".into();
                k.ends_at = Some(now);
                out.upserts.push(k.clone());
            }
        }
    }
    out.all_resolved = !state.is_empty() && state.iter().all(|o| !o.firing());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn occ(fp: &str, starts: i64, firing: bool) -> Occurrence {
        Occurrence {
            fingerprint: fp.into(),
            starts_at: starts,
            status: if firing { "firing" } else { "resolved" }.into(),
            ends_at: (!firing).then_some(starts + 100),
            labels: json!({}),
            annotations: json!({}),
            generator_url: String::new(),
        }
    }

    #[test]
    fn severities_from_labels() {
        assert_eq!(Severity::from_label(Some("critical")), Severity::P0);
        assert_eq!(Severity::from_label(Some("Error")), Severity::P1);
        assert_eq!(Severity::from_label(Some("warning")), Severity::P2);
        assert_eq!(Severity::from_label(Some("info")), Severity::P3);
        assert_eq!(Severity::from_label(Some("P2")), Severity::P2);
        assert_eq!(Severity::from_label(None), Severity::P1);
        assert_eq!(Severity::from_label(Some("weird")), Severity::P1);
        assert!(Severity::P0 < Severity::P3, "P0 is the most severe");
    }

    #[test]
    fn a_group_of_three_with_one_resolved_stays_open() {
        let first = merge(
            &[],
            &[occ("a", 1, true), occ("b", 1, true), occ("c", 1, true)],
            true,
            10,
        );
        assert!(first.new_firing && !first.all_resolved);
        assert_eq!(first.upserts.len(), 3);
        let known = first.upserts.clone();
        let next = merge(
            &known,
            &[occ("a", 1, true), occ("b", 1, true), occ("c", 1, false)],
            true,
            20,
        );
        assert!(!next.new_firing && !next.all_resolved);
        assert_eq!(next.upserts, vec![occ("c", 1, false)]);
    }

    #[test]
    fn repeats_change_nothing_and_resolved_never_refires() {
        let known = vec![occ("a", 1, true), occ("b", 1, false)];
        let m = merge(&known, &[occ("a", 1, true), occ("b", 1, true)], false, 5);
        assert_eq!(
            m,
            Merge {
                upserts: vec![],
                new_firing: false,
                all_resolved: false
            }
        );
        // The same series firing again after its resolve is a new occurrence.
        let m = merge(&known, &[occ("b", 50, true)], false, 60);
        assert!(m.new_firing);
        assert_eq!(m.upserts, vec![occ("b", 50, true)]);
    }

    #[test]
    fn absence_resolves_only_in_a_complete_payload() {
        let known = vec![occ("a", 1, true), occ("b", 1, true)];
        let truncated = merge(&known, &[occ("a", 1, true)], false, 9);
        assert!(
            truncated.upserts.is_empty(),
            "nothing unseen is inferred resolved"
        );
        let complete = merge(&known, &[occ("a", 1, true)], true, 9);
        assert_eq!(complete.upserts.len(), 1);
        assert_eq!(complete.upserts[0].fingerprint, "b");
        assert_eq!(complete.upserts[0].ends_at, Some(9));
        let all = merge(&known, &[occ("a", 1, false), occ("b", 1, false)], true, 9);
        assert!(all.all_resolved);
        // A batch of only resolved alerts for no known occurrence opens nothing.
        let stray = merge(&[], &[occ("z", 1, false)], true, 9);
        assert!(!stray.new_firing);
    }
}
