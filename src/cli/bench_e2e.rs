//! `herald bench --e2e`: what a user sees end to end. `herald sink --quiet` (a child process)
//! receives webhooks on loopback; one or more `herald serve` children accept them through
//! the API with their workers running and deliver them. Three runs: batches as fast as they
//! are taken (deliveries/s, CPU per delivery for the nodes and, on PostgreSQL, the database
//! with its commits per delivery), single requests while the workers deliver, and a paced
//! run at a given rate for the accept → sent latency.

use super::bench::{BenchArgs, Child, DataDir, KEY, spawn_with};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// CPU seconds used so far by the process `pid` (user + system).
pub(crate) fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) are space-separated.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds used by every PostgreSQL process on this machine (the database beside us).
fn postgres_cpu_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(cpu_secs)
        .sum()
}

async fn commits(url: &str) -> Option<i64> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.ok()?;
    sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut c)
    .await
    .ok()
}

async fn received(http: &reqwest::Client, sink: &str) -> u64 {
    match http.get(format!("{sink}/stats")).send().await {
        Ok(r) => r
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["received"].as_u64()),
        Err(_) => None,
    }
    .unwrap_or(0)
}

/// Waits until the sink has `want` webhooks (or 10 minutes pass); the time it took.
async fn until_received(http: &reqwest::Client, sink: &str, want: u64) -> (u64, Instant) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let got = received(http, sink).await;
        if got >= want || Instant::now() > deadline {
            return (got, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn parse_ms(v: &Value) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339)
            .ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Accept → sent latencies (ms) of the newest `n` messages, read back through the API.
async fn latencies(http: &reqwest::Client, base: &str, n: usize) -> Vec<i64> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    while out.len() < n {
        let mut url = format!("{base}/v1/messages?limit=1000");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let Ok(r) = http.get(url).bearer_auth(KEY).send().await else {
            break;
        };
        let Ok(page) = r.json::<Value>().await else {
            break;
        };
        let list = page["data"].as_array().cloned().unwrap_or_default();
        for m in &list {
            let sent = m["deliveries"][0]["attempts"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(|a| parse_ms(&a["at"]));
            if let (Some(s), Some(c)) = (sent, parse_ms(&m["created_at"])) {
                out.push(s - c);
            }
        }
        after = page["next_after"].as_str().map(String::from);
        if after.is_none() || list.is_empty() {
            break;
        }
    }
    out.sort_unstable();
    out
}

fn pct(sorted: &[i64], p: f64) -> Value {
    if sorted.is_empty() {
        return Value::Null;
    }
    json!(sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

/// Posts `body` `total` times over `senders` connections spread over `urls` (the accept
/// benchmark's driver); the requests answered 202, the time taken and their latencies (µs).
async fn post_all(
    http: &reqwest::Client,
    urls: &[String],
    body: &Value,
    total: u64,
    senders: u64,
) -> (u64, Duration, Vec<u32>) {
    let r = super::bench::drive(http, urls, Arc::new(body.clone()), total, 1, senders).await;
    (
        r.requests - r.errors.min(r.requests),
        r.elapsed,
        r.latencies_us,
    )
}

fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

/// The end-to-end runs, on SQLite or on the PostgreSQL database `db_url`.
pub async fn run(a: &BenchArgs, db_url: Option<String>) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the herald binary")?;
    let dir = std::env::temp_dir().join(format!("herald-bench-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _data = DataDir {
        path: dir.clone(),
        keep: a.keep,
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let sink_proc = std::process::Command::new(&exe)
        .args(["sink", "--quiet", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start herald sink")?;
    let _sink = Child { proc: sink_proc };
    let sink = format!("http://127.0.0.1:{port}");
    let backend = if db_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let mut nodes = Vec::new();
    for i in 0..a.nodes.max(1) {
        let d = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&d)?;
        let mut extra =
            "[webhook]\nallowed_hosts = [\"127.0.0.1\"]\n[limits]\nmax_queue = 100000000\n"
                .to_string();
        if let Some(w) = a.workers {
            extra.push_str(&format!("[dispatch]\nconcurrency = {w}\n"));
        }
        if let Some(url) = &db_url {
            extra.push_str(&format!("[storage]\nurl = \"{url}\"\n"));
        }
        if a.traces {
            extra.push_str(&format!("[telemetry]\notlp_endpoint = \"{sink}\"\n"));
        }
        nodes.push(spawn_with(&exe, &d, &extra).await?);
    }
    let bases: Vec<String> = nodes.iter().map(|n| n.1.clone()).collect();
    let pids: Vec<u32> = nodes.iter().map(|n| n.0.proc.id()).collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let node_cpu = || pids.iter().map(|p| cpu_secs(*p)).sum::<f64>();
    let hook = json!({"to": {"webhook": format!("{sink}/hook")}, "content": {"text": "benchmark"}});
    let batch = json!({ "messages": vec![hook.clone(); a.batch_size as usize] });
    let at = |path: &str| {
        bases
            .iter()
            .map(|b| format!("{b}{path}"))
            .collect::<Vec<_>>()
    };
    eprintln!(
        "bench e2e: {} node(s) on {backend}, sink {sink}, data in {}",
        bases.len(),
        dir.display()
    );
    // Warm-up: connections, page cache, the endpoint's circuit.
    let warm = 5u64;
    post_all(&http, &at("/v1/messages/batch"), &batch, warm, 2).await;
    let mut expected = warm * a.batch_size;
    until_received(&http, &sink, expected).await;

    // 1. Batches as fast as they are taken, delivered as fast as possible.
    let total_batches = (a.messages / a.batch_size.max(1)).max(1);
    let (cpu0, db0) = (node_cpu(), postgres_cpu_secs());
    let commits0 = match &db_url {
        Some(u) => commits(u).await,
        None => None,
    };
    let started = Instant::now();
    let (ok, accept_time, _) = post_all(
        &http,
        &at("/v1/messages/batch"),
        &batch,
        total_batches,
        a.concurrency.min(8),
    )
    .await;
    let messages = ok * a.batch_size;
    expected += messages;
    let (got, done) = until_received(&http, &sink, expected).await;
    let secs = done.duration_since(started).as_secs_f64();
    let delivered = got.saturating_sub(expected - messages);
    let (cpu1, db1) = (node_cpu(), postgres_cpu_secs());
    let commits1 = match &db_url {
        Some(u) => commits(u).await,
        None => None,
    };
    let per = |x: f64| round(x * 1e6 / delivered.max(1) as f64, 1);
    let lat = latencies(&http, &bases[0], 20_000).await;
    crate::cli::out(json!({
        "run": "batch", "backend": backend, "nodes": bases.len(),
        "messages": messages, "delivered": delivered,
        "accepted_per_second": (messages as f64 / accept_time.as_secs_f64().max(1e-9)).round(),
        "deliveries_per_second": (delivered as f64 / secs.max(1e-9)).round(),
        "seconds": round(secs, 2),
        "node_cpu_us_per_delivery": per(cpu1 - cpu0),
        "database_cpu_us_per_delivery": db_url.as_ref().map(|_| per(db1 - db0)),
        "database_commits_per_delivery": commits0.zip(commits1)
            .map(|(c0, c1)| round((c1 - c0) as f64 / delivered.max(1) as f64, 3)),
        "accept_to_sent_ms": {"p50": pct(&lat, 0.5), "p99": pct(&lat, 0.99), "sampled": lat.len()},
    }));

    // 2. Single requests while the workers deliver them.
    if a.requests > 0 {
        let one = hook.clone();
        let started = Instant::now();
        let (ok, took, lat_us) =
            post_all(&http, &at("/v1/messages"), &one, a.requests, a.concurrency).await;
        expected += ok;
        let (got, done) = until_received(&http, &sink, expected).await;
        let p = |q: f64| {
            lat_us
                .get(((lat_us.len().max(1) - 1) as f64 * q).round() as usize)
                .map(|u| round(*u as f64 / 1000.0, 2))
        };
        crate::cli::out(json!({
            "run": "single", "backend": backend, "nodes": bases.len(), "connections": a.concurrency,
            "requests": a.requests, "accepted": ok,
            "requests_per_second": (ok as f64 / took.as_secs_f64().max(1e-9)).round(),
            "request_ms": {"p50": p(0.5), "p99": p(0.99)},
            "delivered_per_second": (got.saturating_sub(expected - ok) as f64
                / done.duration_since(started).as_secs_f64().max(1e-9)).round(),
        }));
    }

    // 3. A paced run: `rate` messages a second for 10 s, in batches every 10 ms.
    if a.rate > 0 {
        let per_tick = (a.rate / 100).max(1);
        let tick_body =
            serde_json::to_vec(&json!({ "messages": vec![hook.clone(); per_tick as usize] }))?;
        let mut ticker = tokio::time::interval(Duration::from_millis(10));
        let mut sent = 0u64;
        let mut calls = Vec::new();
        for i in 0..1000usize {
            ticker.tick().await;
            let (http, url, body) = (
                http.clone(),
                format!("{}/v1/messages/batch", bases[i % bases.len()]),
                tick_body.clone(),
            );
            calls.push(tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(KEY)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 202)
            }));
        }
        for c in calls {
            if c.await.unwrap_or(false) {
                sent += per_tick;
            }
        }
        expected += sent;
        until_received(&http, &sink, expected).await;
        let lat = latencies(&http, &bases[0], sent as usize).await;
        crate::cli::out(json!({
            "run": "paced", "backend": backend, "nodes": bases.len(),
            "offered_per_second": a.rate, "accepted": sent,
            "accept_to_sent_ms": {"p50": pct(&lat, 0.5), "p99": pct(&lat, 0.99), "max": pct(&lat, 1.0), "sampled": lat.len()},
        }));
    }
    if a.traces {
        // Wait for the nodes' last export (once a second), then say how many there were.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let exports = match http.get(format!("{sink}/stats")).send().await {
            Ok(r) => r.json::<serde_json::Value>().await.unwrap_or_default()["trace_exports"]
                .as_u64()
                .unwrap_or(0),
            Err(_) => 0,
        };
        let mut spans = 0.0;
        for b in &bases {
            if let Ok(r) = http.get(format!("{b}/metrics")).send().await
                && let Ok(text) = r.text().await
            {
                spans += text
                    .lines()
                    .filter(|l| l.starts_with("herald_trace_spans_total{what=\"exported\"}"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>();
            }
        }
        crate::cli::out(json!({"run": "traces", "exports": exports, "spans_exported": spans}));
    }
    drop(nodes);
    Ok(())
}
