//! Conformance, bundles and storms: held pages go into exactly one bundle whoever takes
//! them, a bundle a dead node took is found unsent, replies and keypresses find their
//! bundle; triage groups a storm's incidents into one and ends it when quiet; an
//! inhibiting incident holds its targets' pages and lets them go when it resolves.

use super::*;
use herald::core::alerts::inhibit::{InhibitConfig, InhibitRule};
use herald::core::alerts::matchers::Matcher;
use herald::store::{BundleRow, PageRow, StormRule, TriageRules, Triaged};
use serde_json::{Value, json};

async fn open(s: &Arc<dyn Store>, key: &str, labels: Value) -> String {
    super::open_incident(s, key, labels).await
}

fn bundle(person: &str, method: &str, at: i64) -> BundleRow {
    BundleRow {
        id: new_id("bn"),
        person: person.into(),
        method: method.into(),
        kind: "page".into(),
        address: None,
        reply_code: None,
        size: 0,
        message_id: None,
        created_at: at,
    }
}

/// Pages one held page to ana's phone for each incident (its escalation's step 0).
async fn hold(s: &Arc<dyn Store>, inc: &str, at: i64, not_before: Option<i64>) -> PageRow {
    assert!(s.start_escalation(inc, "p", at).await.unwrap());
    let row = s
        .claim_escalations("n1", at, 10_000, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.incident_id == inc)
        .unwrap();
    let key = format!("page:{inc}:0:0:0:ana:sms");
    let mut p = PageRow::new(
        key,
        inc,
        (0, 0, 0),
        "ana",
        "sms",
        Some("+15550001".into()),
        at,
    );
    p.not_before = not_before;
    p.hold_until = Some(not_before.unwrap_or(at) + 5_000);
    let pages = s
        .reserve_pages(inc, row.fence, vec![p], 0)
        .await
        .unwrap()
        .unwrap();
    pages[0].clone()
}

