//! Conformance, escalations: a due row is claimed by one holder at a time, with a new fence
//! each claim; a holder that dies after recording its pages leaves them to the next
//! claimant (the same pages, the same reply codes), whose move lands while the dead one's
//! stale fence moves nothing; reply codes stay unique per phone; outside changes raise the
//! fence; replies find their page by phone and code, or the newest open one.

use super::*;
use herald::store::{EscState, EscalationMove, Fired, PageRow};

async fn open_incident(s: &Arc<dyn Store>, key: &str) -> String {
    super::open_incident(s, key, serde_json::json!({})).await
}

fn page(inc: &str, person: &str, phone: Option<&str>, step: i64, at: i64) -> PageRow {
    let key = format!("page:{inc}:{step}:0:0:{person}:sms");
    PageRow::new(
        key,
        inc,
        (step, 0, 0),
        person,
        "sms",
        phone.map(String::from),
        at,
    )
}

pub async fn a_dead_holders_step_is_finished_by_the_next_with_the_same_pages(s: Arc<dyn Store>) {
    let inc = open_incident(&s, "k1").await;
    let now = now_millis();
    assert!(s.start_escalation(&inc, "p", now).await.unwrap());
    assert_eq!(s.escalations_using("p").await.unwrap(), 1);
    assert_eq!(s.escalations_using("other").await.unwrap(), 0);
    assert!(!s.start_escalation(&inc, "p", now).await.unwrap(), "once");
    let a = s.claim_escalations("node-a", now, 1_000, 10).await.unwrap();
    assert_eq!(a.len(), 1);
    assert!(
        s.claim_escalations("node-b", now, 1_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "held"
    );
    let first = s
        .reserve_pages(
            &inc,
            a[0].fence,
            vec![page(&inc, "ana", Some("+1500"), 0, now)],
            now - 1,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first[0].reply_code, Some(1));
    // node-a dies here. Its lease runs out; node-b claims, and the pages node-b would choose
    // (someone else, after a schedule change) give way to what node-a recorded.
    let later = now + 1_001;
    let b = s
        .claim_escalations("node-b", later, 1_000, 10)
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert!(b[0].fence > a[0].fence);
    let again = s
        .reserve_pages(
            &inc,
            b[0].fence,
            vec![page(&inc, "cai", Some("+1501"), 0, later)],
            now - 1,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, first, "the same pages, the same codes");
    assert!(
        s.reserve_pages(&inc, a[0].fence, vec![], now)
            .await
            .unwrap()
            .is_none(),
        "the stale holder records nothing"
    );
    let to = EscalationMove::Next {
        step: 1,
        pass: 0,
        round: 0,
        due: later + 5_000,
    };
    let fired = Fired {
        at: Some((0, 0, 0)),
        messages: vec![(first[0].key.clone(), "msg-1".into())],
        summary: Some(serde_json::json!({"step": 1})),
    };
    assert!(
        !s.advance_escalation(&inc, a[0].fence, to, Fired::default(), later)
            .await
            .unwrap()
    );
    assert!(
        s.advance_escalation(&inc, b[0].fence, to, fired, later)
            .await
            .unwrap()
    );
    let row = s.get_escalation(&inc).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.step, row.fired_step, row.due_at),
        (EscState::Active, 1, Some(0), later + 5_000)
    );
    assert_eq!(row.first_page_at, Some(later));
    assert!(
        s.claim_escalations("node-b", later + 10, 1_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "not due"
    );
    let pages = s.pages_of(&inc).await.unwrap();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].message_id.as_deref(), Some("msg-1"));
    assert_eq!(
        s.page_of_message("msg-1").await.unwrap().unwrap().key,
        pages[0].key
    );
    let view = s.get_incident(&inc).await.unwrap().unwrap();
    assert!(view.timeline.iter().any(|e| e.kind == "escalated"));
    assert!(
        view.messages
            .iter()
            .any(|m| m.message_id == "msg-1" && m.kind == "page")
    );

    // An outside change (an acknowledgement) raises the fence and records the first ack.
    assert!(
        s.set_escalation(
            &inc,
            EscalationMove::Wait {
                due: later + 60_000
            },
            true,
            later + 20
        )
        .await
        .unwrap()
    );
    let row2 = s.get_escalation(&inc).await.unwrap().unwrap();
    assert!(row2.fence > row.fence);
    assert_eq!(
        (row2.state, row2.first_ack_at, row2.first_ack_step),
        (EscState::Waiting, Some(later + 20), Some(0))
    );
    assert!(
        !s.set_escalation("nope", EscalationMove::Done, false, later)
            .await
            .unwrap()
    );
}

