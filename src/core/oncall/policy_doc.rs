//! An escalation policy as people write it, and its checks (every fault named by its field),
//! compiled into the pure [`Policy`] for an incident's severity.
//!
//! ```json
//! {"name": "Payments", "repeat": 1,
//!  "steps": [{"delay_seconds": 300, "targets": [{"type": "schedule", "id": "payments-primary"}]},
//!            {"targets": [{"type": "contact", "id": "ct_lead"}, {"type": "chat", "id": "ops"}]}]}
//! ```
//! A step without `delay_seconds` waits the severity's default (P0 5 min, P1 15 min, P2 1 h,
//! P3 4 h) for an acknowledgement before the next step.

use super::escalation::{Policy, Step, Target, default_delay};
use crate::core::addresses::valid_user;
use crate::core::incident::Severity;
use crate::core::validate::FieldError;
use serde::{Deserialize, Serialize};

pub const MAX_STEPS: usize = 20;
pub const MAX_TARGETS: usize = 20;
pub const MAX_REPEAT: u32 = 9;
/// A week: no step waits longer.
pub const MAX_DELAY_SECONDS: u64 = 604_800;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    pub name: String,
    /// How many times the whole policy runs again after its last step.
    #[serde(default)]
    pub repeat: u32,
    pub steps: Vec<StepDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<u64>,
    pub targets: Vec<TargetDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDoc {
    /// `contact`, `schedule` or `chat`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

impl PolicyDoc {
    /// The contacts and schedules it names, with their fields (the API checks they exist).
    pub fn references(&self) -> Vec<(String, &str, &str)> {
        let mut out = Vec::new();
        for (i, s) in self.steps.iter().enumerate() {
            for (j, t) in s.targets.iter().enumerate() {
                out.push((
                    format!("steps[{i}].targets[{j}].id"),
                    t.kind.as_str(),
                    t.id.as_str(),
                ));
            }
        }
        out
    }

    /// Every fault of the document, all at once (none: it compiles).
    pub fn check(&self, chat_known: &dyn Fn(&str) -> bool) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut bad = |f: String, m: String| errs.push(FieldError::new(f, m));
        if let Some(m) = super::name_fault(&self.name) {
            bad("name".into(), m);
        }
        if self.repeat > MAX_REPEAT {
            bad("repeat".into(), format!("must be 0 to {MAX_REPEAT}"));
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            bad("steps".into(), format!("must hold 1 to {MAX_STEPS} steps"));
        }
        for (i, s) in self.steps.iter().enumerate() {
            if s.delay_seconds.is_some_and(|d| d > MAX_DELAY_SECONDS) {
                bad(
                    format!("steps[{i}].delay_seconds"),
                    format!("must be 0 to {MAX_DELAY_SECONDS} (a week)"),
                );
            }
            if s.targets.is_empty() || s.targets.len() > MAX_TARGETS {
                bad(
                    format!("steps[{i}].targets"),
                    format!("must name 1 to {MAX_TARGETS} targets"),
                );
            }
            for (j, t) in s.targets.iter().enumerate() {
                let f = |k: &str| format!("steps[{i}].targets[{j}].{k}");
                match t.kind.as_str() {
                    "contact" | "schedule" => {
                        if let Err(m) = valid_user(&t.id) {
                            bad(f("id"), m);
                        }
                    }
                    "chat" => {
                        if let Err(m) = valid_user(&t.id) {
                            bad(f("id"), m);
                        } else if !chat_known(&t.id) {
                            bad(
                                f("id"),
                                format!("`{}` is not a chat provider of the configuration", t.id),
                            );
                        }
                    }
                    _ => bad(f("type"), "must be contact, schedule or chat".into()),
                }
            }
        }
        errs
    }

    /// The policy for an incident of severity `s` (call after [`PolicyDoc::check`]).
    pub fn compile(&self, s: Severity) -> Policy {
        Policy {
            steps: self
                .steps
                .iter()
                .map(|st| Step {
                    targets: st
                        .targets
                        .iter()
                        .filter_map(|t| match t.kind.as_str() {
                            "contact" => Some(Target::Contact(t.id.clone())),
                            "schedule" => Some(Target::Schedule(t.id.clone())),
                            "chat" => Some(Target::Chat(t.id.clone())),
                            _ => None,
                        })
                        .collect(),
                    delay: st
                        .delay_seconds
                        .map(|d| (d.min(MAX_DELAY_SECONDS) * 1000) as i64)
                        .unwrap_or_else(|| default_delay(s)),
                })
                .collect(),
            repeat: self.repeat.min(MAX_REPEAT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: serde_json::Value) -> PolicyDoc {
        serde_json::from_value(v).unwrap()
    }
    fn fields(d: &PolicyDoc) -> Vec<String> {
        d.check(&|c| c == "ops")
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_good_policy_compiles_with_severity_defaults_where_no_delay_is_given() {
        let d = doc(json!({"name": "Payments", "repeat": 2, "steps": [
            {"delay_seconds": 30, "targets": [{"type": "schedule", "id": "primary"}]},
            {"targets": [{"type": "contact", "id": "lead"}, {"type": "chat", "id": "ops"}]}]}));
        assert!(fields(&d).is_empty());
        let p = d.compile(Severity::P2);
        assert_eq!(p.repeat, 2);
        assert_eq!(p.steps[0].delay, 30_000);
        assert_eq!(p.steps[1].delay, 3_600_000, "P2 waits an hour by default");
        assert_eq!(d.compile(Severity::P0).steps[1].delay, 300_000);
        assert_eq!(
            p.steps[1].targets,
            vec![Target::Contact("lead".into()), Target::Chat("ops".into())]
        );
        assert_eq!(d.references().len(), 3);
        assert_eq!(
            d.references()[0],
            ("steps[0].targets[0].id".into(), "schedule", "primary")
        );
    }

    #[test]
    fn every_fault_is_named_by_its_field() {
        let d = doc(json!({"name": " ", "repeat": 10, "steps": [
            {"delay_seconds": 604_801, "targets": []},
            {"targets": [{"type": "pager", "id": "x"}, {"type": "contact", "id": "bad id"},
                         {"type": "chat", "id": "nope"}]}]}));
        assert_eq!(
            fields(&d),
            vec![
                "name",
                "repeat",
                "steps[0].delay_seconds",
                "steps[0].targets",
                "steps[1].targets[0].type",
                "steps[1].targets[1].id",
                "steps[1].targets[2].id",
            ]
        );
        assert_eq!(
            fields(&doc(json!({"name": "n", "steps": []}))),
            vec!["steps"]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<PolicyDoc, _> =
            serde_json::from_value(json!({"name": "n", "steps": [], "extra": 1}));
        assert!(r.is_err());
    }
}
