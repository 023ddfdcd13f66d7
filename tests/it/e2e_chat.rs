//! Chat robots against `herald simulate`: DingTalk and Feishu signatures accepted, WeCom and
//! Slack delivered, a wrong secret skips nothing silently, and DingTalk's 20 a minute is
//! never exceeded: the rest waits.

use crate::utils::rig::{Rig, provider};
use herald::config::ProviderKind;
use herald::core::types::Channel;
use serde_json::{Value, json};

fn robots(sim: &str, dingtalk_secret: &str) -> Vec<herald::config::ProviderConfig> {
    vec![
        provider(
            "ops-dingtalk",
            Channel::Chat,
            ProviderKind::Dingtalk,
            1,
            &format!("{sim}/dingtalk"),
            &[("secret", dingtalk_secret)],
            &[(
                "url",
                "https://oapi.dingtalk.com/robot/send?access_token=tok-1",
            )],
        ),
        provider(
            "ops-feishu",
            Channel::Chat,
            ProviderKind::Feishu,
            1,
            &format!("{sim}/feishu"),
            &[("secret", "feishu-secret-value")],
            &[("url", "https://open.feishu.cn/open-apis/bot/v2/hook/hook-1")],
        ),
        provider(
            "ops-wecom",
            Channel::Chat,
            ProviderKind::Wecom,
            1,
            &format!("{sim}/wecom"),
            &[],
            &[(
                "url",
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wecom-key-secret-value",
            )],
        ),
        provider(
            "ops-slack",
            Channel::Chat,
            ProviderKind::Slack,
            1,
            &format!("{sim}/slack"),
            &[],
            &[(
                "url",
                "https://hooks.slack.com/services/T0/B0/slack-secret-value",
            )],
        ),
        teams(sim, "teams-sig-secret-value"),
    ]
}

