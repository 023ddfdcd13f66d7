//! Who is on call at an instant: rotations (shifts of hours, days or weeks handed off at a
//! local time), layers restricted by weekday and time-of-day rules, and overrides that add
//! or replace a person for a window. Pure: a schedule and an instant in, people out.
//!
//! Shifts of days and weeks are counted in the schedule's civil time, so a daily 09:00
//! handoff stays at 09:00 local across a DST change (that shift is 23 or 25 hours long). A
//! handoff time a DST change skips is moved forward by the gap (02:30 on a night that jumps
//! from 02:00 to 03:00 hands off at 03:30); one it repeats is taken at its first occurrence.
//! Shifts of hours are counted in elapsed time. The edges of a layer's rules are wall-clock
//! times: on a night that repeats an hour, a rule ending inside it ends at both occurrences.

use crate::core::types::Millis;
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;

/// How long each participant's shift lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    Hours(u32),
    Days(u32),
    Weeks(u32),
}

/// Participants take shifts in order from `start` (a local date and handoff time).
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    pub participants: Vec<String>,
    pub shift: Shift,
    pub start: DateTime,
}

/// A layer is on call during its rules (every time when it has none).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The days on which the window starts.
    pub days: Vec<Weekday>,
    pub from: Time,
    /// Equal to `from`: the whole day; earlier than `from`: until `to` the next day.
    pub to: Time,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub rotation: Rotation,
    pub rules: Vec<Rule>,
}

/// For `[start, end)`: `person` is on call too (`replaces` none), or takes the place of
/// `replaces` when that one is on call.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub start: Millis,
    pub end: Millis,
    pub person: String,
    pub replaces: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub tz: TimeZone,
    /// The last layer with someone on call wins (layers are stacked, the later on top).
    pub layers: Vec<Layer>,
    pub overrides: Vec<Override>,
}

/// The instant a local date-time names in `tz` (in a gap: moved forward by the gap's
/// length; in a fold: the first).
fn instant(tz: &TimeZone, dt: DateTime) -> Option<Millis> {
    tz.to_ambiguous_zoned(dt)
        .compatible()
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

fn local(tz: &TimeZone, at: Millis) -> Option<DateTime> {
    jiff::Timestamp::from_millisecond(at)
        .ok()
        .map(|t| t.to_zoned(tz.clone()).datetime())
}

/// The index of the shift running at `at` (counted from 0 at `start`), none before it.
pub fn shift_index(r: &Rotation, tz: &TimeZone, at: Millis) -> Option<u64> {
    let begin = instant(tz, r.start)?;
    if at < begin {
        return None;
    }
    let days_per = match r.shift {
        Shift::Hours(h) => {
            let len = i64::from(h.max(1)) * 3_600_000;
            return u64::try_from((at - begin) / len).ok();
        }
        Shift::Days(d) => i64::from(d.max(1)),
        Shift::Weeks(w) => 7 * i64::from(w.max(1)),
    };
    let today = local(tz, at)?.date();
    let mut days = r.start.date().until(today).ok()?.get_days() as i64;
    // Before today's handoff instant, yesterday's shift still runs.
    let handoff = instant(tz, today.to_datetime(r.start.time()))?;
    if at < handoff {
        days -= 1;
    }
    u64::try_from(days.max(0) / days_per).ok()
}

/// Who the rotation has on call at `at`.
pub fn rotation_at<'a>(r: &'a Rotation, tz: &TimeZone, at: Millis) -> Option<&'a str> {
    if r.participants.is_empty() {
        return None;
    }
    let i = shift_index(r, tz, at)?;
    let n = r.participants.len() as u64;
    r.participants.get((i % n) as usize).map(String::as_str)
}

fn window_holds(rule: &Rule, started: Date, at: DateTime) -> bool {
    if !rule.days.contains(&started.weekday()) {
        return false;
    }
    let start = started.to_datetime(rule.from);
    let end_day = if rule.to <= rule.from {
        match started.tomorrow() {
            Ok(d) => d,
            Err(_) => return false,
        }
    } else {
        started
    };
    let end = end_day.to_datetime(rule.to);
    start <= at && at < end
}

/// Whether a layer's rules let it be on call at `at` (local wall-clock time).
pub fn layer_active(l: &Layer, tz: &TimeZone, at: Millis) -> bool {
    if l.rules.is_empty() {
        return true;
    }
    let Some(now) = local(tz, at) else {
        return false;
    };
    let today = now.date();
    l.rules.iter().any(|r| {
        window_holds(r, today, now) || today.yesterday().is_ok_and(|y| window_holds(r, y, now))
    })
}

/// Who is on call at `at`: the top layer with someone on call, then the overrides in force
/// (in order). Nobody is an empty list.
pub fn on_call(s: &Schedule, at: Millis) -> Vec<String> {
    let mut people: Vec<String> = s
        .layers
        .iter()
        .rev()
        .filter(|l| layer_active(l, &s.tz, at))
        .find_map(|l| rotation_at(&l.rotation, &s.tz, at))
        .map(|p| vec![p.to_string()])
        .unwrap_or_default();
    for o in s.overrides.iter().filter(|o| o.start <= at && at < o.end) {
        match &o.replaces {
            Some(who) => {
                if let Some(slot) = people.iter_mut().find(|p| *p == who) {
                    *slot = o.person.clone();
                }
            }
            None => people.push(o.person.clone()),
        }
    }
    let mut seen = std::collections::HashSet::new();
    people.retain(|p| seen.insert(p.clone()));
    people
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
