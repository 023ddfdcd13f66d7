//! A real browser receives a push Herald sent. Headless Firefox ESR (Debian's `firefox-esr`,
//! which `scripts/test.sh` installs) has its push service pointed at `herald simulate`'s
//! (`dom.push.serverURL`, Mozilla's WebSocket protocol); a page subscribes with Herald's VAPID
//! key, the subscription is registered on a contact, a message to the contact is sent, and
//! the notification the service worker showed is read back over WebDriver BiDi. A body
//! corrupted on the way is refused by the browser (ack 101) and shows nothing.

use crate::utils::rig::{Rig, provider};
use futures::{SinkExt, StreamExt};
use herald::config::ProviderKind;
use herald::core::types::Channel;
use herald::providers::webpush::vapid::VapidKey;
use reqwest::Method;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const PAGE: &str = r#"<!doctype html><html><body><h1>Herald push test</h1><script>
function bytes(s){s=s.replace(/-/g,'+').replace(/_/g,'/');while(s.length%4)s+='=';return Uint8Array.from(atob(s),c=>c.charCodeAt(0));}
window.setup = async () => { await navigator.serviceWorker.register('/sw.js'); const r = await navigator.serviceWorker.ready; return r.scope; };
window.subscribe = async (key) => {
  const reg = await navigator.serviceWorker.ready;
  const late = new Promise((_, no) => setTimeout(() => no(new Error('subscribe() did not settle in 20 s')), 20000));
  try { const s = await Promise.race([reg.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: bytes(key)}), late]);
        return {ok: true, sub: s.toJSON()}; }
  catch (e) { return {ok: false, error: e.name + ': ' + e.message}; }
};
window.notes = async () => { const reg = await navigator.serviceWorker.ready; return (await reg.getNotifications()).map(n => ({title: n.title, body: n.body, tag: n.tag})); };
</script></body></html>"#;

const WORKER: &str = r#"self.addEventListener('install', e => self.skipWaiting());
self.addEventListener('activate', e => e.waitUntil(self.clients.claim()));
self.addEventListener('push', e => {
  const d = e.data ? e.data.json() : {};
  e.waitUntil(self.registration.showNotification(d.title || 'Herald', {body: d.body || '', tag: d.tag || 'herald', data: d}));
});"#;

