//! Conformance, incidents: alert batches open one incident per key, occurrences resolve it,
//! a resolved incident never reopens, actions move it once, owed notices are tracked.

use super::*;
use herald::core::incident::{Occurrence, Severity, Status};
use herald::store::{
    Acted, AlertBatch, IncidentAction, IncidentFilter, Ingested, NewIncident, NoticeKind,
};

fn occ(fp: &str, starts: i64, firing: bool) -> Occurrence {
    Occurrence {
        fingerprint: fp.into(),
        starts_at: starts,
        status: if firing { "firing" } else { "resolved" }.into(),
        ends_at: (!firing).then_some(starts + 1),
        labels: serde_json::json!({"alertname": fp}),
        annotations: serde_json::json!({}),
        generator_url: String::new(),
    }
}

fn batch(key: &str, occs: Vec<Occurrence>, severity: Severity) -> AlertBatch {
    AlertBatch {
        dedup_key: key.into(),
        complete: true,
        occurrences: occs,
        open: NewIncident {
            id: new_id("inc"),
            source: "alertmanager".into(),
            route: "r".into(),
            service: "db".into(),
            severity,
            title: "DiskFull".into(),
            details: serde_json::json!({"group": key}),
            suppressed: false,
            notify_resolved: true,
        },
        at: now_millis(),
    }
}

