//! Validation of `POST /v1/messages` bodies: every problem is reported with the field it is
//! in; nothing here panics on any input.

pub use super::addresses::{valid_email, valid_phone, valid_user, valid_webhook};
use super::message::{Content, Idempotency, NewDelivery, NewMessage, RecipientLimit};
use super::ssrf::HostPolicy;
use super::types::{Channel, Millis, Priority, Strategy, new_id, parse_rfc3339};
use crate::templates::Templates;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// A field and what is wrong with it (SPEC "Errors": `errors[]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The body as sent; types are loose (strings for enums) so that errors can name the field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub to: To,
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub params: Option<Map<String, Value>>,
    #[serde(default)]
    pub content: Option<ContentIn>,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub send_at: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct To {
    pub phone: Option<String>,
    pub email: Option<String>,
    pub user: Option<String>,
    pub webhook: Option<String>,
    pub chat: Option<String>,
    pub push: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentIn {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub markdown: Option<String>,
}

/// What validation needs to know about the running gateway.
pub struct Context<'a> {
    pub now: Millis,
    /// Channels that have at least one provider.
    pub channels_available: &'a HashSet<Channel>,
    pub hosts: &'a HostPolicy,
    pub sender: &'a str,
    pub templates: &'a Templates,
    /// Ids of chat providers: `to.chat` names one of them.
    /// Ids of chat providers and their kinds (what `to.chat` may name; how its template
    /// parameters are escaped).
    pub chat_targets: &'a std::collections::HashMap<String, &'static str>,
    /// Where a single-channel message may go when its channel fails (`[degrade]`).
    pub degrade: &'a BTreeMap<Channel, Vec<Channel>>,
    /// Per-recipient limits by channel (`[limits].recipient`).
    pub recipient_limits: &'a BTreeMap<Channel, Vec<crate::config::Rate>>,
    /// The contact `to.user` names, read from the directory at accept time.
    pub contact: Option<&'a crate::core::contact::Contact>,
}

/// Where `to` reaches a person on `channel`: the field and the address, if any.
fn address(to: &To, channel: Channel) -> (&'static str, Option<String>) {
    match channel {
        Channel::Sms | Channel::Voice => ("to.phone", to.phone.clone()),
        Channel::Email => ("to.email", to.email.clone()),
        Channel::Inbox => ("to.user", to.user.clone()),
        Channel::Webhook => ("to.webhook", to.webhook.clone()),
        Channel::Chat => ("to.chat", to.chat.clone()),
        Channel::Push => ("to.push", to.push.as_ref().map(|p| p.join(","))),
    }
}

/// Whether content has what `channel` needs (quietly, for fallback channels).
fn content_suits(c: &Content, channel: Channel) -> bool {
    let mut ok = true;
    check_content(c, &[channel], &mut |_, _| ok = false);
    ok
}

pub const MAX_TTL: Duration = Duration::from_secs(30 * 86_400);
const DEFAULT_TTL: Duration = Duration::from_secs(86_400);
const MAX_TEXT: usize = 256 * 1024;
const MAX_SUBJECT: usize = 998;
const MAX_METADATA_KEYS: usize = 64;
const MAX_METADATA_BYTES: usize = 16 * 1024;
const MAX_PUSH_TARGETS: usize = 100;

/// Decodes a body into a [`SendRequest`], naming the field of a type error.
pub fn decode(value: Value) -> Result<SendRequest, FieldError> {
    if !value.is_object() {
        return Err(FieldError::new("body", "must be a JSON object"));
    }
    decode_as(value)
}

/// Decodes any JSON document into `T`; a failure names the field it is in (a missing field
/// by its own name, not its parent's).
pub fn decode_as<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        let field = match msg
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            Some(missing) if path == "." => missing.to_string(),
            Some(missing) => format!("{path}.{missing}"),
            None if path == "." => "body".to_string(),
            None => path,
        };
        FieldError::new(field, msg)
    })
}

