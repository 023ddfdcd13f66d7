//! The providers of each channel, built from the configuration, and the choice of one for a
//! delivery: lowest `priority` first, `weight` among equals, skipping those a delivery must
//! not use again, and preferring another provider than the last one on a retry. Chat
//! deliveries go to the robot their `to.chat` names.

use super::aliyun::AliyunProvider;
use super::endpoints::Endpoints;
use super::inbox::InboxProvider;
use super::limiter::Limiter;
use super::webhook::{WebhookProvider, client};
use super::{Provider, common, dingtalk, feishu, slack, smtp, twilio, wecom};
use crate::config::{Config, ProviderKind, Secret};
use crate::core::circuit::{Breaker, Health};
use crate::core::ssrf::HostPolicy;
use crate::core::types::Channel;
use crate::store::ProviderSwitch;
use crate::store::{Inbox, InboxItem};
use crate::templates::Templates;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast;

/// How a provider's delivery receipts reach Herald.
#[derive(Clone)]
pub enum ReceiptAuth {
    /// Twilio status callbacks, signed with the account's auth token.
    Twilio { auth_token: Secret },
    /// Aliyun SmsReport pushes; with a token, the callback URL must carry `?token=`.
    Aliyun { token: Option<Secret> },
}

/// What the router found for a delivery.
pub enum Pick {
    Use(Arc<dyn Provider>),
    /// Providers exist, but none may be called before this time (circuits open, budgets spent).
    Wait(i64),
    /// No provider is left for this delivery (all skipped or disabled).
    None,
}

/// A provider as `GET /v1/providers` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderView {
    pub id: String,
    pub channel: Channel,
    pub kind: &'static str,
    pub priority: u32,
    pub weight: u32,
    /// `up`, `degraded`, `down` or `disabled`.
    pub state: &'static str,
    /// `closed`, `open` or `half_open`.
    pub circuit: &'static str,
    pub success_rate: f64,
    pub latency_ms: serde_json::Value,
    pub calls: u64,
    pub failures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<ProviderSwitch>,
    /// For providers whose health is kept per endpoint (webhooks): how many endpoints are
    /// tracked and those whose circuit is not closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<serde_json::Value>,
}

pub struct Registry {
    by_channel: HashMap<Channel, Vec<Arc<dyn Provider>>>,
    limiters: HashMap<String, Limiter>,
    health: HashMap<String, Mutex<Breaker>>,
    /// Circuits per endpoint, for providers whose target comes from the message.
    endpoints: Endpoints,
    disabled: RwLock<HashMap<String, ProviderSwitch>>,
    receipts: HashMap<String, ReceiptAuth>,
    /// Aliyun providers whose receipts are polled with QuerySendDetails.
    pub pollers: Vec<Arc<AliyunProvider>>,
    /// The first `webpush` provider's VAPID public key: browsers subscribe with it.
    pub vapid_public_key: Option<String>,
    /// Per-recipient budgets of providers that have them (Aliyun VMS callees).
    pub recipients: super::limiter::RecipientLimits,
}