pub async fn alert_batches_make_incidents_once(s: Arc<dyn Store>) {
    let first = s
        .ingest(vec![batch(
            "k1",
            vec![occ("a", 1, true), occ("b", 1, true), occ("c", 1, true)],
            Severity::P1,
        )])
        .await
        .unwrap();
    let Ingested::Opened(id) = &first[0] else {
        panic!("{first:?}")
    };
    // The same payload again (an HA peer, a retry): nothing changes.
    let again = s
        .ingest(vec![batch(
            "k1",
            vec![occ("a", 1, true), occ("b", 1, true), occ("c", 1, true)],
            Severity::P1,
        )])
        .await
        .unwrap();
    assert_eq!(again, vec![Ingested::Unchanged]);
    // One resolves: still open with two firing; a P0 alert raises the severity.
    let r = s
        .ingest(vec![batch(
            "k1",
            vec![
                occ("a", 1, true),
                occ("b", 1, true),
                occ("c", 1, false),
                occ("d", 2, true),
            ],
            Severity::P0,
        )])
        .await
        .unwrap();
    assert_eq!(r, vec![Ingested::Updated(id.clone())]);
    let v = s.get_incident(id).await.unwrap().unwrap();
    assert_eq!(v.incident.status, Status::Triggered);
    assert_eq!(v.incident.severity, Severity::P0);
    assert_eq!(v.incident.page_state, "pending");
    assert_eq!(v.occurrences.iter().filter(|o| o.firing()).count(), 3);
    assert!(
        v.timeline.iter().any(|e| e.kind == "severity_raised"),
        "{:?}",
        v.timeline
    );
    assert_eq!(v.incident.number, 1);

    // Pages handed to the queue.
    assert_eq!(s.owed_notices(10).await.unwrap().len(), 1);
    s.notices_sent(id, NoticeKind::Page, vec!["msg_1".into()], now_millis())
        .await
        .unwrap();
    s.notices_sent(id, NoticeKind::Page, vec!["msg_1".into()], now_millis())
        .await
        .unwrap();
    assert!(s.owed_notices(10).await.unwrap().is_empty());

    // Everything resolves: the incident does, a resolved notice is owed.
    let r = s
        .ingest(vec![batch(
            "k1",
            vec![occ("a", 1, false), occ("b", 1, false), occ("d", 2, false)],
            Severity::P1,
        )])
        .await
        .unwrap();
    assert_eq!(r, vec![Ingested::Resolved(id.clone())]);
    let owed = s.owed_notices(10).await.unwrap();
    assert_eq!((owed.len(), owed[0].notice_state.as_str()), (1, "pending"));
    s.notices_sent(id, NoticeKind::Resolved, vec!["msg_2".into()], now_millis())
        .await
        .unwrap();
    let v = s.get_incident(id).await.unwrap().unwrap();
    assert_eq!(v.incident.status, Status::Resolved);
    assert_eq!(v.messages.len(), 2);
    assert!(s.open_incident("k1").await.unwrap().is_none());

    // A new firing of the same group opens a new incident; the resolved one stays resolved.
    let r = s
        .ingest(vec![batch("k1", vec![occ("a", 50, true)], Severity::P2)])
        .await
        .unwrap();
    let Ingested::Opened(id2) = &r[0] else {
        panic!("{r:?}")
    };
    assert_ne!(id2, id);
    assert_eq!(s.open_incident("k1").await.unwrap().unwrap().number, 2);
    // Resolved alerts of no open incident open nothing.
    assert_eq!(
        s.ingest(vec![batch("k2", vec![occ("z", 1, false)], Severity::P1)])
            .await
            .unwrap(),
        vec![Ingested::Unchanged]
    );

    // Acknowledge once, then resolve; acknowledging a resolved one is refused.
    let Acted::Done(a) = s
        .act_incident(
            id2,
            IncidentAction::Acknowledge,
            "ann",
            "on it",
            now_millis(),
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (a.status, a.acknowledged_by.as_deref()),
        (Status::Acknowledged, Some("ann"))
    );
    assert!(matches!(
        s.act_incident(id2, IncidentAction::Acknowledge, "bob", "", now_millis())
            .await
            .unwrap(),
        Acted::NotNow(_)
    ));
    let Acted::Done(r) = s
        .act_incident(id2, IncidentAction::Resolve, "ann", "fixed", now_millis())
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(r.status, Status::Resolved);
    assert!(matches!(
        s.act_incident("inc_none", IncidentAction::Resolve, "x", "", 0)
            .await
            .unwrap(),
        Acted::NotFound
    ));

    // Listing: newest first, filters, cursor.
    let all = s
        .list_incidents(IncidentFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.iter().map(|i| i.number).collect::<Vec<_>>(), [2, 1]);
    let page = s
        .list_incidents(IncidentFilter {
            limit: 10,
            before_number: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    let p0 = s
        .list_incidents(IncidentFilter {
            limit: 10,
            severity: Some(Severity::P0),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(p0.len(), 1);
    let open = s
        .list_incidents(IncidentFilter {
            limit: 10,
            status: Some(Status::Triggered),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(open.is_empty());
}

/// Two writers taking the same new group at once (two nodes, an HA pair) open one incident.
pub async fn concurrent_batches_for_one_key_open_one_incident(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.ingest(vec![batch("same", vec![occ("a", 1, true)], Severity::P0)])
                .await
                .unwrap()
        }));
    }
    let mut opened = 0;
    for t in tasks {
        if matches!(t.await.unwrap()[0], Ingested::Opened(_)) {
            opened += 1;
        }
    }
    assert_eq!(opened, 1);
    let all = s
        .list_incidents(IncidentFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

/// Heartbeats: a clock starts when first seen; pings move it forward, never back.
pub async fn heartbeat_pings_start_and_move_forward(s: Arc<dyn Store>) {
    let ids = vec!["a".to_string(), "b".to_string()];
    let first = s.heartbeat_pings(ids.clone(), 1_000).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|(_, t)| *t == 1_000));
    s.ping_heartbeat("a", 5_000).await.unwrap();
    s.ping_heartbeat("a", 4_000).await.unwrap();
    let later = s.heartbeat_pings(ids, 9_000).await.unwrap();
    let get = |id: &str| later.iter().find(|(i, _)| i == id).unwrap().1;
    assert_eq!((get("a"), get("b")), (5_000, 1_000));
}

/// Maintenance windows: listed until they end, deleted once.
pub async fn maintenance_windows_are_kept_until_they_end(s: Arc<dyn Store>) {
    let w = |id: &str, starts: i64, ends: i64| herald::store::MaintenanceWindow {
        id: id.into(),
        matchers: vec!["team=\"db\"".into()],
        starts_at: starts,
        ends_at: ends,
        reason: "upgrade".into(),
        actor: "ops".into(),
        created_at: 1,
    };
    s.put_maintenance(w("mw_b", 200, 900)).await.unwrap();
    s.put_maintenance(w("mw_a", 100, 500)).await.unwrap();
    let on = s.maintenance_windows(400).await.unwrap();
    assert_eq!(
        on.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        ["mw_a", "mw_b"]
    );
    assert_eq!(on[0].matchers, ["team=\"db\""]);
    assert_eq!(
        s.maintenance_windows(600).await.unwrap().len(),
        1,
        "an ended window is gone"
    );
    assert!(s.delete_maintenance("mw_b").await.unwrap());
    assert!(!s.delete_maintenance("mw_b").await.unwrap());
    assert!(s.maintenance_windows(600).await.unwrap().is_empty());
}

/// Maintenance windows are applied inside the ingest transaction on both backends: a batch
/// matching a window that is on opens a suppressed incident (no pages owed); one outside
/// it, or not matching, opens a normal one; a heartbeat's is never suppressed.
pub async fn ingest_suppresses_what_an_open_window_matches(s: Arc<dyn Store>) {
    let now = now_millis();
    s.put_maintenance(herald::store::MaintenanceWindow {
        id: "mw_1".into(),
        matchers: vec!["alertname=~\"db-.*\"".into()],
        starts_at: now - 1_000,
        ends_at: now + 60_000,
        reason: "upgrade".into(),
        actor: "ops".into(),
        created_at: now - 1_000,
    })
    .await
    .unwrap();
    let inside = batch("k-in", vec![occ("db-disk", 1, true)], Severity::P1);
    let other = batch("k-other", vec![occ("web-5xx", 1, true)], Severity::P1);
    let mut later = batch("k-later", vec![occ("db-cpu", 1, true)], Severity::P1);
    later.at = now + 60_000;
    let mut hb = batch("k-hb", vec![occ("db-watchdog", 1, true)], Severity::P0);
    hb.open.source = "heartbeat".into();
    let done = s.ingest(vec![inside, other, later, hb]).await.unwrap();
    let mut states = Vec::new();
    for d in done {
        let Ingested::Opened(id) = d else {
            panic!("each opens an incident: {d:?}")
        };
        let v = s.get_incident(&id).await.unwrap().unwrap();
        states.push(v.incident.page_state.clone());
    }
    assert_eq!(states, ["none", "pending", "pending", "pending"]);
}

conformance!(
    maintenance_windows_are_kept_until_they_end,
    heartbeat_pings_start_and_move_forward,
    alert_batches_make_incidents_once,
    concurrent_batches_for_one_key_open_one_incident,
    ingest_suppresses_what_an_open_window_matches,
);