/// Validates a decoded request and assigns ids. `idem` is the `Idempotency-Key` header, if any,
/// already paired with the body hash.
pub fn validate(
    req: SendRequest,
    ctx: &Context<'_>,
    idem: Option<Idempotency>,
) -> Result<NewMessage, Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut err = |f: &str, m: String| errs.push(FieldError::new(f, m));

    let priority = parse_enum::<Priority>(req.priority.as_deref(), "priority", &mut err)
        .unwrap_or(Priority::Normal);
    let strategy = parse_enum::<Strategy>(req.strategy.as_deref(), "strategy", &mut err)
        .unwrap_or(Strategy::Failover);

    // Addresses. A webhook URL is kept in its canonical form (what is sent to, and what
    // its endpoint's fair share is keyed on).
    let mut req = req;
    if let Some(u) = &mut req.to.webhook {
        match valid_webhook(u, ctx.hosts) {
            Ok(canonical) => *u = canonical,
            Err(m) => err("to.webhook", m),
        }
    }
    // A contact fills in the addresses the request left out.
    let derived = match ctx.contact {
        Some(c) => super::resolve::fill(&mut req.to, c, &|id| ctx.chat_targets.contains_key(id)),
        None => Vec::new(),
    };
    let to = &req.to;
    check_opt(&to.phone, "to.phone", valid_phone, &mut err);
    check_opt(&to.email, "to.email", valid_email, &mut err);
    check_opt(&to.user, "to.user", valid_user, &mut err);
    check_opt(&to.chat, "to.chat", valid_user, &mut err);
    if let Some(c) = &to.chat
        && valid_user(c).is_ok()
        && !ctx.chat_targets.contains_key(c)
    {
        err(
            "to.chat",
            format!("`{c}` is not the id of a configured chat provider"),
        );
    }
    if let Some(p) = to
        .push
        .as_ref()
        .filter(|_| !derived.contains(&Channel::Push))
    {
        if p.is_empty() || p.len() > MAX_PUSH_TARGETS {
            err(
                "to.push",
                format!("must hold 1 to {MAX_PUSH_TARGETS} targets"),
            );
        }
        for (i, t) in p.iter().enumerate() {
            if t.is_empty() || t.len() > 4096 || t.chars().any(char::is_control) {
                err(
                    &format!("to.push[{i}]"),
                    "must be a subscription id or device token".into(),
                );
            }
        }
    }
    let has_address = to.phone.is_some()
        || to.email.is_some()
        || to.user.is_some()
        || to.webhook.is_some()
        || to.chat.is_some()
        || to.push.is_some();
    if !has_address {
        err("to", "needs at least one address".into());
    }

    // Channels: listed, else those `to` has an address for.
    let mut channels: Vec<Channel> = Vec::new();
    // Channels chosen only because the contact has an address there: kept where the content
    // suits them, quietly left out where it does not (like fallback channels).
    let mut soft: Vec<Channel> = Vec::new();
    match &req.channels {
        Some(list) => {
            if list.is_empty() {
                err("channels", "must list at least one channel".into());
            }
            for (i, name) in list.iter().enumerate() {
                match name.parse::<Channel>() {
                    Ok(c) if channels.contains(&c) => {
                        err(&format!("channels[{i}]"), format!("`{c}` is listed twice"))
                    }
                    Ok(c) => channels.push(c),
                    Err(m) => err(&format!("channels[{i}]"), m),
                }
            }
        }
        None if req
            .template
            .as_deref()
            .and_then(|t| ctx.templates.get(t))
            .is_some_and(|t| !t.channels.is_empty()) =>
        {
            if let Some(t) = req.template.as_deref().and_then(|t| ctx.templates.get(t)) {
                channels = t.channels.clone();
            }
        }
        None => {
            for (c, present) in [
                (Channel::Sms, to.phone.is_some()),
                (Channel::Email, to.email.is_some()),
                (Channel::Push, to.push.is_some()),
                (Channel::Chat, to.chat.is_some()),
                (Channel::Webhook, to.webhook.is_some()),
                (Channel::Inbox, to.user.is_some()),
            ] {
                // From a contact, only the channels this gateway can send on.
                let usable = !derived.contains(&c) || ctx.channels_available.contains(&c);
                if present && usable {
                    channels.push(c);
                    if derived.contains(&c) {
                        soft.push(c);
                    }
                }
            }
        }
    }
    let mut deliveries = Vec::new();
    for (i, c) in channels.iter().enumerate() {
        let field = if req.channels.is_some() {
            format!("channels[{i}]")
        } else {
            "channels".to_string()
        };
        if !ctx.channels_available.contains(c) {
            err(
                &field,
                format!("no provider is configured for channel `{c}`"),
            );
            continue;
        }
        let (addr_field, addr) = address(to, *c);
        match addr {
            Some(a) => deliveries.push(NewDelivery {
                id: new_id("dlv"),
                channel: *c,
                to: a,
                content: None,
                skip: None,
            }),
            None => err(addr_field, format!("is required for channel `{c}`")),
        }
    }

    // A single-channel message may degrade to the channels `[degrade]` lists for it, where
    // the message has an address and the gateway a provider: they wait as failover channels.
    // Push targets come from a contact: a message cannot name subscriptions itself yet.
    if deliveries.iter().any(|d| d.channel == Channel::Push) && !derived.contains(&Channel::Push) {
        err(
            "to.push",
            "push goes to the subscriptions of the contact in `to.user`; a message cannot name push targets itself".into(),
        );
    }
    let primary = deliveries.len();
    let mut strategy = strategy;
    if channels.len() == 1 && deliveries.len() == 1 {
        for fb in ctx.degrade.get(&channels[0]).into_iter().flatten() {
            if let (true, (_, Some(a))) = (ctx.channels_available.contains(fb), address(to, *fb))
                && !deliveries.iter().any(|d: &NewDelivery| d.channel == *fb)
                && (*fb != Channel::Push || derived.contains(&Channel::Push))
            {
                deliveries.push(NewDelivery {
                    id: new_id("dlv"),
                    channel: *fb,
                    to: a,
                    content: None,
                    skip: None,
                });
            }
        }
        if deliveries.len() > 1 {
            strategy = Strategy::Failover;
        }
    }

    // Content: exactly one of template or content.
    let content = match (&req.template, &req.content) {
        (Some(_), Some(_)) => {
            err(
                "template",
                "give either `template` or `content`, not both".into(),
            );
            Content::default()
        }
        (None, None) => {
            err("content", "give `content` or a `template`".into());
            Content::default()
        }
        (Some(t), None) => {
            match ctx.templates.get(t) {
                None => err("template", format!("unknown template `{}`", truncate(t))),
                Some(tc) => {
                    let params = req.params.clone().unwrap_or_default();
                    // An SMS or voice part may be only a provider's own template (Aliyun
                    // TemplateCode, VMS TtsCode).
                    let by_code = |p: &Option<crate::templates::SmsPart>| {
                        p.as_ref().is_some_and(|s| !s.provider_templates.is_empty())
                    };
                    let (sms_by_code, voice_by_code) = (by_code(&tc.sms), by_code(&tc.voice));
                    let mut keep = vec![true; deliveries.len()];
                    for (i, d) in deliveries.iter_mut().enumerate() {
                        let fallback = i >= primary || soft.contains(&d.channel);
                        let chat_kind = (d.channel == Channel::Chat)
                            .then(|| ctx.chat_targets.get(&d.to).copied())
                            .flatten();
                        match ctx.templates.render_for(t, d.channel, &params, chat_kind) {
                            Ok(c) if fallback && !content_suits(&c, d.channel) => keep[i] = false,
                            Ok(c) => {
                                let coded = match d.channel {
                                    Channel::Sms => sms_by_code,
                                    Channel::Voice => voice_by_code,
                                    _ => false,
                                };
                                if !(coded && c.text.is_none()) {
                                    check_content(&c, &[d.channel], &mut err);
                                }
                                d.content = Some(c);
                            }
                            Err(_) if fallback => keep[i] = false,
                            Err(m) => err("params", m),
                        }
                    }
                    let mut k = keep.iter();
                    deliveries.retain(|_| k.next().copied().unwrap_or(true));
                }
            }
            Content::default()
        }
        (None, Some(c)) => {
            let content = Content {
                subject: c.subject.clone(),
                text: c.text.clone(),
                html: c.html.clone(),
                markdown: c.markdown.clone(),
            };
            let strict: Vec<Channel> = channels
                .iter()
                .copied()
                .filter(|c| !soft.contains(c))
                .collect();
            check_content(&content, &strict, &mut err);
            let mut i = 0;
            deliveries.retain(|d| {
                i += 1;
                (i <= primary && !soft.contains(&d.channel)) || content_suits(&content, d.channel)
            });
            content
        }
    };
    if req.params.is_some() && req.template.is_none() {
        err("params", "only used with `template`".into());
    }

    // Time: send_at, then ttl or expires_at counted from the send time.
    let mut send_at = ctx.now;
    if let Some(s) = &req.send_at {
        match parse_rfc3339(s) {
            Ok(t) => send_at = t.max(ctx.now),
            Err(m) => err("send_at", m),
        }
    }
    // What the sender asked for: `expires_at` is checked against it, not a quiet-hours delay.
    let asked_send_at = send_at;
    // The contact's preferences: opt-outs skip deliveries, quiet hours move the send time
    // (before the TTL is counted from it).
    let template_category = req
        .template
        .as_deref()
        .and_then(|t| ctx.templates.get(t))
        .and_then(|t| t.category.as_deref());
    let category = super::resolve::category(req.metadata.as_ref(), template_category)
        .unwrap_or_else(|m| {
            err("metadata.category", m);
            None
        });
    if let Some(c) = ctx.contact {
        super::resolve::apply_opt_outs(&mut deliveries, c, category.as_deref(), priority);
        send_at = super::resolve::send_at(send_at, &deliveries, c, priority);
    }
    let expires_at = match (&req.ttl, &req.expires_at) {
        (Some(_), Some(_)) => {
            err("ttl", "give either `ttl` or `expires_at`, not both".into());
            send_at
        }
        (Some(t), None) => match crate::config::Dur::parse(t) {
            Ok(d) if d.0 < Duration::from_millis(1) => {
                err("ttl", "must be at least 1ms".into());
                send_at
            }
            Ok(d) if d.0 > MAX_TTL => {
                err("ttl", "must be at most 30 days".into());
                send_at
            }
            Ok(d) => send_at.saturating_add(d.0.as_millis() as i64),
            Err(m) => {
                err("ttl", m);
                send_at
            }
        },
        (None, Some(e)) => match parse_rfc3339(e) {
            Ok(t) if t <= asked_send_at => {
                err(
                    "expires_at",
                    "must be later than now and than send_at".into(),
                );
                t
            }
            Ok(t) if t - asked_send_at > MAX_TTL.as_millis() as i64 => {
                err("expires_at", "must be within 30 days of send_at".into());
                t
            }
            Ok(t) => t,
            Err(m) => {
                err("expires_at", m);
                send_at
            }
        },
        (None, None) => send_at + DEFAULT_TTL.as_millis() as i64,
    };
    if send_at - ctx.now > 365 * 86_400_000 {
        err("send_at", "must be within a year".into());
    }

    let metadata = req.metadata.unwrap_or_default();
    if metadata.len() > MAX_METADATA_KEYS {
        err("metadata", format!("at most {MAX_METADATA_KEYS} keys"));
    }
    if serde_json::to_vec(&metadata)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
        > MAX_METADATA_BYTES
    {
        err("metadata", format!("at most {MAX_METADATA_BYTES} bytes"));
    }
    for k in metadata.keys() {
        if k.is_empty() || k.len() > 128 {
            err("metadata", "keys must be 1 to 128 characters".into());
            break;
        }
    }

    if !errs.is_empty() {
        return Err(errs);
    }
    let recipient_limits = if priority == Priority::Critical {
        Vec::new()
    } else {
        deliveries
            .iter()
            .take(primary)
            .filter_map(|d| {
                ctx.recipient_limits
                    .get(&d.channel)
                    .map(|rates| RecipientLimit {
                        channel: d.channel,
                        to: d.to.clone(),
                        rates: rates.clone(),
                    })
            })
            .collect()
    };
    Ok(NewMessage {
        recipient_limits,
        id: new_id("msg"),
        priority,
        strategy,
        created_at: ctx.now,
        send_at,
        expires_at,
        content,
        template: req.template,
        params: req.params,
        metadata,
        deliveries,
        idempotency: idem,
        sender: ctx.sender.to_string(),
        trace: None,
    })
}

