//! Client commands: `send`, `messages get|list`, `dlq list|replay`.

use super::ClientArgs;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

#[derive(Args, Debug)]
pub struct SendArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The whole request body as JSON, from a file or `-` for stdin (other flags are ignored).
    #[arg(long)]
    pub json: Option<String>,
    #[arg(long)]
    pub to_user: Option<String>,
    #[arg(long)]
    pub to_webhook: Option<String>,
    #[arg(long)]
    pub to_email: Option<String>,
    #[arg(long)]
    pub to_phone: Option<String>,
    /// Channel, in order of preference (repeatable).
    #[arg(long = "channel")]
    pub channels: Vec<String>,
    #[arg(long)]
    pub subject: Option<String>,
    #[arg(long)]
    pub text: Option<String>,
    #[arg(long)]
    pub html: Option<String>,
    #[arg(long)]
    pub priority: Option<String>,
    #[arg(long)]
    pub ttl: Option<String>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum MessagesCmd {
    /// Show one message with its deliveries and attempts.
    Get {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List messages, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum DlqCmd {
    /// List dead letters.
    List {
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Re-queue dead letters: by id, `--all`, or every one of a channel (`--channel sms`).
    Replay {
        ids: Vec<String>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        channel: Option<String>,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Count what would be replayed, by channel, and replay nothing.
        #[arg(long)]
        dry_run: bool,
        /// Act alone on a replay that needs a second person (flagged for review).
        #[arg(long)]
        break_glass: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProvidersCmd {
    /// Each provider's state, circuit, success rate and latency.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take a provider out of service.
    Disable {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        end: SwitchEnd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Put a provider back in service.
    Enable {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModeCmd {
    /// Show the mode, who set it and why.
    Get {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Switch the mode: normal, core_only or read_only.
    Set {
        mode: String,
        #[arg(long)]
        reason: String,
        /// Act alone on a switch that needs a second person (flagged for review).
        #[arg(long)]
        break_glass: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// When a provider switch ends by itself, and acting alone on a critical one.
#[derive(clap::Args, Debug, Default)]
pub struct SwitchEnd {
    /// Ends after this long (`30m`, `2h`).
    #[arg(long = "for", conflicts_with = "until")]
    pub for_: Option<String>,
    /// Ends at this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Act alone on a switch that needs a second person (flagged for review).
    #[arg(long)]
    pub break_glass: bool,
}

impl SwitchEnd {
    fn body(&self, reason: &str) -> serde_json::Value {
        let mut b = json!({ "reason": reason });
        if let Some(f) = &self.for_ {
            b["for"] = json!(f);
        }
        if let Some(u) = &self.until {
            b["until"] = json!(u);
        }
        if self.break_glass {
            b["break_glass"] = json!(crate::core::approval::BREAK_GLASS);
        }
        b
    }
}

pub(super) fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn providers(cmd: ProvidersCmd) -> Result<()> {
    let (client, method, path, body) = match cmd {
        ProvidersCmd::List { client } => (
            client,
            reqwest::Method::GET,
            "/v1/providers".to_string(),
            None,
        ),
        ProvidersCmd::Disable {
            id,
            reason,
            end,
            client,
        } => (
            client,
            reqwest::Method::POST,
            format!("/v1/providers/{}/disable", path_segment(&id)),
            Some(end.body(&reason)),
        ),
        ProvidersCmd::Enable { id, reason, client } => (
            client,
            reqwest::Method::POST,
            format!("/v1/providers/{}/enable", path_segment(&id)),
            Some(json!({ "reason": reason })),
        ),
    };
    print(&Client::new(&client)?.call(method, &path, body, &[]).await?);
    Ok(())
}

pub async fn mode(cmd: ModeCmd) -> Result<()> {
    let (client, method, body) = match cmd {
        ModeCmd::Get { client } => (client, reqwest::Method::GET, None),
        ModeCmd::Set {
            mode,
            reason,
            break_glass,
            client,
        } => {
            let mut b = json!({ "mode": mode, "reason": reason });
            if break_glass {
                b["break_glass"] = json!(crate::core::approval::BREAK_GLASS);
            }
            (client, reqwest::Method::PUT, Some(b))
        }
    };
    print(
        &Client::new(&client)?
            .call(method, "/v1/mode", body, &[])
            .await?,
    );
    Ok(())
}

pub(crate) struct Client {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Client {
    pub(crate) fn new(a: &ClientArgs) -> Result<Self> {
        let key = a
            .api_key
            .clone()
            .filter(|k| !k.is_empty())
            .context("no API key: set HERALD_API_KEY or pass --api-key")?;
        crate::tls::init();
        Ok(Client {
            base: a.url.trim_end_matches('/').to_string(),
            key,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
        })
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.key);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let detail = value.get("detail").and_then(Value::as_str).unwrap_or("");
            let code = value.get("code").and_then(Value::as_str).unwrap_or("");
            bail!(
                "HTTP {} {code}: {detail} {}",
                status.as_u16(),
                value
                    .get("errors")
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            );
        }
        Ok(value)
    }
}

pub(super) fn print(v: &Value) {
    crate::cli::out(serde_json::to_string_pretty(v).unwrap_or_default());
}

pub(super) fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            s.append_pair(k, v);
        }
    }
    let q = s.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

/// A JSON document from a file, or stdin for `-`; `what` names it in errors.
pub(super) fn read_json(src: &str, what: &str) -> Result<Value> {
    let text = if src == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(src).with_context(|| format!("cannot read {src}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{what} is not valid JSON"))
}

pub async fn send(a: SendArgs) -> Result<()> {
    let c = Client::new(&a.client)?;
    let body = match &a.json {
        Some(src) => read_json(src, "--json")?,
        None => {
            let mut to = Map::new();
            for (k, v) in [
                ("user", &a.to_user),
                ("webhook", &a.to_webhook),
                ("email", &a.to_email),
                ("phone", &a.to_phone),
            ] {
                if let Some(v) = v {
                    to.insert(k.into(), json!(v));
                }
            }
            let mut content = Map::new();
            for (k, v) in [
                ("subject", &a.subject),
                ("text", &a.text),
                ("html", &a.html),
            ] {
                if let Some(v) = v {
                    content.insert(k.into(), json!(v));
                }
            }
            let mut b = json!({ "to": to, "content": content });
            if !a.channels.is_empty() {
                b["channels"] = json!(a.channels);
            }
            if let Some(p) = &a.priority {
                b["priority"] = json!(p);
            }
            if let Some(t) = &a.ttl {
                b["ttl"] = json!(t);
            }
            b
        }
    };
    let headers: Vec<(&str, String)> = a
        .idempotency_key
        .iter()
        .map(|k| ("idempotency-key", k.clone()))
        .collect();
    print(
        &c.call(reqwest::Method::POST, "/v1/messages", Some(body), &headers)
            .await?,
    );
    Ok(())
}

pub async fn messages(cmd: MessagesCmd) -> Result<()> {
    match cmd {
        MessagesCmd::Get { id, client } => {
            let c = Client::new(&client)?;
            let path = format!("/v1/messages/{}", path_segment(&id));
            print(&c.call(reqwest::Method::GET, &path, None, &[]).await?);
        }
        MessagesCmd::List {
            status,
            channel,
            limit,
            after,
            client,
        } => {
            let c = Client::new(&client)?;
            let q = query(&[
                ("status", status),
                ("channel", channel),
                ("limit", Some(limit.to_string())),
                ("after", after),
            ]);
            print(
                &c.call(reqwest::Method::GET, &format!("/v1/messages{q}"), None, &[])
                    .await?,
            );
        }
    }
    Ok(())
}

pub async fn dlq(cmd: DlqCmd) -> Result<()> {
    match cmd {
        DlqCmd::List {
            channel,
            limit,
            after,
            client,
        } => {
            let c = Client::new(&client)?;
            let q = query(&[
                ("channel", channel),
                ("limit", Some(limit.to_string())),
                ("after", after),
            ]);
            print(
                &c.call(
                    reqwest::Method::GET,
                    &format!("/v1/dead-letters{q}"),
                    None,
                    &[],
                )
                .await?,
            );
        }
        DlqCmd::Replay {
            ids,
            all,
            channel,
            reason,
            dry_run,
            break_glass,
            client,
        } => {
            let c = Client::new(&client)?;
            // `--channel sms` alone means every dead letter of that channel.
            let mut body = match (ids.is_empty(), all, channel) {
                (false, false, None) => json!({ "ids": ids }),
                (true, _, Some(ch)) => json!({ "all": true, "channel": ch }),
                (true, true, None) => json!({ "all": true }),
                _ => bail!(
                    "give message ids, or --all, or --channel CHANNEL (every dead letter of it)"
                ),
            };
            if let Some(r) = reason {
                body["reason"] = json!(r);
            }
            if dry_run {
                body["dry_run"] = json!(true);
            }
            if break_glass {
                body["break_glass"] = json!(crate::core::approval::BREAK_GLASS);
            }
            print(
                &c.call(
                    reqwest::Method::POST,
                    "/v1/dead-letters/replay",
                    Some(body),
                    &[],
                )
                .await?,
            );
        }
    }
    Ok(())
}
