//! `herald bench --failover`: the simulators run in this process, `herald serve` as a child
//! with Aliyun (priority 1) and Twilio (priority 2). Under steady SMS load the primary starts
//! answering 503; the benchmark reports the failover time (the primary's first failed call
//! to its circuit opening, after which all traffic is on the backup), throughput before and
//! during the outage (at a fixed offered rate), messages lost, and how long after healing
//! the primary is back.

use super::bench::{DataDir, KEY, spawn_with};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PHASE: Duration = Duration::from_secs(4);

/// Calls the simulator accepted (`accepted`) or refused for `provider`.
async fn sim_count(http: &reqwest::Client, sim: &str, provider: &str, kind: &str) -> u64 {
    let v: Value = match http.get(format!("{sim}/_sim/stats")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    v[provider][kind].as_u64().unwrap_or(0)
}

async fn circuit(http: &reqwest::Client, base: &str) -> String {
    let v: Value = match http
        .get(format!("{base}/v1/providers"))
        .bearer_auth(KEY)
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    v["data"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["id"] == "aliyun-main"))
        .and_then(|p| p["circuit"].as_str())
        .unwrap_or("?")
        .to_string()
}

pub async fn run(senders: u64, rate: u64, keep: bool) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the herald binary")?;
    let dir = std::env::temp_dir().join(format!("herald-bench-failover-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _data = DataDir {
        path: dir.clone(),
        keep,
    };
    let sim_l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = format!("http://{}", sim_l.local_addr()?);
    let args = crate::simulate::SimArgs {
        listen: sim.clone(),
        aliyun_access_key_id: "bench-ak".into(),
        aliyun_access_key_secret: "bench-ak-secret".into(),
        aliyun_report_url: None,
        aliyun_voice_report_url: None,
        twilio_account_sid: "ACbench000000000000000000000000000".into(),
        twilio_auth_token: "bench-token".into(),
        dingtalk_access_token: "sim-dingtalk-token".into(),
        dingtalk_secret: "SECsim-dingtalk-secret".into(),
        feishu_hook: "sim-feishu-hook".into(),
        feishu_secret: "sim-feishu-secret".into(),
        wecom_key: "k".into(),
        slack_path: "p".into(),
        teams_sig: "p".into(),
        fcm_project: "herald-sim".into(),
        apns_listen: None,
        apns_team_id: "SIMTEAM001".into(),
        apns_key_id: "SIMKEY0001".into(),
        apns_topic: "com.example.herald".into(),
        report_delay: Duration::from_millis(200),
    };
    let extra = format!(
        "[dispatch]\nconcurrency = 128\n{}",
        crate::simulate::sms_failover_toml(&sim, &args)
    );
    crate::simulate::spawn(args, sim_l);
    let (child, base) = spawn_with(&exe, &dir, &extra).await?;
    eprintln!(
        "bench failover: herald serve pid {} on {base}, simulators on {sim}",
        child.proc.id()
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;

    // Steady load from `senders` tasks until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for s in 0..senders {
        let (http, base, stop, accepted) =
            (http.clone(), base.clone(), stop.clone(), accepted.clone());
        let every = Duration::from_secs_f64(senders as f64 / rate.max(1) as f64);
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                i += 1;
                let body = json!({"to": {"phone": format!("+86139{:08}", (s * 1_000_000 + i) % 100_000_000)}, "template": "code", "params": {"code": "1"}});
                if let Ok(r) = http.post(format!("{base}/v1/messages")).bearer_auth(KEY).json(&body).send().await
                    && r.status().as_u16() == 202 {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
            }
        }));
    }
    let sent = |http: reqwest::Client, sim: String| async move {
        sim_count(&http, &sim, "aliyun", "accepted").await
            + sim_count(&http, &sim, "twilio", "accepted").await
    };

    tokio::time::sleep(PHASE).await;
    let before = sent(http.clone(), sim.clone()).await;
    let t_before = Instant::now();
    http.put(format!("{sim}/_sim/faults/aliyun"))
        .json(&json!({"status": 503}))
        .send()
        .await?;
    let t_fault = Instant::now();
    let mut t_open = None;
    while t_fault.elapsed() < PHASE {
        if t_open.is_none() && circuit(&http, &base).await == "open" {
            t_open = Some(t_fault.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let during = sent(http.clone(), sim.clone()).await;
    let window = t_before.elapsed();
    let failed_calls = sim_count(&http, &sim, "aliyun", "refused").await;
    http.delete(format!("{sim}/_sim/faults/aliyun"))
        .send()
        .await?;
    let t_heal = Instant::now();
    let aliyun_before_heal = sim_count(&http, &sim, "aliyun", "accepted").await;
    let mut back = None;
    while t_heal.elapsed() < Duration::from_secs(30) {
        if circuit(&http, &base).await == "closed"
            && sim_count(&http, &sim, "aliyun", "accepted").await > aliyun_before_heal
        {
            back = Some(t_heal.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // Let the queue drain, then count: every accepted message must have been sent.
    let total = accepted.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut delivered = sent(http.clone(), sim.clone()).await;
    while delivered < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        delivered = sent(http.clone(), sim.clone()).await;
    }
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let attempts: Vec<String> = metrics
        .lines()
        .filter(|l| l.starts_with("herald_delivery_attempts_total"))
        .map(|l| {
            l.trim_start_matches("herald_delivery_attempts_total")
                .replace("channel=\"sms\",", "")
        })
        .collect();
    let secs = |d: Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
    let v = json!({
        "run": "failover",
        "offered_per_s": rate,
        "senders": senders,
        "throughput_before_per_s": (before as f64 / PHASE.as_secs_f64()).round(),
        "throughput_during_outage_per_s": ((during - before) as f64 / window.as_secs_f64().max(1e-9)).round(),
        "failover_s": t_open.map(secs),
        "primary_failed_calls": failed_calls,
        "back_in_service_s": back.map(secs),
        "accepted": total,
        "sent": delivered,
        "lost": total.saturating_sub(delivered),
        "attempts": attempts,
    });
    crate::cli::out(&v);
    drop(child);
    Ok(())
}
