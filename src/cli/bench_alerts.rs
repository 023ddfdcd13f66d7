//! `herald bench --alerts`: Alertmanager payloads of 1, 100 and 1,000 alerts posted to one
//! `herald serve` child (dispatch off: what is measured is taking alerts in — each payload
//! a new group, so each opens an incident with its occurrences and timeline, committed
//! before the 200). Prints alerts per second, payload latency and the node's CPU per alert.

use super::bench::{BenchArgs, DataDir, KEY, spawn_with};
use anyhow::{Context, Result};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A payload of `size` alerts for group `n`, written as text: the load generator shares the
/// machine's cores with the node, so it spends as little of them as it can.
fn payload(size: usize, n: u64) -> Vec<u8> {
    let mut alerts = String::with_capacity(size * 380);
    for i in 0..size {
        if i > 0 {
            alerts.push(',');
        }
        alerts.push_str(&format!(
            r#"{{"status":"firing","labels":{{"alertname":"BenchAlert","instance":"h{n}-{i}","severity":"warning","team":"bench"}},"annotations":{{"summary":"bench alert","description":"an alert of the benchmark"}},"startsAt":"2026-12-01T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus.example/graph","fingerprint":"{:016x}"}}"#,
            n * 10_000 + i as u64
        ));
    }
    format!(
        r#"{{"version":"4","groupKey":"{{}}:{{bench=\"{n}\"}}","truncatedAlerts":0,"status":"firing","receiver":"herald","groupLabels":{{"bench":"{n}"}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://alertmanager.example","alerts":[{alerts}]}}"#
    )
    .into_bytes()
}

const PATH: &str = "/v1/alerts/alertmanager";

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

pub async fn run(a: &BenchArgs) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the herald binary")?;
    let dir = std::env::temp_dir().join(format!("herald-bench-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _data = DataDir {
        path: dir.clone(),
        keep: a.keep,
    };
    let extra =
        "[dispatch]\nenabled = false\n[[alert_routes]]\nid = \"bench\"\nusers = [\"bench\"]\n";
    let (node, base) = spawn_with(&exe, &dir, extra).await?;
    let pid = node.proc.id();
    let base = Arc::new(base);
    let counter = Arc::new(AtomicU64::new(0));
    for (size, payloads, conns) in [
        (1usize, a.requests, a.concurrency),
        (100, 1_000, 16),
        (1_000, 200, 8),
    ] {
        let start = counter.load(Ordering::Relaxed);
        let end = start + payloads;
        let errors = Arc::new(AtomicU64::new(0));
        let cpu0 = super::bench_e2e::cpu_secs(pid);
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conns.max(1) {
            let (base, counter, errors) = (base.clone(), counter.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut conn = None;
                loop {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if n >= end {
                        break;
                    }
                    let body = payload(size, n);
                    let t = Instant::now();
                    if conn.is_none() {
                        conn = super::bench_http::Conn::open(&base).await.ok();
                    }
                    let status = match conn.as_mut() {
                        Some(c) => c.post_json(PATH, KEY, &body).await.ok(),
                        None => None,
                    };
                    match status {
                        Some(s) if (200..300).contains(&s) => {
                            lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        }
                        Some(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            conn = None; // a broken connection is opened again
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            if let Ok(l) = t.await {
                lat.extend(l);
            }
        }
        counter.store(end, Ordering::Relaxed);
        lat.sort_unstable();
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        let ok = lat.len() as f64;
        let cpu = super::bench_e2e::cpu_secs(pid) - cpu0;
        let per_alert = (cpu / (ok * size as f64).max(1.0) * 1e6 * 10.0).round() / 10.0;
        crate::cli::out(
            json!({"run": format!("alerts x{size}"), "payloads": payloads, "errors": errors.load(Ordering::Relaxed),
                   "alerts_per_second": (ok * size as f64 / secs).round(), "payloads_per_second": (ok / secs).round(),
                   "seconds": (secs * 100.0).round() / 100.0, "node_cpu_us_per_alert": per_alert,
                   "latency_ms": {"p50": pct(&lat, 0.5), "p99": pct(&lat, 0.99), "max": pct(&lat, 1.0)}})
            .to_string(),
        );
    }
    drop(node);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn payloads_are_alertmanager_json() {
        for size in [1, 3] {
            let v: serde_json::Value = serde_json::from_slice(&super::payload(size, 7)).unwrap();
            assert_eq!(v["groupKey"], "{}:{bench=\"7\"}");
            assert_eq!(v["alerts"].as_array().map(|a| a.len()), Some(size));
            assert_eq!(v["alerts"][0]["labels"]["instance"], "h7-0");
            assert_eq!(v["alerts"][0]["fingerprint"], "0000000000011170");
        }
    }
}
