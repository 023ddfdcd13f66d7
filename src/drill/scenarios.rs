//! The four drills. Each returns its figures; [`super::Report::judge`] gives the verdict.

use super::harness::{self, Body, Fate, Load, Work, settle, time_to_recover};
use super::{DrillArgs, Report, Scenario};
use crate::core::types::now_millis;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn run(a: &DrillArgs) -> Result<Report> {
    let w = Work::new(a.scenario.name(), a.keep)?;
    if a.keep {
        eprintln!("drill folder: {}", w.dir.display());
    }
    let mut d = Drill::new(a.scenario.name());
    let r = match a.scenario {
        Scenario::ProviderOutage => provider_outage(&w, a, &mut d).await,
        Scenario::NodeKill => node_kill(&w, a, &mut d).await,
        Scenario::StorageOutage => storage_outage(&w, a, &mut d).await,
        Scenario::Restore => restore(&w, a, &mut d).await,
        Scenario::DbFailover => super::failover::db_failover(&w, a, &mut d).await,
        Scenario::Page => Err(anyhow::anyhow!(
            "the page drill runs against a gateway, not a rehearsal rig"
        )),
    };
    if let Err(e) = &r {
        eprintln!("drill {} broke off: {e:#}", a.scenario.name());
        eprintln!("logs: {} (kept)", w.dir.display());
        std::mem::forget(w); // keep the folder for the post-mortem
    }
    r.map(|()| d.finish())
}

/// The report being built, with the drill's clock.
pub(super) struct Drill {
    began: Instant,
    pub(super) report: Report,
}

impl Drill {
    fn new(scenario: &str) -> Drill {
        Drill {
            began: Instant::now(),
            report: Report {
                scenario: scenario.into(),
                started_at: crate::core::types::rfc3339(now_millis()),
                ..Default::default()
            },
        }
    }

    pub(super) fn note(&mut self, what: impl Into<String>) {
        let line = format!(
            "+{:.2} s {}",
            self.began.elapsed().as_secs_f64(),
            what.into()
        );
        eprintln!("  {line}");
        self.report.timeline.push(line);
    }

    pub(super) fn extra(&mut self, k: &str, v: impl Into<Value>) {
        self.report.extra.insert(k.into(), v.into());
    }

    /// Fills in accepted/delivered/lost/latency/recovery from the messages' fates.
    pub(super) fn reckon(&mut self, fates: &[Fate], refused: u64, fault_ms: Option<i64>) {
        let r = &mut self.report;
        r.accepted = fates.len() as u64;
        r.refused = refused;
        r.delivered = fates.iter().filter(|f| f.delivered()).count() as u64;
        r.lost = r.accepted - r.delivered;
        let mut lat: Vec<i64> = fates
            .iter()
            .filter_map(|f| f.sent_ms.map(|s| (s - f.accepted_ms).max(0)))
            .collect();
        lat.sort_unstable();
        let pct = |p: f64| {
            (!lat.is_empty()).then(|| lat[((lat.len() - 1) as f64 * p).round() as usize] as u64)
        };
        r.latency_p50_ms = pct(0.5);
        r.latency_p99_ms = pct(0.99);
        if let Some(f) = fault_ms {
            r.recover_ms = time_to_recover(fates, f);
        }
        let missing: Vec<Value> = fates
            .iter()
            .filter(|f| !f.delivered())
            .take(20)
            .map(|f| json!({"id": f.id, "status": f.status, "accepted_at": crate::core::types::rfc3339(f.accepted_ms)}))
            .collect();
        if !missing.is_empty() {
            r.extra
                .insert("not_delivered".into(), Value::Array(missing));
        }
    }

    /// Counts loss from what the receiver got, not from Herald's own word: a message is lost
    /// when the sink never received it, whatever status Herald shows. Both counts are
    /// reported (`lost`, and `lost_by_status` among the extras); duplicates too.
    pub(super) async fn reckon_receiver(&mut self, w: &Work, sink: &str, fates: &[Fate]) {
        let got = w.sink_ids(sink).await;
        let (received, unique) = w.sink_counts(sink).await;
        let missing = lost_at_receiver(fates, &got);
        let by_status = self.report.lost;
        self.extra("lost_by_status", by_status);
        self.report.lost = missing;
        self.report.duplicates = received.saturating_sub(unique);
        self.extra("webhooks_received", received);
    }

