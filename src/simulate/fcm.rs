//! FCM HTTP v1 as Google runs it, on loopback: a service account to download
//! (`GET /fcm/service-account.json`, the simulator's own RSA key, `token_uri` pointing here),
//! the OAuth token endpoint verifying the RS256 JWT-bearer assertion as Google does, and
//! `messages:send` checking the bearer token, the project and the body, answering in Google's
//! error envelope. Registration tokens script outcomes: `…unregistered` → 404 UNREGISTERED,
//! `…other-project` → 403 SENDER_ID_MISMATCH, `…bad` → 400 INVALID_ARGUMENT, `…quota` →
//! 429 with Retry-After, `…quota-plain` → 429 RATE_LIMIT_EXCEEDED (no FCM code, no
//! Retry-After), `…unavailable` → 503, `…internal` → 500, `…third-party` → 401
//! THIRD_PARTY_AUTH_ERROR, `…html502` → an HTML 502.

use super::{FaultHit, Shared};
use crate::providers::jwt::{self, SigningKey};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The simulator's service-account key (simulation only: it is public, in the source).
pub const SIM_KEY: &str = include_str!("keys/fcm-sim-rsa.pem");
pub const CLIENT_EMAIL: &str = "herald-sim@herald-sim.iam.gserviceaccount.com";
pub const KEY_ID: &str = "sim-key-1";

/// Access tokens issued, with their expiry (Unix ms).
#[derive(Default)]
pub struct FcmState {
    pub issued: HashMap<String, i64>,
}

fn public_key() -> Vec<u8> {
    SigningKey::rs256_pem(SIM_KEY)
        .map(|k| k.public())
        .unwrap_or_default()
}

fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// A service-account JSON file for this simulator.
pub fn service_account(sim_base: &str, project: &str) -> Value {
    json!({
        "type": "service_account", "project_id": project, "private_key_id": KEY_ID,
        "private_key": SIM_KEY, "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000000",
        "token_uri": format!("{sim_base}/fcm/token"),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    })
}

pub async fn account_file(State(sim): State<Shared>, headers: HeaderMap) -> Response {
    Json(service_account(&base(&headers), &sim.args.fcm_project)).into_response()
}

fn grant_error(sim: &Shared, request: Value, description: &str) -> Response {
    let body = json!({"error": "invalid_grant", "error_description": description});
    sim.record("fcm_token", false, request, 400, body.clone());
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// `POST /fcm/token`: the JWT-bearer grant, checked as Google's token endpoint checks it.
pub async fn token(State(sim): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let request = json!({"grant_type": form.get("grant_type")});
    if let Some(hit) = sim.fault("fcm_token").await {
        let status = match hit {
            FaultHit::Status(s) => s,
            FaultHit::Code(_) => 503,
        };
        let body = json!({"error": "temporarily_unavailable"});
        sim.record("fcm_token", false, request, status, body.clone());
        return (
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            Json(body),
        )
            .into_response();
    }
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        let body =
            json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"});
        sim.record("fcm_token", false, request, 400, body.clone());
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let Some(assertion) = form.get("assertion") else {
        return grant_error(&sim, request, "Missing required parameter: assertion");
    };
    let Ok(v) = jwt::verify(assertion, &public_key()) else {
        return grant_error(&sim, request, "Invalid JWT Signature.");
    };
    let c = &v.claims;
    let token_uri = format!("{}/fcm/token", base(&headers));
    let now = crate::core::types::now_millis() / 1000;
    let (iat, exp) = (
        c["iat"].as_i64().unwrap_or(0),
        c["exp"].as_i64().unwrap_or(0),
    );
    let scope_ok = c["scope"].as_str().is_some_and(|s| {
        s.split(' ').any(|x| {
            x == "https://www.googleapis.com/auth/firebase.messaging"
                || x == "https://www.googleapis.com/auth/cloud-platform"
        })
    });
    // A wrong algorithm, key id or issuer: Google says the signature is wrong.
    let signer_ok = v.header["alg"] == "RS256"
        && v.header.get("kid").is_none_or(|k| k == KEY_ID)
        && c["iss"] == CLIENT_EMAIL;
    let why = if !signer_ok {
        Some("Invalid JWT Signature.")
    } else if c["aud"].as_str() != Some(token_uri.as_str()) {
        Some("Invalid JWT: audience is not the token endpoint")
    } else if !scope_ok {
        Some("Invalid OAuth scope or ID token audience provided.")
    } else if iat > now + 60 || exp <= now || exp - iat > 3600 {
        Some(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        )
    } else {
        None
    };
    if let Some(why) = why {
        return grant_error(&sim, request, why);
    }
    let access = format!("ya29.sim-{}", hex::encode(rand::random::<[u8; 16]>()));
    if let Ok(mut s) = sim.fcm.lock() {
        s.issued.insert(access.clone(), (now + 3599) * 1000);
    }
    let body = json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer"});
    sim.record("fcm_token", true, request, 200, body.clone());
    Json(body).into_response()
}

/// `POST /_sim/fcm/expire-tokens`: every access token issued so far stops working.
pub async fn expire_tokens(State(sim): State<Shared>) -> StatusCode {
    if let Ok(mut s) = sim.fcm.lock() {
        s.issued.clear();
    }
    StatusCode::NO_CONTENT
}

/// Google's error envelope; `fcm` adds the FcmError detail.
fn google_error(status: u16, canonical: &str, message: &str, fcm: Option<&str>) -> Value {
    let mut details = Vec::new();
    if let Some(c) = fcm {
        details.push(
            json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}),
        );
    }
    json!({"error": {"code": status, "message": message, "status": canonical, "details": details}})
}

