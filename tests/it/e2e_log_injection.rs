//! Values from outside cannot forge log lines: a webhook receiver's error body and an
//! operator's reason, full of newlines, escape sequences and NULs, stay on one escaped line.

use crate::utils::process::{HeraldProcess, KEY};
use axum::http::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

const EVIL: &str = "oops\n2026-12-01T00:00:00.000000Z ERROR herald: forged line\u{1b}[2J\u{0}";

#[tokio::test]
async fn remote_error_bodies_and_reasons_are_escaped_in_logs() {
    let app = axum::Router::new().fallback(|| async { (StatusCode::BAD_REQUEST, EVIL) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let h = HeraldProcess::start_with_log_level(dir.path(), "", "info").await;
    let http = crate::utils::http();
    let sent = h
        .send(&json!({"to": {"webhook": hook}, "content": {"text": "x"}}))
        .await;
    let id = sent["id"].as_str().unwrap().to_string();
    let r = http
        .put(format!("{}/v1/mode", h.base))
        .bearer_auth(KEY)
        .json(&json!({"mode": "normal", "reason": "routine\n2026-12-01T00:00:00.000000Z ERROR herald: forged reason\u{1b}]0;pwned\u{7}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Wait for the attempt (a 400 is final) and its log line.
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
        if log.contains("attempt failed") && log.contains("mode switched") {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "no log of the attempt for {id}: {log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-12-01T00:00:00.000000Z"),
            "a forged line: {line}"
        );
    }
    assert!(
        !log.contains('\u{1b}') && !log.contains('\u{0}') && !log.contains('\u{7}'),
        "raw control characters in the log"
    );
    assert!(
        log.contains("\\n2026-12-01T00:00:00.000000Z ERROR herald: forged line"),
        "{log}"
    );
    drop(h);
}

/// `[log] format = "json"`: one object per line; a delivery's lines carry its ids (from the
/// `process` span) and the provider; the API key never appears.
#[tokio::test]
async fn json_logs_carry_the_delivery_ids_and_no_secrets() {
    let app = axum::Router::new().fallback(|| async { (StatusCode::BAD_REQUEST, "no") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    // Appended inside the harness's `[log]` table.
    let h = HeraldProcess::start_with_log_level(dir.path(), "format = \"json\"\n", "info").await;
    let sent = h
        .send(&json!({"to": {"webhook": hook}, "content": {"text": "x"}}))
        .await;
    let id = sent["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
        if let Some(l) = log.lines().find(|l| l.contains("attempt failed")) {
            for l in log.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    serde_json::from_str::<serde_json::Value>(l).is_ok(),
                    "not one JSON object: {l}"
                );
                assert!(!l.contains(KEY), "the API key in a log line: {l}");
            }
            break serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
        assert!(Instant::now() < deadline, "no attempt logged: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["message"], "attempt failed", "{line}");
    assert_eq!(line["provider"], "webhook", "{line}");
    assert!(line["timestamp"].is_string(), "{line}");
    assert_eq!(line["span"]["name"], "process", "{line}");
    assert_eq!(line["span"]["message_id"], id.as_str(), "{line}");
    assert!(
        line["span"]["delivery_id"]
            .as_str()
            .is_some_and(|d| d.starts_with("dlv_")),
        "{line}"
    );
    assert_eq!(line["span"]["channel"], "webhook", "{line}");
    // The message's trace (a new one: the request had no traceparent), as OTLP writes it.
    assert!(
        line["span"]["trace_id"]
            .as_str()
            .is_some_and(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())),
        "{line}"
    );
    drop(h);
}
