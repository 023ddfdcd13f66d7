//! The on-call documents over HTTP and the CLI: a three-person weekly rotation with an
//! override answers `on-call?at=` around Berlin's and New York's DST changes as the unit
//! tests of `core::oncall::schedule` say; faults are 422 naming the field; versions, in-use
//! deletes, `herald apply` and `herald oncall who`.

use crate::utils::{ADMIN, TestHerald};
use reqwest::Method;
use serde_json::{Value, json};

async fn people(h: &TestHerald, ids: &[&str]) {
    for id in ids {
        let (c, r) = h
            .call(
                Method::PUT,
                &format!("/v1/contacts/{id}"),
                Some(json!({"name": id})),
            )
            .await;
        assert_eq!(c, 201, "{r}");
    }
}

async fn who(h: &TestHerald, id: &str, at: &str) -> Vec<String> {
    let (c, v) = h.get(&format!("/v1/schedules/{id}/on-call?at={at}")).await;
    assert_eq!(c, 200, "{v}");
    assert_eq!(v["at"].as_str().unwrap()[..19], at[..19]);
    v["on_call"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

fn weekly(id: &str, tz: &str, start: &str) -> Value {
    json!({"id": id, "name": format!("{tz} rotation"), "time_zone": tz,
           "layers": [{"rotation": "weekly", "start": start, "participants": ["ana", "ben", "cai"]}]})
}

#[tokio::test]
async fn the_api_agrees_with_the_schedule_rules_around_dst_changes() {
    let h = TestHerald::start().await;
    people(&h, &["ana", "ben", "cai", "dan"]).await;
    let mut berlin = weekly("berlin", "Europe/Berlin", "2026-03-16T09:00");
    berlin["overrides"] = json!([{"start": "2026-03-29T00:00:00Z", "end": "2026-03-30T00:00:00Z",
                                  "person": "dan", "replaces": "ben"}]);
    let (c, r) = h.call(Method::POST, "/v1/schedules", Some(berlin)).await;
    assert_eq!(c, 201, "{r}");
    assert_eq!(
        who(&h, "berlin", "2026-03-16T08:00:00Z").await,
        ["ana"],
        "09:00 CET"
    );
    assert_eq!(who(&h, "berlin", "2026-03-23T08:00:00Z").await, ["ben"]);
    assert_eq!(
        who(&h, "berlin", "2026-03-29T12:00:00Z").await,
        ["dan"],
        "the override replaces ben"
    );
    assert_eq!(
        who(&h, "berlin", "2026-03-30T06:59:59Z").await,
        ["ben"],
        "08:59:59 CEST"
    );
    assert_eq!(
        who(&h, "berlin", "2026-03-30T07:00:00Z").await,
        ["cai"],
        "09:00 CEST"
    );

    // New York springs forward on 2026-03-08 and falls back on 2026-11-01.
    let (c, r) = h
        .call(
            Method::POST,
            "/v1/schedules",
            Some(weekly("ny", "America/New_York", "2026-03-02T09:00")),
        )
        .await;
    assert_eq!(c, 201, "{r}");
    assert_eq!(
        who(&h, "ny", "2026-03-02T14:00:00Z").await,
        ["ana"],
        "09:00 EST"
    );
    assert_eq!(
        who(&h, "ny", "2026-03-09T12:59:59Z").await,
        ["ana"],
        "08:59:59 EDT"
    );
    assert_eq!(
        who(&h, "ny", "2026-03-09T13:00:00Z").await,
        ["ben"],
        "09:00 EDT"
    );
    // 35 weeks after 2026-03-02 is 2026-11-02 (cai's turn: 35 % 3 = 2), 09:00 EST = 14:00Z.
    assert_eq!(who(&h, "ny", "2026-11-02T13:59:59Z").await, ["ben"]);
    assert_eq!(who(&h, "ny", "2026-11-02T14:00:00Z").await, ["cai"]);
}

#[tokio::test]
async fn faults_name_their_fields_edits_need_the_version_and_used_documents_stay() {
    let h = TestHerald::start().await;
    people(&h, &["ana", "ben", "cai"]).await;
    let mut bad = weekly("s1", "Mars/Olympus", "2026-13-01T09:00");
    bad["layers"][0]["participants"] = json!(["ana", "ghost"]);
    let (c, r) = h.call(Method::POST, "/v1/schedules", Some(bad)).await;
    assert_eq!(c, 422, "{r}");
    let fields: Vec<&str> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["time_zone", "layers[0].start"], "{r}");
    let mut ghost = weekly("s1", "UTC", "2026-01-05T09:00");
    ghost["layers"][0]["participants"] = json!(["ana", "ghost"]);
    let (c, r) = h.call(Method::POST, "/v1/schedules", Some(ghost)).await;
    assert_eq!(c, 422, "{r}");
    assert_eq!(r["errors"][0]["field"], "layers[0].participants[1]", "{r}");
    assert_eq!(r["errors"][0]["message"], "no contact `ghost` exists");

    let (c, s1) = h
        .call(
            Method::POST,
            "/v1/schedules",
            Some(weekly("s1", "UTC", "2026-01-05T09:00")),
        )
        .await;
    assert_eq!((c, s1["version"].as_i64()), (201, Some(1)), "{s1}");
    let (c, _) = h
        .call(
            Method::POST,
            "/v1/schedules",
            Some(weekly("s1", "UTC", "2026-01-05T09:00")),
        )
        .await;
    assert_eq!(c, 409);
    let mut edit = s1.clone();
    edit["name"] = json!("renamed");
    let (c, r) = h
        .call(Method::PUT, "/v1/schedules/s1", Some(edit.clone()))
        .await;
    assert_eq!((c, r["version"].as_i64()), (200, Some(2)), "{r}");
    let (c, r) = h.call(Method::PUT, "/v1/schedules/s1", Some(edit)).await;
    assert_eq!(
        (c, r["code"].as_str()),
        (409, Some("document_changed")),
        "stale version: {r}"
    );

    let policy = json!({"id": "p1", "name": "P", "steps": [
        {"delay_seconds": 60, "targets": [{"type": "schedule", "id": "s1"}, {"type": "chat", "id": "nope"}]},
        {"targets": [{"type": "schedule", "id": "s9"}]}]});
    let (c, r) = h
        .call(Method::POST, "/v1/escalation-policies", Some(policy))
        .await;
    assert_eq!(c, 422, "{r}");
    assert_eq!(r["errors"][0]["field"], "steps[0].targets[1].id", "{r}");
    let policy = json!({"id": "p1", "name": "P", "steps": [{"targets": [{"type": "schedule", "id": "s9"}]}]});
    let (_, r) = h
        .call(Method::POST, "/v1/escalation-policies", Some(policy))
        .await;
    assert_eq!(r["errors"][0]["message"], "no schedule `s9` exists", "{r}");
    let policy = json!({"id": "p1", "name": "P", "steps": [{"targets": [{"type": "schedule", "id": "s1"}]}]});
    let (c, r) = h
        .call(Method::POST, "/v1/escalation-policies", Some(policy))
        .await;
    assert_eq!(c, 201, "{r}");
    let (c, r) = h.call(Method::DELETE, "/v1/schedules/s1", None).await;
    assert_eq!(
        (c, r["code"].as_str()),
        (409, Some("document_in_use")),
        "{r}"
    );
    let (c, _) = h
        .call(Method::DELETE, "/v1/escalation-policies/p1", None)
        .await;
    assert_eq!(c, 204);
    let (c, _) = h.call(Method::DELETE, "/v1/schedules/s1", None).await;
    assert_eq!(c, 204);
    let (c, _) = h.get("/v1/schedules/s1/on-call").await;
    assert_eq!(c, 404);
    let (_, audit) = h.get("/v1/audit").await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "schedule.create",
        "schedule.update",
        "schedule.delete",
        "escalation_policy.create",
        "escalation_policy.delete",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    // A viewer reads but does not write.
    let (c, r) = h
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "v", "role": "viewer"})),
        )
        .await;
    assert_eq!(c, 201, "{r}");
    let viewer = r["key"].as_str().unwrap();
    let (c, _) = h.call_as(viewer, Method::GET, "/v1/schedules", None).await;
    assert_eq!(c, 200);
    let (c, _) = h
        .call_as(
            viewer,
            Method::POST,
            "/v1/schedules",
            Some(weekly("s2", "UTC", "2026-01-05T09:00")),
        )
        .await;
    assert_eq!(c, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_apply_upserts_contacts_schedules_and_policies_and_oncall_who_answers() {
    let h = TestHerald::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oncall.json");
    let doc = json!({
        "contacts": [{"id": "ana", "name": "Ana", "phones": ["+15005550101"]}, {"id": "ben", "name": "Ben"}],
        "schedules": [{"id": "db", "name": "DB", "time_zone": "UTC",
                       "layers": [{"rotation": "daily", "start": "2026-01-01T00:00", "participants": ["ana", "ben"]}]}],
        "escalation_policies": [{"id": "db", "name": "DB", "steps": [{"targets": [{"type": "schedule", "id": "db"}]}]}]});
    std::fs::write(&file, doc.to_string()).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(args)
            .env("HERALD_URL", &h.base)
            .env("HERALD_API_KEY", ADMIN)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let f = file.to_str().unwrap();
    let (ok, out) = tokio::task::block_in_place(|| run(&["apply", f]));
    assert!(ok, "{out}");
    assert!(
        out.contains("escalation_policies") && out.contains("\"version\": 1"),
        "{out}"
    );
    let (ok, out) = tokio::task::block_in_place(|| run(&["apply", f]));
    assert!(
        ok && out.contains("\"version\": 2"),
        "applying again replaces: {out}"
    );
    let (ok, out) = tokio::task::block_in_place(|| {
        run(&["oncall", "who", "db", "--at", "2026-01-02T12:00:00Z"])
    });
    assert!(ok && out.contains("\"ben\""), "{out}");
    let (ok, out) = tokio::task::block_in_place(|| run(&["oncall", "list", "policy"]));
    assert!(ok && out.contains("\"db\""), "{out}");
    std::fs::write(&file, json!({"schedules": [{"id": "x", "name": "X", "time_zone": "UTC",
        "layers": [{"rotation": "daily", "start": "2026-01-01T00:00", "participants": ["nobody"]}]}]}).to_string()).unwrap();
    let (ok, out) = tokio::task::block_in_place(|| run(&["apply", f]));
    assert!(
        !ok && out.contains("schedules[0]") && out.contains("no contact `nobody` exists"),
        "{out}"
    );
}
