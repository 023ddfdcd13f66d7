//! `herald contacts list|get|put|patch|delete`: the contact directory over the API.

use super::ClientArgs;
use super::client::{Client, path_segment, print, query, read_json};
use anyhow::{Context, Result};
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

#[derive(Subcommand, Debug)]
pub enum ContactsCmd {
    /// List contacts by id (sender).
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one contact (sender).
    Get {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create or replace a contact from a JSON document, a file or `-` for stdin (operator).
    Put {
        file: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change some fields with a JSON merge patch, a file or `-` (operator).
    Patch {
        id: String,
        file: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a contact (operator).
    Delete {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn one(id: &str) -> String {
    format!("/v1/contacts/{}", path_segment(id))
}

pub async fn run(cmd: ContactsCmd) -> Result<()> {
    let (client, method, path, body) = match cmd {
        ContactsCmd::List {
            limit,
            after,
            client,
        } => {
            let q = query(&[("limit", Some(limit.to_string())), ("after", after)]);
            (client, Method::GET, format!("/v1/contacts{q}"), None)
        }
        ContactsCmd::Get { id, client } => (client, Method::GET, one(&id), None),
        ContactsCmd::Put { file, client } => {
            let doc = read_json(&file, "the contact")?;
            let id = doc
                .get("id")
                .and_then(Value::as_str)
                .context("the contact needs its `id`")?
                .to_string();
            (client, Method::PUT, one(&id), Some(doc))
        }
        ContactsCmd::Patch { id, file, client } => {
            let patch = read_json(&file, "the patch")?;
            (client, Method::PATCH, one(&id), Some(patch))
        }
        ContactsCmd::Delete { id, client } => {
            let c = Client::new(&client)?;
            c.call(Method::DELETE, &one(&id), None, &[]).await?;
            crate::cli::out(format!("deleted {id}"));
            return Ok(());
        }
    };
    let c = Client::new(&client)?;
    print(&c.call(method, &path, body, &[]).await?);
    Ok(())
}
