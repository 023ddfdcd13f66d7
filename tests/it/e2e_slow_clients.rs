//! Slow clients cannot exhaust the server: a client must send its request head within the
//! header-read timeout, connections are capped under the file limit (the longest-idle one
//! makes room at the cap), and accept errors back off. Also: every protocol error is
//! problem+json, and the Authorization header is read as RFC 9110 says.

use crate::utils::TestHerald;
use crate::utils::process::{HeraldProcess, KEY};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PARTIAL: &[u8] =
    b"POST /v1/messages HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n";

/// Reads until the server closes the connection; true when it did within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn two_thousand_slow_clients_under_a_1024_file_limit_leave_health_and_sends_answering() {
    // This test holds 2,000 sockets of its own.
    let _ = rlimit::increase_nofile_limit(8_192);
    let dir = tempfile::tempdir().unwrap();
    let h = HeraldProcess::start_custom(
        dir.path(),
        &["127.0.0.1"],
        "header_read_timeout = \"3s\"",
        "",
        "warn",
        &["prlimit", "--nofile=1024:1024"],
    )
    .await;
    let addr = h.base.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    let opened = Instant::now();
    for _ in 0..2_000 {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&addr)).await {
            Ok(Ok(mut s)) => {
                let _ = s.write_all(PARTIAL).await;
                slow.push(s);
            }
            _ => break,
        }
    }
    eprintln!(
        "{} slow connections opened in {} ms",
        slow.len(),
        opened.elapsed().as_millis()
    );
    assert!(
        slow.len() >= 1_500,
        "only {} connections opened",
        slow.len()
    );

    let http = crate::utils::http_builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let t = Instant::now();
    let health = http.get(format!("{}/healthz", h.base)).send().await;
    let health_ms = t.elapsed().as_millis();
    assert_eq!(health.expect("/healthz must answer").status(), 200);
    let t = Instant::now();
    let sent = http
        .post(format!("{}/v1/messages", h.base))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"to": {"user": "u-1"}, "content": {"text": "hi"}}))
        .send()
        .await;
    let send_ms = t.elapsed().as_millis();
    assert_eq!(sent.expect("a send must answer").status(), 202);
    eprintln!(
        "with 2,000 slow connections open: /healthz in {health_ms} ms, a send in {send_ms} ms"
    );

    // The header-read timeout closes what is left of the slow clients.
    let mut closed = 0;
    for s in slow.iter_mut().take(200) {
        if closed_within(s, Duration::from_secs(15)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 200, "slow clients were not cut off");
    drop(h);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_cut_off() {
    let h = TestHerald::start_with(|c| c.server.header_read_timeout = herald::config::Dur::secs(1))
        .await;
    let mut s = TcpStream::connect(h.base.trim_start_matches("http://"))
        .await
        .unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    // A kept-alive connection idle past the timeout is closed too.
    let mut k = TcpStream::connect(h.base.trim_start_matches("http://"))
        .await
        .unwrap();
    k.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = k.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut k, Duration::from_secs(10)).await,
        "idle keep-alive kept open"
    );
    h.stop().await;
}

async fn raw(h: &TestHerald, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(h.base.trim_start_matches("http://"))
        .await
        .unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn long_targets_and_header_floods_get_problem_documents() {
    let h = TestHerald::start().await;
    let long = format!(
        "GET /v1/messages/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(9_000)
    );
    let (code, head, body) = raw(&h, long.as_bytes()).await;
    assert_eq!(code, 414, "{head}");
    assert!(head.contains("application/problem+json"), "{head}");
    assert!(body.contains("\"code\":\"uri_too_long\""), "{body}");

    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-Filler-{i}: {}\r\n", "v".repeat(20)));
    }
    many.push_str("\r\n");
    let (code, head, body) = raw(&h, many.as_bytes()).await;
    assert_eq!(code, 431, "{head}");
    assert!(head.contains("application/problem+json"), "{head}");
    assert!(body.contains("\"code\":\"headers_too_large\""), "{body}");
    h.stop().await;
}

#[tokio::test]
async fn authorization_is_read_as_rfc_9110_says() {
    let h = TestHerald::start().await;
    let http = crate::utils::http();
    // No key: 401 with a challenge.
    let r = http.get(h.url("/v1/messages")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    // The scheme in any case.
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = http
            .get(h.url("/v1/messages"))
            .header("authorization", format!("{scheme} {}", crate::utils::ADMIN))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    // Two Authorization headers: a 400, whatever they say.
    let mut two = reqwest::header::HeaderMap::new();
    two.append(
        "authorization",
        format!("Bearer {}", crate::utils::ADMIN).parse().unwrap(),
    );
    two.append("authorization", "Bearer other".parse().unwrap());
    let r = http
        .get(h.url("/v1/messages"))
        .headers(two)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    h.stop().await;
}
