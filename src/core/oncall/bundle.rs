//! Bundles, decided purely: when the pages held for one person and contact method go out,
//! and what the one message says — the incidents by severity (the most severe first), a
//! count of the rest, one code for all and per-incident codes for the first few, and why
//! they came together.

use crate::core::incident::Severity;
use crate::core::types::Millis;

/// One held row, as far as timing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub created_at: Millis,
    pub not_before: Option<Millis>,
    pub hold_until: Millis,
}

/// When the held rows of one person and method go out: when the first of them must (its
/// window ends) — but while bundles keep going to that person, each waits twice as long
/// after the one before as that one waited after its own predecessor (5 s, 10 s, 20 s …),
/// at most `max_gap`. `recent`: when the latest bundles to that person and method went
/// (any order); a bundle more than `max_gap` before the first held row began no run.
/// `None`: nothing held.
pub fn due(held: &[Held], recent: &[Millis], max_gap: Millis) -> Option<Millis> {
    let first = held.iter().map(|h| h.hold_until).min()?;
    let created = held.iter().map(|h| h.created_at).min()?;
    let window = held
        .iter()
        .map(|h| h.hold_until - h.not_before.unwrap_or(h.created_at).max(h.created_at))
        .min()
        .unwrap_or(0)
        .max(0);
    let Some(last) = recent
        .iter()
        .copied()
        .max()
        .filter(|l| created - l <= max_gap)
    else {
        return Some(first);
    };
    let before = recent
        .iter()
        .copied()
        .filter(|t| *t < last)
        .max()
        .map(|p| last - p)
        .filter(|g| *g <= max_gap.max(window).saturating_mul(2));
    let gap = before
        .unwrap_or(window)
        .saturating_mul(2)
        .max(window)
        .min(max_gap);
    Some(first.max(last.saturating_add(gap)))
}

/// Where the run of bundles that ends at `at` began: walking back over `earlier` (when
/// the bundles before went, any order) while each is within `max_gap` of the next. A
/// bundle's code answers the pages of the whole run — one reply for a whole storm.
pub fn streak_start(earlier: &[Millis], at: Millis, max_gap: Millis) -> Millis {
    let mut times: Vec<Millis> = earlier.iter().copied().filter(|t| *t < at).collect();
    times.sort_unstable_by(|a, b| b.cmp(a));
    let mut start = at;
    for t in times {
        if start - t > max_gap {
            break;
        }
        start = t;
    }
    start
}

/// One incident in a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub severity: Severity,
    pub number: i64,
    pub title: String,
    /// Its own reply code (SMS pages).
    pub code: Option<i64>,
}

/// The bundle's items, the most severe first, then oldest.
pub fn ordered(mut items: Vec<Item>) -> Vec<Item> {
    items.sort_by_key(|i| (i.severity, i.number));
    items.dedup_by_key(|i| i.number);
    items
}

/// `P0 ×3, P1 ×50`: how many of each severity.
pub fn counts(items: &[Item]) -> String {
    let mut out = Vec::new();
    for s in [Severity::P0, Severity::P1, Severity::P2, Severity::P3] {
        let n = items.iter().filter(|i| i.severity == s).count();
        if n > 0 {
            out.push(format!("{s} ×{n}"));
        }
    }
    out.join(", ")
}

/// How long the pages of a bundle took to gather, for "why they came together".
pub fn span_text(ms: Millis) -> String {
    let s = (ms.max(0) + 999) / 1000;
    if s < 120 {
        format!("{s} s")
    } else {
        format!("{} min", (s + 59) / 60)
    }
}