impl Registry {
    /// Builds every configured provider. `inbox` is the storage and event channel the inbox
    /// delivers into; `None` only checks the configuration (`herald config check`).
    pub fn from_config(
        cfg: &Config,
        inbox: Option<(Arc<dyn Inbox>, broadcast::Sender<InboxItem>)>,
        contacts: Option<Arc<dyn crate::store::Contacts>>,
        templates: Arc<Templates>,
    ) -> Result<Self, String> {
        let policy = HostPolicy::new(&cfg.webhook.allowed_hosts);
        // Calls in flight never exceed the dispatcher's concurrency: keep that many open.
        let idle = cfg.dispatch.concurrency;
        let hooks = client(&policy, cfg.webhook.timeout.0, idle)
            .map_err(|e| format!("HTTP client: {e}"))?;
        let vendor = common::vendor_client(idle).map_err(|e| format!("HTTP client: {e}"))?;
        let public_url = cfg.server.public_url.as_deref();
        let mut r = Registry {
            by_channel: HashMap::new(),
            limiters: HashMap::new(),
            health: HashMap::new(),
            endpoints: Endpoints::new(cfg.circuit.breaker()),
            disabled: RwLock::new(HashMap::new()),
            receipts: HashMap::new(),
            pollers: Vec::new(),
            vapid_public_key: None,
            recipients: Default::default(),
        };
        for (i, p) in cfg.providers.iter().enumerate() {
            let expected = match p.kind {
                ProviderKind::Aliyun | ProviderKind::Twilio => Channel::Sms,
                ProviderKind::Smtp => Channel::Email,
                ProviderKind::Webhook => Channel::Webhook,
                ProviderKind::Dingtalk
                | ProviderKind::Feishu
                | ProviderKind::Wecom
                | ProviderKind::Slack
                | ProviderKind::Teams => Channel::Chat,
                ProviderKind::Webpush | ProviderKind::Fcm | ProviderKind::Apns => Channel::Push,
                ProviderKind::TwilioVoice | ProviderKind::AliyunVms => Channel::Voice,
            };
            if expected != p.channel {
                return Err(format!(
                    "providers[{i}] `{}`: this kind serves channel `{expected}`, not `{}`",
                    p.id, p.channel
                ));
            }
            let (provider, default_limits): (Arc<dyn Provider>, Vec<crate::config::Rate>) = match p
                .kind
            {
                ProviderKind::Webhook => (
                    Arc::new(WebhookProvider::from_config(
                        p,
                        hooks.clone(),
                        policy.clone(),
                    )?),
                    vec![],
                ),
                ProviderKind::Aliyun => {
                    let a = Arc::new(AliyunProvider::from_config(
                        p,
                        vendor.clone(),
                        templates.clone(),
                    )?);
                    let token = p.credentials.get("receipt_token").cloned();
                    let pushes = matches!(
                        p.options.get("receipts").and_then(|v| v.as_str()),
                        None | Some("push")
                    );
                    // Open receipts would let anyone reaching Herald confirm or fail a delivery.
                    if pushes && token.is_none() {
                        return Err(format!(
                            "providers `{}`: Aliyun receipt pushes need credentials.receipt_token (the report URL then ends in ?token=…), or set options.receipts = \"poll\"",
                            p.id
                        ));
                    }
                    r.receipts
                        .insert(p.id.clone(), ReceiptAuth::Aliyun { token });
                    match p.options.get("receipts").and_then(|v| v.as_str()) {
                        None | Some("push") => {}
                        Some("poll") => r.pollers.push(a.clone()),
                        Some(other) => {
                            return Err(format!(
                                "providers `{}`: options.receipts must be push or poll, not `{other}`",
                                p.id
                            ));
                        }
                    }
                    (a, vec![])
                }
                ProviderKind::Twilio => {
                    let t = twilio::TwilioProvider::from_config(p, vendor.clone(), public_url)?;
                    r.twilio_receipts(p);
                    (Arc::new(t), vec![])
                }
                ProviderKind::Smtp => (Arc::new(smtp::SmtpProvider::from_config(p)?), vec![]),
                ProviderKind::Dingtalk => (
                    Arc::new(dingtalk::DingtalkProvider::from_config(p, vendor.clone())?),
                    dingtalk::default_limits(),
                ),
                ProviderKind::Feishu => (
                    Arc::new(feishu::FeishuProvider::from_config(p, vendor.clone())?),
                    feishu::default_limits(),
                ),
                ProviderKind::Wecom => (
                    Arc::new(wecom::WecomProvider::from_config(p, vendor.clone())?),
                    wecom::default_limits(),
                ),
                ProviderKind::Slack => (
                    Arc::new(slack::SlackProvider::from_config(p, vendor.clone())?),
                    slack::default_limits(),
                ),
                ProviderKind::Teams => (
                    Arc::new(crate::providers::teams::TeamsProvider::from_config(
                        p,
                        vendor.clone(),
                    )?),
                    crate::providers::teams::default_limits(),
                ),
                ProviderKind::Webpush => {
                    let w = crate::providers::webpush::provider::WebPushProvider::from_config(
                        p,
                        idle,
                        contacts.clone(),
                    )?;
                    // Browsers subscribe with one key: pushes signed with another are refused.
                    let key = r.vapid_public_key.get_or_insert_with(|| w.public_key());
                    if *key != w.public_key() {
                        return Err(format!(
                            "providers `{}`: every webpush provider must use the same vapid_private_key (browsers subscribe with one public key)",
                            p.id
                        ));
                    }
                    (Arc::new(w), vec![])
                }
                ProviderKind::TwilioVoice => {
                    let t = crate::providers::twilio_voice::TwilioVoiceProvider::from_config(
                        p,
                        vendor.clone(),
                        public_url,
                    )?;
                    r.twilio_receipts(p);
                    (Arc::new(t), vec![])
                }
                ProviderKind::AliyunVms => {
                    let token = p.credentials.get("receipt_token").cloned();
                    if token.is_none() {
                        return Err(format!(
                            "providers `{}`: Aliyun voice reports need credentials.receipt_token (the report URL then ends in ?token=…)",
                            p.id
                        ));
                    }
                    r.receipts
                        .insert(p.id.clone(), ReceiptAuth::Aliyun { token });
                    (
                        Arc::new(
                            crate::providers::aliyun_vms::AliyunVmsProvider::from_config(
                                p,
                                vendor.clone(),
                                templates.clone(),
                            )?,
                        ),
                        vec![],
                    )
                }
                ProviderKind::Fcm => (
                    Arc::new(crate::providers::fcm::FcmProvider::from_config(
                        p,
                        vendor.clone(),
                        contacts.clone(),
                    )?),
                    vec![],
                ),
                ProviderKind::Apns => (
                    Arc::new(crate::providers::apns::ApnsProvider::from_config(
                        p,
                        idle,
                        contacts.clone(),
                    )?),
                    vec![],
                ),
            };
            let limits = p.rate_limit.map(|r| vec![r]).unwrap_or(default_limits);
            if !limits.is_empty() {
                r.limiters.insert(p.id.clone(), Limiter::new(&limits));
            }
            r.by_channel.entry(p.channel).or_default().push(provider);
        }
        r.by_channel
            .entry(Channel::Webhook)
            .or_insert_with(|| vec![Arc::new(WebhookProvider::builtin(hooks, policy))]);
        if let Some((store, inbox_events)) = inbox {
            r.by_channel.insert(
                Channel::Inbox,
                vec![Arc::new(InboxProvider::new(store, inbox_events))],
            );
        }
        for list in r.by_channel.values_mut() {
            list.sort_by_key(|p| p.priority());
        }
        let breaker = cfg.circuit.breaker();
        r.health = r
            .all()
            .map(|p| (p.id().to_string(), Mutex::new(Breaker::new(breaker))))
            .collect();
        Ok(r)
    }

