//! A Web Push service (RFC 8030) on loopback. It issues subscriptions the way a browser's push
//! service does (and holds their private keys, as the browser would), and checks every push
//! as the real services do: `TTL` present, `Content-Encoding: aes128gcm`, `Urgency` and
//! `Topic` well formed, a VAPID token (RFC 8292) signed by the key the subscription was made
//! with, for this origin, expiring within 24 h; then it decrypts the body (RFC 8291), so a
//! wrong encryption is caught like a browser catches it.
//!
//! `POST /webpush/subscribe {"applicationServerKey": "<base64url>"}` → a `PushSubscription`
//! JSON; `POST /webpush/push/{id}` → `201` + `Location`; `DELETE /webpush/push/{id}`
//! unsubscribes (later pushes get `410`); `GET /webpush/push/{id}/messages` lists what
//! arrived, decrypted.

use super::{FaultHit, Shared};
use crate::providers::webpush::{ece, vapid};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{Value, json};

pub struct Subscription {
    /// Where the keys are: here (a subscription made through `/webpush/subscribe`), or in a
    /// real browser connected over the WebSocket push protocol, which decrypts itself.
    holder: Holder,
    /// The applicationServerKey it was made with: pushes must be signed by it.
    app_key: Option<Vec<u8>>,
    gone: bool,
    messages: Vec<Value>,
}

enum Holder {
    Here {
        secret: p256::SecretKey,
        auth: [u8; 16],
    },
    Browser(tokio::sync::mpsc::UnboundedSender<String>),
}

fn problem(status: StatusCode, errno: u16, message: &str) -> Response {
    // autopush's error body.
    (
        status,
        Json(json!({"code": status.as_u16(), "errno": errno, "error": status.canonical_reason(), "message": message})),
    )
        .into_response()
}

fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

pub async fn subscribe(State(sim): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let app_key = match req.get("applicationServerKey").and_then(Value::as_str) {
        Some(k) => match URL_SAFE_NO_PAD.decode(k.trim_end_matches('=')) {
            Ok(b) if p256::PublicKey::from_sec1_bytes(&b).is_ok() => Some(b),
            _ => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    110,
                    "applicationServerKey is not a P-256 public key",
                );
            }
        },
        None => None,
    };
    let secret = ece::random_secret();
    let auth: [u8; 16] = rand::random();
    let id = hex::encode(rand::random::<[u8; 16]>());
    let p256dh = URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes());
    let sub = json!({
        "endpoint": format!("{}/webpush/push/{id}", origin(&headers)),
        "expirationTime": null,
        "keys": {"p256dh": p256dh, "auth": URL_SAFE_NO_PAD.encode(auth)},
    });
    if let Ok(mut subs) = sim.webpush.lock() {
        subs.insert(
            id,
            Subscription {
                holder: Holder::Here { secret, auth },
                app_key,
                gone: false,
                messages: Vec::new(),
            },
        );
    }
    (StatusCode::CREATED, Json(sub)).into_response()
}

pub async fn unsubscribe(State(sim): State<Shared>, Path(id): Path<String>) -> StatusCode {
    match sim
        .webpush
        .lock()
        .ok()
        .and_then(|mut s| s.get_mut(&id).map(|x| x.gone = true))
    {
        Some(()) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

/// What the subscription's holder got: for one held here, each body decrypted now (what the
/// browser would show, or why it could not).
fn opened(holder: &Holder, entry: &Value) -> Value {
    let (Holder::Here { secret, auth }, Some(raw)) = (holder, entry["raw"].as_str()) else {
        return entry.clone();
    };
    let body = URL_SAFE_NO_PAD.decode(raw).unwrap_or_default();
    match ece::decrypt(&body, secret, auth) {
        Ok(plain) => json!({
            "decrypted": true,
            "payload": serde_json::from_slice::<Value>(&plain)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&plain))),
            "headers": entry["headers"],
        }),
        Err(e) => json!({"decrypted": false, "error": e.to_string(), "headers": entry["headers"]}),
    }
}

