//! `herald simulate`: loopback endpoints that behave like Aliyun SMS and voice, Twilio (SMS
//! and calls), DingTalk, Feishu, WeCom, Slack, Teams, a Web Push service, FCM and (on a TLS
//! listener of its own) APNs. They check signatures and auth as the real services do, answer
//! with the documented success and error bodies, send receipts the way the real services do,
//! record every request (readable at `GET /_sim/requests`), and take faults on command
//! (`PUT /_sim/faults/{provider}`: error rate, fixed error code, latency, outage, 429).

mod aliyun;
mod aliyun_vms;
pub mod apns;
pub mod fcm;
mod replies;
mod robots;
mod twilio;
pub mod webpush;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:9500")]
    pub listen: String,
    #[arg(long, default_value = "sim-access-key-id")]
    pub aliyun_access_key_id: String,
    #[arg(long, default_value = "sim-access-key-secret")]
    pub aliyun_access_key_secret: String,
    /// Where to push Aliyun SmsReport batches (Herald's /v1/receipts/aliyun/{provider}).
    #[arg(long)]
    pub aliyun_report_url: Option<String>,
    /// Where to push Aliyun voice reports (Herald's /v1/receipts/aliyun/{vms provider}).
    #[arg(long)]
    pub aliyun_voice_report_url: Option<String>,
    #[arg(long, default_value = "ACsimulator000000000000000000000000")]
    pub twilio_account_sid: String,
    #[arg(long, default_value = "sim-auth-token")]
    pub twilio_auth_token: String,
    /// The DingTalk robot's access_token (a request with another is refused, as DingTalk does).
    #[arg(long, default_value = "sim-dingtalk-token")]
    pub dingtalk_access_token: String,
    /// The DingTalk robot's signing secret, checked on every request; `''` for a robot without
    /// signing.
    #[arg(long, default_value = "SECsim-dingtalk-secret")]
    pub dingtalk_secret: String,
    /// The Feishu bot's hook id (the last part of its URL).
    #[arg(long, default_value = "sim-feishu-hook")]
    pub feishu_hook: String,
    /// The Feishu bot's signing secret, checked on every request; `''` for a bot without
    /// signing.
    #[arg(long, default_value = "sim-feishu-secret")]
    pub feishu_secret: String,
    #[arg(long, default_value = "sim-wecom-key")]
    pub wecom_key: String,
    /// The path of the Slack incoming webhook after /slack/services/.
    #[arg(long, default_value = "T0SIM/B0SIM/simulatorsecret")]
    pub slack_path: String,
    /// The `sig` of the Teams Workflows trigger URL (/teams/workflows/…?sig=…).
    #[arg(long, default_value = "sim-teams-sig")]
    pub teams_sig: String,
    /// The FCM project the simulator's service account belongs to.
    #[arg(long, default_value = "herald-sim")]
    pub fcm_project: String,
    /// Where the APNs simulator listens (TLS, HTTP/2 only); `GET /_sim/apns` gives its URL
    /// and certificate.
    #[arg(long, default_value = "127.0.0.1:9543")]
    pub apns_listen: Option<String>,
    /// The team id APNs provider tokens must carry (`iss`).
    #[arg(long, default_value = "SIMTEAM001")]
    pub apns_team_id: String,
    /// The key id of the simulator's `.p8` key (`kid`).
    #[arg(long, default_value = "SIMKEY0001")]
    pub apns_key_id: String,
    /// The app's bundle id (`apns-topic`).
    #[arg(long, default_value = "com.example.herald")]
    pub apns_topic: String,
    /// Delay before delivery receipts are sent or become queryable.
    #[arg(long, default_value = "300ms", value_parser = parse_dur)]
    pub report_delay: Duration,
}

