//! APNs as Apple runs it, on loopback: TLS with ALPN `h2` only (an HTTP/1.1 client is
//! refused in the handshake), per-connection provider-token state, the request checks of
//! Apple's documentation in its order, and its reasons. Device tokens are 64 hex digits;
//! their first four script an outcome: `0410` Unregistered (410 + timestamp), `e410`
//! ExpiredToken, `0429` TooManyRequests, `0500` InternalServerError, `0503`
//! ServiceUnavailable, `0400` DeviceTokenNotForTopic. Tokens starting `5a` are sandbox
//! tokens: good only under the `/sandbox` prefix (the sandbox host), and production tokens
//! only without it.

use super::Shared;
use crate::providers::jwt::{self, SigningKey};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The simulator's `.p8` key (simulation only: it is public, in the source).
pub const SIM_KEY: &str = include_str!("keys/apns-sim-p256.p8");

/// Where the APNs listener is and the certificate that a client must trust.
#[derive(Debug, Clone, Default)]
pub struct ApnsState {
    pub url: String,
    pub ca_pem: String,
    /// Every provider token seen, in order of first use.
    pub tokens: Vec<String>,
    /// Tokens this simulator now calls expired (`POST /_sim/apns/expire`).
    pub expired: Vec<String>,
    pub connections: u64,
}

/// What one connection remembers (Apple keeps token state per connection).
#[derive(Default)]
struct Conn {
    kid: Option<String>,
    token: Option<String>,
    changed_at: Option<i64>,
}

fn answer(status: u16, reason: Option<&str>, id: Option<&str>) -> Response<Full<Bytes>> {
    let body = match reason {
        Some(r) if status == 410 => {
            json!({"reason": r, "timestamp": crate::core::types::now_millis()}).to_string()
        }
        Some(r) => json!({"reason": r}).to_string(),
        None => String::new(),
    };
    let mut b =
        Response::builder().status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST));
    if let Some(id) = id {
        b = b.header("apns-id", id);
    }
    if reason.is_some() {
        b = b.header("content-type", "application/json");
    }
    b.body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn canonical_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// One request, checked in Apple's order; `Err` is (status, reason).
fn check(
    sim: &Shared,
    conn: &Mutex<Conn>,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Result<(), (u16, &'static str)> {
    if parts.version != hyper::Version::HTTP_2 {
        return Err((400, "BadPath"));
    }
    if parts.method != hyper::Method::POST {
        return Err((405, "MethodNotAllowed"));
    }
    let path = parts.uri.path();
    let (sandbox, rest) = match path.strip_prefix("/sandbox") {
        Some(r) => (true, r),
        None => (false, path),
    };
    let token = rest.strip_prefix("/3/device/").ok_or((404, "BadPath"))?;
    if token.is_empty() {
        return Err((400, "MissingDeviceToken"));
    }
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err((400, "BadDeviceToken"));
    }
    if token.starts_with("5a") != sandbox {
        return Err((400, "BadDeviceToken"));
    }
    let h = &parts.headers;
    let one = |name: &str| -> Result<Option<&str>, (u16, &'static str)> {
        let mut all = h.get_all(name).iter();
        let first = all.next();
        if all.next().is_some() {
            return Err((400, "DuplicateHeaders"));
        }
        Ok(first.and_then(|v| v.to_str().ok()))
    };
    let auth = one("authorization")?
        .and_then(|a| {
            a.strip_prefix("bearer ")
                .or_else(|| a.strip_prefix("Bearer "))
        })
        .ok_or((403, "MissingProviderToken"))?;
    let v = jwt::verify(
        auth,
        &SigningKey::es256_pem(SIM_KEY)
            .map(|k| k.public())
            .unwrap_or_default(),
    )
    .map_err(|_| (403, "InvalidProviderToken"))?;
    if v.header["alg"] != "ES256" || v.header["kid"] != sim.args.apns_key_id.as_str() {
        return Err((403, "InvalidProviderToken"));
    }
    if v.claims["iss"] != sim.args.apns_team_id.as_str() {
        return Err((403, "InvalidProviderToken"));
    }
    let now = crate::core::types::now_millis() / 1000;
    let iat = v.claims["iat"]
        .as_i64()
        .ok_or((403, "InvalidProviderToken"))?;
    {
        let mut st = sim.apns.lock().map_err(|_| (500, "InternalServerError"))?;
        if now - iat > 3600 || st.expired.iter().any(|t| t == auth) {
            return Err((403, "ExpiredProviderToken"));
        }
        if !st.tokens.iter().any(|t| t == auth) {
            st.tokens.push(auth.to_string());
        }
    }
    {
        let mut c = conn.lock().map_err(|_| (500, "InternalServerError"))?;
        let kid = v.header["kid"].as_str().unwrap_or("").to_string();
        if c.kid.as_ref().is_some_and(|k| *k != kid) {
            return Err((403, "UnrelatedKeyIdInToken"));
        }
        c.kid = Some(kid);
        if c.token.as_deref() != Some(auth) {
            if c.token.is_some() {
                if c.changed_at.is_some_and(|t| now - t < 20 * 60) {
                    return Err((429, "TooManyProviderTokenUpdates"));
                }
                c.changed_at = Some(now);
            }
            c.token = Some(auth.to_string());
        }
    }
    let topic = one("apns-topic")?.ok_or((400, "MissingTopic"))?;
    if topic != sim.args.apns_topic {
        return Err((400, "TopicDisallowed"));
    }
    if token.starts_with("0400") {
        return Err((400, "DeviceTokenNotForTopic"));
    }
    let push_type = one("apns-push-type")?.unwrap_or("alert");
    if ![
        "alert",
        "background",
        "location",
        "voip",
        "complication",
        "fileprovider",
        "mdm",
        "liveactivity",
        "pushtotalk",
        "widgets",
        "controls",
    ]
    .contains(&push_type)
    {
        return Err((400, "InvalidPushType"));
    }
    let priority = one("apns-priority")?.unwrap_or("10");
    if !["10", "5", "1"].contains(&priority) || (push_type == "background" && priority == "10") {
        return Err((400, "BadPriority"));
    }
    if let Some(e) = one("apns-expiration")?
        && e.parse::<u64>().is_err()
    {
        return Err((400, "BadExpirationDate"));
    }
    if let Some(id) = one("apns-id")?
        && !canonical_uuid(id)
    {
        return Err((400, "BadMessageId"));
    }
    if one("apns-collapse-id")?.is_some_and(|c| c.len() > 64) {
        return Err((400, "BadCollapseId"));
    }
    if body.is_empty() {
        return Err((400, "PayloadEmpty"));
    }
    if body.len() > 4096 {
        return Err((413, "PayloadTooLarge"));
    }
    let doc: Value = serde_json::from_slice(body).map_err(|_| (400, "PayloadEmpty"))?;
    if !doc["aps"].is_object() {
        return Err((400, "PayloadEmpty"));
    }
    match &token[..4] {
        "0410" => Err((410, "Unregistered")),
        "e410" => Err((410, "ExpiredToken")),
        "0429" => Err((429, "TooManyRequests")),
        "0500" => Err((500, "InternalServerError")),
        "0503" => Err((503, "ServiceUnavailable")),
        _ => Ok(()),
    }
}

