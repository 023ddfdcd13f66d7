//! `herald serve` as a child process, for tests where the process must die.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = "proc-admin-key-0123456789abcdef";

pub struct HeraldProcess {
    pub child: Child,
    pub base: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl HeraldProcess {
    /// Starts `herald serve` on `data_dir` (fresh port) and waits until it is healthy.
    pub async fn start(data_dir: &Path, extra_toml: &str) -> Self {
        Self::start_with_log_level(data_dir, extra_toml, "warn").await
    }

    pub async fn start_with_log_level(data_dir: &Path, extra_toml: &str, level: &str) -> Self {
        Self::start_custom(data_dir, &["127.0.0.1"], "", extra_toml, level, &[]).await
    }

    /// Starts it with its own `webhook.allowed_hosts` and extra `[server]` lines, run through
    /// `wrapper` (a command and its arguments that end by executing the binary given as its
    /// last argument).
    pub async fn start_custom(
        data_dir: &Path,
        allowed_hosts: &[&str],
        server_toml: &str,
        extra_toml: &str,
        level: &str,
        wrapper: &[&str],
    ) -> Self {
        herald::tls::init();
        let port = free_port();
        let cfg: PathBuf = data_dir.join("herald.toml");
        std::fs::create_dir_all(data_dir).unwrap();
        std::fs::write(
            &cfg,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nshutdown_grace = \"10s\"\n{}\n\
                 [webhook]\nallowed_hosts = {}\n[dispatch]\nconcurrency = {CONCURRENCY}\npoll = \"50ms\"\nretry_base = \"50ms\"\nretry_cap = \"500ms\"\n\
                 [log]\nlevel = \"{level}\"\n{extra_toml}",
                data_dir.display(),
                server_toml,
                serde_json::json!(allowed_hosts)
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("serve.log"))
            .unwrap();
        let mut cmd = match wrapper.split_first() {
            None => Command::new(env!("CARGO_BIN_EXE_herald")),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(env!("CARGO_BIN_EXE_herald"));
                c
            }
        };
        // Its own process group: a wrapper that forks (faketime) is stopped with the server.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("HERALD_ADMIN_KEY", KEY)
            .env_remove("HERALD_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = crate::utils::http();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/healthz")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "herald serve did not start: {}",
                std::fs::read_to_string(data_dir.join("serve.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        HeraldProcess { child, base }
    }

    /// `GET path` with the admin key; the JSON answer.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        get_json(&self.base, path).await
    }

    /// `POST /v1/messages` with the admin key; the JSON answer.
    pub async fn send(&self, body: &serde_json::Value) -> serde_json::Value {
        crate::utils::http()
            .post(format!("{}/v1/messages", self.base))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        self.signal_group("-KILL");
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends `signal` to every process of the server's group (a wrapper and the server).
    fn signal_group(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args([signal, "--", &group])
            .stderr(Stdio::null())
            .status();
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        self.signal_group("-TERM");
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The servers' `dispatch.concurrency`: at most this many calls per process are in flight
/// or done but not yet recorded, the bound on what a kill can leave to be sent again.
pub const CONCURRENCY: usize = 64;

impl Drop for HeraldProcess {
    fn drop(&mut self) {
        self.signal_group("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET base+path` with the admin key of [`HeraldProcess`]; the JSON answer.
pub async fn get_json(base: &str, path: &str) -> serde_json::Value {
    crate::utils::http()
        .get(format!("{base}{path}"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
