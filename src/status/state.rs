//! What the public status page says, as pure functions: each component's state from its
//! providers, the mode and posted incidents; the page's indicator; a day's uptime.

use serde::Serialize;

/// Statuspage's component states, mildest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Operational,
    UnderMaintenance,
    DegradedPerformance,
    PartialOutage,
    MajorOutage,
}

impl State {
    /// Every state, mildest first.
    pub const ALL: [State; 5] = [
        State::Operational,
        State::UnderMaintenance,
        State::DegradedPerformance,
        State::PartialOutage,
        State::MajorOutage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Operational => "operational",
            State::UnderMaintenance => "under_maintenance",
            State::DegradedPerformance => "degraded_performance",
            State::PartialOutage => "partial_outage",
            State::MajorOutage => "major_outage",
        }
    }
    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
    /// In words, for people.
    pub fn label(self) -> &'static str {
        match self {
            State::Operational => "Operational",
            State::UnderMaintenance => "Under maintenance",
            State::DegradedPerformance => "Degraded performance",
            State::PartialOutage => "Partial outage",
            State::MajorOutage => "Major outage",
        }
    }
    /// A text symbol that carries the state without colour.
    pub fn icon(self) -> &'static str {
        match self {
            State::Operational => "✓",
            State::UnderMaintenance => "🛠",
            State::DegradedPerformance => "!",
            State::PartialOutage => "◐",
            State::MajorOutage => "✕",
        }
    }
}

/// One provider as the state sees it: its registry state (`up`, `degraded`, `down`,
/// `disabled`).
pub fn component_state(
    provider_states: &[&str],
    mode: &str,
    posted: &[State],
    storage_ok: bool,
) -> State {
    let healthy = provider_states
        .iter()
        .filter(|s| matches!(**s, "up" | "degraded"))
        .count();
    let mut st = if provider_states.is_empty() {
        State::Operational
    } else if healthy == 0 {
        State::MajorOutage
    } else if healthy < provider_states.len() || provider_states.contains(&"degraded") {
        State::DegradedPerformance
    } else {
        State::Operational
    };
    st = st.max(match mode {
        "read_only" => State::MajorOutage,
        "core_only" => State::PartialOutage,
        _ => State::Operational,
    });
    if !storage_ok {
        st = st.max(State::DegradedPerformance);
    }
    // A posted incident can only make things look worse, never hide an outage; a
    // maintenance shows when nothing worse does.
    for p in posted {
        st = st.max(*p);
    }
    st
}

/// The page's indicator and its words (Statuspage's `status`).
pub fn indicator(states: &[State]) -> (&'static str, &'static str) {
    let worst = states.iter().copied().max().unwrap_or(State::Operational);
    let majors = states.iter().filter(|s| **s == State::MajorOutage).count();
    match worst {
        State::Operational => ("none", "All Systems Operational"),
        State::UnderMaintenance => ("maintenance", "Service Under Maintenance"),
        State::DegradedPerformance => ("minor", "Minor Service Outage"),
        State::PartialOutage => ("minor", "Partial System Outage"),
        State::MajorOutage if majors == states.len() && majors > 1 => {
            ("critical", "Major System Outage")
        }
        State::MajorOutage => ("major", "Major Service Outage"),
    }
}

/// A day's uptime in percent: partial and major outage minutes count as down, degraded and
/// maintenance as up (incident.io's rule). `None`: nothing sampled that day.
pub fn uptime(sampled: i64, partial: i64, major: i64) -> Option<f64> {
    (sampled > 0).then(|| {
        let down = (partial + major).min(sampled);
        100.0 * (sampled - down) as f64 / sampled as f64
    })
}

