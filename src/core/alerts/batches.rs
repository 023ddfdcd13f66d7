//! Alert payloads into incident batches: each alert goes to the routes that match it; the
//! alerts of one payload on one route make one batch under the key of that route and the
//! payload's group (Alertmanager's `groupKey`, hashed) or Events v2 `dedup_key`. Pure.

use super::am::{Checked, Payload};
use super::events::Event;
use super::routes::{Route, matching};
use crate::core::incident::{Occurrence, Severity};
use crate::core::types::Millis;
use crate::store::{AlertBatch, NewIncident};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..16])
}

/// The incident key of an Alertmanager group on a route.
pub fn am_key(route: &str, group_key: &str) -> String {
    format!("am:{route}:{}", short_hash(group_key))
}

/// The incident key of an Events v2 `dedup_key` on a route.
pub fn events_key(route: &str, dedup_key: &str) -> String {
    format!("ev:{route}:{}", short_hash(dedup_key))
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn title_of(labels: &BTreeMap<String, String>, annotations: &BTreeMap<String, String>) -> String {
    let name = labels
        .get("alertname")
        .map(String::as_str)
        .unwrap_or("alert");
    match annotations.get("summary").filter(|s| !s.trim().is_empty()) {
        Some(s) => cut(&format!("{name}: {}", s.trim()), 200),
        None => cut(name, 200),
    }
}

/// The batches of one Alertmanager payload; `may_use` says which routes the caller may
/// file under (a route token reaches its own route only).
pub fn from_alertmanager(
    routes: &[Route],
    p: &Payload,
    alerts: &[Checked],
    may_use: &dyn Fn(&Route) -> bool,
    new_id: &mut dyn FnMut() -> String,
    now: Millis,
) -> Vec<AlertBatch> {
    // Route id → (route, severity of the most severe alert, occurrences, first firing alert).
    let mut by_route: Vec<(&Route, Severity, Vec<Occurrence>, Option<&Checked>)> = Vec::new();
    for a in alerts {
        for r in matching(routes, &a.alert.labels)
            .into_iter()
            .filter(|r| may_use(r))
        {
            let sev = r.severity_of(&a.alert.labels);
            let occ = Occurrence {
                fingerprint: a.alert.fingerprint.clone(),
                starts_at: a.starts_at,
                status: a.alert.status.clone(),
                ends_at: a.ends_at,
                labels: json!(a.alert.labels),
                annotations: json!(a.alert.annotations),
                generator_url: cut(&a.alert.generator_url, 2048),
            };
            let firing = a.alert.status == "firing";
            match by_route.iter_mut().find(|(x, ..)| x.cfg.id == r.cfg.id) {
                Some(entry) => {
                    if firing && sev < entry.1 {
                        entry.1 = sev;
                    }
                    entry.2.push(occ);
                    if entry.3.is_none() && firing {
                        entry.3 = Some(a);
                    }
                }
                None => by_route.push((
                    r,
                    if firing { sev } else { Severity::P3 },
                    vec![occ],
                    firing.then_some(a),
                )),
            }
        }
    }
    by_route
        .into_iter()
        .map(|(r, severity, occurrences, first)| {
            let (labels, annotations) = first
                .map(|a| (a.alert.labels.clone(), a.alert.annotations.clone()))
                .unwrap_or_default();
            AlertBatch {
                dedup_key: am_key(&r.cfg.id, &p.group_key),
                complete: p.truncated_alerts == 0,
                occurrences,
                open: NewIncident {
                    id: new_id(),
                    source: "alertmanager".into(),
                    route: r.cfg.id.clone(),
                    service: r.service_of(&labels),
                    severity,
                    title: title_of(&labels, &annotations),
                    details: json!({
                        "group_key": p.group_key, "group_labels": p.group_labels,
                        "receiver": p.receiver, "external_url": p.external_url,
                        "labels": labels, "annotations": annotations,
                        "generator_url": first.map(|a| a.alert.generator_url.clone()).unwrap_or_default(),
                    }),
                    suppressed: false,
                    notify_resolved: r.cfg.notify_resolved,
                },
                at: now,
            }
        })
        .collect()
}

/// The batch of an Events v2 trigger on `route` (its `dedup_key` given or made).
pub fn from_event(
    route: &Route,
    e: &Event,
    dedup_key: &str,
    id: String,
    now: Millis,
) -> AlertBatch {
    let mut labels = BTreeMap::new();
    labels.insert("alertname".to_string(), cut(&e.summary, 200));
    labels.insert("source".to_string(), e.source.clone());
    labels.insert("severity".to_string(), e.severity.clone());
    for (k, v) in [
        ("component", &e.component),
        ("group", &e.group),
        ("class", &e.class),
    ] {
        if let Some(v) = v {
            labels.insert(k.to_string(), v.clone());
        }
    }
    let severity = route
        .severity
        .unwrap_or_else(|| Severity::from_label(Some(&e.severity)));
    AlertBatch {
        dedup_key: events_key(&route.cfg.id, dedup_key),
        complete: false,
        // One occurrence per dedup_key: a repeated trigger is the same occurrence.
        occurrences: vec![Occurrence {
            fingerprint: short_hash(dedup_key),
            starts_at: 0,
            status: "firing".into(),
            ends_at: None,
            labels: json!(labels),
            annotations: json!({"summary": e.summary}),
            generator_url: e.client_url.clone().unwrap_or_default(),
        }],
        open: NewIncident {
            id,
            source: "events".into(),
            route: route.cfg.id.clone(),
            service: route.service_of(&labels),
            severity,
            title: cut(&e.summary, 200),
            details: json!({
                "dedup_key": dedup_key, "source": e.source, "custom_details": e.custom_details,
                "links": e.links.iter().map(|(h, t)| json!({"href": h, "text": t})).collect::<Vec<Value>>(),
                "client_url": e.client_url,
            }),
            suppressed: false,
            notify_resolved: route.cfg.notify_resolved,
        },
        at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::alerts::am;
    use crate::core::alerts::routes::RouteConfig;

    fn routes() -> Vec<Route> {
        let mk = |id: &str, m: &[&str], cont: bool| {
            Route::compile(
                &RouteConfig {
                    id: id.into(),
                    matchers: m.iter().map(|s| s.to_string()).collect(),
                    users: vec!["u-1".into()],
                    continue_matching: cont,
                    ..Default::default()
                },
                "r",
            )
            .unwrap()
        };
        vec![mk("db", &["team=\"db\""], false), mk("rest", &[], false)]
    }

    fn payload(alerts: serde_json::Value, truncated: u64) -> (Payload, Vec<Checked>) {
        let p: Payload = serde_json::from_value(json!({
            "version": "4", "groupKey": "{}:{alertname=\"x\"}", "truncatedAlerts": truncated,
            "status": "firing", "receiver": "herald", "groupLabels": {}, "commonLabels": {},
            "externalURL": "http://am", "alerts": alerts}))
        .unwrap();
        am::check(p).unwrap()
    }

    fn alert(fp: &str, team: &str, sev: &str, status: &str) -> serde_json::Value {
        json!({"status": status, "labels": {"alertname": "DiskFull", "team": team, "severity": sev},
               "annotations": {"summary": "disk full"}, "startsAt": "2026-12-01T10:00:00Z",
               "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/g", "fingerprint": fp})
    }

    #[test]
    fn one_payload_makes_one_batch_per_route() {
        let (p, a) = payload(
            json!([
                alert("a1", "db", "warning", "firing"),
                alert("a2", "db", "critical", "firing"),
                alert("b1", "web", "info", "firing")
            ]),
            0,
        );
        let mut n = 0;
        let b = from_alertmanager(
            &routes(),
            &p,
            &a,
            &|_| true,
            &mut || {
                n += 1;
                format!("inc_{n}")
            },
            5,
        );
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].open.route, "db");
        assert_eq!(b[0].occurrences.len(), 2);
        assert_eq!(
            b[0].open.severity,
            Severity::P0,
            "the most severe firing alert"
        );
        assert_eq!(b[0].open.title, "DiskFull: disk full");
        assert!(b[0].complete);
        assert_eq!(b[1].open.route, "rest");
        assert_eq!(b[1].open.severity, Severity::P3);
        assert_ne!(b[0].dedup_key, b[1].dedup_key);
        assert_eq!(
            b[0].open.details["external_url"], "http://am",
            "Alertmanager spells it externalURL"
        );
        assert_eq!(b[0].dedup_key, am_key("db", "{}:{alertname=\"x\"}"));
        let (p, a) = payload(json!([alert("a1", "db", "warning", "firing")]), 3);
        let b = from_alertmanager(
            &routes(),
            &p,
            &a,
            &|r| r.cfg.id == "db",
            &mut || "i".into(),
            5,
        );
        assert!(!b[0].complete, "truncated: nothing unseen is resolved");
        let b = from_alertmanager(
            &routes(),
            &p,
            &a,
            &|r| r.cfg.id == "rest",
            &mut || "i".into(),
            5,
        );
        assert!(b.is_empty(), "a route token reaches its own route only");
    }
}
