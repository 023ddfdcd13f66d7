//! What a person's SMS reply or keypress means. Pages to a phone say `Reply 3a to
//! acknowledge, 3r to resolve`; a bare `a` acknowledges the newest open page to that phone;
//! `STOP` (and its usual synonyms) ends SMS pages to it. Calls say "press 4 to acknowledge,
//! 6 to resolve". Pure.

use crate::core::types::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Acknowledge,
    Resolve,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `3a`, `3 a`, `3A`, `3ack`, `3r`, `3 resolve`…
    Code(i64, Act),
    /// `a` or `ack`: the newest page to this phone still waiting for someone.
    Bare(Act),
    /// STOP, UNSUBSCRIBE, 退订, TD…: no more SMS pages to this phone.
    Stop,
    Unknown,
}

fn act(word: &str) -> Option<Act> {
    match word {
        // `aa` / `rr`: "all" of a bundle, as GoAlert writes it (the bundle's code names them all).
        "a" | "aa" | "ack" | "acknowledge" | "确认" => Some(Act::Acknowledge),
        "r" | "rr" | "res" | "resolve" | "resolved" | "解决" => Some(Act::Resolve),
        _ => None,
    }
}

pub fn parse(text: &str) -> Reply {
    let t = text.trim().trim_end_matches(['.', '!']).to_lowercase();
    if matches!(
        t.as_str(),
        "stop" | "stopall" | "unsubscribe" | "cancel" | "end" | "quit" | "td" | "退订"
    ) {
        return Reply::Stop;
    }
    let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
    let rest = t[digits.len()..].trim();
    if digits.is_empty() {
        return match act(rest) {
            Some(Act::Acknowledge) => Reply::Bare(Act::Acknowledge),
            _ => Reply::Unknown,
        };
    }
    match (digits.parse::<i64>(), act(rest)) {
        (Ok(n), Some(a)) if (1..=9999).contains(&n) => Reply::Code(n, a),
        _ => Reply::Unknown,
    }
}

/// What a key pressed during a page's call means.
pub fn keypress(digits: &str) -> Option<Act> {
    match digits.trim() {
        "4" => Some(Act::Acknowledge),
        "6" => Some(Act::Resolve),
        _ => None,
    }
}

/// Whether one more answer may go to a phone that already had answers at `sent` (times
/// within the last hour are kept there, older ones dropped), at most `per_hour`.
pub fn may_answer(sent: &mut Vec<Millis>, now: Millis, per_hour: u32) -> bool {
    sent.retain(|t| now - *t < 3_600_000);
    if sent.len() >= per_hour as usize {
        return false;
    }
    sent.push(now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_with_actions_in_the_forms_people_type() {
        for (s, want) in [
            ("3a", Reply::Code(3, Act::Acknowledge)),
            (" 3A ", Reply::Code(3, Act::Acknowledge)),
            ("3 a", Reply::Code(3, Act::Acknowledge)),
            ("12ack", Reply::Code(12, Act::Acknowledge)),
            ("3r", Reply::Code(3, Act::Resolve)),
            ("9aa", Reply::Code(9, Act::Acknowledge)),
            ("9 rr", Reply::Code(9, Act::Resolve)),
            ("3 resolve.", Reply::Code(3, Act::Resolve)),
            ("7确认", Reply::Code(7, Act::Acknowledge)),
            ("a", Reply::Bare(Act::Acknowledge)),
            ("ACK", Reply::Bare(Act::Acknowledge)),
        ] {
            assert_eq!(parse(s), want, "{s:?}");
        }
    }

    #[test]
    fn stop_and_its_synonyms() {
        for s in ["STOP", "stop", "Unsubscribe", "TD", "退订"] {
            assert_eq!(parse(s), Reply::Stop, "{s}");
        }
    }

    #[test]
    fn anything_else_means_nothing() {
        for s in [
            "",
            "hello",
            "3",
            "3x",
            "0a",
            "99999a",
            "r",
            "a3",
            "3a please",
            "１a",
        ] {
            assert_eq!(parse(s), Reply::Unknown, "{s:?}");
        }
    }

    #[test]
    fn keys_four_and_six() {
        assert_eq!(keypress("4"), Some(Act::Acknowledge));
        assert_eq!(keypress("6"), Some(Act::Resolve));
        assert_eq!(keypress("1"), None);
        assert_eq!(keypress("44"), None);
    }

    #[test]
    fn answers_are_bounded_per_hour() {
        let mut sent = Vec::new();
        assert!(may_answer(&mut sent, 0, 2));
        assert!(may_answer(&mut sent, 1, 2));
        assert!(!may_answer(&mut sent, 2, 2));
        assert!(
            may_answer(&mut sent, 3_600_000, 2),
            "the first left the hour"
        );
    }
}
