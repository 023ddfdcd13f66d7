//! `herald approvals list|get|approve|reject|review` and `herald audit list|verify`, over
//! the API.

use super::ClientArgs;
use super::client::{Client, path_segment, print, query};
use anyhow::{Result, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum ApprovalsCmd {
    /// Approval requests, newest first (viewer).
    List {
        /// pending, approved, executed, failed, rejected or expired
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One request (viewer).
    Get {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve another key's request: it executes once (a key with the approver right).
    Approve {
        id: String,
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reject a request, or withdraw your own.
    Reject {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Mark an act another key did alone (break-glass) as reviewed.
    Review {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// The audit log, newest first (viewer).
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check the audit log's hash chain; exits 1 when an entry was edited, removed or
    /// reordered.
    Verify {
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn approvals(cmd: ApprovalsCmd) -> Result<()> {
    let one = |id: &str, verb: &str| format!("/v1/approvals/{}/{verb}", path_segment(id));
    let (client, method, path, body) = match cmd {
        ApprovalsCmd::List {
            status,
            limit,
            after,
            client,
        } => (
            client,
            Method::GET,
            format!(
                "/v1/approvals{}",
                query(&[
                    ("status", status),
                    ("limit", Some(limit.to_string())),
                    ("after", after)
                ])
            ),
            None,
        ),
        ApprovalsCmd::Get { id, client } => (
            client,
            Method::GET,
            format!("/v1/approvals/{}", path_segment(&id)),
            None,
        ),
        ApprovalsCmd::Approve { id, note, client } => (
            client,
            Method::POST,
            one(&id, "approve"),
            Some(json!({ "note": note })),
        ),
        ApprovalsCmd::Reject { id, reason, client } => (
            client,
            Method::POST,
            one(&id, "reject"),
            Some(json!({ "reason": reason })),
        ),
        ApprovalsCmd::Review { id, client } => (client, Method::POST, one(&id, "review"), None),
    };
    print(&Client::new(&client)?.call(method, &path, body, &[]).await?);
    Ok(())
}

pub async fn audit(cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::List {
            limit,
            after,
            client,
        } => {
            let path = format!(
                "/v1/audit{}",
                query(&[("limit", Some(limit.to_string())), ("after", after)])
            );
            print(
                &Client::new(&client)?
                    .call(Method::GET, &path, None, &[])
                    .await?,
            );
            Ok(())
        }
        AuditCmd::Verify { client } => {
            let v = Client::new(&client)?
                .call(Method::GET, "/v1/audit/verify", None, &[])
                .await?;
            print(&v);
            if v.get("ok") != Some(&Value::Bool(true)) {
                let why = v
                    .pointer("/broken/reason")
                    .and_then(Value::as_str)
                    .unwrap_or("the chain does not verify");
                let id = v.pointer("/broken/id").cloned().unwrap_or(Value::Null);
                bail!("audit log tampered with at entry {id}: {why}");
            }
            Ok(())
        }
    }
}
