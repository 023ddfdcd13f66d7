//! Alerts in: Alertmanager's webhook and PagerDuty Events v2 payloads, and the routes that
//! say what incident an alert belongs to and who is paged. Pure.

pub mod am;
pub mod batches;
pub mod events;
pub mod heartbeats;
pub mod inhibit;
pub mod matchers;
pub mod routes;