pub async fn held_pages_go_into_exactly_one_bundle_and_a_dead_takers_is_found_unsent(
    s: Arc<dyn Store>,
) {
    let now = now_millis();
    let mut incs = Vec::new();
    let mut codes = Vec::new();
    for k in 0..3 {
        let inc = open(&s, &format!("b{k}"), json!({})).await;
        codes.push(hold(&s, &inc, now, None).await.reply_code.unwrap());
        incs.push(inc);
    }
    // One held for a call a paging rule delays: not taken before its time.
    let late = open(&s, "late", json!({})).await;
    hold(&s, &late, now, Some(now + 60_000)).await;
    assert_eq!(s.held_pages(100).await.unwrap().len(), 4);
    let (b, rows) = s
        .take_bundle(bundle("ana", "sms", now), now, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((b.size, rows.len()), (3, 3));
    let code = b
        .reply_code
        .expect("a bundle of several to a phone has a code");
    assert!(!codes.contains(&code), "{code} is a page's code");
    assert_eq!(b.address.as_deref(), Some("+15550001"));
    // A second taker finds nothing left (the late page is not due yet).
    assert!(
        s.take_bundle(bundle("ana", "sms", now), now, 0)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.held_pages(100).await.unwrap().len(), 1);
    // The taker died before sending: the bundle is found unsent, then sent once.
    let unsent = s.unsent_bundles(now + 1).await.unwrap();
    assert_eq!(unsent.len(), 1);
    assert_eq!(unsent[0].0.id, b.id);
    s.bundle_sent(&b.id, "msg-b", now).await.unwrap();
    assert!(s.unsent_bundles(now + 1).await.unwrap().is_empty());
    let (found, rows) = s
        .bundle_for_reply("+15550001", code, now - 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.id.as_str(), rows.len()), (b.id.as_str(), 3));
    assert_eq!(
        s.bundle_of_message("msg-b").await.unwrap().unwrap().0.id,
        b.id
    );
    assert!(
        s.bundle_for_reply("+15550001", code, now + 1)
            .await
            .unwrap()
            .is_none()
    );
    // A page to the phone later never takes the bundle's code.
    let next = open(&s, "next", json!({})).await;
    let p = hold(&s, &next, now, None).await;
    assert!(
        p.reply_code
            .is_some_and(|c| c != code && !codes.contains(&c)),
        "{p:?}"
    );
    assert_eq!(s.drop_held(&next).await.unwrap(), 1);
    assert_eq!(s.bundles_since(now).await.unwrap().len(), 1);
    for inc in &incs {
        let v = s.get_incident(inc).await.unwrap().unwrap();
        assert!(
            v.messages
                .iter()
                .any(|m| m.message_id == "msg-b" && m.kind == "page")
        );
        assert!(v.timeline.iter().any(|e| e.kind == "bundled"));
        let e = s.get_escalation(inc).await.unwrap().unwrap();
        assert_eq!(e.first_page_at, Some(now), "the bundle is the first page");
    }
    // Answered before its time: the late page is dropped, never bundled.
    assert_eq!(s.drop_held(&late).await.unwrap(), 1);
    assert!(s.held_pages(100).await.unwrap().is_empty());
    assert!(
        s.take_bundle(bundle("ana", "sms", now), now + 120_000, 0)
            .await
            .unwrap()
            .is_none()
    );
    // Notices are held the same way and bundled on their own.
    let mut n = PageRow::new(
        format!("{}:resolved:page:ana:sms", incs[0]),
        &incs[0],
        (-1, -1, -1),
        "ana",
        "sms",
        None,
        now,
    );
    n.kind = "notice".into();
    n.note = Some("resolved".into());
    n.hold_until = Some(now);
    s.hold_notices(vec![n.clone(), n]).await.unwrap();
    let mut nb = bundle("ana", "sms", now);
    nb.kind = "notice".into();
    let (nb, rows) = s.take_bundle(nb, now, 0).await.unwrap().unwrap();
    assert_eq!((rows.len(), nb.reply_code), (1, None));
    assert_eq!(rows[0].note.as_deref(), Some("resolved"));
    // Pages of incidents no longer triggered are dropped when taken.
    let gone = open(&s, "gone", json!({})).await;
    hold(&s, &gone, now, None).await;
    s.act_incident(&gone, herald::store::IncidentAction::Resolve, "x", "", now)
        .await
        .unwrap();
    assert!(
        s.take_bundle(bundle("ana", "sms", now), now + 10_000, 0)
            .await
            .unwrap()
            .is_none()
    );
}

fn storm(threshold: u32) -> TriageRules {
    TriageRules {
        inhibit: vec![],
        storm: Some(StormRule {
            threshold,
            window_ms: 60_000,
            per_service: true,
            new_id: new_id("in"),
        }),
    }
}

