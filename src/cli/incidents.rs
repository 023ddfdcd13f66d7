//! `herald incidents list|get|ack|resolve|escalate|snooze|stats`: incidents over the API.

use super::ClientArgs;
use super::client::{Client, path_segment, print, query};
use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum IncidentsCmd {
    /// List incidents, newest first (viewer).
    List {
        /// triggered, acknowledged or resolved
        #[arg(long)]
        status: Option<String>,
        /// P0, P1, P2 or P3
        #[arg(long)]
        severity: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// `next_after` of the previous page
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one incident with its occurrences, messages and timeline (viewer).
    Get {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Acknowledge an incident (operator).
    Ack {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Page the next escalation step now (operator).
    Escalate {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Acknowledge and hold the escalation for a while (operator), e.g. `--for 1h`.
    Snooze {
        id: String,
        #[arg(long = "for", value_parser = crate::config::Dur::parse)]
        duration: crate::config::Dur,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// MTTA/MTTR percentiles for a period (RFC 3339; default the last 30 days).
    Stats {
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resolve an incident (operator); its people get the resolved notice.
    Resolve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn act(id: &str, what: &str, reason: Option<String>) -> (String, Option<Value>) {
    (
        format!("/v1/incidents/{}/{what}", path_segment(id)),
        Some(json!({"reason": reason.unwrap_or_default()})),
    )
}

pub async fn run(cmd: IncidentsCmd) -> Result<()> {
    let (client, method, path, body) = match cmd {
        IncidentsCmd::List {
            status,
            severity,
            service,
            limit,
            after,
            client,
        } => {
            let q = query(&[
                ("status", status),
                ("severity", severity),
                ("service", service),
                ("limit", Some(limit.to_string())),
                ("after", after),
            ]);
            (client, Method::GET, format!("/v1/incidents{q}"), None)
        }
        IncidentsCmd::Get { id, client } => (
            client,
            Method::GET,
            format!("/v1/incidents/{}", path_segment(&id)),
            None,
        ),
        IncidentsCmd::Ack { id, reason, client } => {
            let (p, b) = act(&id, "acknowledge", reason);
            (client, Method::POST, p, b)
        }
        IncidentsCmd::Resolve { id, reason, client } => {
            let (p, b) = act(&id, "resolve", reason);
            (client, Method::POST, p, b)
        }
        IncidentsCmd::Escalate { id, reason, client } => {
            let (p, b) = act(&id, "escalate", reason);
            (client, Method::POST, p, b)
        }
        IncidentsCmd::Snooze {
            id,
            duration,
            reason,
            client,
        } => {
            let (p, _) = act(&id, "snooze", None);
            let body = json!({"duration_seconds": duration.0.as_secs(), "reason": reason.unwrap_or_default()});
            (client, Method::POST, p, Some(body))
        }
        IncidentsCmd::Stats {
            since,
            until,
            client,
        } => {
            let q = query(&[("since", since), ("until", until)]);
            (client, Method::GET, format!("/v1/incidents/stats{q}"), None)
        }
    };
    let c = Client::new(&client)?;
    print(&c.call(method, &path, body, &[]).await?);
    Ok(())
}