    /// Status callbacks of a Twilio provider are checked with its auth token.
    fn twilio_receipts(&mut self, p: &crate::config::ProviderConfig) {
        if let Some(tok) = p.credentials.get("auth_token") {
            self.receipts.insert(
                p.id.clone(),
                ReceiptAuth::Twilio {
                    auth_token: tok.clone(),
                },
            );
        }
    }

    /// The providers of `channel`, in priority order.
    pub fn of_channel(&self, channel: Channel) -> &[Arc<dyn Provider>] {
        self.by_channel
            .get(&channel)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn channels(&self) -> HashSet<Channel> {
        self.by_channel.keys().copied().collect()
    }

    /// Ids of the chat robots: what `to.chat` may name.
    pub fn chat_targets(&self) -> HashMap<String, &'static str> {
        self.by_channel
            .get(&Channel::Chat)
            .into_iter()
            .flatten()
            .map(|p| (p.id().to_string(), p.kind()))
            .collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.by_channel.values().flatten()
    }

    pub fn limiter(&self, id: &str) -> Option<&Limiter> {
        self.limiters.get(id)
    }

    pub fn receipt_auth(&self, id: &str) -> Option<&ReceiptAuth> {
        self.receipts.get(id)
    }

    pub fn provider(&self, id: &str) -> Option<&Arc<dyn Provider>> {
        self.all().find(|p| p.id() == id)
    }