/// Herald configuration for SMS with simulated Aliyun as the primary and simulated Twilio as
/// the backup (both at `sim`, with `args`' credentials), and a `code` template: what the
/// failover benchmark and the provider-outage drill run against.
pub fn sms_failover_toml(sim: &str, args: &SimArgs) -> String {
    format!(
        r#"[[providers]]
id = "aliyun-main"
channel = "sms"
kind = "aliyun"
priority = 1
endpoint = "{sim}/aliyun"
credentials = {{ access_key_id = "{}", access_key_secret = "{}", receipt_token = "sim-receipt-token" }}
options = {{ sign_name = "Herald" }}
[[providers]]
id = "twilio-backup"
channel = "sms"
kind = "twilio"
priority = 2
endpoint = "{sim}/twilio"
credentials = {{ account_sid = "{}", auth_token = "{}" }}
options = {{ from = "+15005550006" }}
[[templates]]
id = "code"
sms = {{ text = "Your code is {{{{ code }}}}", provider_templates = {{ aliyun-main = "SMS_1" }} }}
"#,
        args.aliyun_access_key_id,
        args.aliyun_access_key_secret,
        args.twilio_account_sid,
        args.twilio_auth_token
    )
}

fn parse_dur(s: &str) -> Result<Duration, String> {
    crate::config::Dur::parse(s).map(|d| d.0)
}

/// Faults a provider's endpoint answers with, on command.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Share of requests that fail, 0 to 1 (default 1 when a code or status is given).
    pub error_rate: Option<f64>,
    /// The provider's own error code to answer with (`isp.SYSTEM_ERROR`, `21211`, `130101`…).
    pub error_code: Option<String>,
    /// An HTTP status to answer with: 503 (outage body), 429 (the provider's throttling).
    pub status: Option<u16>,
    /// Added before every answer.
    pub latency_ms: Option<u64>,
    /// Answer 503 for this long from now ("10s").
    pub outage: Option<String>,
    /// Only the next N requests are faulted.
    pub count: Option<u32>,
    #[serde(skip)]
    outage_until: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub provider: &'static str,
    pub at: String,
    pub accepted: bool,
    pub request: Value,
    pub status: u16,
    pub response: Value,
}

/// What a faulted request gets instead of normal handling.
pub enum FaultHit {
    Code(String),
    Status(u16),
}

pub struct Sim {
    pub args: SimArgs,
    records: Mutex<VecDeque<Record>>,
    counts: Mutex<HashMap<&'static str, (u64, u64)>>,
    faults: Mutex<HashMap<String, Fault>>,
    nonces: Mutex<HashSet<String>>,
    windows: Mutex<HashMap<String, VecDeque<i64>>>,
    pub aliyun_details: Mutex<HashMap<String, aliyun::Detail>>,
    pub webpush: Mutex<HashMap<String, webpush::Subscription>>,
    /// VAPID tokens already verified, with their expiry.
    pub vapid_seen: Mutex<HashMap<String, i64>>,
    pub fcm: Mutex<fcm::FcmState>,
    pub apns: Mutex<apns::ApnsState>,
    /// A phone that answers pages by itself (`PUT /_sim/twilio/auto-reply`).
    pub auto_reply: Mutex<Option<replies::AutoReply>>,
    pub http: reqwest::Client,
}

pub type Shared = Arc<Sim>;

impl Sim {
    pub fn new(args: SimArgs) -> Shared {
        Arc::new(Sim {
            args,
            records: Mutex::default(),
            counts: Mutex::default(),
            faults: Mutex::default(),
            nonces: Mutex::default(),
            windows: Mutex::default(),
            aliyun_details: Mutex::default(),
            webpush: Mutex::default(),
            vapid_seen: Mutex::default(),
            fcm: Mutex::default(),
            apns: Mutex::default(),
            auto_reply: Mutex::default(),
            http: {
                crate::tls::init();
                reqwest::Client::new()
            },
        })
    }

