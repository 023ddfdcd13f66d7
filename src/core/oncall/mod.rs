//! On-call: who is on call when (schedules), and whom an incident pages next (escalation).
//! Pure decisions; storage and timers live elsewhere.

pub mod ack_link;
pub mod escalation;
pub mod policy_doc;
pub mod reply;
pub mod schedule;
pub mod schedule_doc;
pub mod stats;
