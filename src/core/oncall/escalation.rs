//! Escalation: which step of a policy pages next, and when. Pure: the escalation row of an
//! incident holds a position (step, pass) and the instant it is due; firing it pages that
//! step's targets and moves the row to what [`after`] returns.

use crate::core::incident::Severity;
use crate::core::types::Millis;

/// Whom a step pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Contact(String),
    /// Whoever the schedule has on call when the step fires.
    Schedule(String),
    /// A chat group of the configuration.
    Chat(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub targets: Vec<Target>,
    /// How long this step waits for an acknowledgement before the next one fires.
    pub delay: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub steps: Vec<Step>,
    /// How many times the whole policy runs again after its last step (0: once).
    pub repeat: u32,
}

/// Where an escalation stands: the step that fires next, in which pass over the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub step: usize,
    pub pass: u32,
    /// How many times the escalation re-entered (an acknowledgement timed out, a snooze
    /// ended): a re-entry pages the same step again, under new keys.
    pub round: u32,
}

/// What follows the firing of `at_pos` at `fired`: the next position and when it is due,
/// or none when the policy has run out (the incident stays open; nobody more is paged).
pub fn after(p: &Policy, at_pos: Position, fired: Millis) -> Option<(Position, Millis)> {
    let step = p.steps.get(at_pos.step)?;
    let due = fired.saturating_add(step.delay.max(0));
    if at_pos.step + 1 < p.steps.len() {
        return Some((
            Position {
                step: at_pos.step + 1,
                ..at_pos
            },
            due,
        ));
    }
    (at_pos.pass < p.repeat).then_some((
        Position {
            step: 0,
            pass: at_pos.pass + 1,
            round: at_pos.round,
        },
        due,
    ))
}

/// How long a step waits for an acknowledgement before the next, by severity, when a
/// policy does not set its own: the seeds' response times (P1 within 15 min, P2 1 h, P3
/// 4 h); P0 pages its first step at once and waits 5 min before the next.
pub fn default_delay(s: Severity) -> Millis {
    const MIN: Millis = 60_000;
    match s {
        Severity::P0 => 5 * MIN,
        Severity::P1 => 15 * MIN,
        Severity::P2 => 60 * MIN,
        Severity::P3 => 240 * MIN,
    }
}

/// The idempotency key of one page: the same incident, step, pass, person and contact
/// method never makes a second message, whichever node fires the step and however often.
pub fn page_key(incident: &str, pos: Position, person: &str, method: &str) -> String {
    format!(
        "page:{incident}:{}:{}:{}:{person}:{method}",
        pos.step, pos.pass, pos.round
    )
}

/// What the incident is when its escalation comes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentNow {
    /// Gone, or resolved: nobody more is paged.
    Over,
    Triggered,
    Acknowledged {
        at: Millis,
    },
}

/// What a due escalation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It ends (the incident is over).
    Stop,
    /// Nothing fires before then (an acknowledgement holding).
    WaitUntil(Millis),
    /// Page this position; `retrigger`: the acknowledgement timed out, the incident goes
    /// back to triggered first.
    Fire { pos: Position, retrigger: bool },
}

/// The rule of a due escalation row. `waiting` rows were acknowledged or snoozed until
/// their due time; `next` is the position that fires next, `fired` the last one fired (where
/// a re-entry starts, in a new round).
pub fn decide(
    waiting: bool,
    next: Position,
    fired: Option<Position>,
    incident: IncidentNow,
    ack_timeout: Millis,
    now: Millis,
) -> Decision {
    let reenter = || {
        let at = fired.unwrap_or(next);
        Position {
            round: next.round + 1,
            ..at
        }
    };
    match (incident, waiting) {
        (IncidentNow::Over, _) => Decision::Stop,
        (IncidentNow::Triggered, false) => Decision::Fire {
            pos: next,
            retrigger: false,
        },
        // A snooze ended, or an operator escalated a waiting incident.
        (IncidentNow::Triggered, true) => Decision::Fire {
            pos: reenter(),
            retrigger: false,
        },
        // Acknowledged while a step was pending: hold until the acknowledgement times out.
        (IncidentNow::Acknowledged { at }, false) if at.saturating_add(ack_timeout) > now => {
            Decision::WaitUntil(at.saturating_add(ack_timeout))
        }
        (IncidentNow::Acknowledged { .. }, _) => Decision::Fire {
            pos: reenter(),
            retrigger: true,
        },
    }
}