/// The worst state a day saw (for its bar), or `None` without data.
pub fn day_state(
    sampled: i64,
    degraded: i64,
    partial: i64,
    major: i64,
    maint: i64,
) -> Option<State> {
    if sampled == 0 {
        None
    } else if major > 0 {
        Some(State::MajorOutage)
    } else if partial > 0 {
        Some(State::PartialOutage)
    } else if degraded > 0 {
        Some(State::DegradedPerformance)
    } else if maint > 0 {
        Some(State::UnderMaintenance)
    } else {
        Some(State::Operational)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_decide_the_component() {
        assert_eq!(
            component_state(&["up", "up"], "normal", &[], true),
            State::Operational
        );
        assert_eq!(
            component_state(&["up", "down"], "normal", &[], true),
            State::DegradedPerformance
        );
        assert_eq!(
            component_state(&["up", "disabled"], "normal", &[], true),
            State::DegradedPerformance
        );
        assert_eq!(
            component_state(&["degraded"], "normal", &[], true),
            State::DegradedPerformance
        );
        assert_eq!(
            component_state(&["down", "disabled"], "normal", &[], true),
            State::MajorOutage
        );
        assert_eq!(
            component_state(&[], "normal", &[], true),
            State::Operational
        );
    }

    #[test]
    fn modes_storage_and_posts_make_it_worse_never_better() {
        assert_eq!(
            component_state(&["up"], "core_only", &[], true),
            State::PartialOutage
        );
        assert_eq!(
            component_state(&["up"], "read_only", &[], true),
            State::MajorOutage
        );
        assert_eq!(
            component_state(&["up"], "normal", &[], false),
            State::DegradedPerformance
        );
        assert_eq!(
            component_state(&["up"], "normal", &[State::UnderMaintenance], true),
            State::UnderMaintenance
        );
        assert_eq!(
            component_state(&["down"], "normal", &[State::DegradedPerformance], true),
            State::MajorOutage
        );
    }

    #[test]
    fn the_indicator_follows_the_worst_component() {
        assert_eq!(indicator(&[]).0, "none");
        assert_eq!(
            indicator(&[State::Operational, State::Operational]).0,
            "none"
        );
        assert_eq!(
            indicator(&[State::Operational, State::DegradedPerformance]).0,
            "minor"
        );
        assert_eq!(
            indicator(&[State::PartialOutage]).1,
            "Partial System Outage"
        );
        assert_eq!(
            indicator(&[State::MajorOutage, State::Operational]).0,
            "major"
        );
        assert_eq!(
            indicator(&[State::MajorOutage, State::MajorOutage]).0,
            "critical"
        );
        assert_eq!(indicator(&[State::UnderMaintenance]).0, "maintenance");
    }

    #[test]
    fn uptime_counts_partial_and_major_as_down() {
        assert_eq!(uptime(0, 0, 0), None);
        assert_eq!(uptime(1440, 0, 0), Some(100.0));
        assert_eq!(uptime(100, 5, 5), Some(90.0));
        assert_eq!(uptime(10, 20, 0), Some(0.0));
    }

    #[test]
    fn a_day_shows_its_worst_state() {
        assert_eq!(day_state(0, 0, 0, 0, 0), None);
        assert_eq!(day_state(10, 0, 0, 0, 0), Some(State::Operational));
        assert_eq!(day_state(10, 0, 0, 0, 3), Some(State::UnderMaintenance));
        assert_eq!(day_state(10, 1, 0, 0, 3), Some(State::DegradedPerformance));
        assert_eq!(day_state(10, 1, 1, 0, 0), Some(State::PartialOutage));
        assert_eq!(day_state(10, 1, 1, 1, 0), Some(State::MajorOutage));
    }

    #[test]
    fn every_state_round_trips_and_has_words_and_an_icon() {
        for s in [
            State::Operational,
            State::UnderMaintenance,
            State::DegradedPerformance,
            State::PartialOutage,
            State::MajorOutage,
        ] {
            assert_eq!(State::parse(s.as_str()), Some(s));
            assert!(!s.label().is_empty() && !s.icon().is_empty());
        }
        assert_eq!(State::parse("fine"), None);
    }
}
