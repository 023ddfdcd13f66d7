//! The SSRF guard judges the addresses a name resolves to, at connect time: a name matching
//! an `allowed_hosts` pattern but resolving to a loopback address not listed is refused, also
//! after the name is rebound. Names are resolved from a hosts file of the test's own, mounted
//! over /etc/hosts in a private mount namespace of the gateway's process only (needs root, as
//! the test command and CI run). Every address here is loopback.

use crate::utils::Receiver;
use crate::utils::process::HeraldProcess;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const WRAPPER: &str = "mount --bind \"$0\" /etc/hosts && exec \"$@\"";

async fn send(h: &HeraldProcess, url: &str) -> String {
    let r = h
        .send(&json!({"to": {"webhook": url}, "content": {"text": "x"}}))
        .await;
    r["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string()
}

async fn settled(h: &HeraldProcess, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = h.get_json(&format!("/v1/messages/{id}")).await;
        if ["sent", "failed"].contains(&m["status"].as_str().unwrap_or("")) {
            return m;
        }
        assert!(Instant::now() < deadline, "never settled: {m}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn refused(m: &Value) -> bool {
    m["status"] == "failed"
        && m["deliveries"][0]["attempts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["error"]["code"] == "ssrf_blocked"))
}

#[tokio::test]
async fn names_resolving_to_unlisted_loopback_addresses_are_refused_also_after_a_rebind() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 good.test\n127.0.0.2 loop2.test\n::1 six.test\n",
    )
    .unwrap();
    let listed = Receiver::start_on("127.0.0.1:0").await;
    let other = Receiver::start_on("127.0.0.2:0").await;
    let six = Receiver::start_on("[::1]:0").await;
    let port = |r: &Receiver| {
        r.url
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    let hosts_arg = hosts.to_string_lossy().to_string();
    let mut h = HeraldProcess::start_custom(
        &dir.path().join("data"),
        &["*.test", "127.0.0.1"],
        "",
        "",
        "warn",
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            WRAPPER,
            &hosts_arg,
        ],
    )
    .await;

    // A name resolving to the listed address is delivered.
    let ok = send(&h, &format!("http://good.test:{}/hook", port(&listed))).await;
    assert_eq!(settled(&h, &ok).await["status"], "sent");
    assert_eq!(listed.received().len(), 1);

    // Names matching `*.test` but resolving to loopback addresses not listed are refused.
    for url in [
        format!("http://loop2.test:{}/hook", port(&other)),
        format!("http://six.test:{}/hook", port(&six)),
    ] {
        let id = send(&h, &url).await;
        let m = settled(&h, &id).await;
        assert!(refused(&m), "{url}: {m:#}");
    }

    // Rebind: the same name now points at an unlisted address.
    std::fs::write(&hosts, "127.0.0.2 good.test\n").unwrap();
    let id = send(&h, &format!("http://good.test:{}/hook", port(&other))).await;
    let m = settled(&h, &id).await;
    assert!(refused(&m), "after the rebind: {m:#}");

    assert_eq!(other.started(), 0, "nothing reached 127.0.0.2");
    assert_eq!(six.started(), 0, "nothing reached ::1");
    h.kill9();
}