/// A contact's notification rule: `method` is used once `after` has passed since the page
/// (SMS at 0, voice at 2 min…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub method: String,
    pub after: Millis,
}

/// When each method of a person is due for a page fired at `fired`, in order of time, each
/// method once (its earliest rule). No rules: the given fallback method at once.
pub fn notifications(rules: &[Rule], fired: Millis, fallback: &str) -> Vec<(String, Millis)> {
    let mut out: Vec<(String, Millis)> = Vec::new();
    let mut sorted: Vec<&Rule> = rules.iter().collect();
    sorted.sort_by_key(|r| r.after.max(0));
    for r in sorted {
        if !out.iter().any(|(m, _)| *m == r.method) {
            out.push((r.method.clone(), fired.saturating_add(r.after.max(0))));
        }
    }
    if out.is_empty() {
        out.push((fallback.to_string(), fired));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(delays: &[Millis], repeat: u32) -> Policy {
        Policy {
            steps: delays
                .iter()
                .enumerate()
                .map(|(i, d)| Step {
                    targets: vec![Target::Contact(format!("c{i}"))],
                    delay: *d,
                })
                .collect(),
            repeat,
        }
    }
    fn pos(step: usize, pass: u32) -> Position {
        Position {
            step,
            pass,
            round: 0,
        }
    }

    #[test]
    fn steps_follow_each_other_after_their_delays() {
        let p = policy(&[300_000, 600_000], 0);
        assert_eq!(after(&p, pos(0, 0), 1_000), Some((pos(1, 0), 301_000)));
        assert_eq!(after(&p, pos(1, 0), 301_000), None, "no repeat: done");
    }

    #[test]
    fn the_policy_repeats_as_many_times_as_configured() {
        let p = policy(&[10, 20], 2);
        let mut at = (pos(0, 0), 0);
        let mut fired = vec![at];
        while let Some(next) = after(&p, at.0, at.1) {
            fired.push(next);
            at = next;
        }
        assert_eq!(
            fired,
            [
                (pos(0, 0), 0),
                (pos(1, 0), 10),
                (pos(0, 1), 30),
                (pos(1, 1), 40),
                (pos(0, 2), 60),
                (pos(1, 2), 70),
            ]
        );
    }

    #[test]
    fn a_single_step_policy_repeats_itself() {
        let p = policy(&[60_000], 1);
        assert_eq!(after(&p, pos(0, 0), 0), Some((pos(0, 1), 60_000)));
        assert_eq!(after(&p, pos(0, 1), 60_000), None);
    }

    #[test]
    fn positions_outside_the_policy_and_odd_delays() {
        let empty = policy(&[], 3);
        assert_eq!(
            after(&empty, pos(0, 0), 0),
            None,
            "no steps, nothing to fire"
        );
        let p = policy(&[-5], 0);
        assert_eq!(after(&p, pos(3, 0), 0), None, "a step that is gone ends it");
        let p2 = policy(&[-5, 0], 0);
        assert_eq!(
            after(&p2, pos(0, 0), 7),
            Some((pos(1, 0), 7)),
            "no negative delay"
        );
        let far = policy(&[Millis::MAX, 1], 0);
        assert_eq!(after(&far, pos(0, 0), 10).map(|x| x.1), Some(Millis::MAX));
    }

    #[test]
    fn severities_have_their_response_times() {
        assert_eq!(default_delay(Severity::P0), 300_000);
        assert_eq!(default_delay(Severity::P1), 900_000);
        assert_eq!(default_delay(Severity::P2), 3_600_000);
        assert_eq!(default_delay(Severity::P3), 14_400_000);
    }

    #[test]
    fn a_triggered_incident_fires_the_next_step() {
        let d = decide(
            false,
            pos(1, 0),
            Some(pos(0, 0)),
            IncidentNow::Triggered,
            10,
            100,
        );
        assert_eq!(
            d,
            Decision::Fire {
                pos: pos(1, 0),
                retrigger: false
            }
        );
    }

    #[test]
    fn an_incident_over_stops_whatever_the_row_says() {
        for waiting in [false, true] {
            assert_eq!(
                decide(waiting, pos(0, 0), None, IncidentNow::Over, 10, 100),
                Decision::Stop
            );
        }
    }

    #[test]
    fn an_acknowledgement_holds_until_it_times_out_then_reenters_where_it_was_acknowledged() {
        let acked = IncidentNow::Acknowledged { at: 50 };
        // Acknowledged after step 0 fired, step 1 pending: wait for the timeout.
        assert_eq!(
            decide(false, pos(1, 0), Some(pos(0, 0)), acked, 100, 120),
            Decision::WaitUntil(150)
        );
        // The timeout passed: step 0 again, in a new round, and the incident re-triggers.
        let again = Position {
            round: 1,
            ..pos(0, 0)
        };
        assert_eq!(
            decide(true, pos(1, 0), Some(pos(0, 0)), acked, 100, 150),
            Decision::Fire {
                pos: again,
                retrigger: true
            }
        );
        // Already past the timeout when first seen: re-enter at once.
        assert_eq!(
            decide(false, pos(1, 0), Some(pos(0, 0)), acked, 100, 151),
            Decision::Fire {
                pos: again,
                retrigger: true
            }
        );
    }

    #[test]
    fn a_snooze_that_ends_on_a_triggered_incident_reenters_without_retriggering() {
        let d = decide(
            true,
            pos(2, 1),
            Some(pos(1, 1)),
            IncidentNow::Triggered,
            100,
            500,
        );
        assert_eq!(
            d,
            Decision::Fire {
                pos: Position {
                    round: 1,
                    ..pos(1, 1)
                },
                retrigger: false
            }
        );
        // Nothing fired yet (snoozed at once): the re-entry is the first step.
        let d = decide(true, pos(0, 0), None, IncidentNow::Triggered, 100, 500);
        assert_eq!(
            d,
            Decision::Fire {
                pos: Position {
                    round: 1,
                    ..pos(0, 0)
                },
                retrigger: false
            }
        );
    }

    #[test]
    fn rounds_carry_through_the_steps_that_follow() {
        let p = policy(&[10, 20], 0);
        let r1 = Position {
            round: 1,
            ..pos(0, 0)
        };
        assert_eq!(
            after(&p, r1, 0),
            Some((
                Position {
                    round: 1,
                    ..pos(1, 0)
                },
                10
            ))
        );
    }

    #[test]
    fn page_keys_differ_by_every_part() {
        let base = page_key("inc_1", pos(0, 0), "ana", "sms");
        assert_eq!(base, "page:inc_1:0:0:0:ana:sms");
        for other in [
            page_key("inc_2", pos(0, 0), "ana", "sms"),
            page_key("inc_1", pos(1, 0), "ana", "sms"),
            page_key("inc_1", pos(0, 1), "ana", "sms"),
            page_key("inc_1", pos(0, 0), "ben", "sms"),
            page_key("inc_1", pos(0, 0), "ana", "voice"),
            page_key(
                "inc_1",
                Position {
                    round: 1,
                    ..pos(0, 0)
                },
                "ana",
                "sms",
            ),
        ] {
            assert_ne!(other, base);
        }
        assert_eq!(base, page_key("inc_1", pos(0, 0), "ana", "sms"), "stable");
    }

    #[test]
    fn notification_rules_in_time_order_each_method_once() {
        let rules = [
            Rule {
                method: "voice".into(),
                after: 120_000,
            },
            Rule {
                method: "sms".into(),
                after: 0,
            },
            Rule {
                method: "sms".into(),
                after: 600_000,
            },
            Rule {
                method: "email".into(),
                after: -1,
            },
        ];
        assert_eq!(
            notifications(&rules, 1_000, "inbox"),
            [
                ("sms".to_string(), 1_000),
                ("email".to_string(), 1_000),
                ("voice".to_string(), 121_000),
            ]
        );
        assert_eq!(
            notifications(&[], 5, "sms"),
            [("sms".to_string(), 5)],
            "no rules: the fallback at once"
        );
    }
}
