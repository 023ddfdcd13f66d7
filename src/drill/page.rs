//! `herald drill run page --policy P`: opens a drill incident on a running gateway
//! (`POST /v1/drills/page`), lets the policy page people through the real path, waits for
//! someone to acknowledge (the pages say they are drills), then resolves it and reports
//! time to first page, time to acknowledge, the step that was answered, and how.

use super::{DrillArgs, Report};
use crate::cli::client::Client;
use crate::config::DrillConfig;
use crate::core::types::{now_millis, parse_rfc3339, rfc3339};
use anyhow::{Context, Result};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

fn ts(v: &Value) -> Option<i64> {
    v.as_str().and_then(|s| parse_rfc3339(s).ok())
}

fn check(name: &str, value: Option<i64>, max_ms: i64) -> super::Check {
    super::Check {
        name: name.into(),
        value: value.map_or("—".into(), |v| format!("{v} ms")),
        target: format!("≤ {max_ms} ms"),
        ok: value.is_some_and(|v| v <= max_ms),
    }
}

pub async fn run(a: &DrillArgs, t: &DrillConfig) -> Result<Report> {
    let policy = a
        .policy
        .clone()
        .context("the page drill needs --policy (the escalation policy to page)")?;
    let c = Client::new(&a.client)?;
    let started = now_millis();
    let opened = c
        .call(
            Method::POST,
            "/v1/drills/page",
            Some(json!({"policy": policy, "severity": a.severity})),
            &[],
        )
        .await?;
    let id = opened["incident"]
        .as_str()
        .context("the gateway did not say which incident it opened")?
        .to_string();
    eprintln!(
        "drill page: incident {id} opened on policy {policy}; waiting for an acknowledgement"
    );
    let (page_max, ack_max) = (
        t.max_time_to_page.0.as_millis() as i64,
        t.max_time_to_ack.0.as_millis() as i64,
    );
    let give_up = started + page_max + ack_max;
    let mut timeline = vec![format!("+0 ms incident {id} opened on policy {policy}")];
    let mut last_step = 0;
    let mut answered_at: Option<i64> = None;
    let view = loop {
        let v = c
            .call(Method::GET, &format!("/v1/incidents/{id}"), None, &[])
            .await?;
        let step = v["escalation"]["fired_step"].as_i64().map_or(0, |s| s + 1);
        if step > last_step {
            timeline.push(format!("+{} ms step {step} paged", now_millis() - started));
            last_step = step;
        }
        // An answer shows in the status first and in the escalation's figures a moment
        // later: wait for those (a few seconds at most).
        let answered = v["status"] != "triggered";
        let figures = !v["escalation"]["first_ack_at"].is_null() || v["status"] == "resolved";
        if (answered && (figures || answered_at.is_some_and(|t| now_millis() - t > 5_000)))
            || now_millis() > give_up
        {
            break v;
        }
        if answered && answered_at.is_none() {
            answered_at = Some(now_millis());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let opened_at = ts(&view["opened_at"]).unwrap_or(started);
    let first_page = ts(&view["escalation"]["first_page_at"]);
    let first_ack = ts(&view["escalation"]["first_ack_at"]);
    let to_page = first_page.map(|p| p - opened_at);
    let to_ack = first_ack.zip(first_page).map(|(a, p)| a - p);
    let ack = view["timeline"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e["kind"] == "acknowledged"))
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(a) = first_ack {
        timeline.push(format!(
            "+{} ms acknowledged by {} ({})",
            a - started,
            ack["actor"].as_str().unwrap_or("?"),
            ack["detail"]["reason"].as_str().unwrap_or("")
        ));
    } else {
        timeline.push(format!(
            "+{} ms nobody acknowledged; giving up",
            now_millis() - started
        ));
    }
    // The drill ends resolved, whoever answered.
    let _ = c
        .call(
            Method::POST,
            &format!("/v1/incidents/{id}/resolve"),
            Some(json!({"reason": "paging drill over"})),
            &[],
        )
        .await;
    let mut r = Report {
        scenario: "page".into(),
        started_at: rfc3339(started),
        duration_ms: (now_millis() - started).max(0) as u64,
        timeline,
        ..Report::default()
    };
    let pages = view["pages"].as_array().map_or(0, Vec::len);
    for (k, v) in [
        ("incident", json!(id)),
        ("policy", json!(policy)),
        ("time_to_first_page_ms", json!(to_page)),
        ("time_to_acknowledge_ms", json!(to_ack)),
        (
            "steps_needed",
            json!(view["escalation"]["first_ack_step"].as_i64().map(|s| s + 1)),
        ),
        ("pages_sent", json!(pages)),
        ("acknowledged_by", ack["actor"].clone()),
        ("how", ack["detail"]["reason"].clone()),
    ] {
        r.extra.insert(k.into(), v);
    }
    r.checks = vec![
        check("time to first page", to_page, page_max),
        check("time to acknowledge", to_ack, ack_max),
    ];
    r.passed = r.checks.iter().all(|c| c.ok);
    Ok(r)
}