/// The answer to a scripted or faulted FCM error code.
fn scripted(code: &str) -> (u16, Value, Option<&'static str>) {
    match code {
        "UNREGISTERED" => (
            404,
            google_error(
                404,
                "NOT_FOUND",
                "Requested entity was not found.",
                Some("UNREGISTERED"),
            ),
            None,
        ),
        "SENDER_ID_MISMATCH" => (
            403,
            google_error(
                403,
                "PERMISSION_DENIED",
                "SenderId mismatch",
                Some("SENDER_ID_MISMATCH"),
            ),
            None,
        ),
        "INVALID_ARGUMENT" => (
            400,
            google_error(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                Some("INVALID_ARGUMENT"),
            ),
            None,
        ),
        "QUOTA_EXCEEDED" => (
            429,
            google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for the device.",
                Some("QUOTA_EXCEEDED"),
            ),
            Some("2"),
        ),
        "RATE_LIMIT_EXCEEDED" => (
            429,
            json!({"error": {"code": 429, "message": "Quota exceeded for quota metric 'Send requests'", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com"}]}}),
            None,
        ),
        "UNAVAILABLE" => (
            503,
            google_error(
                503,
                "UNAVAILABLE",
                "The service is currently unavailable.",
                Some("UNAVAILABLE"),
            ),
            Some("3"),
        ),
        "THIRD_PARTY_AUTH_ERROR" => (
            401,
            google_error(
                401,
                "UNAUTHENTICATED",
                "Auth error from APNS or Web Push Service",
                Some("THIRD_PARTY_AUTH_ERROR"),
            ),
            None,
        ),
        _ => (
            500,
            google_error(
                500,
                "INTERNAL",
                "Internal error encountered.",
                Some("INTERNAL"),
            ),
            None,
        ),
    }
}

/// What a registration token scripts, if anything.
fn scripted_by_token(token: &str) -> Option<&'static str> {
    [
        ("quota-plain", "RATE_LIMIT_EXCEEDED"),
        ("unregistered", "UNREGISTERED"),
        ("other-project", "SENDER_ID_MISMATCH"),
        ("bad", "INVALID_ARGUMENT"),
        ("quota", "QUOTA_EXCEEDED"),
        ("unavailable", "UNAVAILABLE"),
        ("internal", "INTERNAL"),
        ("third-party", "THIRD_PARTY_AUTH_ERROR"),
        ("html502", "HTML502"),
    ]
    .into_iter()
    .find(|(suffix, _)| token.ends_with(suffix))
    .map(|(_, c)| c)
}

/// Why a message body is refused (a `fieldViolations` description), if it is.
fn check_message(m: &Value, raw_len: usize) -> Option<String> {
    let targets = ["token", "topic", "condition"]
        .iter()
        .filter(|k| m.get(**k).is_some())
        .count();
    if targets != 1 {
        return Some(
            "Exactly one of message.token, message.topic or message.condition must be set".into(),
        );
    }
    if let Some(data) = m.get("data") {
        let Some(obj) = data.as_object() else {
            return Some("Invalid value at 'message.data' (map)".into());
        };
        for (i, (k, v)) in obj.iter().enumerate() {
            if !v.is_string() {
                return Some(format!(
                    "Invalid value at 'message.data[{i}].value' (TYPE_STRING), {v}"
                ));
            }
            let lower = k.to_ascii_lowercase();
            if lower == "from"
                || lower == "gcm"
                || lower.starts_with("google")
                || lower == "message_type"
            {
                return Some(format!("Invalid data payload key: {k}"));
            }
        }
    }
    let android = &m["android"];
    if let Some(p) = android.get("priority")
        && p != "NORMAL"
        && p != "HIGH"
    {
        return Some(format!(
            "Invalid value at 'message.android.priority' (TYPE_ENUM), {p}"
        ));
    }
    if let Some(ttl) = android.get("ttl") {
        let ok = ttl
            .as_str()
            .and_then(|t| t.strip_suffix('s'))
            .is_some_and(|n| {
                let (whole, frac) = n.split_once('.').unwrap_or((n, ""));
                !whole.is_empty()
                    && whole.bytes().all(|b| b.is_ascii_digit())
                    && frac.len() <= 9
                    && frac.bytes().all(|b| b.is_ascii_digit())
                    && whole.parse::<u64>().is_ok_and(|s| s <= 2_419_200)
            });
        if !ok {
            return Some(format!(
                "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), {ttl}"
            ));
        }
    }
    if let Some(h) = m["apns"].get("headers")
        && !h
            .as_object()
            .is_some_and(|o| o.values().all(Value::is_string))
    {
        return Some("Invalid value at 'message.apns.headers' (map<string, string>)".into());
    }
    if raw_len > 4096 + 512 {
        return Some("Message is too big".into());
    }
    None
}

/// `POST /fcm/v1/projects/{project}/messages:send`.
pub async fn send(
    State(sim): State<Shared>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = |accepted: bool, status: u16, body: Value, retry: Option<&str>| {
        sim.record("fcm", accepted, request.clone(), status, body.clone());
        let mut r = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            Json(body),
        )
            .into_response();
        if let Some(s) = retry.and_then(|s| axum::http::HeaderValue::from_str(s).ok()) {
            r.headers_mut().insert("retry-after", s);
        }
        r
    };
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let now = crate::core::types::now_millis();
    let valid = bearer.is_some_and(|b| {
        sim.fcm
            .lock()
            .map(|s| s.issued.get(b).is_some_and(|exp| *exp > now))
            .unwrap_or(false)
    });
    if !valid {
        let e = google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            None,
        );
        return answer(false, 401, e, None);
    }
    let project = path.strip_suffix("/messages:send");
    if project != Some(sim.args.fcm_project.as_str()) {
        let e = google_error(
            403,
            "PERMISSION_DENIED",
            "Permission 'cloudmessaging.messages.create' denied on resource (or it may not exist).",
            None,
        );
        return answer(false, 403, e, None);
    }
    if let Some(hit) = sim.fault("fcm").await {
        let (status, body, retry) = match hit {
            FaultHit::Code(c) => scripted(&c),
            FaultHit::Status(429) => scripted("QUOTA_EXCEEDED"),
            FaultHit::Status(503) => scripted("UNAVAILABLE"),
            FaultHit::Status(s) => (
                s,
                google_error(s, "INTERNAL", "Internal error encountered.", None),
                None,
            ),
        };
        return answer(false, status, body, retry);
    }
    let m = &request["message"];
    if !m.is_object() {
        let e = google_error(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received. Unknown name or missing message.",
            Some("INVALID_ARGUMENT"),
        );
        return answer(false, 400, e, None);
    }
    if let Some(why) = check_message(m, body.len()) {
        let mut e = google_error(400, "INVALID_ARGUMENT", &why, Some("INVALID_ARGUMENT"));
        if let Some(d) = e["error"]["details"].as_array_mut() {
            d.push(json!({"@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message", "description": why}]}));
        }
        return answer(false, 400, e, None);
    }
    if let Some(code) = m["token"].as_str().and_then(scripted_by_token) {
        if code == "HTML502" {
            sim.record("fcm", false, request.clone(), 502, Value::Null);
            return (
                StatusCode::BAD_GATEWAY,
                [("content-type", "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response();
        }
        let (status, body, retry) = scripted(code);
        return answer(false, status, body, retry);
    }
    let name = format!(
        "projects/{}/messages/0:{}%{}",
        sim.args.fcm_project,
        now,
        hex::encode(rand::random::<[u8; 8]>())
    );
    // validate_only: checked and answered, nothing delivered.
    let delivered = request["validate_only"] != true;
    answer(delivered, 200, json!({"name": name}), None)
}
