//! The providers of each channel, built from the configuration, and the choice of one for a
//! delivery: lowest `priority` first, `weight` among equals, skipping those a delivery must
//! not use again, and preferring another provider than the last one on a retry. Chat
//! deliveries go to the robot their `to.chat` names.

use super::aliyun::AliyunProvider;
use super::inbox::InboxProvider;
use super::limiter::Limiter;
use super::webhook::{WebhookProvider, client};
use super::{Provider, common, dingtalk, feishu, slack, smtp, twilio, wecom};
use crate::config::{Config, ProviderKind, Secret};
use crate::core::ssrf::HostPolicy;
use crate::core::types::Channel;
use crate::store::{InboxItem, Store};
use crate::templates::Templates;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::broadcast;

/// How a provider's delivery receipts reach Herald.
#[derive(Clone)]
pub enum ReceiptAuth {
    /// Twilio status callbacks, signed with the account's auth token.
    Twilio { auth_token: Secret },
    /// Aliyun SmsReport pushes; with a token, the callback URL must carry `?token=`.
    Aliyun { token: Option<Secret> },
}

pub struct Registry {
    by_channel: HashMap<Channel, Vec<Arc<dyn Provider>>>,
    limiters: HashMap<String, Limiter>,
    receipts: HashMap<String, ReceiptAuth>,
    /// Aliyun providers whose receipts are polled with QuerySendDetails.
    pub pollers: Vec<Arc<AliyunProvider>>,
}

impl Registry {
    pub fn from_config(
        cfg: &Config,
        store: Arc<dyn Store>,
        inbox_events: broadcast::Sender<InboxItem>,
        templates: Arc<Templates>,
    ) -> Result<Self, String> {
        let policy = HostPolicy::new(&cfg.webhook.allowed_hosts);
        let hooks =
            client(&policy, cfg.webhook.timeout.0).map_err(|e| format!("HTTP client: {e}"))?;
        let vendor = common::vendor_client().map_err(|e| format!("HTTP client: {e}"))?;
        let public_url = cfg.server.public_url.as_deref();
        let mut r = Registry {
            by_channel: HashMap::new(),
            limiters: HashMap::new(),
            receipts: HashMap::new(),
            pollers: Vec::new(),
        };
        for (i, p) in cfg.providers.iter().enumerate() {
            let expected = match p.kind {
                ProviderKind::Aliyun | ProviderKind::Twilio => Some(Channel::Sms),
                ProviderKind::Smtp => Some(Channel::Email),
                ProviderKind::Webhook => Some(Channel::Webhook),
                ProviderKind::Dingtalk
                | ProviderKind::Feishu
                | ProviderKind::Wecom
                | ProviderKind::Slack => Some(Channel::Chat),
                ProviderKind::Webpush | ProviderKind::Fcm | ProviderKind::Apns => None,
            };
            match expected {
                None => {
                    return Err(format!(
                        "providers[{i}] `{}`: kind `{}` is not available in this version of Herald",
                        p.id,
                        serde_json::to_value(p.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default()
                    ));
                }
                Some(ch) if ch != p.channel => {
                    return Err(format!(
                        "providers[{i}] `{}`: this kind serves channel `{ch}`, not `{}`",
                        p.id, p.channel
                    ));
                }
                Some(_) => {}
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
                    if let Some(tok) = p.credentials.get("auth_token") {
                        r.receipts.insert(
                            p.id.clone(),
                            ReceiptAuth::Twilio {
                                auth_token: tok.clone(),
                            },
                        );
                    }
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
                ProviderKind::Webpush | ProviderKind::Fcm | ProviderKind::Apns => continue,
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
        r.by_channel.insert(
            Channel::Inbox,
            vec![Arc::new(InboxProvider::new(store, inbox_events))],
        );
        for list in r.by_channel.values_mut() {
            list.sort_by_key(|p| p.priority());
        }
        Ok(r)
    }

    pub fn channels(&self) -> HashSet<Channel> {
        self.by_channel.keys().copied().collect()
    }

    /// Ids of the chat robots: what `to.chat` may name.
    pub fn chat_targets(&self) -> HashSet<String> {
        self.by_channel
            .get(&Channel::Chat)
            .into_iter()
            .flatten()
            .map(|p| p.id().to_string())
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

    /// Picks the provider for a delivery to `to`. `roll` is a uniform draw in `[0, 1)`.
    pub fn pick(
        &self,
        channel: Channel,
        to: &str,
        skip: &[String],
        last: Option<&str>,
        roll: f64,
    ) -> Option<Arc<dyn Provider>> {
        let list = self.by_channel.get(&channel)?;
        if channel == Channel::Chat {
            return list
                .iter()
                .find(|p| p.id() == to && !skip.iter().any(|s| s == p.id()))
                .cloned();
        }
        let usable: Vec<&Arc<dyn Provider>> = list
            .iter()
            .filter(|p| !skip.iter().any(|s| s == p.id()))
            .collect();
        let best = usable.first()?.priority();
        let mut tier: Vec<&Arc<dyn Provider>> = usable
            .into_iter()
            .filter(|p| p.priority() == best)
            .collect();
        if tier.len() > 1
            && let Some(last) = last
        {
            tier.retain(|p| p.id() != last);
        }
        let total: u64 = tier.iter().map(|p| p.weight().max(1) as u64).sum();
        let mut point = (roll.clamp(0.0, 0.999_999) * total as f64) as u64;
        for p in &tier {
            let w = p.weight().max(1) as u64;
            if point < w {
                return Some((*p).clone());
            }
            point -= w;
        }
        tier.last().map(|p| (*p).clone())
    }

    /// Whether the delivery may still use a provider other than `this`.
    pub fn has_other(&self, channel: Channel, skip: &[String], this: &str) -> bool {
        channel != Channel::Chat
            && self.by_channel.get(&channel).is_some_and(|l| {
                l.iter()
                    .any(|p| p.id() != this && !skip.iter().any(|s| s == p.id()))
            })
    }
}