    pub fn record(
        &self,
        provider: &'static str,
        accepted: bool,
        request: Value,
        status: u16,
        response: Value,
    ) {
        if let Ok(mut c) = self.counts.lock() {
            let e = c.entry(provider).or_default();
            if accepted {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        if let Ok(mut r) = self.records.lock() {
            if r.len() >= 100_000 {
                r.pop_front();
            }
            r.push_back(Record {
                provider,
                at: crate::core::types::rfc3339(crate::core::types::now_millis()),
                accepted,
                request,
                status,
                response,
            });
        }
    }

    /// Applies the provider's configured fault: sleeps the latency, then says whether this
    /// request fails and how.
    pub async fn fault(&self, provider: &str) -> Option<FaultHit> {
        let (latency, hit) = {
            let Ok(mut faults) = self.faults.lock() else {
                return None;
            };
            let f = faults.get_mut(provider)?;
            let now = crate::core::types::now_millis();
            let latency = f.latency_ms.unwrap_or(0);
            let hit = if f.outage_until.is_some_and(|u| now < u) {
                Some(FaultHit::Status(503))
            } else if f.error_code.is_some() || f.status.is_some() {
                let rate = f.error_rate.unwrap_or(1.0);
                let counted = f.count.is_none_or(|c| c > 0);
                if counted && rand::random::<f64>() < rate {
                    if let Some(c) = f.count.as_mut() {
                        *c -= 1;
                    }
                    match (&f.error_code, f.status) {
                        (Some(code), _) => Some(FaultHit::Code(code.clone())),
                        (None, Some(s)) => Some(FaultHit::Status(s)),
                        _ => None,
                    }
                } else {
                    None
                }
            } else {
                None
            };
            (latency, hit)
        };
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        hit
    }

    /// Remembers a nonce; false when it was seen before.
    pub fn fresh_nonce(&self, nonce: &str) -> bool {
        self.nonces
            .lock()
            .map(|mut n| n.insert(nonce.to_string()))
            .unwrap_or(true)
    }

    /// Counts a request against `key`'s limits; false when over any of them.
    pub fn within_rate(&self, key: &str, limits: &[(usize, i64)]) -> bool {
        let Ok(mut w) = self.windows.lock() else {
            return true;
        };
        let log = w.entry(key.to_string()).or_default();
        let now = crate::core::types::now_millis();
        let longest = limits.iter().map(|l| l.1).max().unwrap_or(0);
        while log.front().is_some_and(|t| *t <= now - longest) {
            log.pop_front();
        }
        for (count, span) in limits {
            if log.iter().filter(|t| **t > now - span).count() >= *count {
                return false;
            }
        }
        log.push_back(now);
        true
    }
}

pub fn router(sim: Shared) -> Router {
    Router::new()
        .route("/aliyun", any(aliyun::rpc))
        .route("/aliyun/", any(aliyun::rpc))
        .route(
            "/twilio/2010-04-01/Accounts/{sid}/Messages.json",
            post(twilio::create),
        )
        .route(
            "/twilio/2010-04-01/Accounts/{sid}/Calls.json",
            post(twilio::calls),
        )
        .route("/dingtalk/robot/send", post(robots::dingtalk))
        .route("/feishu/open-apis/bot/v2/hook/{hook}", post(robots::feishu))
        .route("/wecom/cgi-bin/webhook/send", post(robots::wecom))
        .route("/slack/services/{*path}", post(robots::slack))
        .route("/teams/workflows/{*path}", post(robots::teams))
        .route("/webpush/subscribe", post(webpush::subscribe))
        .route("/webpush/ws", get(webpush::browser))
        .route(
            "/webpush/push/{id}",
            post(webpush::push).delete(webpush::unsubscribe),
        )
        .route("/webpush/push/{id}/messages", get(webpush::messages))
        .route("/fcm/service-account.json", get(fcm::account_file))
        .route("/fcm/token", post(fcm::token))
        .route("/fcm/v1/projects/{*path}", post(fcm::send))
        .route("/_sim/fcm/expire-tokens", post(fcm::expire_tokens))
        .route("/_sim/apns", get(apns::info))
        .route("/_sim/apns/expire", post(apns::expire))
        .route("/_sim/twilio/reply", post(replies::twilio))
        .route(
            "/_sim/twilio/auto-reply",
            axum::routing::put(replies::set_auto_reply).delete(replies::clear_auto_reply),
        )
        .route("/_sim/aliyun/reply", post(replies::aliyun))
        .route("/_sim/health", get(|| async { "ok" }))
        .route("/_sim/requests", get(requests).delete(clear_requests))
        .route("/_sim/stats", get(stats))
        .route("/_sim/faults", get(list_faults))
        .route(
            "/_sim/faults/{provider}",
            put(set_fault).delete(clear_fault),
        )
        .with_state(sim)
}

const PROVIDERS: [&str; 12] = [
    "aliyun",
    "twilio",
    "dingtalk",
    "feishu",
    "wecom",
    "slack",
    "teams",
    "webpush",
    "fcm",
    "fcm_token",
    "apns",
    "aliyun_vms",
];

async fn requests(State(sim): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let list: Vec<Record> = sim
        .records
        .lock()
        .map(|r| {
            r.iter()
                .filter(|x| q.get("provider").is_none_or(|p| p == x.provider))
                .filter(|x| {
                    q.get("accepted")
                        .is_none_or(|a| (a == "true") == x.accepted)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Json(json!({ "data": list })).into_response()
}

/// Requests per provider, accepted and refused, since the start (cheap to poll).
async fn stats(State(sim): State<Shared>) -> Response {
    let c = sim
        .counts
        .lock()
        .map(|c| {
            c.iter()
                .map(|(p, (a, r))| (p.to_string(), json!({"accepted": a, "refused": r})))
                .collect::<serde_json::Map<_, _>>()
        })
        .unwrap_or_default();
    Json(Value::Object(c)).into_response()
}

async fn clear_requests(State(sim): State<Shared>) -> StatusCode {
    if let Ok(mut r) = sim.records.lock() {
        r.clear();
    }
    if let Ok(mut c) = sim.counts.lock() {
        c.clear();
    }
    StatusCode::NO_CONTENT
}

async fn list_faults(State(sim): State<Shared>) -> Response {
    let f = sim.faults.lock().map(|f| json!(*f)).unwrap_or_default();
    Json(f).into_response()
}

async fn set_fault(
    State(sim): State<Shared>,
    Path(provider): Path<String>,
    Json(mut f): Json<Fault>,
) -> Response {
    if !PROVIDERS.contains(&provider.as_str()) {
        return (
            StatusCode::NOT_FOUND,
            format!(
                "unknown provider {provider}; one of {}",
                PROVIDERS.join(", ")
            ),
        )
            .into_response();
    }
    if let Some(o) = &f.outage {
        match crate::config::Dur::parse(o) {
            Ok(d) => {
                f.outage_until = Some(crate::core::types::now_millis() + d.0.as_millis() as i64)
            }
            Err(e) => return (StatusCode::UNPROCESSABLE_ENTITY, e).into_response(),
        }
    }
    if let Ok(mut faults) = sim.faults.lock() {
        faults.insert(provider, f.clone());
    }
    Json(json!(f)).into_response()
}

async fn clear_fault(State(sim): State<Shared>, Path(provider): Path<String>) -> StatusCode {
    if let Ok(mut f) = sim.faults.lock() {
        f.remove(&provider);
    }
    StatusCode::NO_CONTENT
}

/// Runs the simulators until the process is stopped.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    let sim = Sim::new(args);
    start_apns(&sim).map_err(|e| anyhow::anyhow!("APNs simulator: {e}"))?;
    let apns = sim.apns.lock().map(|a| a.url.clone()).unwrap_or_default();
    eprintln!(
        "herald simulate on http://{addr}: /aliyun /twilio /dingtalk /feishu /wecom /slack /teams /webpush /fcm; APNs at {apns}; control at /_sim"
    );
    axum::serve(listener, router(sim)).await?;
    Ok(())
}

/// Opens the APNs listener (its own port: TLS and HTTP/2 only), when one is configured.
fn start_apns(sim: &Shared) -> Result<(), String> {
    match sim.args.apns_listen.as_deref().filter(|a| !a.is_empty()) {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr).map_err(|e| format!("{addr}: {e}"))?;
            apns::serve(sim.clone(), l)
        }
        None => Ok(()),
    }
}

/// Starts the simulators on `listener` in the background (tests, drills).
pub fn spawn(args: SimArgs, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    spawn_shared(args, listener).0
}

/// [`spawn`], also giving the simulators' state (the APNs listener's URL and certificate).
pub fn spawn_shared(
    args: SimArgs,
    listener: tokio::net::TcpListener,
) -> (tokio::task::JoinHandle<()>, Shared) {
    let sim = Sim::new(args);
    if let Err(e) = start_apns(&sim) {
        tracing::warn!(error = %e, "the APNs simulator did not start");
    }
    let app = router(sim.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (task, sim)
}

pub fn request_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
