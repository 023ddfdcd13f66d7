//! Traces: one message's spans (accept, store, claim, the provider call, the outcome) reach
//! a real OTLP/HTTP receiver built on the official protobuf definitions, linked to each
//! other and to the caller's `traceparent`; the webhook carries the call's `traceparent`.

use crate::utils::TestHerald;
use crate::utils::receiver::Receiver;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct OtlpReceiver {
    child: Child,
    url: String,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_receiver() -> OtlpReceiver {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::utils::process::free_port();
    let out = dir.path().join("spans.jsonl");
    let child = Command::new(crate::utils::python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp_receiver.py"))
        .args(["--port", &port.to_string(), "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot start the OTLP receiver");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the OTLP receiver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    OtlpReceiver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        out,
        _dir: dir,
    }
}

impl OtlpReceiver {
    fn spans(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        // The receiver may be writing its last line right now: a line that does not parse
        // yet is read next time.
        let spans: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if let Some(p) = spans.iter().find(|s| s.get("problem").is_some()) {
            panic!("the receiver could not read an export: {p}");
        }
        spans
    }

    /// Bounded wait until the trace holds a span of each name.
    async fn trace(&self, trace_id: &str, names: &[&str]) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got: Vec<Value> = self
                .spans()
                .into_iter()
                .filter(|s| s["trace_id"] == trace_id)
                .collect();
            let has = |n: &str| {
                got.iter()
                    .any(|s| s["name"].as_str().is_some_and(|x| x.starts_with(n)))
            };
            if names.iter().all(|n| has(n)) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id} lacks one of {names:?}: {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn one<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    let found: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"].as_str().is_some_and(|x| x.starts_with(name)))
        .collect();
    assert_eq!(found.len(), 1, "one {name} span expected: {spans:#?}");
    found[0]
}

async fn send_traced(h: &TestHerald, body: Value, traceparent: Option<&str>) -> String {
    let mut req = h
        .http
        .post(h.url("/v1/messages"))
        .bearer_auth(crate::utils::ADMIN)
        .json(&body);
    if let Some(t) = traceparent {
        req = req.header("traceparent", t);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn one_message_is_one_trace_from_accept_to_outcome_and_the_webhook_joins_it() {
    let otlp = start_receiver();
    let rx = Receiver::start().await;
    let endpoint = otlp.url.clone();
    let h = TestHerald::start_with(|c| c.telemetry.otlp_endpoint = Some(endpoint)).await;
    let id = send_traced(
        &h,
        json!({"to":{"webhook":rx.url},"content":{"text":"traced"}}),
        Some(&format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")),
    )
    .await;
    h.wait_status(&id, "sent").await;
    let spans = otlp
        .trace(
            CALLER_TRACE,
            &["POST /v1/messages", "store", "claim", "send ", "outcome"],
        )
        .await;
    let accept = one(&spans, "POST /v1/messages");
    let store = one(&spans, "store");
    let claim = one(&spans, "claim");
    let call = one(&spans, "send ");
    let outcome = one(&spans, "outcome");
    // The accept is the server span under the caller's; the rest hang off it in order.
    assert_eq!(accept["parent_span_id"], CALLER_SPAN);
    assert_eq!(accept["kind"], 2, "server");
    assert_eq!(accept["attributes"]["herald.message_id"], id.as_str());
    assert_eq!(accept["attributes"]["http.response.status_code"], 202);
    assert_eq!(store["parent_span_id"], accept["span_id"]);
    assert_eq!(claim["parent_span_id"], accept["span_id"]);
    assert_eq!(claim["attributes"]["herald.message_id"], id.as_str());
    assert_eq!(claim["attributes"]["herald.channel"], "webhook");
    assert_eq!(call["parent_span_id"], claim["span_id"]);
    assert_eq!(call["kind"], 3, "client");
    assert_eq!(call["attributes"]["herald.provider"], "webhook");
    assert_eq!(outcome["parent_span_id"], claim["span_id"]);
    assert_eq!(outcome["attributes"]["herald.step"], "sent");
    for s in [accept, store, claim, call, outcome] {
        assert!(s["end"].as_u64() >= s["start"].as_u64(), "{s}");
        assert_eq!(s["resource"]["service.name"], "herald");
        assert_eq!(s["status"], 0, "{s}");
    }
    assert!(call["start"].as_u64() >= claim["start"].as_u64());
    assert!(claim["start"].as_u64() >= accept["start"].as_u64());
    // The webhook's traceparent names the call's span, in the caller's trace.
    let got = rx.received();
    assert_eq!(
        got[0].headers["traceparent"],
        format!("00-{CALLER_TRACE}-{}-01", call["span_id"].as_str().unwrap())
    );

    // Without a traceparent, a message starts a trace of its own; a failed call's span says so.
    rx.answer(400);
    let id2 = send_traced(
        &h,
        json!({"to":{"webhook":rx.url},"content":{"text":"own"}}),
        None,
    )
    .await;
    h.wait_status(&id2, "failed").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let accept2 = loop {
        let found = otlp.spans().into_iter().find(|s| {
            s["name"] == "POST /v1/messages" && s["attributes"]["herald.message_id"] == id2.as_str()
        });
        if let Some(a) = found {
            break a;
        }
        assert!(Instant::now() < deadline, "no accept span for {id2}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let trace2 = accept2["trace_id"].as_str().unwrap().to_string();
    assert_ne!(trace2, CALLER_TRACE);
    assert_eq!(accept2["parent_span_id"], "");
    let spans2 = otlp.trace(&trace2, &["claim", "send ", "outcome"]).await;
    let call2 = one(&spans2, "send ");
    assert_eq!(call2["status"], 2, "a refused call is an error: {call2}");
    assert_eq!(call2["attributes"]["herald.error_class"], "rejected");
    assert_eq!(
        one(&spans2, "outcome")["attributes"]["herald.step"],
        "failed"
    );
    assert!(h.metric_sum("herald_trace_spans_total").await >= 10.0);
    h.stop().await;
}

#[tokio::test]
async fn a_batch_is_one_trace_and_without_an_exporter_the_callers_traceparent_goes_on_unchanged() {
    let otlp = start_receiver();
    let rx = Receiver::start().await;
    let endpoint = otlp.url.clone();
    let h = TestHerald::start_with(|c| c.telemetry.otlp_endpoint = Some(endpoint)).await;
    let r = h
        .http
        .post(h.url("/v1/messages/batch"))
        .bearer_auth(crate::utils::ADMIN)
        .json(&json!({"messages":[
            {"to":{"webhook":rx.url},"content":{"text":"a"}},
            {"to":{"webhook":rx.url},"content":{"text":"b"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    for item in v["results"].as_array().unwrap() {
        h.wait_status(item["id"].as_str().unwrap(), "sent").await;
    }
    let traces: std::collections::BTreeSet<String> = rx
        .received()
        .iter()
        .map(|r| r.headers["traceparent"][3..35].to_string())
        .collect();
    assert_eq!(traces.len(), 1, "{traces:?}");
    let trace = traces.into_iter().next().unwrap();
    let spans = otlp
        .trace(&trace, &["POST /v1/messages/batch", "claim"])
        .await;
    let batch = one(&spans, "POST /v1/messages/batch");
    assert_eq!(batch["attributes"]["herald.messages"], 2);
    h.stop().await;

    // No endpoint: nothing is exported, and the caller's context reaches the webhook as sent.
    let rx2 = Receiver::start().await;
    let plain = TestHerald::start().await;
    let caller = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let id = send_traced(
        &plain,
        json!({"to":{"webhook":rx2.url},"content":{"text":"x"}}),
        Some(&caller),
    )
    .await;
    plain.wait_status(&id, "sent").await;
    assert_eq!(rx2.received()[0].headers["traceparent"], caller);
    // An invalid traceparent is not passed on: the message starts its own trace.
    let id = send_traced(
        &plain,
        json!({"to":{"webhook":rx2.url},"content":{"text":"y"}}),
        Some("00-zz-bad-01"),
    )
    .await;
    plain.wait_status(&id, "sent").await;
    let sent = &rx2.received()[1].headers["traceparent"];
    assert!(
        herald::telemetry::TraceParent::parse(sent).is_some(),
        "{sent}"
    );
    assert!(!sent.contains(CALLER_TRACE));
    plain.stop().await;
}
