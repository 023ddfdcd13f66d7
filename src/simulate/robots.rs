//! Chat robots: DingTalk (signed URL, 20/min), Feishu (signed body, 5/s and 100/min), WeCom
//! (key in the URL, 20/min) and Slack (secret path, about 1/s with short bursts). Each answers
//! with its documented bodies; over its limit, with its documented throttling answer.

use super::{FaultHit, Shared};
use crate::providers::signing::{constant_time_eq, dingtalk_sign, feishu_sign};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;

fn reply(
    sim: &Shared,
    provider: &'static str,
    request: Value,
    status: u16,
    body: Value,
    ok: bool,
) -> Response {
    sim.record(provider, ok, request, status, body.clone());
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        Json(body),
    )
        .into_response()
}

fn errcode(code: i64, msg: &str) -> Value {
    json!({"errcode": code, "errmsg": msg})
}

pub async fn dingtalk(
    State(sim): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let token = q.get("access_token").cloned().unwrap_or_default();
    let r = |status, b: Value, ok| reply(&sim, "dingtalk", request.clone(), status, b, ok);
    if token.is_empty() {
        return r(200, errcode(400101, "access_token is empty"), false);
    }
    if !constant_time_eq(token.as_bytes(), sim.args.dingtalk_access_token.as_bytes()) {
        return r(200, errcode(300001, "token is not exist"), false);
    }
    if let Some(secret) = Some(&sim.args.dingtalk_secret).filter(|s| !s.is_empty()) {
        let ts: i64 = q.get("timestamp").and_then(|t| t.parse().ok()).unwrap_or(0);
        let now = crate::core::types::now_millis();
        let sign = q.get("sign").cloned().unwrap_or_default();
        if (now - ts).abs() > HOUR
            || !constant_time_eq(sign.as_bytes(), dingtalk_sign(secret, ts).as_bytes())
        {
            return r(
                200,
                errcode(
                    310000,
                    "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]",
                ),
                false,
            );
        }
    }
    if let Some(hit) = sim.fault("dingtalk").await {
        return match hit {
            FaultHit::Status(429) => r(
                200,
                errcode(130101, "send too fast, exceed 20 times per minute"),
                false,
            ),
            FaultHit::Status(s) => r(s, json!({"errcode": -1, "errmsg": "system busy"}), false),
            FaultHit::Code(c) => r(
                200,
                errcode(c.parse().unwrap_or(-1), "simulated fault"),
                false,
            ),
        };
    }
    let ok_body = match request["msgtype"].as_str() {
        Some("text") => request["text"]["content"].is_string(),
        Some("markdown") => {
            request["markdown"]["title"].is_string() && request["markdown"]["text"].is_string()
        }
        _ => false,
    };
    if !ok_body {
        return r(200, errcode(40035, "缺少参数 json"), false);
    }
    if !sim.within_rate(&format!("dingtalk:{token}"), &[(20, MINUTE)]) {
        return r(
            200,
            errcode(130101, "send too fast, exceed 20 times per minute"),
            false,
        );
    }
    r(200, errcode(0, "ok"), true)
}

