//! What every drill needs: child processes (`herald serve`, `herald simulate`, `herald
//! sink`) on loopback, a paced load generator that remembers what was acknowledged, and the
//! reckoning at the end (what was delivered, when, what was lost).

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "drill-admin-key-0123456789abcdef";

/// A latency above this counts as "service interrupted" for the time to recover.
pub const SLOW_MS: i64 = 1000;

/// A child process, killed (SIGKILL) when dropped.
pub struct Proc {
    child: std::process::Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// `kill -9`: no shutdown, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The drill's folder (configs, data, logs) and the binary it runs.
pub struct Work {
    pub dir: PathBuf,
    pub exe: PathBuf,
    keep: bool,
    pub http: reqwest::Client,
}

impl Work {
    pub fn new(name: &str, keep: bool) -> Result<Work> {
        let dir = std::env::temp_dir().join(format!(
            "herald-drill-{name}-{}",
            ulid::Ulid::generate().to_string().to_lowercase()
        ));
        std::fs::create_dir_all(&dir)?;
        crate::tls::init();
        Ok(Work {
            dir,
            exe: std::env::current_exe().context("cannot find the herald binary")?,
            keep,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(64)
                .build()?,
        })
    }

    fn log(&self, name: &str) -> Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))?)
    }

    pub fn command(&self, log: &str) -> Result<std::process::Command> {
        let mut c = std::process::Command::new(&self.exe);
        c.env_remove("HERALD_CONFIG")
            .env_remove("HERALD_DATABASE_URL")
            .env_remove("HERALD_LISTEN")
            .env_remove("HERALD_DATA_DIR")
            .env_remove("RUST_LOG")
            .env("HERALD_ADMIN_KEY", KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::from(self.log(log)?))
            .stderr(Stdio::from(self.log(log)?));
        Ok(c)
    }

    /// The config file of node `name` (data in `<work>/<name>`), listening on `port`.
    pub fn node_config(&self, name: &str, port: u16, extra: &str) -> Result<PathBuf> {
        let data = self.dir.join(name);
        std::fs::create_dir_all(&data)?;
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nshutdown_grace = \"5s\"\n\
                 [webhook]\nallowed_hosts = [\"127.0.0.1\"]\n[log]\nlevel = \"info\"\n{extra}",
                data.display()
            ),
        )?;
        Ok(path)
    }

    /// Starts `herald serve` for node `name` and waits until it is ready.
    pub async fn serve(&self, name: &str, extra: &str) -> Result<(Proc, String)> {
        let port = free_port()?;
        let cfg = self.node_config(name, port, extra)?;
        self.serve_config(name, &cfg, port).await
    }

    pub async fn serve_config(&self, name: &str, cfg: &Path, port: u16) -> Result<(Proc, String)> {
        let child = self
            .command(name)?
            .args(["serve", "--config"])
            .arg(cfg)
            .spawn()
            .context("cannot start herald serve")?;
        let p = Proc { child };
        let base = format!("http://127.0.0.1:{port}");
        self.wait_ready(&base, Duration::from_secs(40)).await?;
        Ok((p, base))
    }

    pub async fn wait_ready(&self, base: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if self
                .http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{base} was not ready within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `herald simulate` on a free port, checking the credentials in `args`.
    pub async fn simulate(&self, args: &crate::simulate::SimArgs) -> Result<(Proc, String)> {
        let port = free_port()?;
        let child = self
            .command("simulate")?
            .args(["simulate", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--apns-listen", "127.0.0.1:0"])
            .args(["--aliyun-access-key-id", &args.aliyun_access_key_id])
            .args(["--aliyun-access-key-secret", &args.aliyun_access_key_secret])
            .args(["--twilio-account-sid", &args.twilio_account_sid])
            .args(["--twilio-auth-token", &args.twilio_auth_token])
            .spawn()
            .context("cannot start herald simulate")?;
        let base = format!("http://127.0.0.1:{port}");
        self.wait_get(&format!("{base}/_sim/health")).await?;
        Ok((Proc { child }, base))
    }

    /// `herald sink` (a webhook receiver that counts) answering after `delay`.
    pub async fn sink(&self, delay: &str) -> Result<(Proc, String)> {
        let port = free_port()?;
        let child = self
            .command("sink")?
            .args([
                "sink",
                "--quiet",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--delay",
                delay,
            ])
            .spawn()
            .context("cannot start herald sink")?;
        let base = format!("http://127.0.0.1:{port}");
        self.wait_get(&format!("{base}/stats")).await?;
        Ok((Proc { child }, base))
    }

    async fn wait_get(&self, url: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self
                .http
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("{url} did not answer within 20s")
    }

    pub async fn get_json(&self, url: &str) -> Option<Value> {
        let r = self.http.get(url).bearer_auth(KEY).send().await.ok()?;
        r.json().await.ok()
    }

    /// The distinct message ids a sink received.
    pub async fn sink_ids(&self, sink: &str) -> std::collections::HashSet<String> {
        self.get_json(&format!("{sink}/ids"))
            .await
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    /// What a sink counted: (received, unique).
    pub async fn sink_counts(&self, sink: &str) -> (u64, u64) {
        let v = self
            .get_json(&format!("{sink}/stats"))
            .await
            .unwrap_or_default();
        (
            v["received"].as_u64().unwrap_or(0),
            v["unique"].as_u64().unwrap_or(0),
        )
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Paced load: `rate` messages a second from 16 senders, spread over `targets` (which a
/// drill may change, as a load balancer would after a health check). Remembers each
/// acknowledged message with the time of its `202`.
pub struct Load {
    pub accepted: Arc<Mutex<Vec<(String, i64)>>>,
    pub refused: Arc<AtomicU64>,
    pub targets: Arc<RwLock<Vec<String>>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub type Body = Arc<dyn Fn(u64) -> Value + Send + Sync>;

impl Load {
    pub fn start(http: &reqwest::Client, targets: Vec<String>, rate: u64, body: Body) -> Load {
        const SENDERS: u64 = 16;
        let accepted: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
        let refused = Arc::new(AtomicU64::new(0));
        let targets = Arc::new(RwLock::new(targets));
        let stop = CancellationToken::new();
        let counter = Arc::new(AtomicU64::new(0));
        let every = Duration::from_secs_f64(SENDERS as f64 / rate.max(1) as f64);
        let tasks = (0..SENDERS)
            .map(|s| {
                let (http, accepted, refused, targets, stop, counter, body) = (
                    http.clone(),
                    accepted.clone(),
                    refused.clone(),
                    targets.clone(),
                    stop.clone(),
                    counter.clone(),
                    body.clone(),
                );
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    tokio::time::sleep(every.mul_f64(s as f64 / SENDERS as f64)).await;
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tick.tick() => {}
                        }
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let target = {
                            let t = targets.read().map(|t| t.clone()).unwrap_or_default();
                            if t.is_empty() {
                                continue;
                            }
                            t[(n as usize) % t.len()].clone()
                        };
                        let r = http
                            .post(format!("{target}/v1/messages"))
                            .bearer_auth(KEY)
                            .json(&body(n))
                            .send()
                            .await;
                        let id = match r {
                            Ok(r) if r.status().as_u16() == 202 => r
                                .json::<Value>()
                                .await
                                .ok()
                                .and_then(|v| v["id"].as_str().map(String::from)),
                            _ => None,
                        };
                        match id {
                            Some(id) => {
                                if let Ok(mut a) = accepted.lock() {
                                    a.push((id, crate::core::types::now_millis()));
                                }
                            }
                            None => {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            accepted,
            refused,
            targets,
            stop,
            tasks,
        }
    }

    pub fn set_targets(&self, t: Vec<String>) {
        if let Ok(mut w) = self.targets.write() {
            *w = t;
        }
    }

    pub fn count(&self) -> usize {
        self.accepted.lock().map(|a| a.len()).unwrap_or(0)
    }

    /// Stops sending; returns what was acknowledged and how many sends were refused.
    pub async fn finish(self) -> (Vec<(String, i64)>, u64) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let a = self.accepted.lock().map(|a| a.clone()).unwrap_or_default();
        (a, self.refused.load(Ordering::Relaxed))
    }
}

/// What became of one acknowledged message.
#[derive(Debug, Clone)]
pub struct Fate {
    pub id: String,
    pub accepted_ms: i64,
    pub status: Option<String>,
    /// When the provider call that sent it ended.
    pub sent_ms: Option<i64>,
}

impl Fate {
    pub fn delivered(&self) -> bool {
        matches!(self.status.as_deref(), Some("sent" | "delivered"))
    }
}

fn sent_at(m: &Value) -> Option<i64> {
    let mut last = None;
    for d in m["deliveries"].as_array()? {
        for a in d["attempts"].as_array().into_iter().flatten() {
            if a["outcome"] == "sent" {
                let at = a["at"].as_str().and_then(|s| {
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .ok()
                })?;
                let ms = (at.unix_timestamp_nanos() / 1_000_000) as i64
                    + a["duration_ms"].as_i64().unwrap_or(0);
                last = Some(last.map_or(ms, |l: i64| l.max(ms)));
            }
        }
    }
    last
}

/// Waits (up to `within`) until every acknowledged message is sent, asking `base`; returns
/// each message's fate. Messages the gateway does not know are `status: None`.
pub async fn settle(
    http: &reqwest::Client,
    base: &str,
    accepted: &[(String, i64)],
    within: Duration,
) -> Vec<Fate> {
    let deadline = Instant::now() + within;
    let mut fates: Vec<Fate> = accepted
        .iter()
        .map(|(id, at)| Fate {
            id: id.clone(),
            accepted_ms: *at,
            status: None,
            sent_ms: None,
        })
        .collect();
    loop {
        let pending: Vec<usize> = (0..fates.len())
            .filter(|i| !fates[*i].delivered())
            .collect();
        let looked: Vec<(usize, Option<Value>)> = futures::stream::iter(pending.clone())
            .map(|i| {
                let url = format!("{base}/v1/messages/{}", fates[i].id);
                async move {
                    let v = match http.get(url).bearer_auth(KEY).send().await {
                        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                        _ => None,
                    };
                    (i, v)
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        for (i, v) in looked {
            if let Some(v) = v {
                fates[i].status = v["status"].as_str().map(String::from);
                fates[i].sent_ms = sent_at(&v);
            }
        }
        let left = fates.iter().filter(|f| !f.delivered()).count();
        if left == 0 || Instant::now() > deadline {
            return fates;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Time from the fault until the last message slowed by it went out (0 when none was slowed;
/// `None` when some never went out).
pub fn time_to_recover(fates: &[Fate], fault_ms: i64) -> Option<u64> {
    let mut last = fault_ms;
    for f in fates {
        let sent = f.sent_ms?;
        if sent >= fault_ms && sent - f.accepted_ms > SLOW_MS {
            last = last.max(sent);
        }
    }
    Some((last - fault_ms).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fate(accepted: i64, sent: Option<i64>) -> Fate {
        Fate {
            id: "m".into(),
            accepted_ms: accepted,
            status: sent.map(|_| "sent".into()),
            sent_ms: sent,
        }
    }

    #[test]
    fn recovery_ends_with_the_last_slowed_message() {
        let fault = 10_000;
        // Fast before and after; two slowed by the fault, the later one at 14.5 s.
        let fates = [
            fate(9_000, Some(9_050)),
            fate(9_900, Some(12_000)),
            fate(11_000, Some(14_500)),
            fate(14_400, Some(14_450)),
        ];
        assert_eq!(time_to_recover(&fates, fault), Some(4_500));
        assert_eq!(time_to_recover(&fates[..1], fault), Some(0));
        assert_eq!(time_to_recover(&[fate(9_000, None)], fault), None);
    }

    #[test]
    fn the_sending_attempt_gives_the_time_sent() {
        let m = serde_json::json!({"deliveries": [{"attempts": [
            {"outcome": "failed", "at": "2026-11-22T10:00:00Z", "duration_ms": 5},
            {"outcome": "sent", "at": "2026-11-22T10:00:01.500Z", "duration_ms": 20}
        ]}]});
        let at = time::macros::datetime!(2026-11-22 10:00:01.5 UTC);
        assert_eq!(
            sent_at(&m),
            Some((at.unix_timestamp_nanos() / 1_000_000) as i64 + 20)
        );
    }
}
