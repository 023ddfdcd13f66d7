//! The overview's live figures: what waits (by channel and priority), what is in flight,
//! send and error rates, dead letters, the mode, nodes and the last backup's age. Sent to
//! the page once a second over Server-Sent Events, formatted here so the script only
//! places text.

use crate::api::AppState;
use crate::core::types::{DeliveryStatus, Priority, now_millis};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Waiting {
    pub channel: String,
    pub priority: String,
    pub n: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Figures {
    pub queued: String,
    pub in_flight: String,
    /// Deliveries sent or delivered, in all (as storage still holds them).
    pub sent_total: String,
    pub dead_letters: String,
    pub sent_per_s: String,
    pub failed_per_s: String,
    pub mode: String,
    pub nodes: String,
    pub backup_age: String,
    pub waiting: Vec<Waiting>,
    /// When these were read (RFC 3339), for the "updated" stamp.
    pub at: String,
}

/// Finished counts a rate is taken from: (sent or delivered, failed, at ms).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mark {
    done: i64,
    failed: i64,
    at: i64,
}

/// Per second between two marks, as text; `—` before the second mark. Counts that went
/// down (retention purged old rows) count as no change.
pub fn rate(prev: Option<Mark>, now: Mark, pick: fn(&Mark) -> i64) -> String {
    match prev {
        Some(p) if now.at > p.at => {
            let d = (pick(&now) - pick(&p)).max(0) as f64;
            let per_s = d * 1000.0 / (now.at - p.at) as f64;
            if per_s >= 10.0 {
                format!("{per_s:.0}/s")
            } else {
                format!("{per_s:.1}/s")
            }
        }
        _ => "—".into(),
    }
}

/// A backup's age in words; `none yet` without one.
pub fn age(newest_ms: Option<i64>, now: i64) -> String {
    let Some(t) = newest_ms else {
        return "none yet".into();
    };
    let s = ((now - t) / 1000).max(0);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

type Cached = (std::time::Instant, Figures, Option<Mark>);

/// The figures for every open overview of this node: read at most once a second however
/// many are open (each stream would otherwise query storage on its own).
pub async fn shared(state: &AppState) -> Figures {
    use std::sync::{Mutex, OnceLock};
    use std::time::Duration;
    static CACHE: OnceLock<Mutex<std::collections::HashMap<String, Cached>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = state.node_id.clone();
    let prev = cache.lock().ok().and_then(|c| c.get(&key).cloned());
    if let Some((at, f, _)) = &prev
        && at.elapsed() < Duration::from_millis(900)
    {
        return f.clone();
    }
    // A rate is taken over the last few seconds, not since the last time someone looked.
    let mark = prev
        .filter(|(at, _, _)| at.elapsed() < Duration::from_secs(5))
        .and_then(|(_, _, m)| m);
    let (f, m) = read(state, mark).await;
    if let Ok(mut c) = cache.lock() {
        if c.len() > 64 {
            c.clear();
        }
        c.insert(key, (std::time::Instant::now(), f.clone(), m));
    }
    f
}

/// Reads the figures; `prev` is the mark of the previous reading (for rates).
pub async fn read(state: &AppState, prev: Option<Mark>) -> (Figures, Option<Mark>) {
    let now = now_millis();
    let mode = state
        .mode
        .read()
        .map(|m| m.mode.clone())
        .unwrap_or_default();
    let nodes = match state.store.cluster.nodes().await {
        Ok(n) => {
            let alive = n.iter().filter(|v| v.state == "alive").count();
            format!("{alive} alive of {}", n.len())
        }
        Err(_) => "unknown (storage does not answer)".into(),
    };
    let backup_age = age(crate::backup::newest_ms(&state.cfg.backup_dir()), now);
    let Ok(stats) = state.store.operations.stats().await else {
        let unknown = "—".to_string();
        return (
            Figures {
                queued: unknown.clone(),
                in_flight: unknown.clone(),
                sent_total: unknown.clone(),
                dead_letters: unknown.clone(),
                sent_per_s: unknown.clone(),
                failed_per_s: unknown,
                mode,
                nodes,
                backup_age,
                waiting: vec![],
                at: crate::core::types::rfc3339(now),
            },
            prev,
        );
    };
    let count = |want: &[DeliveryStatus]| -> i64 {
        stats
            .deliveries_by_status
            .iter()
            .filter(|(s, _)| want.contains(s))
            .map(|(_, n)| n)
            .sum()
    };
    let mark = Mark {
        done: count(&[DeliveryStatus::Sent, DeliveryStatus::Delivered]),
        failed: count(&[DeliveryStatus::Failed]),
        at: now,
    };
    let waiting = stats
        .waiting
        .iter()
        .map(|(c, p, n)| Waiting {
            channel: c.clone(),
            priority: Priority::from_rank(*p).as_str().to_string(),
            n: *n,
        })
        .collect();
    (
        Figures {
            queued: count(&[DeliveryStatus::Queued]).to_string(),
            in_flight: count(&[DeliveryStatus::Sending]).to_string(),
            sent_total: mark.done.to_string(),
            dead_letters: stats.dead_letters.to_string(),
            sent_per_s: rate(prev, mark, |m| m.done),
            failed_per_s: rate(prev, mark, |m| m.failed),
            mode,
            nodes,
            backup_age,
            waiting,
            at: crate::core::types::rfc3339(now),
        },
        Some(mark),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(done: i64, failed: i64, at: i64) -> Mark {
        Mark { done, failed, at }
    }

    #[test]
    fn rates_need_two_marks_and_never_go_negative() {
        assert_eq!(rate(None, m(5, 0, 1000), |m| m.done), "—");
        assert_eq!(rate(Some(m(0, 0, 0)), m(5, 0, 1000), |m| m.done), "5.0/s");
        assert_eq!(rate(Some(m(0, 0, 0)), m(50, 1, 2000), |m| m.done), "25/s");
        assert_eq!(
            rate(Some(m(0, 0, 0)), m(50, 1, 2000), |m| m.failed),
            "0.5/s"
        );
        assert_eq!(rate(Some(m(9, 0, 0)), m(3, 0, 1000), |m| m.done), "0.0/s");
        assert_eq!(rate(Some(m(0, 0, 1000)), m(3, 0, 1000), |m| m.done), "—");
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(None, 0), "none yet");
        assert_eq!(age(Some(0), 30_000), "30 s ago");
        assert_eq!(age(Some(0), 600_000), "10 min ago");
        assert_eq!(age(Some(0), 3 * 3_600_000), "3 h ago");
        assert_eq!(age(Some(0), 3 * 86_400_000), "3 days ago");
        assert_eq!(
            age(Some(10_000), 0),
            "0 s ago",
            "a clock behind is not negative"
        );
    }
}
