//! The `inbox` channel: delivering is storing the message for `to.user`, and announcing it
//! to the user's open event streams.

use super::{Provider, Receipt, SendError};
use crate::core::types::{Channel, new_id, now_millis};
use crate::store::{Claimed, Inbox, InboxItem};
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::broadcast;

pub struct InboxProvider {
    store: Arc<dyn Inbox>,
    events: broadcast::Sender<InboxItem>,
}

impl InboxProvider {
    pub fn new(store: Arc<dyn Inbox>, events: broadcast::Sender<InboxItem>) -> Self {
        InboxProvider { store, events }
    }
}

#[async_trait]
impl Provider for InboxProvider {
    fn id(&self) -> &str {
        "inbox"
    }
    fn kind(&self) -> &'static str {
        "inbox"
    }
    fn channel(&self) -> Channel {
        Channel::Inbox
    }
    async fn send(&self, m: &Claimed) -> Result<Receipt, SendError> {
        let item = InboxItem {
            id: new_id("inb"),
            user: m.to.clone(),
            message_id: m.message_id.clone(),
            delivery_id: m.lease.delivery_id.clone(),
            content: m.content.clone(),
            metadata: m.metadata.clone(),
            created_at: now_millis(),
            read_at: None,
        };
        self.store
            .inbox_put(item.clone())
            .await
            .map_err(|e| SendError::Transient {
                code: "storage_unavailable".into(),
                detail: e.to_string(),
                retry_after: None,
            })?;
        let id = item.id.clone();
        let _ = self.events.send(item); // no listener is fine
        Ok(Receipt {
            provider_message_id: Some(id),
        })
    }
}