fn parse_enum<T: std::str::FromStr<Err = String>>(
    v: Option<&str>,
    field: &str,
    err: &mut impl FnMut(&str, String),
) -> Option<T> {
    let v = v?;
    match v.parse() {
        Ok(t) => Some(t),
        Err(m) => {
            err(field, m);
            None
        }
    }
}

fn check_opt(
    v: &Option<String>,
    field: &str,
    check: fn(&str) -> Result<(), String>,
    err: &mut impl FnMut(&str, String),
) {
    if let Some(s) = v
        && let Err(m) = check(s)
    {
        err(field, m);
    }
}

fn check_content(c: &Content, channels: &[Channel], err: &mut impl FnMut(&str, String)) {
    for (name, v, max) in [
        ("content.subject", &c.subject, MAX_SUBJECT),
        ("content.text", &c.text, MAX_TEXT),
        ("content.html", &c.html, MAX_TEXT),
    ] {
        if let Some(s) = v {
            if s.len() > max {
                err(name, format!("at most {max} bytes"));
            }
            if name == "content.subject" && s.contains(['\r', '\n']) {
                err(name, "must be one line".into());
            }
        }
    }
    let nonempty = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    for ch in channels {
        let ok = match ch {
            Channel::Email => nonempty(&c.subject) && (nonempty(&c.text) || nonempty(&c.html)),
            Channel::Sms | Channel::Voice | Channel::Push => nonempty(&c.text),
            Channel::Chat => nonempty(&c.text) || nonempty(&c.markdown),
            Channel::Inbox => nonempty(&c.text) || nonempty(&c.subject),
            Channel::Webhook => nonempty(&c.text) || nonempty(&c.subject) || nonempty(&c.html),
        };
        if !ok {
            let need = match ch {
                Channel::Email => "`subject` and `text` or `html`",
                Channel::Inbox => "`text` or `subject`",
                Channel::Webhook => "`text`, `subject` or `html`",
                Channel::Chat => "`text` or `markdown`",
                _ => "`text`",
            };
            err("content", format!("channel `{ch}` needs {need}"));
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests;
