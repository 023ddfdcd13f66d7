//! The console and the status page in a real browser (Debian's Chromium, headless, through
//! chromedriver): an operator's day — sign in, watch a live counter move, open a message's
//! timeline, preview and replay a dead letter, disable a provider and find it in the audit
//! log, ask for a mode switch that a second key approves (the asker's own approval
//! refused), a viewer refused, a forged form refused, sign out — and the public status page
//! showing an outage and the recovery. axe-core checks every page in both themes; no page
//! loads anything from another host. Screenshots go to `$CARGO_TARGET_TMPDIR/console/`.

use crate::utils::TestHerald;
use crate::utils::rig::{Rig, sms, sms_providers, verify_template};
use crate::utils::webdriver::Browser;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console")
}

fn axe_source() -> String {
    let path = std::env::var("HERALD_TEST_AXE").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/node_modules/axe-core/axe.min.js"
        )
        .to_string()
    });
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("axe-core is needed at {path} ({e}): `npm ci --prefix tests/browser` (scripts/test.sh runs it)")
    })
}

async fn key(h: &TestHerald, name: &str, role: &str, approver: bool) -> String {
    h.api_key(name, role, approver).await.0
}

async fn sign_in(b: &Browser, base: &str, key: &str) {
    b.goto(&format!("{base}/console")).await;
    assert!(
        b.url().await.ends_with("/console/signin"),
        "{}",
        b.url().await
    );
    b.fill("#key", key).await;
    b.click("#signin").await;
    b.find("#fig-queued").await;
}

async fn sign_out(b: &Browser) {
    b.click("#signout").await;
    b.find("#key").await;
    assert!(b.url().await.ends_with("/console/signin"));
}