    /// Applies the operators' switches (read from storage).
    pub fn set_switches(&self, switches: Vec<ProviderSwitch>) {
        if let Ok(mut d) = self.disabled.write() {
            *d = switches
                .into_iter()
                .filter(|s| s.disabled)
                .map(|s| (s.provider.clone(), s))
                .collect();
        }
    }

    fn is_disabled(&self, id: &str) -> bool {
        self.disabled
            .read()
            .map(|d| d.contains_key(id))
            .unwrap_or(false)
    }

    /// When `p` may next be called for a delivery to `to` (now if it may): its circuit (the
    /// endpoint's, for providers kept per endpoint) and its budget.
    fn ready_at(&self, p: &Arc<dyn Provider>, to: &str, now: i64) -> i64 {
        let mut at = now;
        if let Some(key) = p.endpoint(to) {
            at = at.max(self.endpoints.ready_at(&key, now));
        } else if let Some(b) = self.health.get(p.id()).and_then(|b| b.lock().ok())
            && !b.permits(now)
        {
            at = at.max(b.reopens_at().unwrap_or(now + 1000));
        }
        if let Some(Err(wait)) = self.limiter(p.id()).map(|l| l.peek(now)) {
            at = at.max(now + wait.as_millis() as i64);
        }
        at
    }

    /// The providers a delivery may still use: of its channel (its robot, for chat), not
    /// skipped for it, not disabled; in priority order.
    fn candidates(&self, channel: Channel, to: &str, skip: &[String]) -> Vec<&Arc<dyn Provider>> {
        self.by_channel
            .get(&channel)
            .into_iter()
            .flatten()
            .filter(|p| channel != Channel::Chat || p.id() == to)
            .filter(|p| !skip.iter().any(|s| s == p.id()) && !self.is_disabled(p.id()))
            .collect()
    }

    /// Picks the provider for a delivery: lowest `priority` first, `weight` among equals,
    /// skipping open circuits, spent budgets and — when another is ready — the provider used
    /// last. `roll` is a uniform draw in `[0, 1)`. Takes the circuit's probe slot and a
    /// budget slot of the one picked.
    pub fn pick(
        &self,
        channel: Channel,
        to: &str,
        skip: &[String],
        last: Option<&str>,
        roll: f64,
        now: i64,
    ) -> Pick {
        let candidates = self.candidates(channel, to, skip);
        if candidates.is_empty() {
            return Pick::None;
        }
        for _ in 0..4 {
            let mut ready: Vec<&Arc<dyn Provider>> = candidates
                .iter()
                .copied()
                .filter(|p| self.ready_at(p, to, now) <= now)
                .collect();
            if ready.is_empty() {
                let at = candidates
                    .iter()
                    .map(|p| self.ready_at(p, to, now))
                    .min()
                    .unwrap_or(now + 1000);
                return Pick::Wait(at.max(now + 1));
            }
            if ready.len() > 1
                && let Some(last) = last
            {
                ready.retain(|p| p.id() != last);
            }
            let best = ready.iter().map(|p| p.priority()).min().unwrap_or(0);
            let tier: Vec<&Arc<dyn Provider>> =
                ready.into_iter().filter(|p| p.priority() == best).collect();
            let total: u64 = tier.iter().map(|p| p.weight().max(1) as u64).sum();
            let mut point = (roll.clamp(0.0, 0.999_999) * total as f64) as u64;
            let mut chosen = tier[tier.len() - 1];
            for p in &tier {
                let w = p.weight().max(1) as u64;
                if point < w {
                    chosen = p;
                    break;
                }
                point -= w;
            }
            let circuit_ok = match chosen.endpoint(to) {
                Some(key) => self.endpoints.acquire(&key, now),
                None => self
                    .health
                    .get(chosen.id())
                    .and_then(|b| b.lock().ok())
                    .is_none_or(|mut b| b.acquire(now)),
            };
            let budget_ok = circuit_ok
                && self
                    .limiter(chosen.id())
                    .is_none_or(|l| l.try_acquire(now).is_ok());
            if budget_ok {
                return Pick::Use(chosen.clone());
            }
            if circuit_ok {
                // The budget refused the call: the probe slot just taken is not used.
                self.release(chosen.as_ref(), to, now);
            }
        }
        Pick::Wait(now + 100)
    }

