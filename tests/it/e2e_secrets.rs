//! Secrets never appear in logs (at debug level), in `config check`, or in API responses,
//! including after failures whose errors mention URLs and signatures.

use crate::utils::process::{HeraldProcess, KEY};
use crate::utils::rig::sim_args;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SECRETS: [&str; 8] = [
    "sim-ak-secret-value",
    "twilio-token-secret-value",
    "SECdingtalk-secret-value",
    "feishu-secret-value",
    "wecom-key-secret-value",
    "slack-secret-value",
    "dingtalk-access-token-value",
    "push-token-value",
];

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(
            !text.contains(s),
            "{what} leaks `{s}`:\n{}",
            text.chars().take(3000).collect::<String>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_config_check_and_api_responses() {
    let sim_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = format!("http://{}", sim_l.local_addr().unwrap());
    herald::simulate::spawn(sim_args(&sim, "http://127.0.0.1:9"), sim_l);
    let providers = format!(
        r#"
[[providers]]
id = "aliyun-main"
channel = "sms"
kind = "aliyun"
endpoint = "{sim}/aliyun"
credentials = {{ access_key_id = "sim-ak", access_key_secret = "sim-ak-secret-value", receipt_token = "push-token-value" }}
options = {{ sign_name = "Herald" }}

[[providers]]
id = "twilio-backup"
channel = "sms"
kind = "twilio"
priority = 2
endpoint = "{sim}/twilio"
credentials = {{ account_sid = "ACsim0000000000000000000000000000", auth_token = "twilio-token-secret-value" }}
options = {{ from = "+15005550006" }}

[[providers]]
id = "ops-dingtalk"
channel = "chat"
kind = "dingtalk"
endpoint = "{sim}/dingtalk"
credentials = {{ secret = "SECdingtalk-secret-value" }}
options = {{ url = "https://oapi.dingtalk.com/robot/send?access_token=dingtalk-access-token-value" }}

[[providers]]
id = "ops-feishu"
channel = "chat"
kind = "feishu"
endpoint = "{sim}/feishu"
credentials = {{ secret = "feishu-secret-value" }}
options = {{ url = "https://open.feishu.cn/open-apis/bot/v2/hook/h1" }}

[[providers]]
id = "ops-wecom"
channel = "chat"
kind = "wecom"
endpoint = "http://127.0.0.1:9/unreachable"
options = {{ url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wecom-key-secret-value" }}

[[providers]]
id = "ops-slack"
channel = "chat"
kind = "slack"
endpoint = "{sim}/slack"
options = {{ url = "https://hooks.slack.com/services/T0/B0/slack-secret-value" }}

[[templates]]
id = "verify_code"
sms = {{ text = "Your code is {{{{ code }}}}", provider_templates = {{ aliyun-main = "SMS_1" }} }}
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let p = HeraldProcess::start_with_log_level(dir.path(), &providers, "debug").await;
    let base = p.base.clone();
    let http = crate::utils::http();
    let mut ids = Vec::new();
    for body in [
        json!({"to": {"phone": "+8613800138000"}, "template": "verify_code", "params": {"code": "1"}}),
        json!({"to": {"phone": "+14155550100"}, "channels": ["sms"], "content": {"text": "x"}}),
        json!({"to": {"chat": "ops-dingtalk"}, "content": {"text": "x"}}),
        json!({"to": {"chat": "ops-feishu"}, "content": {"text": "x"}}),
        json!({"to": {"chat": "ops-wecom"}, "content": {"text": "unreachable robot"}}),
        json!({"to": {"chat": "ops-slack"}, "content": {"text": "x"}}),
    ] {
        let r: Value = http
            .post(format!("{base}/v1/messages"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    // A forged receipt push: refused, and the refusal leaks nothing.
    let r = http
        .post(format!("{base}/v1/receipts/aliyun/aliyun-main?token=wrong"))
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_clean("receipt refusal", &r.text().await.unwrap());

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut bodies = String::new();
    for id in &ids {
        loop {
            let m: Value =
                crate::utils::process::get_json(&base, &format!("/v1/messages/{id}")).await;
            let attempted = m["deliveries"][0]["attempts"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            if attempted || Instant::now() > deadline {
                bodies.push_str(&m.to_string());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        bodies.contains("connection"),
        "the unreachable robot's error is in the responses: {bodies}"
    );
    assert_clean("API responses", &bodies);
    let list = http
        .get(format!("{base}/v1/messages?limit=100"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_clean("message list", &list);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["config", "check", "--config"])
        .arg(dir.path().join("herald.toml"))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("ops-dingtalk") && shown.contains("[redacted]"),
        "{shown}"
    );
    assert_clean("config check", &shown);

    drop(p);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("DEBUG"), "debug logging was on");
    assert_clean("logs", &log);
}