/// Runs axe-core on the page open now; the serious and critical violations, as text.
async fn axe(b: &Browser, src: &str) -> Vec<String> {
    b.script(src, json!([])).await;
    let r = b
        .async_script(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']})
               .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                 nodes: v.nodes.slice(0, 3).map(n => n.html)}))))
               .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));",
            json!([]),
        )
        .await;
    r.as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .map(Value::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_day_in_the_console_and_the_status_page_in_a_real_browser() {
    let rig = Rig::start(|c, sim| {
        c.providers = sms_providers(sim);
        c.templates = vec![verify_template()];
        c.approvals.actions = vec!["mode.set".into()];
        c.status.refresh = herald::config::Dur::millis(300);
        c.circuit.open_for = herald::config::Dur::secs(2);
    })
    .await;
    let h = &rig.herald;
    let base = h.base.clone();
    let alice = key(h, "alice", "admin", true).await;
    let bob = key(h, "bob", "admin", true).await;
    let vic = key(h, "vic", "viewer", false).await;
    // A dead letter: Twilio's test number for "not a valid number" fails for good.
    let dead = rig
        .send(json!({"to": {"phone": "+15005550001"}, "content": {"text": "x"}}))
        .await;
    assert_eq!(rig.settle(&dead).await["status"], "failed");

    let b = Browser::start().await;
    let dir = shots();
    sign_in(&b, &base, &alice).await;
    b.screenshot(&dir.join("overview.png")).await;

    // A live counter moves when a message is sent (the page is not reloaded).
    b.wait_text("#live-state", |t| t.starts_with("Live")).await;
    let before: i64 = b.text("#fig-sent-total").await.parse().unwrap();
    let sent = rig.send(sms("verify_code")).await;
    rig.settle(&sent).await;
    b.wait_text("#fig-sent-total", |t| {
        t.parse::<i64>().is_ok_and(|n| n > before)
    })
    .await;

    // A message's timeline.
    b.goto(&format!("{base}/console/messages")).await;
    b.click(&format!("a[href='/console/messages/{sent}']"))
        .await;
    let timeline = b.wait_text("#timeline", |t| t.contains("attempt 1")).await;
    assert!(timeline.contains("aliyun-main"), "{timeline}");
    assert!(timeline.contains("accepted"), "{timeline}");
    b.screenshot(&dir.join("message.png")).await;

    // A dead letter: preview, then replay.
    b.goto(&format!("{base}/console/dead-letters")).await;
    b.click(&format!("#pick-{dead}")).await;
    b.fill("#replay-reason", "the number was fixed").await;
    b.click("#preview-replay").await;
    assert_eq!(b.text("#would-replay").await, "1");
    b.screenshot(&dir.join("replay-preview.png")).await;
    b.click("#confirm-replay").await;
    assert_eq!(b.text("#replayed").await, "Replayed: 1");
    assert!(
        b.text("#cli-line")
            .await
            .starts_with(&format!("herald dlq replay {dead}"))
    );

    // A provider disabled with a reason, then found in the audit log with the chain intact.
    b.goto(&format!("{base}/console/providers")).await;
    b.fill("#dis-reason-twilio-backup", "vendor maintenance window")
        .await;
    b.fill("#dis-for-twilio-backup", "30m").await;
    b.click("#disable-twilio-backup").await;
    b.wait_text("#outcome", |t| t.contains("Done")).await;
    assert_eq!(
        b.text("#cli-line").await,
        "herald providers disable twilio-backup --reason 'vendor maintenance window' --for 30m"
    );
    b.goto(&format!("{base}/console/audit?action=provider.disable"))
        .await;
    let audit = b.text("#audit").await;
    assert!(audit.contains("twilio-backup"), "{audit}");
    assert!(audit.contains("vendor maintenance window"), "{audit}");
    assert!(audit.contains("alice"), "{audit}");
    assert!(b.text("#chain-verdict").await.contains("Intact"));
    b.screenshot(&dir.join("audit.png")).await;
    b.goto(&format!("{base}/console/providers")).await;
    let switch = b.text("#switch-twilio-backup").await;
    assert!(
        switch.contains("vendor maintenance window") && switch.contains("ends by itself"),
        "{switch}"
    );
    b.fill("#en-reason-twilio-backup", "window over").await;
    b.click("#enable-twilio-backup").await;
    b.wait_text("#outcome", |t| t.contains("Done")).await;

    // A mode switch asks a second person; the asker's own approval is refused.
    b.goto(&format!("{base}/console/mode")).await;
    b.script(
        "document.getElementById('mode-new').value = 'core_only';",
        json!([]),
    )
    .await;
    b.fill("#mode-reason", "shed load during the vendor incident")
        .await;
    b.click("#switch-mode").await;
    b.wait_text("#outcome", |t| t.contains("Waiting for a second person"))
        .await;
    let approval = b.text("#approval-id").await;
    assert!(approval.starts_with("apr_"), "{approval}");
    b.goto(&format!("{base}/console/approvals")).await;
    b.screenshot(&dir.join("approvals.png")).await;
    b.click(&format!("#approve-{approval}")).await;
    let refusal = b.wait_text("#refusal", |t| !t.is_empty()).await;
    assert!(refusal.contains("another person"), "{refusal}");
    assert_eq!(h.get("/v1/mode").await.1["mode"], "normal");
    sign_out(&b).await;

    sign_in(&b, &base, &bob).await;
    b.goto(&format!("{base}/console/approvals")).await;
    b.fill(&format!("#note-{approval}"), "checked with alice")
        .await;
    b.click(&format!("#approve-{approval}")).await;
    b.wait_text("#outcome", |t| t.contains("Done")).await;
    assert_eq!(h.get("/v1/mode").await.1["mode"], "core_only");
    b.goto(&format!("{base}/console/mode")).await;
    assert!(b.text("#current-mode").await.contains("core_only"));
    assert!(b.exists(".banner").await, "the mode banner shows");

    // A form whose CSRF token was tampered with is refused and changes nothing.
    b.script(
        "document.querySelector('form[action=\"/console/do/mode\"] input[name=csrf]').value = 'forged';
         document.getElementById('mode-new').value = 'normal';
         document.getElementById('mode-reason').value = 'sneaky';",
        json!([]),
    )
    .await;
    b.click("#switch-mode").await;
    let refusal = b.wait_text("#refusal", |t| !t.is_empty()).await;
    assert!(refusal.contains("CSRF"), "{refusal}");
    assert_eq!(h.get("/v1/mode").await.1["mode"], "core_only");
    sign_out(&b).await;

    // A viewer sees the pages and is refused at the operator's buttons.
    sign_in(&b, &base, &vic).await;
    b.goto(&format!("{base}/console/providers")).await;
    b.fill("#dis-reason-aliyun-main", "just looking").await;
    b.click("#disable-aliyun-main").await;
    let refusal = b.wait_text("#refusal", |t| !t.is_empty()).await;
    assert!(refusal.contains("operator"), "{refusal}");
    assert!(b.text("#outcome").await.contains("403"));
    sign_out(&b).await;

    // Accessibility (both themes) and nothing loaded from another host, on every page.
    sign_in(&b, &base, &alice).await;
    let src = axe_source();
    let pages = [
        "/console",
        "/console/messages",
        &format!("/console/messages/{sent}"),
        "/console/dead-letters",
        "/console/providers",
        "/console/mode",
        "/console/approvals",
        "/console/audit",
        "/console/nodes",
        "/console/keys",
        "/console/contacts",
        "/console/incidents",
        "/console/backups",
        "/console/status",
        "/status",
    ];
    let mut found = Vec::new();
    for scheme in ["light", "dark"] {
        b.color_scheme(scheme).await;
        for p in &pages {
            b.goto(&format!("{base}{p}")).await;
            b.find("main").await;
            for v in axe(&b, &src).await {
                found.push(format!("{p} ({scheme}): {v}"));
            }
            for url in b.loaded().await {
                assert!(url.starts_with(&base), "{p} loaded {url} from another host");
            }
        }
    }
    assert!(found.is_empty(), "axe-core: {found:#?}");
    b.color_scheme("dark").await;
    b.goto(&format!("{base}/console")).await;
    b.screenshot(&dir.join("overview-dark.png")).await;
    b.color_scheme("light").await;

    // The keyboard reaches the sign-out button from the top of a page.
    b.goto(&format!("{base}/console/mode")).await;
    let mut reached = false;
    for _ in 0..40 {
        b.keys("\u{E004}").await;
        let id = b
            .script(
                "return document.activeElement && document.activeElement.id;",
                json!([]),
            )
            .await;
        if id == "signout" {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab reaches the sign-out button");

    // The status page: a provider's outage shows as degraded within seconds, then recovers.
    // (Back to normal first, alone, by break-glass: core_only shows as a partial outage.)
    let (code, r) = h
        .call(
            Method::PUT,
            "/v1/mode",
            Some(
                json!({"mode": "normal", "reason": "incident over", "break_glass": "BREAK GLASS"}),
            ),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    let calm = Instant::now();
    loop {
        b.goto(&format!("{base}/status")).await;
        if b.text("body").await.contains("All Systems Operational") {
            break;
        }
        assert!(
            calm.elapsed() < Duration::from_secs(20),
            "{r} {} {}",
            h.get("/v1/mode").await.1,
            b.text("body").await.chars().take(300).collect::<String>()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    rig.fault("aliyun", json!({"status": 503, "count": 1000}))
        .await;
    let opened = Instant::now();
    for _ in 0..4 {
        let id = rig.send(sms("verify_code")).await;
        rig.settle(&id).await;
    }
    loop {
        b.goto(&format!("{base}/status")).await;
        if b.text("body").await.contains("Degraded performance") {
            break;
        }
        assert!(
            opened.elapsed() < Duration::from_secs(30),
            "{}",
            b.text("body").await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    b.screenshot(&dir.join("status-degraded.png")).await;
    rig.clear_fault("aliyun").await;
    let cleared = Instant::now();
    loop {
        let id = rig.send(sms("verify_code")).await;
        rig.settle(&id).await;
        b.goto(&format!("{base}/status")).await;
        if b.text("body").await.contains("All Systems Operational") {
            break;
        }
        assert!(
            cleared.elapsed() < Duration::from_secs(40),
            "{}",
            b.text("body").await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    b.screenshot(&dir.join("status.png")).await;
    b.quit().await;
}