fn teams(sim: &str, sig: &str) -> herald::config::ProviderConfig {
    provider(
        "ops-teams",
        Channel::Chat,
        ProviderKind::Teams,
        1,
        &format!("{sim}/teams"),
        &[],
        &[(
            "url",
            &format!(
                "https://prod-07.westus.logic.azure.com/workflows/wf1/triggers/manual/paths/invoke?api-version=2016-06-01&sig={sig}"
            ),
        )],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_robot_accepts_what_herald_sends() {
    let rig = Rig::start(|c, sim| c.providers = robots(sim, "SECdingtalk-secret-value")).await;
    for (robot, sim_name) in [
        ("ops-dingtalk", "dingtalk"),
        ("ops-feishu", "feishu"),
        ("ops-wecom", "wecom"),
        ("ops-slack", "slack"),
        ("ops-teams", "teams"),
    ] {
        let id = rig.send(json!({"to": {"chat": robot}, "content": {"text": format!("disk full on db1 via {robot}")}})).await;
        let m = rig.herald.wait_status(&id, "sent").await;
        assert_eq!(m["deliveries"][0]["provider"], robot);
        let reqs = rig.requests(sim_name).await;
        assert_eq!(reqs.len(), 1, "{sim_name}: {reqs:#?}");
        assert_eq!(
            reqs[0]["accepted"], true,
            "{sim_name} checked the signature/key: {reqs:#?}"
        );
    }
    // Markdown goes out as markdown where the robot has it.
    let id = rig.send(json!({"to": {"chat": "ops-dingtalk"}, "content": {"subject": "Alert", "markdown": "#### Disk\\n> 97%"}})).await;
    rig.herald.wait_status(&id, "sent").await;
    let reqs = rig.requests("dingtalk").await;
    assert_eq!(reqs[1]["request"]["msgtype"], "markdown");
    assert_eq!(reqs[1]["request"]["markdown"]["title"], "Alert");
    // `to.chat` must name a robot.
    let (code, e) = rig
        .herald
        .send(json!({"to": {"chat": "nobody"}, "content": {"text": "x"}}))
        .await;
    assert_eq!(
        (code, e["errors"][0]["field"].as_str()),
        (422, Some("to.chat"))
    );
    rig.herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_robot_secret_fails_the_delivery_as_a_provider_error() {
    let rig = Rig::start(|c, sim| c.providers = robots(sim, "SECnot-the-secret")).await;
    let id = rig
        .send(json!({"to": {"chat": "ops-dingtalk"}, "content": {"text": "x"}}))
        .await;
    let m = rig.herald.wait_status(&id, "failed").await;
    let e = &m["deliveries"][0]["attempts"][0]["error"];
    assert_eq!(e["class"], "provider");
    assert_eq!(e["code"], "310000");
    rig.herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dingtalk_never_gets_more_than_twenty_a_minute() {
    let rig = Rig::start(|c, sim| c.providers = robots(sim, "SECdingtalk-secret-value")).await;
    let mut ids = Vec::new();
    for i in 0..26 {
        ids.push(
            rig.send(
                json!({"to": {"chat": "ops-dingtalk"}, "content": {"text": format!("alert {i}")}}),
            )
            .await,
        );
    }
    // Twenty go out; the other six are each claimed and put back to wait for the budget.
    rig.herald
        .wait_metric("herald_delivery_attempts_total", 20.0)
        .await;
    rig.herald
        .wait_metric("herald_deliveries_deferred_total", 6.0)
        .await;
    let reqs = rig.requests("dingtalk").await;
    let refused: Vec<&Value> = reqs.iter().filter(|r| r["accepted"] != true).collect();
    assert!(
        refused.is_empty(),
        "the robot was never pushed over its limit: {refused:#?}"
    );
    assert_eq!(reqs.len(), 20, "exactly the minute's budget went out");
    let mut waiting = 0;
    for id in &ids {
        let (_, m) = rig.herald.get(&format!("/v1/messages/{id}")).await;
        match m["status"].as_str().unwrap() {
            "sent" => {}
            "queued" => {
                waiting += 1;
                assert!(
                    m["deliveries"][0]["attempts"]
                        .as_array()
                        .unwrap()
                        .is_empty(),
                    "waiting is not failing: {m:#}"
                );
            }
            other => panic!("{other}: {m:#}"),
        }
    }
    assert_eq!(waiting, 6, "the rest waits in the queue");
    rig.herald.stop().await;
}

/// The simulators check what the services check by default: a DingTalk robot with another
/// access_token and a Feishu bot with another hook id are refused, not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_access_token_or_hook_id_is_refused() {
    let rig = Rig::start(|c, sim| {
        let mut r = robots(sim, "SECdingtalk-secret-value");
        r[0].options.insert(
            "url".into(),
            toml::Value::String(
                "https://oapi.dingtalk.com/robot/send?access_token=not-the-robots".into(),
            ),
        );
        r[1].options.insert(
            "url".into(),
            toml::Value::String("https://open.feishu.cn/open-apis/bot/v2/hook/other-hook".into()),
        );
        c.providers = r;
    })
    .await;
    for (robot, code) in [("ops-dingtalk", "300001"), ("ops-feishu", "19001")] {
        let id = rig
            .send(json!({"to": {"chat": robot}, "content": {"text": "x"}}))
            .await;
        let m = rig.herald.wait_status(&id, "failed").await;
        let e = &m["deliveries"][0]["attempts"][0]["error"];
        assert_eq!(e["code"], code, "{robot}: {m}");
    }
    rig.herald.stop().await;
}

/// Teams: the subject and text arrive as an Adaptive Card; a template parameter cannot add
/// markdown of its own; a wrong `sig` or a removed workflow is a provider error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_gets_an_adaptive_card_and_refusals_are_classed() {
    let rig = Rig::start(|c, sim| {
        c.providers = vec![teams(sim, "teams-sig-secret-value")];
        c.templates.push(
            toml::from_str(
                r#"
                id = "disk"
                chat = { subject = "Disk on {{ host }}", markdown = "Used: **{{ used }}**" }
                "#,
            )
            .unwrap(),
        );
    })
    .await;
    let id = rig
        .send(json!({"to": {"chat": "ops-teams"}, "template": "disk",
                     "params": {"host": "db1", "used": "97% [link](http://x.example)"}}))
        .await;
    rig.herald.wait_status(&id, "sent").await;
    let reqs = rig.requests("teams").await;
    let body = &reqs[0]["request"]["attachments"][0]["content"]["body"];
    assert_eq!(body[0]["text"], "Disk on db1");
    assert_eq!(
        body[1]["text"],
        "Used: **97% \\[link\\]\\(http://x\\.example\\)**"
    );
    rig.fault("teams", json!({"error_code": "WorkflowNotFound"}))
        .await;
    let id = rig
        .send(json!({"to": {"chat": "ops-teams"}, "content": {"text": "x"}}))
        .await;
    let m = rig.herald.wait_status(&id, "failed").await;
    let e = &m["deliveries"][0]["attempts"][0]["error"];
    assert_eq!(
        (e["class"].as_str(), e["code"].as_str()),
        (Some("provider"), Some("WorkflowNotFound")),
        "{m}"
    );
    rig.herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_teams_sig_is_a_provider_error() {
    let rig = Rig::start(|c, sim| c.providers = vec![teams(sim, "not-the-sig")]).await;
    let id = rig
        .send(json!({"to": {"chat": "ops-teams"}, "content": {"subject": "s", "text": "x"}}))
        .await;
    let m = rig.herald.wait_status(&id, "failed").await;
    let e = &m["deliveries"][0]["attempts"][0]["error"];
    assert_eq!(
        (e["class"].as_str(), e["code"].as_str()),
        (Some("provider"), Some("DirectApiAuthorizationRequired")),
        "{m}"
    );
    rig.herald.stop().await;
}