pub async fn reply_codes_are_unique_per_phone_and_replies_find_their_page(s: Arc<dyn Store>) {
    let now = now_millis();
    let mut incs = Vec::new();
    for k in ["r1", "r2", "r3"] {
        let inc = open_incident(&s, k).await;
        s.start_escalation(&inc, "p", now).await.unwrap();
        incs.push(inc);
    }
    let rows = s.claim_escalations("n", now, 60_000, 10).await.unwrap();
    assert_eq!(rows.len(), 3);
    let mut codes = Vec::new();
    for (i, inc) in incs.iter().enumerate() {
        let fence = rows.iter().find(|r| r.incident_id == *inc).unwrap().fence;
        let p = s
            .reserve_pages(
                inc,
                fence,
                vec![page(inc, "ana", Some("+1555"), 0, now + i as i64)],
                now - 1,
            )
            .await
            .unwrap()
            .unwrap();
        codes.push(p[0].reply_code.unwrap());
        // Sent (a bare reply answers only pages that went out).
        let fired = Fired {
            messages: vec![(p[0].key.clone(), format!("m{i}"))],
            ..Fired::default()
        };
        let wait = EscalationMove::Wait { due: now + 600_000 };
        assert!(
            s.advance_escalation(inc, fence, wait, fired, now)
                .await
                .unwrap()
        );
    }
    assert_eq!(codes, [1, 2, 3], "one phone, three incidents, three codes");
    let found = s
        .page_for_reply("+1555", Some(2), now - 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.incident_id, incs[1]);
    assert!(
        s.page_for_reply("+1555", Some(9), now - 1)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.page_for_reply("+1666", Some(1), now - 1)
            .await
            .unwrap()
            .is_none(),
        "another phone"
    );
    assert!(
        s.page_for_reply("+1555", Some(1), now + 1)
            .await
            .unwrap()
            .is_none(),
        "older than the window"
    );
    // A bare reply: the newest page whose incident is still triggered.
    assert_eq!(
        s.page_for_reply("+1555", None, now - 1)
            .await
            .unwrap()
            .unwrap()
            .incident_id,
        incs[2]
    );
    s.act_incident(
        &incs[2],
        herald::store::IncidentAction::Acknowledge,
        "x",
        "",
        now,
    )
    .await
    .unwrap();
    assert_eq!(
        s.page_for_reply("+1555", None, now - 1)
            .await
            .unwrap()
            .unwrap()
            .incident_id,
        incs[1]
    );
    assert_eq!(
        s.last_page_to("+1555", now - 1)
            .await
            .unwrap()
            .unwrap()
            .incident_id,
        incs[2]
    );
    // Retrigger moves an acknowledged incident back, once.
    assert!(
        s.retrigger_incident(&incs[2], "system", "timed out", now)
            .await
            .unwrap()
    );
    assert!(
        !s.retrigger_incident(&incs[2], "system", "timed out", now)
            .await
            .unwrap()
    );
    // Links are spent once.
    assert!(s.spend_link("n-1", now).await.unwrap());
    assert!(!s.spend_link("n-1", now).await.unwrap());
    let times = s.incident_times(now - 60_000, now + 60_000).await.unwrap();
    assert_eq!(times.len(), 3);
}

conformance!(
    a_dead_holders_step_is_finished_by_the_next_with_the_same_pages,
    reply_codes_are_unique_per_phone_and_replies_find_their_page,
);
