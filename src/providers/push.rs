//! What the push providers (Web Push, FCM, APNs) share: the delivery's target (the
//! contact's devices, fixed at accept), the notification a device shows, how the outcomes
//! of several devices make one, and taking devices the service says are gone off the contact.

use crate::core::contact::{Contact, PushTarget};
use crate::core::types::now_millis;
use crate::providers::{Receipt, SendError};
use crate::store::{Claimed, Contacts, Expect};
use std::sync::Arc;

/// The contact's devices this delivery goes to.
pub fn target(m: &Claimed) -> Result<PushTarget, SendError> {
    serde_json::from_str(&m.to).map_err(|_| SendError::Rejected {
        code: "bad_push_target".into(),
        detail: "push targets come from a contact's devices".into(),
    })
}

/// What a device shows: a title (the subject, else the start of the text), a body and a tag
/// (the message's `metadata.collapse_key`, else its id) that replaces an earlier one.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub title: String,
    pub body: String,
    pub tag: String,
    pub collapse_key: Option<String>,
}

impl Notification {
    pub fn of(m: &Claimed) -> Notification {
        let cut = |s: &str, n: usize| s.chars().take(n).collect::<String>();
        let collapse_key = m
            .metadata
            .get("collapse_key")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(String::from);
        Notification {
            title: m
                .content
                .subject
                .as_deref()
                .or(m.content.text.as_deref())
                .map(|t| cut(t, 120))
                .unwrap_or_else(|| "Herald".into()),
            body: m.content.text.clone().unwrap_or_default(),
            tag: collapse_key
                .as_deref()
                .map(|t| cut(t, 32))
                .unwrap_or_else(|| m.message_id.clone()),
            collapse_key,
        }
    }
}

/// One outcome from the outcomes of a contact's devices: sent when any device took it;
/// else the first transient failure (retrying may still reach one), else the first failure.
#[derive(Default)]
pub struct Outcomes {
    sent: Option<Option<String>>,
    worst: Option<SendError>,
}

impl Outcomes {
    pub fn add(&mut self, r: Result<Option<String>, SendError>) {
        match r {
            Ok(id) => {
                if self.sent.is_none() {
                    self.sent = Some(id);
                }
            }
            Err(e) => {
                let transient = |x: &SendError| matches!(x, SendError::Transient { .. });
                if self
                    .worst
                    .as_ref()
                    .is_none_or(|w| !transient(w) && transient(&e))
                {
                    self.worst = Some(e);
                }
            }
        }
    }

    pub fn finish(self, none: &str) -> Result<Receipt, SendError> {
        match (self.sent, self.worst) {
            (Some(id), _) => Ok(Receipt {
                provider_message_id: id,
            }),
            (None, Some(e)) => Err(e),
            (None, None) => Err(SendError::Recipient {
                code: "no_push_device".into(),
                detail: none.into(),
            }),
        }
    }
}

/// Takes devices off the contact with `drop` (which says whether it changed anything),
/// audited as `system`, retrying when the contact changes meanwhile.
pub async fn forget(
    store: Option<&Arc<dyn Contacts>>,
    contact: &str,
    what: &str,
    drop: impl Fn(&mut Contact) -> bool,
) {
    let Some(store) = store else { return };
    for _ in 0..5 {
        let Ok(Some(rec)) = store.get_contact(contact).await else {
            return;
        };
        let mut c = rec.contact.clone();
        if !drop(&mut c) {
            return;
        }
        match store
            .put_contact(c, Expect::Version(rec.version), "system", now_millis())
            .await
        {
            Ok(Some(_)) => {
                tracing::info!(
                    contact,
                    what,
                    "push devices gone at the push service removed"
                );
                return;
            }
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(contact, error = %e, "cannot remove gone push devices");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(code: &str) -> SendError {
        SendError::Transient {
            code: code.into(),
            detail: String::new(),
            retry_after: None,
        }
    }
    fn r(code: &str) -> SendError {
        SendError::Recipient {
            code: code.into(),
            detail: String::new(),
        }
    }

    #[test]
    fn one_outcome_from_many_devices() {
        let mut o = Outcomes::default();
        o.add(Err(r("gone")));
        o.add(Ok(Some("id-1".into())));
        o.add(Ok(Some("id-2".into())));
        assert_eq!(
            o.finish("").unwrap().provider_message_id.as_deref(),
            Some("id-1")
        );

        let mut o = Outcomes::default();
        o.add(Err(r("gone")));
        o.add(Err(t("busy")));
        o.add(Err(r("other")));
        o.add(Err(t("later")));
        assert_eq!(
            o.finish("").unwrap_err().code(),
            "busy",
            "the first transient"
        );

        let mut o = Outcomes::default();
        o.add(Err(r("gone")));
        o.add(Err(r("other")));
        assert_eq!(o.finish("").unwrap_err().code(), "gone", "else the first");

        assert_eq!(
            Outcomes::default().finish("none").unwrap_err().code(),
            "no_push_device"
        );
    }
}
