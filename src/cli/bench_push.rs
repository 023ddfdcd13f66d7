//! `herald bench --push`: Web Push end to end. `herald simulate` (a child process) is the push
//! service, checking every VAPID token and decrypting every body; one `herald serve` child
//! with a `webpush` provider accepts `--messages` messages to a contact with a browser
//! subscription (in batches) and pushes them. Prints pushes per second (encryption and VAPID
//! included) and the CPU per push of the node and of the simulated push service.

use super::bench::{BenchArgs, Child, DataDir, KEY, spawn_with};
use super::bench_e2e::cpu_secs;
use crate::providers::webpush::vapid::VapidKey;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

async fn pushed(http: &reqwest::Client, sim: &str) -> u64 {
    let v: Value = match http.get(format!("{sim}/_sim/stats")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    v["webpush"]["accepted"].as_u64().unwrap_or(0)
}

pub async fn run(a: &BenchArgs) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the herald binary")?;
    let dir = std::env::temp_dir().join(format!("herald-bench-push-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _data = DataDir {
        path: dir.clone(),
        keep: a.keep,
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let sim_proc = std::process::Command::new(&exe)
        .args(["simulate", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--apns-listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start herald simulate")?;
    let sim_pid = sim_proc.id();
    let _sim = Child { proc: sim_proc };
    let sim = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{sim}/_sim/health")).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("herald simulate did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let key = VapidKey::generate();
    let mut extra = format!(
        "[limits]\nmax_queue = 100000000\n[[providers]]\nid = \"webpush\"\nchannel = \"push\"\nkind = \"webpush\"\n\
         credentials = {{ vapid_private_key = \"{}\" }}\n\
         options = {{ subject = \"mailto:bench@herald.example\", allowed_hosts = [\"127.0.0.1\"] }}\n",
        key.private_b64()
    );
    if let Some(w) = a.workers {
        extra.push_str(&format!("[dispatch]\nconcurrency = {w}\n"));
    }
    let (node, base) = spawn_with(&exe, &dir, &extra).await?;
    let node_pid = node.proc.id();
    let sub: Value = http
        .post(format!("{sim}/webpush/subscribe"))
        .json(&json!({"applicationServerKey": key.public_b64()}))
        .send()
        .await?
        .json()
        .await?;
    let r = http
        .put(format!("{base}/v1/contacts/bench"))
        .bearer_auth(KEY)
        .json(&json!({"name": "Bench", "push": {"webpush": [sub]}}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!(
            "cannot make the contact: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let n = a.messages;
    let one = json!({"to": {"user": "bench"}, "channels": ["push"],
                     "content": {"subject": "db01 down", "text": "disk full on /var: 97 %"}});
    let size = a.batch_size.clamp(1, 1000);
    let cpu0 = (cpu_secs(node_pid), cpu_secs(sim_pid));
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = size.min(n - sent);
        let batch = json!({ "messages": vec![one.clone(); k as usize] });
        let r = http
            .post(format!("{base}/v1/messages/batch"))
            .bearer_auth(KEY)
            .json(&batch)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("batch refused: {}", r.text().await.unwrap_or_default());
        }
        sent += k;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut got = 0;
    while got < n && Instant::now() < deadline {
        got = pushed(&http, &sim).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (cpu_secs(node_pid) - cpu0.0, cpu_secs(sim_pid) - cpu0.1);
    let per = |c: f64| (c / got.max(1) as f64 * 1e6 * 10.0).round() / 10.0;
    crate::cli::out(
        json!({
            "run": "push", "messages": n, "pushed": got, "seconds": (secs * 100.0).round() / 100.0,
            "pushes_per_second": (got as f64 / secs).round(),
            "node_cpu_us_per_push": per(cpu.0),
            "push_service_cpu_us_per_push": per(cpu.1),
        })
        .to_string(),
    );
    drop(node);
    Ok(())
}