pub async fn a_storm_takes_new_incidents_into_one_and_ends_when_quiet(s: Arc<dyn Store>) {
    let now = now_millis();
    let a = open(&s, "s1", json!({})).await;
    let b = open(&s, "s2", json!({})).await;
    assert_eq!(s.triage(&a, storm(3), now).await.unwrap(), Triaged::Page);
    assert_eq!(s.triage(&b, storm(3), now).await.unwrap(), Triaged::Page);
    let c = open(&s, "s3", json!({})).await;
    let Triaged::Grouped {
        storm: id,
        started: true,
    } = s.triage(&c, storm(3), now).await.unwrap()
    else {
        panic!("the third opened a storm");
    };
    // The two before were grouped too; triage says so again, once.
    assert_eq!(
        s.triage(&a, storm(3), now).await.unwrap(),
        Triaged::Grouped {
            storm: id.clone(),
            started: false
        }
    );
    let d = open(&s, "s4", json!({})).await;
    assert_eq!(
        s.triage(&d, storm(3), now).await.unwrap(),
        Triaged::Grouped {
            storm: id.clone(),
            started: false
        }
    );
    let st = s.get_incident(&id).await.unwrap().unwrap().incident;
    assert_eq!(
        (st.source.as_str(), st.page_state.as_str()),
        ("storm", "pending")
    );
    assert_eq!(st.details["storm"]["count"], 4);
    assert!(
        st.title.contains("4 new incidents in service db"),
        "{}",
        st.title
    );
    // The storm incident itself is paged as usual.
    assert_eq!(s.triage(&id, storm(3), now).await.unwrap(), Triaged::Page);
    let mut members = s.storm_members(&id).await.unwrap();
    members.sort();
    let mut want = vec![a, b, c, d];
    want.sort();
    assert_eq!(members, want);
    assert_eq!(s.active_storms().await.unwrap().len(), 1);
    // A window after it began, four joined within it: still busy, not over.
    assert!(
        s.end_quiet_storms(3, 60_000, now + 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    let ended = s.end_quiet_storms(3, 60_000, now + 120_000).await.unwrap();
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (ended[0].incident_id.as_str(), ended[0].count),
        (id.as_str(), 4)
    );
    assert!(s.active_storms().await.unwrap().is_empty());
    let v = s.get_incident(&id).await.unwrap().unwrap();
    assert!(v.timeline.iter().any(|e| e.kind == "storm_ended"));
    // Below the threshold nothing groups.
    let e = open(&s, "other", json!({})).await;
    assert_eq!(s.triage(&e, storm(100), now).await.unwrap(), Triaged::Page);
}

pub async fn an_inhibiting_incident_holds_its_targets_and_lets_them_go_when_it_resolves(
    s: Arc<dyn Store>,
) {
    let now = now_millis();
    let rule = InhibitRule::compile(
        &InhibitConfig {
            source_matchers: vec!["alertname=\"DatacenterDown\"".into()],
            target_matchers: vec!["alertname=\"InstanceDown\"".into()],
            equal: vec!["dc".into()],
        },
        &[] as &[Matcher],
        "r",
    )
    .unwrap();
    let rules = TriageRules {
        inhibit: vec![rule],
        storm: None,
    };
    let early = open(&s, "i0", json!({"alertname": "InstanceDown", "dc": "fra"})).await;
    assert_eq!(
        s.triage(&early, rules.clone(), now).await.unwrap(),
        Triaged::Page
    );
    let src = open(
        &s,
        "dc",
        json!({"alertname": "DatacenterDown", "dc": "fra"}),
    )
    .await;
    assert_eq!(
        s.triage(&src, rules.clone(), now).await.unwrap(),
        Triaged::Page
    );
    // Open before the source came: inhibited by it now.
    let v = s.get_incident(&early).await.unwrap().unwrap().incident;
    assert_eq!(v.inhibited_by.as_deref(), Some(src.as_str()));
    let fra = open(&s, "i1", json!({"alertname": "InstanceDown", "dc": "fra"})).await;
    let ams = open(&s, "i2", json!({"alertname": "InstanceDown", "dc": "ams"})).await;
    assert_eq!(
        s.triage(&fra, rules.clone(), now).await.unwrap(),
        Triaged::Inhibited(src.clone())
    );
    assert_eq!(
        s.triage(&ams, rules.clone(), now).await.unwrap(),
        Triaged::Page
    );
    let v = s.get_incident(&fra).await.unwrap().unwrap();
    assert_eq!(v.incident.page_state, "none");
    assert!(v.timeline.iter().any(|e| e.kind == "inhibited"));
    let mut lifted = s.lift_inhibition(&src, now).await.unwrap();
    lifted.sort();
    let mut want = vec![early, fra.clone()];
    want.sort();
    assert_eq!(lifted, want);
    let v = s.get_incident(&fra).await.unwrap().unwrap().incident;
    assert_eq!((v.inhibited_by, v.page_state.as_str()), (None, "pending"));
}

conformance!(
    held_pages_go_into_exactly_one_bundle_and_a_dead_takers_is_found_unsent,
    a_storm_takes_new_incidents_into_one_and_ends_when_quiet,
    an_inhibiting_incident_holds_its_targets_and_lets_them_go_when_it_resolves,
);