/// Firefox, stopped when dropped (its profile directory goes with it).
struct Firefox {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Firefox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_firefox(push_ws: &str, bidi_port: u16) -> Firefox {
    let bin = ["/usr/bin/firefox-esr", "/usr/bin/firefox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("Firefox ESR is needed for this test: `apt-get install firefox-esr` (scripts/test.sh installs it)")
        });
    let profile = tempfile::tempdir().unwrap();
    let prefs = [
        format!("user_pref(\"dom.push.serverURL\", \"{push_ws}\");"),
        "user_pref(\"dom.push.testing.allowInsecureServerURL\", true);".into(),
        "user_pref(\"dom.push.enabled\", true);".into(),
        "user_pref(\"dom.push.connection.enabled\", true);".into(),
        "user_pref(\"permissions.default.desktop-notification\", 1);".into(),
        "user_pref(\"alerts.useSystemBackend\", false);".into(),
        "user_pref(\"browser.shell.checkDefaultBrowser\", false);".into(),
        "user_pref(\"datareporting.policy.dataSubmissionEnabled\", false);".into(),
        "user_pref(\"toolkit.telemetry.reportingpolicy.firstRun\", false);".into(),
        "user_pref(\"app.update.enabled\", false);".into(),
        "user_pref(\"network.captive-portal-service.enabled\", false);".into(),
        "user_pref(\"network.connectivity-service.enabled\", false);".into(),
        "user_pref(\"browser.safebrowsing.update.enabled\", false);".into(),
        "user_pref(\"services.settings.server\", \"http://127.0.0.1:9/\");".into(),
    ];
    std::fs::write(profile.path().join("user.js"), prefs.join("\n")).unwrap();
    let child = Command::new(bin)
        .args(["--headless", "--no-remote", "--profile"])
        .arg(profile.path())
        .args([
            "--remote-debugging-port",
            &bidi_port.to_string(),
            "about:blank",
        ])
        .env("HOME", profile.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Firefox {
        child,
        _profile: profile,
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A minimal WebDriver BiDi session: commands with ids, answers matched by id.
struct Bidi {
    ws: Ws,
    next: u64,
    context: String,
}

impl Bidi {
    async fn connect(port: u16) -> Bidi {
        let deadline = Instant::now() + Duration::from_secs(60);
        let ws = loop {
            match tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/session")).await {
                Ok((ws, _)) => break ws,
                Err(e) if Instant::now() > deadline => {
                    panic!("Firefox's BiDi port never answered: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        let mut b = Bidi {
            ws,
            next: 0,
            context: String::new(),
        };
        b.call("session.new", json!({"capabilities": {}})).await;
        let tree = b.call("browsingContext.getTree", json!({})).await;
        b.context = tree["result"]["contexts"][0]["context"]
            .as_str()
            .unwrap()
            .to_string();
        b
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let cmd = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::Text(cmd.into())).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .unwrap()
                .unwrap();
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    assert_ne!(v["type"], "error", "{method}: {v}");
                    return v;
                }
            }
        }
    }

    /// Evaluates an async expression in the page; its JSON result.
    async fn eval(&mut self, expr: &str) -> Value {
        let ctx = self.context.clone();
        let r = self
            .call(
                "script.evaluate",
                json!({"expression": format!("(async () => JSON.stringify(await ({expr})))()"),
                       "target": {"context": ctx}, "awaitPromise": true}),
            )
            .await;
        let text = r["result"]["result"]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{expr}: {r}"));
        serde_json::from_str(text).unwrap()
    }
}

async fn serve_site() -> u16 {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/index.html",
            get(|| async { ([("content-type", "text/html")], PAGE) }),
        )
        .route(
            "/sw.js",
            get(|| async { ([("content-type", "application/javascript")], WORKER) }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_shows_the_push_herald_sent_and_refuses_a_corrupted_one() {
    let key = VapidKey::generate();
    let k2 = VapidKey::from_private_b64(&key.private_b64()).unwrap();
    let rig = Rig::start(move |c, _| {
        let mut p = provider(
            "webpush",
            Channel::Push,
            ProviderKind::Webpush,
            1,
            "",
            &[("vapid_private_key", &k2.private_b64())],
            &[("subject", "mailto:ops@herald.example")],
        );
        p.options.insert(
            "allowed_hosts".into(),
            toml::Value::Array(vec![
                toml::Value::String("localhost".into()),
                toml::Value::String("127.0.0.1".into()),
            ]),
        );
        c.providers = vec![p];
    })
    .await;
    let h = &rig.herald;
    let sim_port = rig.sim.rsplit(':').next().unwrap().to_string();
    let site = serve_site().await;
    let bidi_port = free_port();
    let _firefox = start_firefox(&format!("ws://localhost:{sim_port}/webpush/ws"), bidi_port);
    let mut b = Bidi::connect(bidi_port).await;
    let ctx = b.context.clone();
    b.call(
        "browsingContext.navigate",
        json!({"context": ctx, "url": format!("http://localhost:{site}/index.html"), "wait": "complete"}),
    )
    .await;
    b.eval("setup()").await;
    let (_, k) = h.get("/v1/push/vapid-public-key").await;
    let sub = b.eval(&format!("subscribe({})", k["key"])).await;
    assert_eq!(
        sub["ok"], true,
        "the browser subscribed at the simulated push service: {sub}"
    );
    let (code, r) = h
        .call(
            Method::POST,
            "/v1/contacts/u-ff/push-subscriptions",
            Some(sub["sub"].clone()),
        )
        .await;
    assert_eq!(code, 404, "no such contact yet: {r}");
    h.call(
        Method::PUT,
        "/v1/contacts/u-ff",
        Some(json!({"name": "Firefox"})),
    )
    .await;
    let (code, r) = h
        .call(
            Method::POST,
            "/v1/contacts/u-ff/push-subscriptions",
            Some(sub["sub"].clone()),
        )
        .await;
    assert_eq!(code, 201, "{r}");

    let id = rig
        .send(
            json!({"to": {"user": "u-ff"}, "channels": ["push"], "priority": "critical",
                     "metadata": {"collapse_key": "inc-7"},
                     "content": {"subject": "P0: db01 down", "text": "reply 1 to acknowledge"}}),
        )
        .await;
    h.wait_status(&id, "sent").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let shown = loop {
        let n = b.eval("notes()").await;
        if n.as_array().is_some_and(|a| !a.is_empty()) || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        shown,
        json!([{"title": "P0: db01 down", "body": "reply 1 to acknowledge", "tag": "inc-7"}]),
        "the service worker showed the notification"
    );
    let endpoint = sub["sub"]["endpoint"].as_str().unwrap();
    let acks = |v: Value| -> Vec<Value> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["ack"].clone())
            .collect()
    };
    let got: Value = rig
        .http
        .get(format!("{endpoint}/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        acks(got),
        vec![json!(100)],
        "Firefox acknowledged it as delivered"
    );

    // The push service flips a byte of the next body: the browser cannot decrypt it.
    rig.fault("webpush", json!({"error_code": "corrupt", "count": 1}))
        .await;
    let id = rig
        .send(json!({"to": {"user": "u-ff"}, "channels": ["push"],
                     "content": {"subject": "tampered", "text": "must not show"}}))
        .await;
    h.wait_status(&id, "sent").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let acked = loop {
        let got: Value = rig
            .http
            .get(format!("{endpoint}/messages"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let a = acks(got);
        if a.len() == 2 && !a[1].is_null() || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        acked,
        vec![json!(100), json!(101)],
        "ack 101: decryption failed in the browser"
    );
    let n = b.eval("notes()").await;
    assert_eq!(
        n.as_array().map(Vec::len),
        Some(1),
        "nothing more was shown: {n}"
    );
}
