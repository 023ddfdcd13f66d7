//! Herald wired to `herald simulate` on loopback: both listeners are bound first so that
//! Herald knows the simulator's endpoints and the simulator knows where to push receipts.

use super::TestHerald;
use herald::config::{Config, ProviderConfig, ProviderKind, Secret};
use herald::core::types::Channel;
use herald::simulate::apns::ApnsState;
use herald::simulate::{SimArgs, spawn_shared};
use herald::templates::{SmsPart, TemplateConfig};
use serde_json::{Value, json};
use std::time::Duration;

pub struct Rig {
    pub herald: TestHerald,
    pub sim: String,
    pub http: reqwest::Client,
}

pub fn sim_args(listen: &str, herald_base: &str) -> SimArgs {
    SimArgs {
        listen: listen.into(),
        aliyun_access_key_id: "sim-ak".into(),
        aliyun_access_key_secret: "sim-ak-secret-value".into(),
        aliyun_report_url: Some(format!(
            "{herald_base}/v1/receipts/aliyun/aliyun-main?token=sim-receipt-token"
        )),
        aliyun_voice_report_url: Some(format!(
            "{herald_base}/v1/receipts/aliyun/aliyun-vms?token=sim-receipt-token"
        )),
        twilio_account_sid: "ACsim0000000000000000000000000000".into(),
        twilio_auth_token: "twilio-token-secret-value".into(),
        dingtalk_access_token: "tok-1".into(),
        dingtalk_secret: "SECdingtalk-secret-value".into(),
        feishu_hook: "hook-1".into(),
        feishu_secret: "feishu-secret-value".into(),
        wecom_key: "wecom-key-secret-value".into(),
        slack_path: "T0/B0/slack-secret-value".into(),
        teams_sig: "teams-sig-secret-value".into(),
        fcm_project: "herald-sim".into(),
        apns_listen: Some("127.0.0.1:0".into()),
        apns_team_id: "SIMTEAM001".into(),
        apns_key_id: "SIMKEY0001".into(),
        apns_topic: "com.example.herald".into(),
        report_delay: Duration::from_millis(200),
    }
}

pub fn provider(
    id: &str,
    channel: Channel,
    kind: ProviderKind,
    priority: u32,
    endpoint: &str,
    creds: &[(&str, &str)],
    opts: &[(&str, &str)],
) -> ProviderConfig {
    ProviderConfig {
        id: id.into(),
        channel,
        kind,
        priority,
        weight: 100,
        endpoint: (!endpoint.is_empty()).then(|| endpoint.to_string()),
        timeout: None,
        rate_limit: None,
        credentials: creds
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect(),
        options: opts
            .iter()
            .map(|(k, v)| (k.to_string(), toml::Value::String(v.to_string())))
            .collect(),
    }
}

/// The SMS providers most tests use: Aliyun first, Twilio as backup.
pub fn sms_providers(sim: &str) -> Vec<ProviderConfig> {
    vec![
        provider(
            "aliyun-main",
            Channel::Sms,
            ProviderKind::Aliyun,
            1,
            &format!("{sim}/aliyun"),
            &[
                ("access_key_id", "sim-ak"),
                ("access_key_secret", "sim-ak-secret-value"),
                ("receipt_token", "sim-receipt-token"),
            ],
            &[("sign_name", "Herald"), ("region", "cn-hangzhou")],
        ),
        provider(
            "twilio-backup",
            Channel::Sms,
            ProviderKind::Twilio,
            2,
            &format!("{sim}/twilio"),
            &[
                ("account_sid", "ACsim0000000000000000000000000000"),
                ("auth_token", "twilio-token-secret-value"),
            ],
            &[("from", "+15005550006")],
        ),
    ]
}

pub fn verify_template() -> TemplateConfig {
    TemplateConfig {
        id: "verify_code".into(),
        channels: vec![Channel::Sms],
        sms: Some(SmsPart {
            text: Some("Your code is {{ code }}".into()),
            provider_templates: [("aliyun-main".to_string(), "SMS_123456".to_string())]
                .into_iter()
                .collect(),
        }),
        ..Default::default()
    }
}

impl Rig {
    pub async fn start(tweak: impl FnOnce(&mut Config, &str)) -> Rig {
        Self::start_with_apns(|c, sim, _| tweak(c, sim)).await
    }

    /// [`Rig::start`], the tweak also told the APNs simulator's URL and certificate (PEM).
    pub async fn start_with_apns(tweak: impl FnOnce(&mut Config, &str, &ApnsState)) -> Rig {
        let herald_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_at(herald_l, tweak).await
    }

    /// [`Rig::start_with_apns`] with Herald on a listener of the caller's.
    pub async fn start_at(
        herald_l: tokio::net::TcpListener,
        tweak: impl FnOnce(&mut Config, &str, &ApnsState),
    ) -> Rig {
        let sim_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = format!("http://{}", sim_l.local_addr().unwrap());
        let herald_base = format!("http://{}", herald_l.local_addr().unwrap());
        let (_, state) = spawn_shared(sim_args(&sim, &herald_base), sim_l);
        let apns = state.apns.lock().unwrap().clone();
        let sim2 = sim.clone();
        let herald = TestHerald::start_on(herald_l, move |c| {
            c.dispatch.receipt_poll = herald::config::Dur::millis(200);
            tweak(c, &sim2, &apns)
        })
        .await;
        Rig {
            herald,
            sim,
            http: crate::utils::http(),
        }
    }

    pub async fn fault(&self, provider: &str, fault: Value) {
        let r = self
            .http
            .put(format!("{}/_sim/faults/{provider}", self.sim))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    pub async fn clear_fault(&self, provider: &str) {
        self.http
            .delete(format!("{}/_sim/faults/{provider}", self.sim))
            .send()
            .await
            .unwrap();
    }

    /// Requests the simulator recorded for `provider`.
    pub async fn requests(&self, provider: &str) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/_sim/requests?provider={provider}", self.sim))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["data"].as_array().unwrap().clone()
    }

    pub async fn send(&self, body: Value) -> String {
        let (code, r) = self.herald.send(body).await;
        assert_eq!(code, 202, "{r}");
        r["id"].as_str().unwrap().to_string()
    }

    /// Waits until the message is final, receipts included; returns it.
    pub async fn settle(&self, id: &str) -> Value {
        self.herald
            .wait_message(id, |m| {
                ["delivered", "failed", "expired", "cancelled"]
                    .contains(&m["status"].as_str().unwrap_or(""))
            })
            .await
    }
}

pub fn sms(template_code: &str) -> Value {
    json!({"to": {"phone": "+8613800138000"}, "template": template_code, "params": {"code": "123456"}})
}
