//! The providers of each channel, built from the configuration, and the choice of one for a
//! delivery: lowest `priority` first, `weight` among equals, skipping those a delivery must
//! not use again, and preferring another provider than the last one on a retry.

use super::Provider;
use super::inbox::InboxProvider;
use super::webhook::{WebhookProvider, client};
use crate::config::{Config, ProviderKind};
use crate::core::ssrf::HostPolicy;
use crate::core::types::Channel;
use crate::store::{InboxItem, Store};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::broadcast;

pub struct Registry {
    by_channel: HashMap<Channel, Vec<Arc<dyn Provider>>>,
}

impl Registry {
    pub fn from_config(
        cfg: &Config,
        store: Arc<dyn Store>,
        inbox_events: broadcast::Sender<InboxItem>,
    ) -> Result<Self, String> {
        let policy = HostPolicy::new(&cfg.webhook.allowed_hosts);
        let http =
            client(&policy, cfg.webhook.timeout.0).map_err(|e| format!("HTTP client: {e}"))?;
        let mut by_channel: HashMap<Channel, Vec<Arc<dyn Provider>>> = HashMap::new();
        for (i, p) in cfg.providers.iter().enumerate() {
            let provider: Arc<dyn Provider> = match p.kind {
                ProviderKind::Webhook => {
                    if p.channel != Channel::Webhook {
                        return Err(format!(
                            "providers[{i}] `{}`: kind webhook serves channel webhook",
                            p.id
                        ));
                    }
                    Arc::new(WebhookProvider::from_config(
                        p,
                        http.clone(),
                        policy.clone(),
                    )?)
                }
                other => {
                    return Err(format!(
                        "providers[{i}] `{}`: kind `{}` is not available in this version of Herald",
                        p.id,
                        serde_json::to_value(other)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default()
                    ));
                }
            };
            by_channel.entry(p.channel).or_default().push(provider);
        }
        by_channel
            .entry(Channel::Webhook)
            .or_insert_with(|| vec![Arc::new(WebhookProvider::builtin(http, policy))]);
        by_channel.insert(
            Channel::Inbox,
            vec![Arc::new(InboxProvider::new(store, inbox_events))],
        );
        for list in by_channel.values_mut() {
            list.sort_by_key(|p| p.priority());
        }
        Ok(Registry { by_channel })
    }

    pub fn channels(&self) -> HashSet<Channel> {
        self.by_channel.keys().copied().collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.by_channel.values().flatten()
    }

    /// Picks the provider for a delivery. `roll` is a uniform draw in `[0, 1)`.
    pub fn pick(
        &self,
        channel: Channel,
        skip: &[String],
        last: Option<&str>,
        roll: f64,
    ) -> Option<Arc<dyn Provider>> {
        let usable: Vec<&Arc<dyn Provider>> = self
            .by_channel
            .get(&channel)?
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

    /// Whether the channel has a provider other than `this` that the delivery may still use.
    pub fn has_other(&self, channel: Channel, skip: &[String], this: &str) -> bool {
        self.by_channel.get(&channel).is_some_and(|l| {
            l.iter()
                .any(|p| p.id() != this && !skip.iter().any(|s| s == p.id()))
        })
    }
}
