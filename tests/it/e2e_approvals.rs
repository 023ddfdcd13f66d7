//! Two-person approval of critical switches (requests, approval by another key once,
//! rejection, break-glass with review), provider switches that end by themselves, and the
//! audit log's hash chain catching an edited or removed row on both backends.

use crate::utils::rig::{Rig, sms_providers};
use crate::utils::{ADMIN, TestHerald, pg};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn key(h: &TestHerald, name: &str, role: &str, approver: bool) -> String {
    h.api_key(name, role, approver).await.0
}

async fn mode(h: &TestHerald) -> String {
    h.get("/v1/mode").await.1["mode"]
        .as_str()
        .unwrap_or("normal")
        .to_string()
}

async fn audit_actions(h: &TestHerald) -> Vec<(String, String, String)> {
    let (_, log) = h.get("/v1/audit?limit=100").await;
    log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mode_switch_waits_for_a_second_person_and_runs_once() {
    let h = TestHerald::start_with(|c| c.approvals.actions = vec!["mode.set".into()]).await;
    let alice = key(&h, "alice", "admin", true).await;
    let bob = key(&h, "bob", "admin", true).await;
    let olga = key(&h, "olga", "operator", true).await;
    let viewer = key(&h, "vic", "viewer", false).await;

    let (code, r) = h
        .call_as(
            &alice,
            Method::PUT,
            "/v1/mode",
            Some(json!({"mode": "read_only", "reason": "database migration"})),
        )
        .await;
    assert_eq!(code, 202, "{r}");
    let a = &r["approval"];
    assert_eq!(a["status"], "pending");
    assert_eq!(a["action"], "mode.set");
    assert_eq!(a["params"]["mode"], "read_only");
    assert_eq!(a["requested_by"], "alice");
    assert_eq!(a["summary"], "switch the mode to read_only");
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(mode(&h).await, "normal", "nothing switched before approval");

    let approve = |k: String, id: String| {
        let h = &h;
        async move {
            h.call_as(
                &k,
                Method::POST,
                &format!("/v1/approvals/{id}/approve"),
                Some(json!({"note": "checked"})),
            )
            .await
        }
    };
    let (code, e) = approve(alice.clone(), id.clone()).await;
    assert_eq!(code, 403, "the requester's own approval is refused: {e}");
    assert!(
        e["detail"].as_str().unwrap().contains("another person"),
        "{e}"
    );
    let (code, _) = approve(viewer.clone(), id.clone()).await;
    assert_eq!(code, 403, "a key without the approver right");
    let (code, e) = approve(olga.clone(), id.clone()).await;
    assert_eq!(code, 403, "an approver without the action's role: {e}");
    assert_eq!(mode(&h).await, "normal");

    let (code, done) = approve(bob.clone(), id.clone()).await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["status"], "executed");
    assert_eq!(done["decided_by"], "bob");
    assert_eq!(done["result"]["mode"], "read_only");
    assert_eq!(mode(&h).await, "read_only");
    let (code, _) = approve(ADMIN.to_string(), id.clone()).await;
    assert_eq!(code, 409, "an approval executes once");

    let log = audit_actions(&h).await;
    let set = log.iter().find(|(a, _, _)| a == "mode.set").unwrap();
    assert_eq!(set.1, "alice", "the requester acts");
    assert!(set.2.contains(&id) && set.2.contains("bob"), "{set:?}");
    assert!(
        log.iter()
            .any(|(a, who, _)| a == "approval.approve" && who == "bob")
    );
    assert!(
        log.iter()
            .any(|(a, who, _)| a == "approval.request" && who == "alice")
    );

    // Withdrawn by the requester; refused to a non-approver who did not ask.
    let (_, r) = h
        .call_as(
            &alice,
            Method::PUT,
            "/v1/mode",
            Some(json!({"mode": "normal", "reason": "done"})),
        )
        .await;
    let id2 = r["approval"]["id"].as_str().unwrap().to_string();
    let (code, _) = h
        .call_as(
            &viewer,
            Method::POST,
            &format!("/v1/approvals/{id2}/reject"),
            None,
        )
        .await;
    assert_eq!(code, 403);
    let (code, w) = h
        .call_as(
            &alice,
            Method::POST,
            &format!("/v1/approvals/{id2}/reject"),
            Some(json!({"reason": "changed my mind"})),
        )
        .await;
    assert_eq!((code, w["status"].as_str()), (200, Some("rejected")), "{w}");
    assert_eq!(approve(bob.clone(), id2.clone()).await.0, 409);
    assert_eq!(mode(&h).await, "read_only");

    // Break-glass: typed exactly, done alone, flagged until another approver reviews it.
    let (code, e) = h
        .call_as(
            &alice,
            Method::PUT,
            "/v1/mode",
            Some(json!({"mode": "normal", "reason": "outage", "break_glass": "yes"})),
        )
        .await;
    assert_eq!(
        (code, e["errors"][0]["field"].as_str()),
        (422, Some("break_glass"))
    );
    let (code, r) = h
        .call_as(
            &alice,
            Method::PUT,
            "/v1/mode",
            Some(json!({"mode": "normal", "reason": "outage", "break_glass": "BREAK GLASS"})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(mode(&h).await, "normal");
    let bg = r["break_glass_review"].as_str().unwrap().to_string();
    let (_, listed) = h.get("/v1/approvals?status=executed").await;
    let flagged = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == bg.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (flagged["break_glass"].as_bool(), flagged["review"].as_str()),
        (Some(true), Some("needed"))
    );
    let review = |k: String| {
        let (h, bg) = (&h, bg.clone());
        async move {
            h.call_as(
                &k,
                Method::POST,
                &format!("/v1/approvals/{bg}/review"),
                None,
            )
            .await
        }
    };
    assert_eq!(review(alice.clone()).await.0, 403, "not one's own");
    let (code, rv) = review(bob.clone()).await;
    assert_eq!((code, rv["review"].as_str()), (200, Some("done")), "{rv}");
    assert_eq!(review(bob.clone()).await.0, 409);
    assert!(
        audit_actions(&h)
            .await
            .iter()
            .any(|(a, _, _)| a == "approval.break_glass")
    );

    let (code, e) = h.get("/v1/approvals?status=sleeping").await;
    assert_eq!(
        (code, e["errors"][0]["field"].as_str()),
        (422, Some("status"))
    );
    let (_, v) = h.get("/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_healthy_provider_needs_approval_and_a_timed_switch_ends_by_itself() {
    let rig = Rig::start(|c, sim| {
        c.providers = sms_providers(sim);
        c.approvals.actions = vec!["provider.disable_last".into()];
    })
    .await;
    let h = &rig.herald;
    let ops = key(h, "ops", "operator", false).await;
    let disable = |p: &'static str, body: Value| {
        let ops = ops.clone();
        async move {
            h.call_as(
                &ops,
                Method::POST,
                &format!("/v1/providers/{p}/disable"),
                Some(body),
            )
            .await
        }
    };
    let (code, e) = disable("aliyun-main", json!({"reason": "x", "for": "soon"})).await;
    assert_eq!((code, e["errors"][0]["field"].as_str()), (422, Some("for")));
    let (code, e) = disable(
        "aliyun-main",
        json!({"reason": "x", "until": "2001-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(
        (code, e["errors"][0]["field"].as_str()),
        (422, Some("until"))
    );

    // The other SMS provider is healthy: this one goes at once, for 2 seconds.
    let (code, p) = disable(
        "aliyun-main",
        json!({"reason": "vendor window", "for": "2s"}),
    )
    .await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["state"], "disabled");
    assert!(p["disabled"]["until"].is_string(), "{p}");
    // Now it is the last healthy one of SMS: disabling it waits for a second person.
    let (code, r) = disable("twilio-backup", json!({"reason": "cost"})).await;
    assert_eq!(code, 202, "{r}");
    assert_eq!(r["approval"]["action"], "provider.disable");

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list) = h.get("/v1/providers").await;
        let main = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == "aliyun-main")
            .unwrap()
            .clone();
        if main["state"] != "disabled" {
            break;
        }
        assert!(Instant::now() < deadline, "the switch never ended: {main}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = audit_actions(h).await;
    let back = log.iter().find(|(a, _, _)| a == "provider.enable").unwrap();
    assert_eq!(back.1, "system");
    assert!(
        back.2.contains("expired") && back.2.contains("vendor window"),
        "{back:?}"
    );
}

/// Edits one sealed row, then removes another: `audit verify` (API and CLI) names each.
async fn tamper_is_caught(h: &TestHerald, edit: impl AsyncFn(&str)) {
    for reason in ["one", "two", "three"] {
        let (code, _) = h
            .call(
                Method::PUT,
                "/v1/mode",
                Some(json!({"mode": "core_only", "reason": reason})),
            )
            .await;
        assert_eq!(code, 200);
    }
    let (_, v) = h.get("/v1/audit/verify").await;
    assert_eq!(
        (v["ok"].as_bool(), v["unsealed"].as_i64()),
        (Some(true), Some(0)),
        "{v}"
    );
    assert!(v["checked"].as_u64().unwrap() >= 3, "{v}");
    let cli = |base: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["audit", "verify"])
            .env("HERALD_URL", base)
            .env("HERALD_API_KEY", ADMIN)
            .output()
            .unwrap()
    };
    assert!(cli(&h.base).status.success());

    let (_, log) = h.get("/v1/audit?limit=100").await;
    let two = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "two")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    edit(&format!(
        "UPDATE audit SET reason = 'nothing to see' WHERE id = {two}"
    ))
    .await;
    let (_, v) = h.get("/v1/audit/verify").await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["broken"]["id"].as_i64(), Some(two), "{v}");
    assert!(
        v["broken"]["reason"].as_str().unwrap().contains("edited"),
        "{v}"
    );
    let out = cli(&h.base);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tampered") && err.contains(&two.to_string()),
        "{err}"
    );

    // Put back exactly, the chain holds again; remove a row, the next one is named.
    edit(&format!("UPDATE audit SET reason = 'two' WHERE id = {two}")).await;
    assert_eq!(h.get("/v1/audit/verify").await.1["ok"], true);
    edit(&format!("DELETE FROM audit WHERE id = {two}")).await;
    let (_, v) = h.get("/v1/audit/verify").await;
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["broken"]["reason"].as_str().unwrap().contains("missing"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_catches_an_edited_row_on_sqlite() {
    let h = TestHerald::start().await;
    let db = h.dir.path().join("herald.db");
    tamper_is_caught(&h, async |sql: &str| {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute(sql, []).unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_catches_an_edited_row_on_postgres() {
    let url = pg::fresh_db().await;
    let h = TestHerald::start_with(|c| c.storage.url = Some(url.clone())).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    tamper_is_caught(&h, async |sql: &str| {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
}
