//! Quiet hours: a daily window in a contact's own time zone during which messages that are
//! not `critical` wait. Pure: the instant a message may go, from the instant it would.

use super::types::Millis;
use jiff::civil::{DateTime, Time};
use jiff::tz::TimeZone;

/// A daily window, `start` included and `end` excluded, in minutes after local midnight. A
/// window whose start is later than its end crosses midnight (`22:00`–`08:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u16,
    pub end: u16,
}

/// `"HH:MM"` (24-hour clock) as minutes after midnight.
pub fn parse_hhmm(s: &str) -> Result<u16, String> {
    let bad = || format!("`{s}` is not a time of day such as 22:00 (HH:MM, 24-hour clock)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl Window {
    pub fn new(start: &str, end: &str) -> Result<Window, (&'static str, String)> {
        let start = parse_hhmm(start).map_err(|m| ("start", m))?;
        let end = parse_hhmm(end).map_err(|m| ("end", m))?;
        if start == end {
            return Err(("end", "must differ from start".into()));
        }
        Ok(Window { start, end })
    }

    fn holds(&self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

/// When a message due at `at` may go to a person keeping `window` in `tz`: `at` itself
/// outside the window, else the window's end (the next local `end` after `at`). A local end
/// time that a DST change skips is taken as the first instant after the gap.
pub fn release_at(at: Millis, tz: &TimeZone, window: Window) -> Millis {
    let Ok(ts) = jiff::Timestamp::from_millisecond(at) else {
        return at;
    };
    let local = ts.to_zoned(tz.clone());
    let minute = (local.hour() as u16) * 60 + local.minute() as u16;
    if !window.holds(minute) {
        return at;
    }
    let Ok(end) = Time::new((window.end / 60) as i8, (window.end % 60) as i8, 0, 0) else {
        return at;
    };
    // The end is later today when the window has not crossed midnight yet at `at`.
    let day = if minute < window.end {
        Some(local.date())
    } else {
        local.date().tomorrow().ok()
    };
    let Some(day) = day else {
        return at;
    };
    let end: DateTime = day.to_datetime(end);
    // An end in the hour a DST change repeats: its first occurrence, unless that is already
    // past (the message came in the second), then the second.
    let ambiguous = tz.to_ambiguous_zoned(end);
    let first = ambiguous
        .clone()
        .compatible()
        .map(|z| z.timestamp().as_millisecond());
    match first {
        Ok(t) if t > at => t,
        _ => ambiguous
            .later()
            .map(|z| z.timestamp().as_millisecond().max(at))
            .unwrap_or(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> Millis {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }
    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }
    fn night() -> Window {
        Window::new("22:00", "08:00").unwrap()
    }

    #[test]
    fn times_of_day_are_parsed_strictly() {
        assert_eq!(parse_hhmm("00:00"), Ok(0));
        assert_eq!(parse_hhmm("22:30"), Ok(1350));
        assert_eq!(parse_hhmm("23:59"), Ok(1439));
        for bad in [
            "24:00", "7:00", "07:60", "0700", "07:00:00", "", "aa:bb", "-1:00", "+1:05", "01:+5",
        ] {
            assert!(parse_hhmm(bad).is_err(), "{bad}");
        }
        assert_eq!(Window::new("08:00", "08:00").unwrap_err().0, "end");
        assert_eq!(Window::new("8", "09:00").unwrap_err().0, "start");
    }

    #[test]
    fn outside_the_window_nothing_waits() {
        let berlin = tz("Europe/Berlin");
        // 12:00 UTC = 13:00 in Berlin in winter.
        let at = ms("2026-01-15T12:00:00Z");
        assert_eq!(release_at(at, &berlin, night()), at);
        // 07:00 UTC = 08:00 in Berlin: the end is excluded.
        let at = ms("2026-01-15T07:00:00Z");
        assert_eq!(release_at(at, &berlin, night()), at);
    }

    #[test]
    fn inside_the_window_the_message_waits_for_its_end() {
        let berlin = tz("Europe/Berlin");
        // 23:30 Berlin (22:30 UTC) waits for 08:00 Berlin next day (07:00 UTC).
        assert_eq!(
            release_at(ms("2026-01-15T22:30:00Z"), &berlin, night()),
            ms("2026-01-16T07:00:00Z")
        );
        // 03:00 Berlin waits for 08:00 the same day.
        assert_eq!(
            release_at(ms("2026-01-16T02:00:00Z"), &berlin, night()),
            ms("2026-01-16T07:00:00Z")
        );
        // The start is included: 22:00 Berlin exactly.
        assert_eq!(
            release_at(ms("2026-01-15T21:00:00Z"), &berlin, night()),
            ms("2026-01-16T07:00:00Z")
        );
    }

    #[test]
    fn a_window_within_one_day() {
        let shanghai = tz("Asia/Shanghai");
        let lunch = Window::new("12:00", "13:30").unwrap();
        // 12:10 Shanghai = 04:10 UTC: waits for 13:30 Shanghai = 05:30 UTC.
        assert_eq!(
            release_at(ms("2026-06-01T04:10:00Z"), &shanghai, lunch),
            ms("2026-06-01T05:30:00Z")
        );
        assert_eq!(
            release_at(ms("2026-06-01T06:00:00Z"), &shanghai, lunch),
            ms("2026-06-01T06:00:00Z")
        );
    }

    /// The night of 28–29 March 2026: Berlin goes from UTC+1 to UTC+2 at 02:00 local.
    #[test]
    fn across_the_spring_dst_change() {
        let berlin = tz("Europe/Berlin");
        // 23:00 local on the 28th (UTC+1) = 22:00 UTC; the end, 08:00 local on the 29th, is
        // already UTC+2: 06:00 UTC, seven hours later rather than nine.
        assert_eq!(
            release_at(ms("2026-03-28T22:00:00Z"), &berlin, night()),
            ms("2026-03-29T06:00:00Z")
        );
        // An end inside the skipped hour (02:30 local does not exist that night) is taken
        // as the first instant after it, 03:30 local = 01:30 UTC.
        let short = Window::new("01:00", "02:30").unwrap();
        assert_eq!(
            release_at(ms("2026-03-29T00:15:00Z"), &berlin, short),
            ms("2026-03-29T01:30:00Z")
        );
    }

    /// The night of 24–25 October 2026: Berlin goes back from UTC+2 to UTC+1 at 03:00 local.
    #[test]
    fn across_the_autumn_dst_change() {
        let berlin = tz("Europe/Berlin");
        // 23:00 local on the 24th (UTC+2) = 21:00 UTC; 08:00 local on the 25th is UTC+1:
        // 07:00 UTC, ten hours later.
        assert_eq!(
            release_at(ms("2026-10-24T21:00:00Z"), &berlin, night()),
            ms("2026-10-25T07:00:00Z")
        );
        // A window ending inside the repeated hour: a message in the second 02:15 waits for
        // the second 02:30 (01:30 UTC), not the first, which is past.
        let short = Window::new("01:00", "02:30").unwrap();
        assert_eq!(
            release_at(ms("2026-10-25T01:15:00Z"), &berlin, short),
            ms("2026-10-25T01:30:00Z")
        );
        assert_eq!(
            release_at(ms("2026-10-25T00:15:00Z"), &berlin, short),
            ms("2026-10-25T00:30:00Z"),
            "in the first 02:15, the first 02:30"
        );
        // 02:30 local happens twice; both are inside the window and wait for 08:00.
        for first_or_second in ["2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"] {
            assert_eq!(
                release_at(ms(first_or_second), &berlin, night()),
                ms("2026-10-25T07:00:00Z")
            );
        }
    }

    #[test]
    fn utc_and_far_zones() {
        let utc = TimeZone::UTC;
        assert_eq!(
            release_at(ms("2026-05-05T23:00:00Z"), &utc, night()),
            ms("2026-05-06T08:00:00Z")
        );
        // Pacific/Kiritimati is UTC+14: 23:00 local on the 5th is 09:00 UTC on the 5th.
        let k = tz("Pacific/Kiritimati");
        assert_eq!(
            release_at(ms("2026-05-05T09:00:00Z"), &k, night()),
            ms("2026-05-05T18:00:00Z")
        );
    }
}
