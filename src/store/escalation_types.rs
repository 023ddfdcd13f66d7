//! What crosses the [`super::Escalations`] trait: an incident's escalation row (where it
//! stands, when it is due, who holds it), the pages it made, and the figures for MTTA/MTTR.

use crate::core::types::Millis;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EscState {
    /// The next step fires at `due_at`.
    Active,
    /// Acknowledged or snoozed: at `due_at` it re-enters at the step last fired.
    Waiting,
    /// Resolved, or the policy ran out.
    Done,
}

impl EscState {
    pub fn as_str(self) -> &'static str {
        match self {
            EscState::Active => "active",
            EscState::Waiting => "waiting",
            EscState::Done => "done",
        }
    }
    pub fn parse(s: &str) -> Option<EscState> {
        match s {
            "active" => Some(EscState::Active),
            "waiting" => Some(EscState::Waiting),
            "done" => Some(EscState::Done),
            _ => None,
        }
    }
}

/// One incident's escalation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationRow {
    pub incident_id: String,
    pub policy_id: String,
    pub state: EscState,
    /// The step that fires next, in which pass over the policy.
    pub step: i64,
    pub pass: i64,
    /// How many times the escalation re-entered after an acknowledgement timed out or a
    /// snooze ended (part of each page's key, so a re-entry pages again).
    pub round: i64,
    /// The step fired last (where a re-entry starts), if any.
    pub fired_step: Option<i64>,
    pub fired_pass: Option<i64>,
    #[serde(serialize_with = "super::types::ts")]
    pub due_at: Millis,
    /// Raised by every claim and every outside change: a holder whose token is no longer
    /// the row's cannot move it.
    pub fence: i64,
    #[serde(serialize_with = "super::types::ts_opt")]
    pub first_page_at: Option<Millis>,
    #[serde(serialize_with = "super::types::ts_opt")]
    pub first_ack_at: Option<Millis>,
    /// The step fired last when it was first acknowledged.
    pub first_ack_step: Option<i64>,
}

/// One page: a message to one person on one contact method for one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PageRow {
    /// `core::oncall::escalation::page_key`: unique, also the message's idempotency key.
    pub key: String,
    pub incident_id: String,
    pub step: i64,
    pub pass: i64,
    pub round: i64,
    pub person: String,
    /// The channel: `sms`, `voice`, `email`, `push`, `chat`, `inbox`.
    pub method: String,
    /// The phone a reply code is bound to (SMS and voice pages).
    pub address: Option<String>,
    /// The code a reply names (`3a`), unique for the phone among its recent pages.
    pub reply_code: Option<i64>,
    pub message_id: Option<String>,
    #[serde(serialize_with = "super::types::ts")]
    pub created_at: Millis,
    /// `page`, or `notice` (acknowledged by someone, resolved) to a person paged.
    pub kind: String,
    /// What a notice says (one line of a bundle of notices).
    pub note: Option<String>,
    /// Not sent before then (a paging rule's delay: voice after two minutes).
    #[serde(serialize_with = "super::types::ts_opt")]
    pub not_before: Option<Millis>,
    /// Held for a bundle, to go out by then at the latest; `None`: sent on its own at once.
    #[serde(serialize_with = "super::types::ts_opt")]
    pub hold_until: Option<Millis>,
    /// The bundle it went out in (`-`: dropped, its incident answered before it went).
    pub bundle_id: Option<String>,
}

impl PageRow {
    /// A page as the escalator makes it: sent at once, no bundle yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: String,
        incident_id: &str,
        (step, pass, round): (i64, i64, i64),
        person: &str,
        method: &str,
        address: Option<String>,
        created_at: Millis,
    ) -> PageRow {
        PageRow {
            key,
            incident_id: incident_id.to_string(),
            step,
            pass,
            round,
            person: person.to_string(),
            method: method.to_string(),
            address,
            reply_code: None,
            message_id: None,
            created_at,
            kind: "page".into(),
            note: None,
            not_before: None,
            hold_until: None,
            bundle_id: None,
        }
    }
}

/// Pages (or notices) to one person on one contact method that went out as one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundleRow {
    pub id: String,
    pub person: String,
    pub method: String,
    /// `page` or `notice`, as its rows.
    pub kind: String,
    pub address: Option<String>,
    /// The code that answers every incident in it (bundles of more than one page to a phone).
    pub reply_code: Option<i64>,
    pub size: i64,
    pub message_id: Option<String>,
    #[serde(serialize_with = "super::types::ts")]
    pub created_at: Millis,
}

/// A bundle with the rows it took, oldest first.
pub type Bundle = (BundleRow, Vec<PageRow>);

/// Where a fired escalation goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalationMove {
    /// The next step is due then.
    Next {
        step: i64,
        pass: i64,
        round: i64,
        due: Millis,
    },
    /// Nothing fires before `due` (acknowledged, snoozed).
    Wait {
        due: Millis,
    },
    Done,
}

/// What a fired step records.
#[derive(Debug, Clone, Default)]
pub struct Fired {
    /// The step, pass and round that fired, when pages went out.
    pub at: Option<(i64, i64, i64)>,
    /// `(page key, message id)` of the messages the pages became (recorded even when the
    /// fence was lost: the messages exist).
    pub messages: Vec<(String, String)>,
    /// A line for the timeline (`paged step 2: ana (sms, voice)`).
    pub summary: Option<serde_json::Value>,
}

/// One incident's figures for MTTA/MTTR.
pub type IncidentTimes = crate::core::oncall::stats::Times;
