//! `herald bench`: starts `herald serve` as a child process on loopback (its own data dir,
//! dispatch off so that only accepting is measured), drives it over real HTTP, and reports
//! durable accepted messages per second, accept latency and the server's resident memory.

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Single-message requests to send.
    #[arg(long, default_value_t = 50_000)]
    pub requests: u64,
    /// Batch requests to send.
    #[arg(long, default_value_t = 500)]
    pub batches: u64,
    /// Messages per batch request.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: u64,
    /// Connections used at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: u64,
    /// After the runs, fill the queue up to this many queued deliveries and report memory.
    #[arg(long, default_value_t = 0)]
    pub fill: u64,
    /// Afterwards, restart the server with its workers on and time how fast it delivers the
    /// queued messages (inbox channel: each delivery is a durable write).
    #[arg(long)]
    pub dispatch: bool,
    /// Keep the data directory (printed) instead of removing it.
    #[arg(long)]
    pub keep: bool,
    /// With --failover: messages offered per second in all (below what dispatch sustains, so
    /// that what is measured is failover, not overload).
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Benchmark on PostgreSQL instead of SQLite: the server this URL names; each run makes a
    /// database of its own there (dropped afterwards unless --keep). Each node gets its own
    /// data dir.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Nodes to start (PostgreSQL only); load is spread over them.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Instead: measure failover. Simulated Aliyun (primary) and Twilio (backup) take SMS
    /// under steady load; the primary starts answering 503 and later heals.
    #[arg(long)]
    pub failover: bool,
    /// Instead: end to end. `herald sink` receives webhooks; the nodes accept and deliver
    /// them with their workers running (batches, then --requests single requests, then a
    /// paced run at --rate for the accept → sent latency; --rate 0 skips it).
    #[arg(long)]
    pub e2e: bool,
    /// With --e2e: messages sent in batches of --batch-size for the throughput run.
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// With --e2e: the nodes' `dispatch.concurrency` (calls in flight; default: the default).
    #[arg(long)]
    pub workers: Option<usize>,
    /// With --e2e: the nodes export every message's spans over OTLP (to the sink, which
    /// takes them), to measure what tracing costs.
    #[arg(long)]
    pub traces: bool,
    /// Instead: Web Push end to end. `herald simulate` is the push service (it checks the
    /// VAPID token and decrypts every body); one node pushes --messages messages to a
    /// contact's browser subscription (pushes/s, CPU per push)
    #[arg(long)]
    pub push: bool,
    /// Instead: Alertmanager payloads of 1 (--requests of them, over --concurrency
    /// connections), 100 and 1,000 alerts, each a new group (an incident opened): alerts/s.
    #[arg(long)]
    pub alerts: bool,
}

pub(crate) const KEY: &str = "bench-admin-key-0123456789abcdef";