/// What a bundle of pages says on a contact method: `(subject, text)`. `listed`: how many
/// incidents are named one by one (the rest are counted); `code`: the reply code that
/// answers them all; `link`: one link for all.
pub fn page_text(
    items: &[Item],
    earlier_open: usize,
    method: &str,
    code: Option<i64>,
    link: Option<&str>,
    span_ms: Millis,
    drill: bool,
) -> (String, String) {
    let n = items.len();
    let all = n + earlier_open;
    let all_text = if earlier_open > 0 {
        format!("all {all} open ({n} here, {earlier_open} from earlier messages)")
    } else {
        format!("all {n}")
    };
    let top = items.first().map(|i| i.severity).unwrap_or(Severity::P3);
    let drill = if drill { "[DRILL] " } else { "" };
    let subject = format!("{drill}[{top}] {n} incidents for you ({})", counts(items));
    let why = format!(
        "{n} pages within {} came as one message.",
        span_text(span_ms)
    );
    if method == "voice" {
        let first = items
            .first()
            .map(|i| {
                format!(
                    " The most severe: {} incident {}: {}.",
                    i.severity, i.number, i.title
                )
            })
            .unwrap_or_default();
        let spoken = counts(items)
            .replace(" ×", " incidents: ")
            .replace(", ", "; ");
        return (
            subject,
            format!(
                "{drill}This is a Herald page. {n} incidents for you. {spoken}.{first} Press 4 to acknowledge all {all}, 6 to resolve all."
            ),
        );
    }
    let listed = match method {
        "sms" | "push" => 3,
        _ => 50,
    };
    let mut lines = vec![format!("{subject}. {why}")];
    for i in items.iter().take(listed) {
        let c = i.code.map(|c| format!(" (reply {c}a)")).unwrap_or_default();
        lines.push(format!("#{} [{}] {}{c}", i.number, i.severity, i.title));
    }
    if n > listed {
        lines.push(format!(
            "+{} more ({})",
            n - listed,
            counts(&items[listed..])
        ));
    }
    if let Some(c) = code {
        lines.push(format!(
            "Reply {c}a to acknowledge {all_text}, {c}r to resolve them"
        ));
    }
    if let Some(l) = link {
        lines.push(format!("Acknowledge or resolve all: {l}"));
    }
    (subject, lines.join("\n"))
}

