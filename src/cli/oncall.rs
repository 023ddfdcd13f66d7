//! `herald oncall …`: schedules and escalation policies over the API (list, get, put,
//! delete), who is on call (`who SCHEDULE [--at]`), and `herald apply FILE`, which upserts
//! the contacts, schedules and policies of one JSON file in that order.

use super::ClientArgs;
use super::client::{Client, path_segment, print, query, read_json};
use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Schedule,
    Policy,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Schedule => "/v1/schedules",
            Kind::Policy => "/v1/escalation-policies",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum OncallCmd {
    /// List schedules or policies by id (viewer).
    List {
        kind: Kind,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one schedule or policy (viewer).
    Get {
        kind: Kind,
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create or replace one from a JSON document with its `id`, a file or `-` (operator).
    Put {
        kind: Kind,
        file: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete one (operator; refused while a policy or route still names it).
    Delete {
        kind: Kind,
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Who a schedule has on call now, or at `--at` (RFC 3339).
    Who {
        schedule: String,
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn id_of(doc: &Value, what: &str) -> Result<String> {
    doc["id"]
        .as_str()
        .map(String::from)
        .with_context(|| format!("{what} has no `id`"))
}

pub async fn run(cmd: OncallCmd) -> Result<()> {
    let (client, method, path, body) = match cmd {
        OncallCmd::List {
            kind,
            limit,
            after,
            client,
        } => {
            let q = query(&[("limit", Some(limit.to_string())), ("after", after)]);
            (client, Method::GET, format!("{}{q}", kind.path()), None)
        }
        OncallCmd::Get { kind, id, client } => (
            client,
            Method::GET,
            format!("{}/{}", kind.path(), path_segment(&id)),
            None,
        ),
        OncallCmd::Put { kind, file, client } => {
            let doc = read_json(&file, &file)?;
            let id = id_of(&doc, &file)?;
            (
                client,
                Method::PUT,
                format!("{}/{}", kind.path(), path_segment(&id)),
                Some(doc),
            )
        }
        OncallCmd::Delete { kind, id, client } => (
            client,
            Method::DELETE,
            format!("{}/{}", kind.path(), path_segment(&id)),
            None,
        ),
        OncallCmd::Who {
            schedule,
            at,
            client,
        } => {
            let q = query(&[("at", at)]);
            let p = format!("/v1/schedules/{}/on-call{q}", path_segment(&schedule));
            (client, Method::GET, p, None)
        }
    };
    let c = Client::new(&client)?;
    print(&c.call(method, &path, body, &[]).await?);
    Ok(())
}

/// `herald apply FILE`: `{"contacts": [...], "schedules": [...], "escalation_policies": [...]}`,
/// each document with its `id`, upserted in that order (schedules name contacts, policies
/// name both). Stops at the first refusal, naming the document.
pub async fn apply(file: &str, client: &ClientArgs) -> Result<()> {
    let doc = read_json(file, file)?;
    let Some(obj) = doc.as_object() else {
        bail!("{file}: must be a JSON object with contacts, schedules and escalation_policies");
    };
    for k in obj.keys() {
        if !["contacts", "schedules", "escalation_policies"].contains(&k.as_str()) {
            bail!("{file}: unknown key `{k}` (contacts, schedules, escalation_policies)");
        }
    }
    let c = Client::new(client)?;
    let mut done = Vec::new();
    for (key, path) in [
        ("contacts", "/v1/contacts"),
        ("schedules", "/v1/schedules"),
        ("escalation_policies", "/v1/escalation-policies"),
    ] {
        let items = match doc.get(key) {
            None => continue,
            Some(Value::Array(a)) => a.clone(),
            Some(_) => bail!("{file}: `{key}` must be a list"),
        };
        for (i, item) in items.into_iter().enumerate() {
            let id = id_of(&item, &format!("{key}[{i}]"))?;
            let r = c
                .call(
                    Method::PUT,
                    &format!("{path}/{}", path_segment(&id)),
                    Some(item),
                    &[],
                )
                .await
                .with_context(|| format!("{key}[{i}] (`{id}`)"))?;
            done.push(json!({"kind": key, "id": id, "version": r["version"]}));
        }
    }
    print(&json!({"applied": done}));
    Ok(())
}
