//! MTTA and MTTR: time to acknowledge (first page → first human acknowledgement; an
//! incident resolved by its alerts without anyone acknowledging has none) and time to
//! resolve (opened → resolved), as percentiles per service, severity and the escalation
//! step that was answered. Pure.

use crate::core::types::Millis;
use serde::Serialize;
use std::collections::BTreeMap;

/// One incident's figures (what storage keeps).
#[derive(Debug, Clone, PartialEq)]
pub struct Times {
    pub service: String,
    pub severity: String,
    pub opened_at: Millis,
    pub first_page_at: Option<Millis>,
    pub first_ack_at: Option<Millis>,
    pub first_ack_step: Option<i64>,
    pub resolved_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_seconds: f64,
    pub p90_seconds: f64,
    pub p99_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Group {
    pub incidents: usize,
    pub tta: Option<Percentiles>,
    pub ttr: Option<Percentiles>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Summary {
    pub overall: Group,
    pub by_service: BTreeMap<String, Group>,
    pub by_severity: BTreeMap<String, Group>,
    /// Keyed by the step answered, from 1 (`unanswered` for none).
    pub by_step: BTreeMap<String, Group>,
}

/// Nearest-rank percentile of sorted values.
fn rank(sorted: &[i64], q: f64) -> f64 {
    let n = sorted.len();
    let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
    sorted[i] as f64 / 1000.0
}

fn percentiles(mut v: Vec<i64>) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(Percentiles {
        count: v.len(),
        p50_seconds: rank(&v, 0.5),
        p90_seconds: rank(&v, 0.9),
        p99_seconds: rank(&v, 0.99),
    })
}

fn tta(t: &Times) -> Option<i64> {
    let ack = t.first_ack_at?;
    Some((ack - t.first_page_at.unwrap_or(t.opened_at)).max(0))
}

fn ttr(t: &Times) -> Option<i64> {
    Some((t.resolved_at? - t.opened_at).max(0))
}

fn group<'a>(items: impl Iterator<Item = &'a Times> + Clone) -> Group {
    Group {
        incidents: items.clone().count(),
        tta: percentiles(items.clone().filter_map(tta).collect()),
        ttr: percentiles(items.filter_map(ttr).collect()),
    }
}

pub fn summarize(times: &[Times]) -> Summary {
    let by = |key: &dyn Fn(&Times) -> String| {
        let mut keys: Vec<String> = times.iter().map(key).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|k| {
                let g = group(times.iter().filter(|t| key(t) == k));
                (k, g)
            })
            .collect::<BTreeMap<_, _>>()
    };
    Summary {
        overall: group(times.iter()),
        by_service: by(&|t| t.service.clone()),
        by_severity: by(&|t| t.severity.clone()),
        by_step: by(&|t| match t.first_ack_step {
            Some(s) => (s + 1).to_string(),
            None => "unanswered".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(
        service: &str,
        sev: &str,
        page: Option<i64>,
        ack: Option<i64>,
        step: Option<i64>,
        res: Option<i64>,
    ) -> Times {
        Times {
            service: service.into(),
            severity: sev.into(),
            opened_at: 0,
            first_page_at: page,
            first_ack_at: ack,
            first_ack_step: step,
            resolved_at: res,
        }
    }

    #[test]
    fn tta_counts_from_the_first_page_and_only_human_acknowledgements() {
        let s = summarize(&[
            t("db", "P0", Some(1_000), Some(11_000), Some(0), Some(60_000)),
            // Resolved by its alerts, nobody acknowledged: a TTR, no TTA.
            t("db", "P0", Some(1_000), None, None, Some(30_000)),
        ]);
        let tta = s.overall.tta.unwrap();
        assert_eq!((tta.count, tta.p50_seconds), (1, 10.0));
        let ttr = s.overall.ttr.unwrap();
        assert_eq!(
            (ttr.count, ttr.p50_seconds, ttr.p99_seconds),
            (2, 30.0, 60.0)
        );
        assert_eq!(s.by_step["1"].incidents, 1);
        assert_eq!(s.by_step["unanswered"].incidents, 1);
    }

    #[test]
    fn groups_by_service_and_severity_and_nearest_rank_percentiles() {
        let mut v = Vec::new();
        for i in 1..=10 {
            v.push(t("api", "P1", Some(0), Some(i * 1000), Some(1), None));
        }
        v.push(t("web", "P2", None, None, None, None));
        let s = summarize(&v);
        let api = &s.by_service["api"];
        let p = api.tta.as_ref().unwrap();
        assert_eq!(
            (p.p50_seconds, p.p90_seconds, p.p99_seconds),
            (5.0, 9.0, 10.0)
        );
        assert!(api.ttr.is_none(), "none resolved");
        assert_eq!(s.by_service["web"].incidents, 1);
        assert!(s.by_service["web"].tta.is_none());
        assert_eq!(s.by_severity["P1"].incidents, 10);
        assert_eq!(s.by_step["2"].incidents, 10);
        assert_eq!(summarize(&[]).overall.incidents, 0);
    }

    #[test]
    fn an_incident_paged_without_an_escalation_counts_from_its_opening() {
        let s = summarize(&[t("x", "P3", None, Some(5_000), None, None)]);
        assert_eq!(s.overall.tta.unwrap().p50_seconds, 5.0);
    }
}
