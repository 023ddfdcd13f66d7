//! Debian's Chromium, headless, driven through Debian's chromedriver over the W3C WebDriver
//! protocol (plain JSON over HTTP on loopback). Missing either is a loud failure: the test
//! command installs both.

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn exe(candidates: &[&str], what: &str) -> String {
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
        .unwrap_or_else(|| {
            panic!("{what} is needed for the browser tests: `apt-get install chromium chromium-driver` (scripts/test.sh installs them)")
        })
}

impl Browser {
    pub async fn start() -> Browser {
        let driver_bin = exe(&["/usr/bin/chromedriver"], "chromedriver");
        let chromium = exe(&["/usr/bin/chromium"], "Chromium");
        let port = super::process::free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = crate::utils::http_builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let start = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-default-apps",
                    "--window-size=1280,900", "--lang=en-US",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {r}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    async fn raw(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let mut rq = self.http.request(method, url);
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let r: Value = rq.send().await.unwrap().json().await.unwrap();
        r["value"].clone()
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let v = self.raw(method, path, body).await;
        if let Some(e) = v.get("error") {
            panic!("webdriver {path}: {e} {}", v["message"]);
        }
        v
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn find_now(&self, css: &str) -> Option<String> {
        let v = self
            .raw(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().map(str::to_string)
    }

    /// The element, waited for (10 s at most).
    pub async fn find(&self, css: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(id) = self.find_now(css).await {
                return id;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no `{css}` on {}: {}",
                self.url().await,
                self.text("body").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.find_now(css).await.is_some()
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Presses keys on the focused element (`\u{E004}` is Tab, `\u{E007}` Enter).
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.cmd(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "kb", "actions": actions}]})),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let Some(id) = self.find_now(css).await else {
            return String::new();
        };
        self.cmd(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Waits (20 s at most) until the element's text satisfies `pred`; returns it.
    pub async fn wait_text(&self, css: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let t = self.text(css).await;
            if pred(&t) {
                return t;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "`{css}` on {} stayed {t:?}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    pub async fn script(&self, js: &str, args: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": args})),
        )
        .await
    }

    pub async fn async_script(&self, js: &str, args: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": js, "args": args})),
        )
        .await
    }

    /// Light or dark, as the reader's system would ask for it.
    pub async fn color_scheme(&self, scheme: &str) {
        self.cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": {
                "features": [{"name": "prefers-color-scheme", "value": scheme}]
            }})),
        )
        .await;
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    /// Every URL the page loaded (itself and its resources).
    pub async fn loaded(&self) -> Vec<String> {
        let v = self
            .script(
                "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));",
                json!([]),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    }

    pub async fn quit(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
    }
}