/// The server process: killed when dropped.
pub(crate) struct Child {
    pub(crate) proc: std::process::Child,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// The data directory: removed when dropped unless kept.
pub(crate) struct DataDir {
    pub(crate) path: std::path::PathBuf,
    pub(crate) keep: bool,
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

pub(crate) struct RunResult {
    pub(crate) requests: u64,
    pub(crate) messages: u64,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latencies_us: Vec<u32>,
}

pub(crate) async fn drive(
    http: &reqwest::Client,
    urls: &[String],
    body: Arc<Value>,
    total: u64,
    per_request: u64,
    concurrency: u64,
) -> RunResult {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency.max(1) {
        let (http, url, body, next, errors) = (
            http.clone(),
            urls[i as usize % urls.len().max(1)].clone(),
            body.clone(),
            next.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let payload = serde_json::to_vec(&*body).unwrap_or_default();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth(KEY)
                    .header("content-type", "application/json")
                    .body(payload.clone())
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().as_u16() == 202 => {
                        let _ = resp.bytes().await;
                        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut latencies_us = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            latencies_us.extend(l);
        }
    }
    latencies_us.sort_unstable();
    let errors = errors.load(Ordering::Relaxed);
    RunResult {
        requests: total,
        messages: (total - errors.min(total)) * per_request,
        errors,
        elapsed: started.elapsed(),
        latencies_us,
    }
}

fn report(name: &str, r: &RunResult, rss: Option<f64>) -> Value {
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let v = json!({
        "run": name,
        "requests": r.requests,
        "errors": r.errors,
        "messages_accepted": r.messages,
        "seconds": (secs * 100.0).round() / 100.0,
        "requests_per_second": (r.requests as f64 / secs).round(),
        "messages_per_second": (r.messages as f64 / secs).round(),
        "latency_ms": {
            "p50": percentile(&r.latencies_us, 0.50),
            "p99": percentile(&r.latencies_us, 0.99),
            "max": percentile(&r.latencies_us, 1.0),
        },
        "server_rss_mib": rss.map(|m| (m * 10.0).round() / 10.0),
    });
    v
}

pub async fn run(a: BenchArgs) -> Result<()> {
    if a.failover {
        return super::bench_failover::run(a.concurrency.min(32), a.rate, a.keep).await;
    }
    if a.push {
        return super::bench_push::run(&a).await;
    }
    if a.alerts {
        return super::bench_alerts::run(&a).await;
    }
    if a.nodes > 1 && a.database_url.is_none() {
        bail!("--nodes above 1 needs --database-url: SQLite serves one node");
    }
    // A database of this run's own on the server named: rows left by an earlier run would
    // slow this one down. Dropped however the run ends (kept with --keep).
    let db = match &a.database_url {
        Some(server) => Some(crate::drill::pg::ScratchDb::create(server, "herald_bench").await?),
        None => None,
    };
    let url = db.as_ref().map(|d| d.url.clone());
    let outcome = if a.e2e {
        super::bench_e2e::run(&a, url).await
    } else {
        accept(&a, url).await
    };
    if let Some(db) = db {
        db.finish(a.keep).await;
    }
    outcome
}

/// Accept throughput (single and batch), then optionally dispatch, on SQLite or on the
/// PostgreSQL database `db_url`.
async fn accept(a: &BenchArgs, db_url: Option<String>) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the herald binary")?;
    let dir = std::env::temp_dir().join(format!("herald-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _data = DataDir {
        path: dir.clone(),
        keep: a.keep,
    };
    let backend = if db_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let mut cluster = spawn_nodes(&exe, &dir, false, a.nodes, db_url.as_deref()).await?;
    let pid = cluster[0].0.proc.id();
    let bases: Vec<String> = cluster.iter().map(|c| c.1.clone()).collect();
    let base = bases[0].clone();
    let at = |path: &str| {
        bases
            .iter()
            .map(|b| format!("{b}{path}"))
            .collect::<Vec<_>>()
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency as usize)
        .build()?;
    eprintln!(
        "bench: {} herald serve node(s) on {backend}, first {base} (pid {pid}), data in {}",
        bases.len(),
        dir.display()
    );
    let one = json!({"to": {"user": "bench-user"}, "content": {"text": "benchmark message"}, "metadata": {"bench": "1"}});
    // Warm-up: connections and page cache.
    drive(
        &http,
        &at("/v1/messages"),
        Arc::new(one.clone()),
        2_000,
        1,
        a.concurrency,
    )
    .await;

    let label = |v: &mut Value| {
        v["backend"] = json!(backend);
        v["nodes"] = json!(bases.len());
    };
    let mut results: Vec<Value> = Vec::new();
    if a.requests > 0 {
        let r = drive(
            &http,
            &at("/v1/messages"),
            Arc::new(one.clone()),
            a.requests,
            1,
            a.concurrency,
        )
        .await;
        let mut v = report("single", &r, rss_mib(pid));
        label(&mut v);
        crate::cli::out(&v);
        results.push(v);
    }
    if a.batches > 0 {
        let batch = json!({ "messages": vec![one.clone(); a.batch_size as usize] });
        let conc = a.concurrency.min(8);
        let r = drive(
            &http,
            &at("/v1/messages/batch"),
            Arc::new(batch),
            a.batches,
            a.batch_size,
            conc,
        )
        .await;
        let mut v = report("batch", &r, rss_mib(pid));
        label(&mut v);
        crate::cli::out(&v);
        results.push(v);
    }
    if a.fill > 0 {
        let before = queued(&http, &base).await.unwrap_or(0);
        let missing = a.fill.saturating_sub(before);
        let size = 1000u64;
        let batch = json!({ "messages": vec![one.clone(); size as usize] });
        let r = drive(
            &http,
            &at("/v1/messages/batch"),
            Arc::new(batch),
            missing.div_ceil(size),
            size,
            4,
        )
        .await;
        let depth = queued(&http, &base).await.unwrap_or(0);
        let mut v = report("fill", &r, rss_mib(pid));
        v["queued_deliveries"] = json!(depth);
        label(&mut v);
        crate::cli::out(&v);
        crate::cli::out(
            json!({"run": "memory", "queued_deliveries": depth, "server_rss_mib": rss_mib(pid)}),
        );
        results.push(v);
    }
    if a.dispatch {
        cluster.clear();
        let cluster = spawn_nodes(&exe, &dir, true, a.nodes, db_url.as_deref()).await?;
        let base = cluster[0].1.clone();
        let started = Instant::now();
        let total = queued(&http, &base).await.unwrap_or(0);
        let deadline = started + Duration::from_secs(600);
        let mut left = total;
        while left > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = queued(&http, &base).await.unwrap_or(left);
        }
        let secs = started.elapsed().as_secs_f64();
        let v = json!({"run": "dispatch", "backend": backend, "nodes": cluster.len(), "channel": "inbox",
            "deliveries": total - left, "left": left,
            "seconds": (secs * 100.0).round() / 100.0,
            "deliveries_per_second": ((total - left) as f64 / secs).round(),
            "server_rss_mib": rss_mib(cluster[0].0.proc.id())});
        crate::cli::out(&v);
        results.push(v);
    }
    drop(cluster);
    if a.keep {
        eprintln!("bench: data kept in {}", dir.display());
    }
    eprintln!("bench: {} runs", results.len());
    Ok(())
}

/// Starts `nodes` servers (each with its own data dir under `dir`), on SQLite or on the
/// PostgreSQL at `database_url`.
async fn spawn_nodes(
    exe: &std::path::Path,
    dir: &std::path::Path,
    dispatch: bool,
    nodes: usize,
    database_url: Option<&str>,
) -> Result<Vec<(Child, String)>> {
    let mut out = Vec::new();
    for i in 0..nodes.max(1) {
        let d = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&d)?;
        let mut extra =
            format!("[dispatch]\nenabled = {dispatch}\nconcurrency = 256\nclaim_batch = 512\n");
        if let Some(url) = database_url {
            extra.push_str(&format!("[storage]\nurl = \"{url}\"\n"));
        }
        out.push(spawn_with(exe, &d, &extra).await?);
    }
    Ok(out)
}

/// Starts `herald serve` over `dir` with `extra` TOML after the server section.
pub(crate) async fn spawn_with(
    exe: &std::path::Path,
    dir: &std::path::Path,
    extra: &str,
) -> Result<(Child, String)> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nmax_batch_body = \"64MiB\"\n[log]\nlevel = \"warn\"\n{extra}",
        dir.display()
    );
    std::fs::write(dir.join("herald.toml"), cfg)?;
    let proc = std::process::Command::new(exe)
        .args(["serve", "--config"])
        .arg(dir.join("herald.toml"))
        .env("HERALD_ADMIN_KEY", KEY)
        .env_remove("HERALD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start herald serve")?;
    let child = Child { proc };
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok((child, base));
        }
        if Instant::now() > deadline {
            bail!("herald serve did not become healthy within 30s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn queued(http: &reqwest::Client, base: &str) -> Option<u64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut total = 0;
    for state in ["pending", "queued", "sending"] {
        let prefix = format!("herald_queue_depth{{state=\"{state}\"}}");
        let line = text.lines().find(|l| l.starts_with(&prefix))?;
        total += line.split_whitespace().last()?.parse::<u64>().ok()?;
    }
    Some(total)
}