    /// Whether the delivery could use, right now, a provider other than `this`.
    pub fn has_other_ready(
        &self,
        channel: Channel,
        to: &str,
        skip: &[String],
        this: &str,
        now: i64,
    ) -> bool {
        self.candidates(channel, to, skip)
            .iter()
            .any(|p| p.id() != this && self.ready_at(p, to, now) <= now)
    }

    /// Gives back the circuit's probe slot that [`Registry::pick`] took for a call that is
    /// not going to be made.
    pub fn release(&self, p: &dyn Provider, to: &str, now: i64) {
        match p.endpoint(to) {
            Some(key) => self.endpoints.release(&key, now),
            None => {
                if let Some(mut b) = self.health.get(p.id()).and_then(|b| b.lock().ok()) {
                    b.release(now);
                }
            }
        }
    }

    /// Counts a call's outcome in the provider's health, or — for a provider kept per
    /// endpoint — in the endpoint's circuit and the provider's statistics.
    pub fn record(&self, p: &dyn Provider, to: &str, now: i64, health: Health, latency_ms: u32) {
        let endpoint = p.endpoint(to);
        if let Some(key) = &endpoint {
            self.endpoints.record(key, now, health, latency_ms);
        }
        if let Some(mut b) = self.health.get(p.id()).and_then(|b| b.lock().ok()) {
            match endpoint {
                Some(_) => b.observe(health, latency_ms),
                None => b.record(now, health, latency_ms),
            }
        }
    }

    /// The endpoint a delivery on `channel` to `to` goes to, when that channel's providers
    /// keep health per endpoint; with `(healthy, callable)` for fair sharing.
    pub fn endpoint_of(&self, channel: Channel, to: &str) -> Option<String> {
        self.by_channel
            .get(&channel)
            .and_then(|l| l.first())
            .and_then(|p| p.endpoint(to))
    }

    pub fn endpoint_load(&self, key: &str, now: i64) -> super::endpoints::EndpointState {
        self.endpoints.load(key, now)
    }

    /// Endpoints that may not be called now (at most `limit`).
    pub fn uncallable_endpoints(&self, now: i64, limit: usize) -> Vec<String> {
        self.endpoints.uncallable(now, limit)
    }

    pub fn views(&self, now: i64) -> Vec<ProviderView> {
        let disabled = self.disabled.read().map(|d| d.clone()).unwrap_or_default();
        let mut out: Vec<ProviderView> = self
            .all()
            .map(|p| {
                let b = self
                    .health
                    .get(p.id())
                    .and_then(|b| b.lock().ok().map(|b| b.clone()));
                let sw = disabled.get(p.id()).cloned();
                let (state, circuit, rate, p50, p99, calls, failures) = match &b {
                    Some(b) => (
                        b.state(now),
                        b.circuit(now).name(),
                        b.success_rate(),
                        b.latency(0.5),
                        b.latency(0.99),
                        b.calls,
                        b.failures,
                    ),
                    None => ("up", "closed", 1.0, None, None, 0, 0),
                };
                ProviderView {
                    id: p.id().to_string(),
                    channel: p.channel(),
                    kind: p.kind(),
                    priority: p.priority(),
                    weight: p.weight(),
                    state: if sw.is_some() { "disabled" } else { state },
                    circuit,
                    success_rate: (rate * 1000.0).round() / 1000.0,
                    latency_ms: serde_json::json!({ "p50": p50, "p99": p99 }),
                    calls,
                    failures,
                    disabled: sw,
                    endpoints: p.per_endpoint().then(|| {
                        let (troubled, tracked) = self.endpoints.troubled(now, 50);
                        serde_json::json!({ "tracked": tracked, "not_closed": troubled })
                    }),
                }
            })
            .collect();
        out.sort_by(|a, b| (a.channel, a.priority, &a.id).cmp(&(b.channel, b.priority, &b.id)));
        out
    }
}
