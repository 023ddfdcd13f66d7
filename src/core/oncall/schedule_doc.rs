//! A schedule as people write it (the API's JSON, `herald apply` files) and its checks:
//! every fault named by its field, then compiled into the pure [`Schedule`].
//!
//! ```json
//! {"name": "Database primary", "time_zone": "Europe/Berlin",
//!  "layers": [{"rotation": "weekly", "shift_length": 1, "start": "2026-01-05T09:00",
//!              "participants": ["ct_ana", "ct_ben", "ct_cai"],
//!              "rules": [{"days": ["mon", "tue"], "from": "09:00", "to": "17:00"}]}],
//!  "overrides": [{"start": "2026-03-29T00:00:00Z", "end": "2026-03-30T00:00:00Z",
//!                 "person": "ct_dan", "replaces": "ct_ben"}]}
//! ```

use super::schedule::{Layer, Override, Rotation, Rule, Schedule, Shift};
use crate::core::addresses::valid_user;
use crate::core::types::parse_rfc3339;
use crate::core::validate::FieldError;
use jiff::civil::{DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

pub const MAX_LAYERS: usize = 10;
pub const MAX_PARTICIPANTS: usize = 100;
pub const MAX_OVERRIDES: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDoc {
    pub name: String,
    pub time_zone: String,
    #[serde(default)]
    pub layers: Vec<LayerDoc>,
    #[serde(default)]
    pub overrides: Vec<OverrideDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerDoc {
    /// `hourly`, `daily` or `weekly`.
    pub rotation: String,
    #[serde(default = "one")]
    pub shift_length: u32,
    /// Local date and handoff time, `2026-01-05T09:00`.
    pub start: String,
    pub participants: Vec<String>,
    #[serde(default)]
    pub rules: Vec<RuleDoc>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    pub days: Vec<String>,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideDoc {
    pub start: String,
    pub end: String,
    pub person: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

fn time_of_day(s: &str) -> Result<Time, String> {
    let m = crate::core::quiet::parse_hhmm(s)?;
    Time::new((m / 60) as i8, (m % 60) as i8, 0, 0).map_err(|e| e.to_string())
}

fn start_of(s: &str) -> Result<DateTime, String> {
    let bad = || format!("`{s}` is not a local date and time such as 2026-01-05T09:00");
    let (date, time) = s.split_once('T').ok_or_else(bad)?;
    // Only YYYY-MM-DD (the parser also takes other ISO 8601 forms the document does not name).
    let shape = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !shape {
        return Err(bad());
    }
    let date: jiff::civil::Date = date.parse().map_err(|_| bad())?;
    if date.year() < 2000 || date.year() > 2999 {
        return Err("must be a date in the years 2000 to 2999".into());
    }
    Ok(date.to_datetime(time_of_day(time).map_err(|_| bad())?))
}

impl ScheduleDoc {
    /// The contact ids it names (the API checks they exist).
    pub fn people(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for (j, p) in l.participants.iter().enumerate() {
                out.push((format!("layers[{i}].participants[{j}]"), p.as_str()));
            }
        }
        for (i, o) in self.overrides.iter().enumerate() {
            out.push((format!("overrides[{i}].person"), o.person.as_str()));
            if let Some(r) = &o.replaces {
                out.push((format!("overrides[{i}].replaces"), r.as_str()));
            }
        }
        out
    }

    /// Checks every field and compiles the schedule; all faults at once.
    pub fn compile(&self) -> Result<Schedule, Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut bad = |f: String, m: String| errs.push(FieldError::new(f, m));
        if let Some(m) = super::name_fault(&self.name) {
            bad("name".into(), m);
        }
        let tz = match TimeZone::get(&self.time_zone) {
            Ok(tz) if crate::core::contact_checks::known_time_zone(&self.time_zone) => Some(tz),
            _ => {
                bad(
                    "time_zone".into(),
                    format!(
                        "`{}` is not an IANA time zone such as Europe/Berlin",
                        self.time_zone
                    ),
                );
                None
            }
        };
        if self.layers.len() > MAX_LAYERS {
            bad("layers".into(), format!("at most {MAX_LAYERS} layers"));
        }
        if self.overrides.len() > MAX_OVERRIDES {
            bad(
                "overrides".into(),
                format!("at most {MAX_OVERRIDES} overrides"),
            );
        }
        let mut layers = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let f = |k: &str| format!("layers[{i}].{k}");
            let shift = match (l.rotation.as_str(), l.shift_length) {
                (_, 0) | (_, 10_001..) => {
                    bad(f("shift_length"), "must be 1 to 10000".into());
                    None
                }
                ("hourly", n) => Some(Shift::Hours(n)),
                ("daily", n) => Some(Shift::Days(n)),
                ("weekly", n) => Some(Shift::Weeks(n)),
                _ => {
                    bad(f("rotation"), "must be hourly, daily or weekly".into());
                    None
                }
            };
            let start = start_of(&l.start).map_err(|m| bad(f("start"), m)).ok();
            if l.participants.is_empty() || l.participants.len() > MAX_PARTICIPANTS {
                bad(
                    f("participants"),
                    format!("must name 1 to {MAX_PARTICIPANTS} contacts"),
                );
            }
            for (j, p) in l.participants.iter().enumerate() {
                if let Err(m) = valid_user(p) {
                    bad(f(&format!("participants[{j}]")), m);
                }
            }
            let mut rules = Vec::new();
            for (j, r) in l.rules.iter().enumerate() {
                let g = |k: &str| format!("layers[{i}].rules[{j}].{k}");
                let days: Vec<Weekday> = r.days.iter().filter_map(|d| weekday(d)).collect();
                if r.days.is_empty() || days.len() != r.days.len() {
                    bad(
                        g("days"),
                        "must list days among mon tue wed thu fri sat sun".into(),
                    );
                }
                let from = time_of_day(&r.from).map_err(|m| bad(g("from"), m)).ok();
                let to = time_of_day(&r.to).map_err(|m| bad(g("to"), m)).ok();
                if let (Some(from), Some(to)) = (from, to) {
                    rules.push(Rule { days, from, to });
                }
            }
            if let (Some(shift), Some(start)) = (shift, start) {
                layers.push(Layer {
                    rotation: Rotation {
                        participants: l.participants.clone(),
                        shift,
                        start,
                    },
                    rules,
                });
            }
        }
        let mut overrides = Vec::new();
        for (i, o) in self.overrides.iter().enumerate() {
            let f = |k: &str| format!("overrides[{i}].{k}");
            let start = parse_rfc3339(&o.start).map_err(|m| bad(f("start"), m)).ok();
            let end = parse_rfc3339(&o.end).map_err(|m| bad(f("end"), m)).ok();
            if let (Some(s), Some(e)) = (start, end)
                && e <= s
            {
                bad(f("end"), "must be after start".into());
            }
            if let Err(m) = valid_user(&o.person) {
                bad(f("person"), m);
            }
            if let Some(r) = &o.replaces {
                if let Err(m) = valid_user(r) {
                    bad(f("replaces"), m);
                } else if *r == o.person {
                    bad(f("replaces"), "must be someone other than person".into());
                }
            }
            if let (Some(start), Some(end)) = (start, end) {
                overrides.push(Override {
                    start,
                    end,
                    person: o.person.clone(),
                    replaces: o.replaces.clone(),
                });
            }
        }
        match tz {
            Some(tz) if errs.is_empty() => Ok(Schedule {
                tz,
                layers,
                overrides,
            }),
            _ => Err(errs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: serde_json::Value) -> ScheduleDoc {
        serde_json::from_value(v).unwrap()
    }
    fn fields(d: &ScheduleDoc) -> Vec<String> {
        d.compile()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_documented_schedule_compiles_and_answers() {
        let d = doc(
            json!({"name": "Database primary", "time_zone": "Europe/Berlin",
            "layers": [{"rotation": "weekly", "start": "2026-03-16T09:00",
                        "participants": ["ana", "ben", "cai"]},
                       {"rotation": "daily", "start": "2026-01-01T00:00", "participants": ["night"],
                        "rules": [{"days": ["fri"], "from": "22:00", "to": "06:00"}]}],
            "overrides": [{"start": "2026-03-29T00:00:00Z", "end": "2026-03-30T00:00:00Z",
                           "person": "dan", "replaces": "ben"}]}),
        );
        let s = d.compile().unwrap();
        let at = |t: &str| t.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        assert_eq!(
            super::super::schedule::on_call(&s, at("2026-03-23T08:00:00Z")),
            ["ben"]
        );
        assert_eq!(
            super::super::schedule::on_call(&s, at("2026-03-29T12:00:00Z")),
            ["dan"]
        );
        assert_eq!(
            super::super::schedule::on_call(&s, at("2026-03-27T21:30:00Z")),
            ["night"]
        );
        assert_eq!(d.people().len(), 6);
        assert_eq!(d.people()[5], ("overrides[0].replaces".to_string(), "ben"));
    }

    #[test]
    fn every_fault_is_named_by_its_field() {
        let d = doc(json!({"name": " ", "time_zone": "Mars/Olympus",
            "layers": [{"rotation": "monthly", "start": "2026-13-01T09:00", "participants": []},
                       {"rotation": "daily", "shift_length": 0, "start": "2026-01-01T25:00",
                        "participants": ["ok", "has space"],
                        "rules": [{"days": ["funday"], "from": "9:00", "to": "17:60"}]}],
            "overrides": [{"start": "yesterday", "end": "2026-01-01T00:00:00Z", "person": ""},
                          {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z",
                           "person": "a", "replaces": "a"}]}));
        assert_eq!(
            fields(&d),
            [
                "name",
                "time_zone",
                "layers[0].rotation",
                "layers[0].start",
                "layers[0].participants",
                "layers[1].shift_length",
                "layers[1].start",
                "layers[1].participants[1]",
                "layers[1].rules[0].days",
                "layers[1].rules[0].from",
                "layers[1].rules[0].to",
                "overrides[0].start",
                "overrides[0].person",
                "overrides[1].end",
                "overrides[1].replaces",
            ]
        );
    }

    #[test]
    fn defaults_and_limits() {
        let d = doc(json!({"name": "n", "time_zone": "UTC",
            "layers": [{"rotation": "hourly", "start": "2026-01-01T00:00", "participants": ["a"]}]}));
        let s = d.compile().unwrap();
        assert_eq!(
            s.layers[0].rotation.shift,
            Shift::Hours(1),
            "shift_length 1 by default"
        );
        let many = doc(json!({"name": "n", "time_zone": "UTC",
            "layers": (0..11).map(|_| json!({"rotation": "daily", "start": "2026-01-01T00:00", "participants": ["a"]})).collect::<Vec<_>>()}));
        assert_eq!(fields(&many), ["layers"]);
        let old = doc(json!({"name": "n", "time_zone": "UTC",
            "layers": [{"rotation": "daily", "start": "1969-01-01T00:00", "participants": ["a"]}]}));
        assert_eq!(fields(&old), ["layers[0].start"]);
        // The start is YYYY-MM-DDTHH:MM and a day of the calendar, as the document's pattern says.
        for (start, ok) in [
            ("2028-02-29T23:59", true),
            ("2000-02-29T00:00", true),
            ("2026-02-29T09:00", false),
            ("2100-02-29T09:00", false),
            ("20260105T09:00", false),
            ("2026-1-05T09:00", false),
            ("2026-01-05T9:00", false),
        ] {
            let d = doc(json!({"name": "n", "time_zone": "UTC",
                "layers": [{"rotation": "daily", "start": start, "participants": ["a"]}]}));
            assert_eq!(fields(&d).is_empty(), ok, "{start}");
        }
        let unknown = serde_json::from_value::<ScheduleDoc>(
            json!({"name": "n", "time_zone": "UTC", "color": "red"}),
        );
        assert!(unknown.is_err(), "unknown fields are refused");
        // no layers and no overrides: a valid schedule with nobody on call
        let empty = doc(json!({"name": "n", "time_zone": "UTC"}));
        assert!(super::super::schedule::on_call(&empty.compile().unwrap(), 0).is_empty());
    }
}