async fn handle(
    sim: Shared,
    conn: Arc<Mutex<Conn>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let id = parts
        .headers
        .get("apns-id")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .unwrap_or_else(|| super::request_id().to_ascii_lowercase());
    let outcome = check(&sim, &conn, &parts, &body);
    let request = json!({
        "path": parts.uri.path(),
        "version": format!("{:?}", parts.version),
        "headers": parts.headers.iter()
            .filter(|(k, _)| k.as_str() != "authorization")
            .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap_or(""))))
            .collect::<serde_json::Map<_, _>>(),
        "payload": serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
    });
    let outcome = match (outcome, sim.fault("apns").await) {
        (Ok(()), Some(super::FaultHit::Status(s))) => Err((
            s,
            if s == 429 {
                "TooManyRequests"
            } else if s >= 500 {
                "ServiceUnavailable"
            } else {
                "BadTopic"
            },
        )),
        (Ok(()), Some(super::FaultHit::Code(_))) => Err((500, "InternalServerError")),
        (o, _) => o,
    };
    Ok(match outcome {
        Ok(()) => {
            sim.record("apns", true, request, 200, json!({"apns-id": id}));
            answer(200, None, Some(&id))
        }
        Err((status, reason)) => {
            sim.record("apns", false, request, status, json!({"reason": reason}));
            answer(status, Some(reason), Some(&id))
        }
    })
}

/// Serves APNs on `listener` with a fresh self-signed certificate for localhost/127.0.0.1;
/// what a client needs (the URL and the certificate) is kept in `sim.apns`.
pub fn serve(sim: Shared, listener: std::net::TcpListener) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| e.to_string())?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    crate::tls::init();
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    if let Ok(mut st) = sim.apns.lock() {
        st.url = format!("https://127.0.0.1:{}", addr.port());
        st.ca_pem = cert.cert.pem();
    }
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, sim) = (acceptor.clone(), sim.clone());
            tokio::spawn(async move {
                // An HTTP/1.1-only client fails here (no_application_protocol).
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut st) = sim.apns.lock() {
                    st.connections += 1;
                }
                let conn = Arc::new(Mutex::new(Conn::default()));
                let svc =
                    hyper::service::service_fn(move |req| handle(sim.clone(), conn.clone(), req));
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
            });
        }
    });
    Ok(())
}

/// `GET /_sim/apns`: the listener's URL, its certificate and the provider tokens seen.
pub async fn info(axum::extract::State(sim): axum::extract::State<Shared>) -> axum::Json<Value> {
    let st = sim.apns.lock().map(|s| s.clone()).unwrap_or_default();
    axum::Json(json!({
        "url": st.url, "ca_pem": st.ca_pem, "provider_tokens": st.tokens.len(),
        "connections": st.connections,
    }))
}

/// `POST /_sim/apns/expire`: every provider token seen so far is now called expired.
pub async fn expire(
    axum::extract::State(sim): axum::extract::State<Shared>,
) -> axum::http::StatusCode {
    if let Ok(mut st) = sim.apns.lock() {
        st.expired = st.tokens.clone();
    }
    axum::http::StatusCode::NO_CONTENT
}