pub async fn feishu(State(sim): State<Shared>, Path(hook): Path<String>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let r = |b: Value, ok| reply(&sim, "feishu", request.clone(), 200, b, ok);
    let err = |code: i64, msg: &str| json!({"code": code, "msg": msg, "data": {}});
    if !constant_time_eq(hook.as_bytes(), sim.args.feishu_hook.as_bytes()) {
        return r(
            err(
                19001,
                "param invalid: incoming webhook access token invalid",
            ),
            false,
        );
    }
    if let Some(secret) = Some(&sim.args.feishu_secret).filter(|s| !s.is_empty()) {
        let ts: i64 = request["timestamp"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let now = crate::core::types::now_millis() / 1000;
        let sign = request["sign"].as_str().unwrap_or("");
        if (now - ts).abs() > 3600
            || !constant_time_eq(sign.as_bytes(), feishu_sign(secret, ts).as_bytes())
        {
            return r(
                err(
                    19021,
                    "sign match fail or timestamp is not within one hour from current time",
                ),
                false,
            );
        }
    }
    if let Some(hit) = sim.fault("feishu").await {
        return match hit {
            FaultHit::Status(429) => r(
                err(
                    11232,
                    "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]",
                ),
                false,
            ),
            FaultHit::Status(s) => reply(
                &sim,
                "feishu",
                request.clone(),
                s,
                err(-1, "internal error"),
                false,
            ),
            FaultHit::Code(c) => r(err(c.parse().unwrap_or(-1), "simulated fault"), false),
        };
    }
    let ok_body = match request["msg_type"].as_str() {
        Some("text") => request["content"]["text"].is_string(),
        Some("post") | Some("interactive") | Some("image") | Some("share_chat") => true,
        _ => false,
    };
    if !ok_body || body.len() > 20 * 1024 {
        return r(err(9499, "Bad Request"), false);
    }
    if !sim.within_rate(&format!("feishu:{hook}"), &[(5, 1000), (100, MINUTE)]) {
        return r(
            err(
                11232,
                "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]",
            ),
            false,
        );
    }
    r(
        json!({"code": 0, "msg": "success", "data": {}, "StatusCode": 0, "StatusMessage": "success"}),
        true,
    )
}

pub async fn wecom(
    State(sim): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let r = |b: Value, ok| reply(&sim, "wecom", request.clone(), 200, b, ok);
    let key = q.get("key").cloned().unwrap_or_default();
    if !constant_time_eq(key.as_bytes(), sim.args.wecom_key.as_bytes()) {
        return r(
            errcode(93000, "invalid webhook url, hint: [simulated]"),
            false,
        );
    }
    if let Some(hit) = sim.fault("wecom").await {
        return match hit {
            FaultHit::Status(429) => r(errcode(45009, "api freq out of limit"), false),
            FaultHit::Status(s) => reply(
                &sim,
                "wecom",
                request.clone(),
                s,
                errcode(-1, "system busy"),
                false,
            ),
            FaultHit::Code(c) => r(errcode(c.parse().unwrap_or(-1), "simulated fault"), false),
        };
    }
    let ok_body = match request["msgtype"].as_str() {
        Some("text") => request["text"]["content"]
            .as_str()
            .is_some_and(|c| c.len() <= 2048),
        Some("markdown") => request["markdown"]["content"]
            .as_str()
            .is_some_and(|c| c.len() <= 4096),
        _ => false,
    };
    if !ok_body {
        return r(errcode(40008, "invalid message type"), false);
    }
    if !sim.within_rate(&format!("wecom:{key}"), &[(20, MINUTE)]) {
        return r(errcode(45009, "api freq out of limit"), false);
    }
    r(errcode(0, "ok"), true)
}

pub async fn slack(State(sim): State<Shared>, Path(path): Path<String>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |status: u16, s: &'static str, ok: bool| {
        sim.record("slack", ok, request.clone(), status, json!(s));
        (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), s).into_response()
    };
    if path != sim.args.slack_path {
        return text(404, "no_service", false);
    }
    if let Some(hit) = sim.fault("slack").await {
        return match hit {
            FaultHit::Status(429) => {
                sim.record("slack", false, request.clone(), 429, json!("rate_limited"));
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1")],
                    "rate_limited",
                )
                    .into_response()
            }
            FaultHit::Status(s) if s >= 500 => text(s, "rollup_error", false),
            FaultHit::Status(s) => text(s, "invalid_payload", false),
            FaultHit::Code(c) => match c.as_str() {
                "channel_not_found" => text(404, "channel_not_found", false),
                "channel_is_archived" => text(410, "channel_is_archived", false),
                "action_prohibited" => text(403, "action_prohibited", false),
                _ => text(400, "invalid_payload", false),
            },
        };
    }
    if request.is_null() {
        return text(400, "invalid_payload", false);
    }
    if request["text"].as_str().is_none_or(|t| t.is_empty()) && request["blocks"].is_null() {
        return text(400, "no_text", false);
    }
    if !sim.within_rate(&format!("slack:{path}"), &[(3, 1000)]) {
        sim.record("slack", false, request.clone(), 429, json!("rate_limited"));
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "rate_limited",
        )
            .into_response();
    }
    text(200, "ok", true)
}

/// A Teams Workflows HTTP trigger: `sig` checked, the body a `message` with one Adaptive
/// Card whose TextBlocks have text; `202` with an empty body, as Workflows answers.
pub async fn teams(
    State(sim): State<Shared>,
    Path(path): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let fail = |status: u16, code: &'static str, message: &'static str| {
        let body = json!({"error": {"code": code, "message": message}});
        sim.record("teams", false, request.clone(), status, body.clone());
        let mut r = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            Json(body),
        )
            .into_response();
        if status == 429 {
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        r
    };
    if q.get("sig") != Some(&sim.args.teams_sig) {
        return fail(
            401,
            "DirectApiAuthorizationRequired",
            "The request must be authenticated: the sig parameter does not match",
        );
    }
    if let Some(hit) = sim.fault("teams").await {
        return match hit {
            FaultHit::Status(429) => fail(429, "WorkflowTriggerIsThrottled", "Too many requests"),
            FaultHit::Status(s) if s >= 500 => {
                fail(s, "ServiceUnavailable", "The service is unavailable")
            }
            FaultHit::Status(404) => {
                fail(404, "WorkflowNotFound", "The workflow could not be found")
            }
            FaultHit::Status(s) => fail(
                s,
                "InvalidRequestContent",
                "The request content is not valid",
            ),
            FaultHit::Code(c) if c == "WorkflowNotFound" => {
                fail(404, "WorkflowNotFound", "The workflow could not be found")
            }
            FaultHit::Code(_) => fail(403, "WorkflowDisabled", "The workflow is disabled"),
        };
    }
    let card = &request["attachments"][0];
    let blocks = card["content"]["body"].as_array();
    let ok = request["type"] == "message"
        && card["contentType"] == "application/vnd.microsoft.card.adaptive"
        && card["content"]["type"] == "AdaptiveCard"
        && blocks.is_some_and(|b| {
            !b.is_empty()
                && b.iter().all(|x| {
                    x["type"] == "TextBlock" && x["text"].as_str().is_some_and(|t| !t.is_empty())
                })
        });
    if !ok {
        return fail(
            400,
            "InvalidRequestContent",
            "The request content is not a message with an Adaptive Card",
        );
    }
    if !sim.within_rate(&format!("teams:{path}"), &[(20, 1000)]) {
        return fail(429, "WorkflowTriggerIsThrottled", "Too many requests");
    }
    sim.record("teams", true, request, 202, Value::Null);
    StatusCode::ACCEPTED.into_response()
}