pub async fn messages(State(sim): State<Shared>, Path(id): Path<String>) -> Response {
    match sim.webpush.lock().ok().and_then(|s| {
        s.get(&id).map(|x| {
            x.messages
                .iter()
                .map(|e| opened(&x.holder, e))
                .collect::<Vec<_>>()
        })
    }) {
        Some(m) => Json(json!({"data": m})).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The checks of RFC 8030 §5 on the request's headers: TTL, Urgency, Topic, encoding; a
/// refusal is (status, autopush errno, message).
fn check_headers(h: &HeaderMap) -> Result<Value, (StatusCode, u16, &'static str)> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    let bad = |m| (StatusCode::BAD_REQUEST, 110, m);
    let ttl = get("ttl").and_then(|t| t.parse::<u64>().ok()).ok_or((
        StatusCode::BAD_REQUEST,
        111,
        "Missing TTL header",
    ))?;
    if get("content-encoding") != Some("aes128gcm") {
        return Err(bad("Content-Encoding must be aes128gcm"));
    }
    let urgency = get("urgency").unwrap_or("normal");
    if !["very-low", "low", "normal", "high"].contains(&urgency) {
        return Err(bad("Invalid Urgency"));
    }
    let topic = get("topic");
    if let Some(t) = topic
        && (t.is_empty()
            || t.len() > 32
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(bad("Topic must be at most 32 base64url characters"));
    }
    if h.contains_key("encryption") || h.contains_key("crypto-key") {
        return Err(bad("aes128gcm takes no Encryption or Crypto-Key header"));
    }
    Ok(json!({"ttl": ttl, "urgency": urgency, "topic": topic}))
}

pub async fn push(
    State(sim): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let resp = handle(&sim, &id, &headers, &body).await;
    let status = resp.status().as_u16();
    sim.record(
        "webpush",
        status == 201,
        json!({"subscription": id, "bytes": body.len()}),
        status,
        Value::Null,
    );
    resp
}

async fn handle(sim: &Shared, id: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let mut corrupt = false;
    match sim.fault("webpush").await {
        Some(FaultHit::Code(c)) if c == "corrupt" => corrupt = true,
        Some(FaultHit::Status(s)) => {
            let status = StatusCode::from_u16(s).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut r = problem(status, 201, "simulated fault");
            if s == 429 || s == 503 {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
            }
            return r;
        }
        Some(FaultHit::Code(_)) => {
            return problem(StatusCode::SERVICE_UNAVAILABLE, 201, "simulated fault");
        }
        None => {}
    }
    let (holder, app_key) = {
        let Ok(subs) = sim.webpush.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        match subs.get(id) {
            None => return problem(StatusCode::NOT_FOUND, 102, "Invalid endpoint"),
            Some(s) if s.gone => {
                return problem(StatusCode::GONE, 106, "Subscription is no longer valid");
            }
            Some(s) => (
                match &s.holder {
                    Holder::Here { secret, auth } => Holder::Here {
                        secret: secret.clone(),
                        auth: *auth,
                    },
                    Holder::Browser(tx) => Holder::Browser(tx.clone()),
                },
                s.app_key.clone(),
            ),
        }
    };
    let meta = match check_headers(headers) {
        Ok(m) => m,
        Err((status, errno, why)) => return problem(status, errno, why),
    };
    let Some((t, k)) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(vapid::parse_authorization)
    else {
        return problem(
            StatusCode::UNAUTHORIZED,
            109,
            "Missing VAPID authorization (vapid t=…, k=…)",
        );
    };
    let now = crate::core::types::now_millis() / 1000;
    // A token verified before (for this origin and key) is only checked for expiry again, as
    // push services cache them: a signature check per push is not what they spend.
    let seen = format!("{t} {k} {}", origin(headers));
    let known_exp = sim
        .vapid_seen
        .lock()
        .ok()
        .and_then(|m| m.get(&seen).copied());
    match known_exp {
        Some(exp) if now < exp => {}
        _ => match vapid::verify(&t, &k, &origin(headers), now) {
            Ok(claims) => {
                if let (Ok(mut m), Some(exp)) = (sim.vapid_seen.lock(), claims["exp"].as_i64()) {
                    if m.len() > 10_000 {
                        m.clear();
                    }
                    m.insert(seen, exp);
                }
            }
            Err(vapid::Refusal::Invalid(why) | vapid::Refusal::Missing(why)) => {
                return problem(StatusCode::UNAUTHORIZED, 109, why);
            }
        },
    }
    let k_bytes = URL_SAFE_NO_PAD
        .decode(k.trim_end_matches('='))
        .unwrap_or_default();
    if app_key.as_ref().is_some_and(|a| *a != k_bytes) {
        return problem(
            StatusCode::UNAUTHORIZED,
            109,
            "VAPID key mismatch: not the key this subscription was made with",
        );
    }
    if body.len() > 4096 {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            104,
            "Payload too large: at most 4096 bytes",
        );
    }
    if body.get(21..86) == Some(k_bytes.as_slice()) {
        return problem(
            StatusCode::BAD_REQUEST,
            110,
            "the encryption key must not be the VAPID key",
        );
    }
    // Accepted as a push service accepts: what the browser then finds is recorded.
    let mut body = body.to_vec();
    if corrupt && let Some(b) = body.last_mut() {
        *b ^= 1; // a fault: the browser must refuse it
    }
    let version = hex::encode(rand::random::<[u8; 12]>());
    let entry = match holder {
        // Decrypted when read, as the browser would after the service accepted it.
        Holder::Here { .. } => json!({"raw": URL_SAFE_NO_PAD.encode(&body), "headers": meta}),
        Holder::Browser(tx) => {
            let note = json!({
                "messageType": "notification", "channelID": id, "version": version,
                "data": URL_SAFE_NO_PAD.encode(&body), "headers": {"encoding": "aes128gcm"},
            });
            let forwarded = tx.send(note.to_string()).is_ok();
            // The browser's ack (100 delivered, 101 decryption failed) is added on arrival.
            json!({"version": version, "forwarded": forwarded, "headers": meta, "ack": null})
        }
    };
    if let Ok(mut subs) = sim.webpush.lock()
        && let Some(s) = subs.get_mut(id)
    {
        if s.messages.len() >= 10_000 {
            s.messages.remove(0);
        }
        s.messages.push(entry);
    }
    let location = format!(
        "{}/webpush/message/{}",
        origin(headers),
        hex::encode(rand::random::<[u8; 12]>())
    );
    let ttl = meta["ttl"]
        .as_u64()
        .unwrap_or(0)
        .min(30 * 86_400)
        .to_string();
    let mut r = StatusCode::CREATED.into_response();
    for (name, value) in [
        (header::LOCATION, location),
        (header::HeaderName::from_static("ttl"), ttl),
    ] {
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}

/// Mozilla's WebSocket push protocol (subprotocol `push-notification`), what Firefox speaks
/// to its push service when `dom.push.serverURL` points here.
pub async fn browser(
    State(sim): State<Shared>,
    headers: HeaderMap,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let origin = origin(&headers);
    ws.protocols(["push-notification"])
        .on_upgrade(move |socket| connection(sim, origin, socket))
}

/// One reply of the push service to a message of the browser (`None`: nothing to answer).
fn answer(sim: &Shared, origin: &str, tx: &Sender, m: &Value) -> Option<Value> {
    match m["messageType"].as_str() {
        Some("hello") => Some(json!({
            "messageType": "hello", "status": 200, "use_webpush": true, "broadcasts": {},
            "uaid": m["uaid"].as_str().map(String::from)
                .unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>())),
        })),
        Some("register") => {
            let ch = m["channelID"].as_str().unwrap_or_default().to_string();
            let app_key = m["key"]
                .as_str()
                .and_then(|k| URL_SAFE_NO_PAD.decode(k.trim_end_matches('=')).ok());
            if let Ok(mut subs) = sim.webpush.lock() {
                subs.insert(
                    ch.clone(),
                    Subscription {
                        holder: Holder::Browser(tx.clone()),
                        app_key,
                        gone: false,
                        messages: Vec::new(),
                    },
                );
            }
            Some(
                json!({"messageType": "register", "channelID": ch, "status": 200,
                        "pushEndpoint": format!("{origin}/webpush/push/{ch}")}),
            )
        }
        Some("unregister") => {
            let ch = m["channelID"].as_str().unwrap_or_default();
            if let Ok(mut subs) = sim.webpush.lock()
                && let Some(s) = subs.get_mut(ch)
            {
                s.gone = true;
            }
            Some(json!({"messageType": "unregister", "channelID": ch, "status": 200}))
        }
        Some("ack") => {
            if let Ok(mut subs) = sim.webpush.lock() {
                for u in m["updates"].as_array().into_iter().flatten() {
                    let ch = u["channelID"].as_str().unwrap_or_default();
                    if let Some(s) = subs.get_mut(ch) {
                        for e in s
                            .messages
                            .iter_mut()
                            .filter(|e| e["version"] == u["version"])
                        {
                            e["ack"] = u["code"].clone();
                        }
                    }
                }
            }
            None
        }
        Some("nack") => None,
        // `{}` is a ping.
        _ => Some(json!({})),
    }
}

type Sender = tokio::sync::mpsc::UnboundedSender<String>;

async fn connection(sim: Shared, origin: String, socket: axum::extract::ws::WebSocket) {
    use axum::extract::ws::Message;
    use futures::{SinkExt, StreamExt};
    let (mut out, mut inbound) = socket.split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if out.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(msg)) = inbound.next().await {
        let Message::Text(text) = msg else { continue };
        let m: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
        if let Some(reply) = answer(&sim, &origin, &tx, &m)
            && tx.send(reply.to_string()).is_err()
        {
            break;
        }
    }
    writer.abort();
}