    fn finish(mut self) -> Report {
        self.report.duration_ms = self.began.elapsed().as_millis() as u64;
        self.report
    }
}

pub(super) async fn sleep_until(start: Instant, at: Duration) {
    tokio::time::sleep_until((start + at).into()).await;
}

/// Polls `f` every 20 ms until it holds (up to `within`); the time it took.
pub(super) async fn time_until<F, Fut>(within: Duration, mut f: F) -> Option<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while t.elapsed() < within {
        if f().await {
            return Some(t.elapsed().as_millis() as u64);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// How long until `base`'s `/readyz` says ready (`ready`) or not ready (503), polling up to
/// `within`.
pub(super) async fn readiness_until(
    w: &Work,
    base: &str,
    ready: bool,
    within: Duration,
) -> Option<u64> {
    time_until(within, || async {
        w.http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| {
                if ready {
                    r.status().is_success()
                } else {
                    r.status().as_u16() == 503
                }
            })
    })
    .await
}

pub(super) fn webhook_body(sink: &str) -> Body {
    let url = format!("{sink}/hook");
    Arc::new(
        move |n| json!({"to": {"webhook": url}, "content": {"text": format!("drill message {n}")}}),
    )
}

async fn circuit(w: &Work, base: &str, provider: &str) -> String {
    let v = w
        .get_json(&format!("{base}/v1/providers"))
        .await
        .unwrap_or_default();
    v["data"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["id"] == provider))
        .and_then(|p| p["circuit"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// The primary SMS provider (simulated Aliyun) answers 503 for 6 s under load; Twilio is the
/// backup. Detect: the primary's circuit opens. Recover: the last message slowed by the
/// outage is sent. Duplicates: provider calls accepted twice for one message.
async fn provider_outage(w: &Work, a: &DrillArgs, d: &mut Drill) -> Result<()> {
    let creds = crate::simulate::SimArgs {
        listen: String::new(),
        aliyun_access_key_id: "drill-ak".into(),
        aliyun_access_key_secret: "drill-ak-secret".into(),
        aliyun_report_url: None,
        aliyun_voice_report_url: None,
        twilio_account_sid: "ACdrill0000000000000000000000000000".into(),
        twilio_auth_token: "drill-token".into(),
        dingtalk_access_token: "sim-dingtalk-token".into(),
        dingtalk_secret: "SECsim-dingtalk-secret".into(),
        feishu_hook: "sim-feishu-hook".into(),
        feishu_secret: "sim-feishu-secret".into(),
        wecom_key: String::new(),
        slack_path: String::new(),
        teams_sig: String::new(),
        fcm_project: "herald-sim".into(),
        apns_listen: None,
        apns_team_id: "SIMTEAM001".into(),
        apns_key_id: "SIMKEY0001".into(),
        apns_topic: "com.example.herald".into(),
        report_delay: Duration::from_millis(300),
    };
    let (_sim, sim) = w.simulate(&creds).await?;
    let extra = format!(
        "[dispatch]\nconcurrency = 64\n{}",
        crate::simulate::sms_failover_toml(&sim, &creds)
    );
    let (_node, base) = w.serve("node", &extra).await?;
    d.note(format!("herald serve on {base}, herald simulate on {sim}"));
    let body: Body = Arc::new(
        |n| json!({"to": {"phone": format!("+86139{:08}", n % 100_000_000)}, "template": "code", "params": {"code": format!("{n}")}}),
    );
    let start = Instant::now();
    let load = Load::start(&w.http, vec![base.clone()], a.rate, body);
    d.note(format!("load: {} SMS/s", a.rate));
    sleep_until(start, Duration::from_secs(3)).await;
    let r = w
        .http
        .put(format!("{sim}/_sim/faults/aliyun"))
        .json(&json!({"status": 503}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("the simulator refused the fault: {}", r.status());
    }
    let fault_ms = now_millis();
    d.note("fault: Aliyun answers 503 to everything");
    let detect = time_until(Duration::from_secs(15), || async {
        circuit(w, &base, "aliyun-main").await == "open"
    })
    .await;
    d.report.detect_ms = detect;
    d.note(format!("Aliyun's circuit open after {}", waited(detect)));
    sleep_until(start, Duration::from_secs(9)).await;
    w.http
        .delete(format!("{sim}/_sim/faults/aliyun"))
        .send()
        .await?;
    d.note("fault healed");
    let back = time_until(Duration::from_secs(15), || async {
        circuit(w, &base, "aliyun-main").await == "closed"
    })
    .await;
    d.note(format!("Aliyun back in service after {}", waited(back)));
    if let Some(b) = back {
        d.extra("primary_back_after_heal_ms", b);
    }
    sleep_until(start, Duration::from_secs(12)).await;
    let (accepted, refused) = load.finish().await;
    d.note(format!("load stopped: {} acknowledged", accepted.len()));
    let fates = settle(&w.http, &base, &accepted, Duration::from_secs(30)).await;
    d.reckon(&fates, refused, Some(fault_ms));
    // Duplicates: sends the providers accepted, per code, beyond the first.
    let recs = w
        .get_json(&format!("{sim}/_sim/requests?accepted=true"))
        .await
        .unwrap_or_default();
    let mut per_code: HashMap<String, u64> = HashMap::new();
    let (mut on_primary, mut on_backup) = (0u64, 0u64);
    for r in recs["data"].as_array().into_iter().flatten() {
        let req = &r["request"];
        let code = match r["provider"].as_str() {
            Some("aliyun") if req["Action"] == "SendSms" => {
                on_primary += 1;
                req["TemplateParam"]
                    .as_str()
                    .and_then(|p| serde_json::from_str::<Value>(p).ok())
                    .and_then(|p| p["code"].as_str().map(String::from))
            }
            Some("twilio") => {
                on_backup += 1;
                req["Body"]
                    .as_str()
                    .and_then(|b| b.rsplit(' ').next().map(String::from))
            }
            _ => None,
        };
        if let Some(c) = code {
            *per_code.entry(c).or_default() += 1;
        }
    }
    d.report.duplicates = per_code.values().map(|n| n - 1).sum();
    // Loss counted from what the providers accepted (one code per acknowledged message), and
    // Herald's own word reported beside it.
    let by_status = d.report.lost;
    d.extra("lost_by_status", by_status);
    d.report.lost = d.report.accepted.saturating_sub(per_code.len() as u64);
    d.extra("sent_by_primary", on_primary);
    d.extra("sent_by_backup", on_backup);
    d.note("reckoned");
    Ok(())
}

/// A fresh database on the given server, or a throwaway cluster of the drill's own.
async fn database(a: &DrillArgs) -> Result<(Option<super::pg::Cluster>, super::pg::ScratchDb)> {
    let cluster = match &a.database_url {
        Some(_) => None,
        None => Some(tokio::task::spawn_blocking(super::pg::Cluster::start).await??),
    };
    let server = match (&a.database_url, &cluster) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => c.url(),
        (None, None) => bail!("no PostgreSQL"),
    };
    let db = super::pg::ScratchDb::create(&server, "herald_drill").await?;
    Ok((cluster, db))
}

/// Two nodes on one PostgreSQL share webhook load to a slow receiver (calls stay in flight);
/// one is killed with SIGKILL. Detect: the survivor declares it dead. Recover: the last
/// delivery the dead node had leased goes out from the survivor.
async fn node_kill(w: &Work, a: &DrillArgs, d: &mut Drill) -> Result<()> {
    let (_cluster, db) = database(a).await?;
    d.note("PostgreSQL ready");
    let url = db.url.clone();
    let outcome = node_kill_on(w, a, d, &url).await;
    // On a server the user named, the drill's database goes with it (unless --keep).
    db.finish(a.keep).await;
    outcome
}

async fn node_kill_on(w: &Work, a: &DrillArgs, d: &mut Drill, url: &str) -> Result<()> {
    let (_sink, sink) = w.sink("200ms").await?;
    let extra = format!("[storage]\nurl = \"{url}\"\n[dispatch]\nconcurrency = 64\n");
    let (mut node_a, a_base) = w.serve("node-a", &extra).await?;
    let (_node_b, b_base) = w.serve("node-b", &extra).await?;
    let a_id = w
        .get_json(&format!("{a_base}/v1/nodes"))
        .await
        .and_then(|v| v["this_node"].as_str().map(String::from))
        .context("node a has no id")?;
    d.note(format!(
        "nodes a ({a_base}) and b ({b_base}); webhook sink answers after 200 ms"
    ));
    let start = Instant::now();
    let load = Load::start(
        &w.http,
        vec![a_base.clone(), b_base.clone()],
        a.rate,
        webhook_body(&sink),
    );
    d.note(format!("load: {} webhooks/s over both nodes", a.rate));
    sleep_until(start, Duration::from_secs(4)).await;
    let leases = w
        .get_json(&format!("{b_base}/v1/nodes"))
        .await
        .and_then(|v| {
            v["data"]
                .as_array()
                .and_then(|n| n.iter().find(|n| n["id"] == a_id.as_str()).cloned())
        })
        .and_then(|n| n["leases"].as_i64())
        .unwrap_or(0);
    node_a.kill();
    let fault_ms = now_millis();
    load.set_targets(vec![b_base.clone()]);
    d.note(format!(
        "node a killed with SIGKILL (it held about {leases} leases); load moves to b"
    ));
    d.extra("leases_held_by_killed_node", leases);
    let detect = time_until(Duration::from_secs(30), || async {
        w.get_json(&format!("{b_base}/v1/nodes"))
            .await
            .and_then(|v| {
                v["data"].as_array().map(|n| {
                    n.iter()
                        .any(|n| n["id"] == a_id.as_str() && n["state"] == "dead")
                })
            })
            .unwrap_or(false)
    })
    .await;
    d.report.detect_ms = detect;
    d.note(format!("b declared a dead after {}", waited(detect)));
    sleep_until(start, Duration::from_secs(14)).await;
    let (accepted, refused) = load.finish().await;
    d.note(format!("load stopped: {} acknowledged", accepted.len()));
    let fates = settle(&w.http, &b_base, &accepted, Duration::from_secs(40)).await;
    d.reckon(&fates, refused, Some(fault_ms));
    d.reckon_receiver(w, &sink, &fates).await;
    d.note("reckoned");
    Ok(())
}

/// PostgreSQL stops (immediate shutdown, as a crash) for 8 s under load. Detect: `/readyz`
/// reports storage down. Recover: the last message spooled meanwhile is delivered.
async fn storage_outage(w: &Work, a: &DrillArgs, d: &mut Drill) -> Result<()> {
    let cluster = Arc::new(tokio::task::spawn_blocking(super::pg::Cluster::start).await??);
    let url = cluster.url();
    d.note("PostgreSQL ready (the drill's own: it will be stopped)");
    let (_sink, sink) = w.sink("0s").await?;
    let extra = format!("[storage]\nurl = \"{url}\"\n");
    let (_node, base) = w.serve("node", &extra).await?;
    d.note(format!("herald serve on {base}"));
    let start = Instant::now();
    let load = Load::start(&w.http, vec![base.clone()], a.rate, webhook_body(&sink));
    d.note(format!("load: {} webhooks/s", a.rate));
    sleep_until(start, Duration::from_secs(3)).await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.down()).await?;
    let fault_ms = now_millis();
    d.note("PostgreSQL stopped");
    let detect = readiness_until(w, &base, false, Duration::from_secs(15)).await;
    d.report.detect_ms = detect;
    d.note(format!(
        "/readyz reports storage down after {}",
        waited(detect)
    ));
    sleep_until(start, Duration::from_secs(11)).await;
    let spooled = metric(w, &base, "herald_messages_spooled_total").await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.up()).await??;
    d.extra("outage_ms", now_millis() - fault_ms);
    d.note(format!(
        "PostgreSQL started again ({spooled} messages spooled meanwhile)"
    ));
    d.extra("spooled", spooled);
    let ready = readiness_until(w, &base, true, Duration::from_secs(30)).await;
    d.note(format!("/readyz ready again after {}", waited(ready)));
    sleep_until(start, Duration::from_secs(14)).await;
    let (accepted, refused) = load.finish().await;
    d.note(format!("load stopped: {} acknowledged", accepted.len()));
    // Wait past the 60 s lease: a claim committed at the instant the database crashed, whose
    // answer never arrived, is sent when its lease expires — late, not lost.
    let fates = settle(&w.http, &base, &accepted, Duration::from_secs(90)).await;
    d.reckon(&fates, refused, Some(fault_ms));
    d.reckon_receiver(w, &sink, &fates).await;
    d.note("reckoned");
    Ok(())
}

pub(super) async fn metric(w: &Work, base: &str, name: &str) -> u64 {
    let text = match w.http.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

/// A node on SQLite takes webhook load; `herald backup create` runs under load; then the node
/// and its database are lost (SIGKILL, files deleted). `herald backup restore` brings the
/// backup back and the node restarts. Recover (RTO): from the loss to the node ready with
/// the restored data. Lost: messages acknowledged before the snapshot and missing after.
/// RPO: what was acknowledged after the snapshot (gone by design: that is what a backup
/// interval costs).
async fn restore(w: &Work, a: &DrillArgs, d: &mut Drill) -> Result<()> {
    let (_sink, sink) = w.sink("0s").await?;
    let port = harness::free_port()?;
    let cfg = w.node_config("node", port, "")?;
    let (mut node, base) = w.serve_config("node", &cfg, port).await?;
    d.note(format!("herald serve on {base} (SQLite)"));
    let start = Instant::now();
    let load = Load::start(&w.http, vec![base.clone()], a.rate, webhook_body(&sink));
    d.note(format!("load: {} webhooks/s", a.rate));
    sleep_until(start, Duration::from_secs(3)).await;
    let backups = w.dir.join("backups");
    let out = w
        .command("backup")?
        .stdout(std::process::Stdio::piped())
        .args(["backup", "create", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&backups)
        .output()
        .context("cannot run herald backup create")?;
    if !out.status.success() {
        bail!("herald backup create failed (see backup.log)");
    }
    let file = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let manifest = crate::backup::archive::read_manifest(&file, None)?;
    d.note(format!(
        "backup taken under load: {} ({} rows)",
        file.display(),
        manifest.rows()
    ));
    sleep_until(start, Duration::from_secs(5)).await;
    let (accepted, refused) = load.finish().await;
    node.kill();
    let lost_at = Instant::now();
    let lost_ms = now_millis();
    for f in ["herald.db", "herald.db-wal", "herald.db-shm"] {
        let _ = std::fs::remove_file(w.dir.join("node").join(f));
    }
    d.note(format!(
        "disaster: node killed, its database deleted ({} acknowledged so far)",
        accepted.len()
    ));
    let db = w.dir.join("node/herald.db");
    let out = w
        .command("restore")?
        .args(["backup", "restore"])
        .arg(&file)
        .arg("--into")
        .arg(format!("sqlite://{}", db.display()))
        .args(["--reason", "drill: restore"])
        .status()
        .context("cannot run herald backup restore")?;
    if !out.success() {
        bail!("herald backup restore failed (see restore.log)");
    }
    d.note("herald backup restore done");
    let (_node, base) = w.serve_config("node", &cfg, port).await?;
    let rto = lost_at.elapsed().as_millis() as u64;
    d.report.recover_ms = Some(rto);
    d.note(format!(
        "node serving the restored data {rto} ms after the loss"
    ));
    let (before, after): (Vec<_>, Vec<_>) = accepted
        .iter()
        .cloned()
        .partition(|(_, at)| *at < manifest.created_at_ms);
    d.extra("acknowledged_before_snapshot", before.len());
    d.extra("rpo_messages_after_snapshot", after.len());
    d.extra("rpo_ms", (lost_ms - manifest.created_at_ms).max(0));
    d.extra("backup_rows", manifest.rows());
    let fates = settle(&w.http, &base, &before, Duration::from_secs(30)).await;
    d.reckon(&fates, refused, None);
    d.reckon_receiver(w, &sink, &fates).await;
    d.report.accepted = accepted.len() as u64;
    d.note("reckoned");
    Ok(())
}

/// How long a wait took, for a drill's timeline: `23 ms`, or that it never happened.
pub(super) fn waited(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => format!("{ms} ms"),
        None => "never (not within the time allowed)".to_string(),
    }
}

/// Acknowledged messages the receiver never got, whatever Herald says of them.
fn lost_at_receiver(fates: &[Fate], received: &std::collections::HashSet<String>) -> u64 {
    fates.iter().filter(|f| !received.contains(&f.id)).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway that marked a message sent without sending it does not pass.
    #[test]
    fn loss_is_what_the_receiver_did_not_get() {
        let fate = |id: &str, status: &str| Fate {
            id: id.into(),
            accepted_ms: 0,
            status: Some(status.into()),
            sent_ms: Some(1),
        };
        let fates = vec![fate("a", "sent"), fate("b", "sent"), fate("c", "queued")];
        let got: std::collections::HashSet<String> =
            ["a", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            lost_at_receiver(&fates, &got),
            1,
            "b says sent but never arrived"
        );
        assert!(fates.iter().filter(|f| f.delivered()).count() == 2);
    }
}
