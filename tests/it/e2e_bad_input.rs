//! Malformed input of every kind gets a 4xx problem+json with a `code`: never a 5xx.

use crate::utils::{ADMIN, TestHerald};
use serde_json::{Value, json};

async fn raw(
    h: &TestHerald,
    path: &str,
    auth: Option<&str>,
    ctype: &str,
    body: Vec<u8>,
) -> (u16, String, Value) {
    let mut req = h
        .http
        .post(h.url(path))
        .header("content-type", ctype)
        .body(body);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    (code, ct, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn assert_problem(
    what: &str,
    code: u16,
    ct: &str,
    body: &Value,
    want_status: u16,
    want_code: &str,
) {
    assert_eq!(code, want_status, "{what}: {body}");
    assert_eq!(ct, "application/problem+json", "{what}");
    assert_eq!(body["code"], want_code, "{what}: {body}");
    assert_eq!(body["status"], want_status, "{what}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{what}"
    );
}

#[tokio::test]
async fn every_kind_of_malformed_request_is_refused_cleanly() {
    let h = TestHerald::start().await;
    let bearer = format!("Bearer {ADMIN}");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_obj = format!(
        "{{\"to\":{{\"user\":\"u\"}},\"content\":{{\"text\":\"x\"}},\"metadata\":{}{}}}",
        "{\"a\":".repeat(5000),
        "1}".repeat(5000)
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("broken json", b"{\"to\":".to_vec(), 422, "validation_failed"),
        ("empty", b"".to_vec(), 422, "validation_failed"),
        ("not an object", b"[1,2]".to_vec(), 422, "validation_failed"),
        ("bad utf-8", b"{\"to\":{\"user\":\"\xff\xfe\"}}".to_vec(), 422, "validation_failed"),
        ("deep array", deep.into_bytes(), 422, "validation_failed"),
        ("deep object", deep_obj.into_bytes(), 422, "validation_failed"),
        ("huge body", vec![b' '; 2 << 20], 413, "payload_too_large"),
        ("wrong type", br#"{"to":{"user":5},"content":{"text":"x"}}"#.to_vec(), 422, "validation_failed"),
        ("null to", br#"{"to":null,"content":{"text":"x"}}"#.to_vec(), 422, "validation_failed"),
        ("bad phone", br#"{"to":{"phone":"12345","user":"u"},"channels":["inbox"],"content":{"text":"x"}}"#.to_vec(), 422, "validation_failed"),
        ("bad email", br#"{"to":{"email":"nope@","user":"u"},"channels":["inbox"],"content":{"text":"x"}}"#.to_vec(), 422, "validation_failed"),
        ("bad url", br#"{"to":{"webhook":"http//x"},"content":{"text":"x"}}"#.to_vec(), 422, "validation_failed"),
        ("unknown channel", br#"{"to":{"user":"u"},"channels":["pigeon"],"content":{"text":"x"}}"#.to_vec(), 422, "validation_failed"),
        ("channel without provider", br#"{"to":{"phone":"+8613800138000"},"content":{"text":"x"}}"#.to_vec(), 422, "validation_failed"),
        ("unknown template", br#"{"to":{"user":"u"},"template":"nope"}"#.to_vec(), 422, "validation_failed"),
        ("bad ttl", br#"{"to":{"user":"u"},"content":{"text":"x"},"ttl":"soon"}"#.to_vec(), 422, "validation_failed"),
        ("bad timestamp", br#"{"to":{"user":"u"},"content":{"text":"x"},"send_at":"tomorrow"}"#.to_vec(), 422, "validation_failed"),
        ("private webhook", br#"{"to":{"webhook":"http://192.168.1.10/x"},"content":{"text":"x"}}"#.to_vec(), 422, "validation_failed"),
        ("metadata webhook", br#"{"to":{"webhook":"http://169.254.169.254/latest/meta-data"},"content":{"text":"x"}}"#.to_vec(), 422, "validation_failed"),
        ("ipv6 metadata", br#"{"to":{"webhook":"http://[fd00:ec2::254]/"},"content":{"text":"x"}}"#.to_vec(), 422, "validation_failed"),
        ("non-http webhook", br#"{"to":{"webhook":"file:///etc/passwd"},"content":{"text":"x"}}"#.to_vec(), 422, "validation_failed"),
        ("gopher webhook", br#"{"to":{"webhook":"gopher://127.0.0.1:25/"},"content":{"text":"x"}}"#.to_vec(), 422, "validation_failed"),
        ("huge number", br#"{"to":{"user":"u"},"content":{"text":"x"},"priority":1e999}"#.to_vec(), 422, "validation_failed"),
    ];
    for (what, body, status, code) in cases {
        let (c, ct, b) = raw(&h, "/v1/messages", Some(&bearer), "application/json", body).await;
        assert_problem(what, c, &ct, &b, status, code);
        if status == 422 {
            assert!(
                b["errors"][0]["field"].is_string(),
                "{what}: names a field: {b}"
            );
        }
    }
    // The field is named precisely.
    let (_, _, b) = raw(
        &h,
        "/v1/messages",
        Some(&bearer),
        "application/json",
        br#"{"to":{"webhook":"http://10.1.1.1/"},"content":{"text":"x"}}"#.to_vec(),
    )
    .await;
    assert_eq!(b["errors"][0]["field"], "to.webhook");

    // Authentication.
    let good = br#"{"to":{"user":"u"},"content":{"text":"x"}}"#.to_vec();
    for (what, auth) in [
        ("no auth", None),
        ("wrong key", Some("Bearer hk_wrong")),
        ("not bearer", Some("Basic abc")),
        ("empty bearer", Some("Bearer ")),
    ] {
        let (c, ct, b) = raw(&h, "/v1/messages", auth, "application/json", good.clone()).await;
        assert_problem(what, c, &ct, &b, 401, "unauthorized");
    }
    // Batch: the envelope is checked, and each item separately.
    let (c, ct, b) = raw(
        &h,
        "/v1/messages/batch",
        Some(&bearer),
        "application/json",
        br#"{"messages":{}}"#.to_vec(),
    )
    .await;
    assert_problem("batch not array", c, &ct, &b, 422, "validation_failed");
    let (c, ct, b) = raw(
        &h,
        "/v1/messages/batch",
        Some(&bearer),
        "application/json",
        br#"{"messages":[]}"#.to_vec(),
    )
    .await;
    assert_problem("empty batch", c, &ct, &b, 422, "validation_failed");
    let too_many =
        json!({"messages": vec![json!({"to":{"user":"u"},"content":{"text":"x"}}); 1001]});
    let (c, ct, b) = raw(
        &h,
        "/v1/messages/batch",
        Some(&bearer),
        "application/json",
        serde_json::to_vec(&too_many).unwrap(),
    )
    .await;
    assert_problem("oversized batch", c, &ct, &b, 422, "validation_failed");
    let mixed = json!({"messages":[
        {"to":{"user":"u"},"content":{"text":"ok"}},
        {"to":{"user":"u"},"content":{"text":"bad"},"ttl":"x"},
        {"to":{"user":"u2"},"content":{"text":"ok too"}}
    ]});
    let (c, _, b) = raw(
        &h,
        "/v1/messages/batch",
        Some(&bearer),
        "application/json",
        serde_json::to_vec(&mixed).unwrap(),
    )
    .await;
    assert_eq!(c, 202, "{b}");
    let results = b["results"].as_array().unwrap();
    assert!(results[0]["id"].is_string());
    assert_eq!(results[1]["error"]["code"], "validation_failed");
    assert_eq!(results[1]["error"]["errors"][0]["field"], "messages[1].ttl");
    assert!(results[2]["id"].is_string());
    h.wait_status(results[2]["id"].as_str().unwrap(), "sent")
        .await;

    // Unknown routes and methods are problems too.
    let (code, m) = h.get("/v1/nothing-here").await;
    assert_eq!((code, m["code"].as_str()), (404, Some("not_found")));
    let (code, _) = h.call(reqwest::Method::DELETE, "/v1/messages", None).await;
    assert_eq!(code, 405);

    // After all that, the server is healthy and still accepts.
    let (c, _, _) = raw(&h, "/v1/messages", Some(&bearer), "application/json", good).await;
    assert_eq!(c, 202);
    h.stop().await;
}

/// Answers the framework makes itself are problem+json too, and limits are what they say:
/// characters (not bytes), a ttl of at least 1 ms, an expiry within 30 days of `send_at`.
#[tokio::test]
async fn framework_refusals_and_edge_limits_are_problem_documents() {
    let h = TestHerald::start().await;
    // A path segment that is not UTF-8.
    let r = h
        .http
        .get(h.url("/v1/messages/%FF"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert_problem("non-UTF-8 path", code, &ct, &body, 400, "bad_request");
    // A query parameter given twice: which one counts is not guessed.
    let r = h
        .http
        .get(h.url("/v1/approvals?limit=5&status=pending&limit="))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert_problem("repeated parameter", code, &ct, &body, 400, "bad_request");
    assert!(
        body["detail"].as_str().unwrap().contains("`limit`"),
        "{body}"
    );
    // A receipt body over its route's limit.
    let (code, ct, body) = raw(
        &h,
        "/v1/receipts/aliyun/x",
        None,
        "application/json",
        vec![b' '; 3 << 20],
    )
    .await;
    assert_problem("large receipt", code, &ct, &body, 413, "payload_too_large");
    // ttl below a millisecond.
    let (code, m) = h
        .send(json!({"to": {"user": "u"}, "content": {"text": "x"}, "ttl": "1ns"}))
        .await;
    assert_eq!(code, 422, "{m}");
    assert_eq!(m["errors"][0]["field"], "ttl");
    // An expiry 1 day after a send_at 40 days out is fine (the window counts from send_at).
    let send_at = time::OffsetDateTime::now_utc() + time::Duration::days(40);
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let (code, m) = h
        .send(json!({"to": {"user": "u"}, "content": {"text": "x"},
            "send_at": fmt(send_at), "expires_at": fmt(send_at + time::Duration::days(1))}))
        .await;
    assert_eq!(code, 202, "{m}");
    // Names and reasons are counted in characters.
    let (code, m) = h
        .call(
            reqwest::Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "é".repeat(60), "role": "viewer"})),
        )
        .await;
    assert_eq!(code, 201, "{m}");
    let (code, m) = h
        .call(
            reqwest::Method::PUT,
            "/v1/mode",
            Some(json!({"mode": "normal", "reason": "é".repeat(300)})),
        )
        .await;
    assert_eq!(code, 200, "{m}");
    h.stop().await;
}