/// What a bundle of notices (acknowledged by, resolved) says: the first ten, a count of
/// the rest.
pub fn notice_text(notes: &[String], span_ms: Millis) -> (String, String) {
    let n = notes.len();
    let mut lines = vec![format!(
        "{n} updates within {} (one message):",
        span_text(span_ms)
    )];
    lines.extend(notes.iter().take(10).cloned());
    if n > 10 {
        lines.push(format!("+{} more", n - 10));
    }
    (format!("[Herald] {n} updates"), lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(created: Millis, window: Millis) -> Held {
        Held {
            created_at: created,
            not_before: None,
            hold_until: created + window,
        }
    }

    #[test]
    fn the_first_window_to_end_sends_them_all() {
        assert_eq!(due(&[], &[], 60_000), None);
        // A P3 held 5 min, then a P0 held 5 s: the P0's window ends first.
        assert_eq!(
            due(&[held(0, 300_000), held(1_000, 5_000)], &[], 60_000),
            Some(6_000)
        );
    }

    #[test]
    fn bundles_in_a_row_wait_twice_as_long_each_up_to_the_cap() {
        let h = [held(10_000, 5_000)];
        // One bundle went at 5 s: the next waits 10 s after it.
        assert_eq!(due(&h, &[5_000], 60_000), Some(15_000));
        // Two went, 10 s apart: 20 s after the last.
        assert_eq!(due(&h, &[5_000, 15_000], 60_000), Some(35_000));
        // 40 s apart: never more than the cap after the last.
        let h = [held(101_000, 5_000)];
        assert_eq!(due(&h, &[0, 60_000, 100_000], 60_000), Some(160_000));
        // Its own window ending later still counts.
        assert_eq!(due(&[held(0, 300_000)], &[1_000], 60_000), Some(300_000));
        // A bundle long before begins no run.
        assert_eq!(due(&[held(200_000, 5_000)], &[0], 60_000), Some(205_000));
    }

    #[test]
    fn a_run_of_bundles_goes_back_while_each_is_close_to_the_next() {
        // Bundles at 0, 50, 100 s, then one an hour before: the run at 150 s starts at 0.
        let earlier = [100_000, -3_600_000, 0, 50_000, 200_000];
        assert_eq!(streak_start(&earlier, 150_000, 60_000), 0);
        assert_eq!(streak_start(&earlier, 150_000, 40_000), 150_000);
        assert_eq!(streak_start(&[], 5, 60_000), 5);
    }

    #[test]
    fn a_paging_rules_delay_is_not_part_of_the_window() {
        let h = Held {
            created_at: 0,
            not_before: Some(120_000),
            hold_until: 125_000,
        };
        assert_eq!(due(&[h], &[], 60_000), Some(125_000));
        // The doubling starts from the 5 s window, not from 125 s.
        assert_eq!(due(&[h], &[121_000], 60_000), Some(131_000));
    }

    fn item(s: Severity, n: i64, code: Option<i64>) -> Item {
        Item {
            severity: s,
            number: n,
            title: format!("t{n}"),
            code,
        }
    }

    #[test]
    fn the_most_severe_come_first_and_the_rest_are_counted() {
        let items = ordered(vec![
            item(Severity::P3, 1, Some(1)),
            item(Severity::P0, 9, Some(2)),
            item(Severity::P1, 3, Some(3)),
            item(Severity::P0, 4, Some(4)),
            item(Severity::P1, 5, Some(5)),
        ]);
        assert_eq!(
            items.iter().map(|i| i.number).collect::<Vec<_>>(),
            [4, 9, 3, 5, 1]
        );
        let (subject, text) = page_text(&items, 0, "sms", Some(7), None, 12_300, false);
        assert_eq!(subject, "[P0] 5 incidents for you (P0 ×2, P1 ×2, P3 ×1)");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("5 pages within 13 s came as one message."));
        assert_eq!(lines[1], "#4 [P0] t4 (reply 4a)");
        assert_eq!(lines[3], "#3 [P1] t3 (reply 3a)");
        assert_eq!(lines[4], "+2 more (P1 ×1, P3 ×1)");
        assert_eq!(
            lines[5],
            "Reply 7a to acknowledge all 5, 7r to resolve them"
        );
        let (_, text) = page_text(&items, 40, "sms", Some(7), None, 12_300, false);
        assert!(text.ends_with(
            "Reply 7a to acknowledge all 45 open (5 here, 40 from earlier messages), 7r to resolve them"
        ));
        // Email lists them all, with the one link.
        let (_, text) = page_text(&items, 0, "email", None, Some("https://h/a/x"), 1, true);
        assert!(text.starts_with("[DRILL] [P0] 5 incidents"));
        assert!(text.contains("#1 [P3] t1 (reply 1a)"));
        assert!(!text.contains("more"));
        assert!(text.ends_with("Acknowledge or resolve all: https://h/a/x"));
    }

    #[test]
    fn a_call_says_the_counts_and_the_most_severe_once() {
        let items = ordered(vec![
            item(Severity::P1, 3, None),
            item(Severity::P0, 4, None),
        ]);
        let (_, said) = page_text(&items, 0, "voice", None, None, 1_000, false);
        assert_eq!(
            said,
            "This is a Herald page. 2 incidents for you. P0 incidents: 1; P1 incidents: 1. \
             The most severe: P0 incident 4: t4. Press 4 to acknowledge all 2, 6 to resolve all."
        );
    }

    #[test]
    fn notices_list_ten_and_count_the_rest() {
        let notes: Vec<String> = (1..=12).map(|i| format!("#{i} resolved")).collect();
        let (subject, text) = notice_text(&notes, 150_000);
        assert_eq!(subject, "[Herald] 12 updates");
        assert!(text.starts_with("12 updates within 3 min"));
        assert!(text.ends_with("#10 resolved\n+2 more"));
        assert_eq!(span_text(0), "0 s");
        assert_eq!(span_text(1), "1 s");
    }
}
