//! A message as accepted: validated, with its id and deliveries fixed before it is stored.

use super::types::{Channel, Millis, Priority, Strategy};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What is sent: the same for every channel until templates render per channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Content {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Chat robots that take markdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markdown: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDelivery {
    pub id: String,
    pub channel: Channel,
    pub to: String,
    /// The template rendered for this channel; `None`: the message's own content.
    pub content: Option<Content>,
    /// Not to be made, and why (a contact's opt-out): stored as `skipped` with this note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<SkipNote>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkipNote {
    pub code: String,
    pub detail: String,
}

/// An idempotency key with the hash of the body it was first used with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Idempotency {
    /// Keys are scoped per API key: two callers may use the same key.
    pub scope: String,
    pub key: String,
    pub body_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    pub id: String,
    pub priority: Priority,
    pub strategy: Strategy,
    pub created_at: Millis,
    pub send_at: Millis,
    pub expires_at: Millis,
    pub content: Content,
    pub template: Option<String>,
    pub params: Option<Map<String, Value>>,
    pub metadata: Map<String, Value>,
    pub deliveries: Vec<NewDelivery>,
    pub idempotency: Option<Idempotency>,
    /// Name of the API key that sent it.
    pub sender: String,
    /// Per-recipient limits to check when storing (none for `critical`).
    pub recipient_limits: Vec<RecipientLimit>,
    /// The W3C `traceparent` of the span that accepted it: its deliveries' spans hang off
    /// it, whichever node makes them and however late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl NewMessage {
    /// The `body` column both backends store: what a delivery needs of the message.
    pub fn stored_body(&self) -> Value {
        let mut body = serde_json::json!({
            "content": self.content,
            "template": self.template,
            "params": self.params,
            "metadata": self.metadata,
        });
        if let Some(t) = &self.trace {
            body["trace"] = Value::String(t.clone());
        }
        body
    }

    /// The status it starts with: `queued`, or `cancelled` when every delivery is skipped.
    pub fn initial_status(&self) -> super::types::MessageStatus {
        super::progress::message_status(&self.initial_statuses())
    }

    /// Statuses its deliveries start with (skipped ones included).
    pub fn initial_statuses(&self) -> Vec<super::types::DeliveryStatus> {
        let skipped: Vec<bool> = self.deliveries.iter().map(|d| d.skip.is_some()).collect();
        super::progress::initial(self.strategy, &skipped)
    }
}

/// "No more than `rates` messages to `to` on `channel`": checked in the same transaction
/// that stores the message, so concurrent sends cannot both slip through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipientLimit {
    pub channel: Channel,
    pub to: String,
    pub rates: Vec<crate::config::Rate>,
}
