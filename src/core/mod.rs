//! Domain types and pure decisions. Nothing here does I/O or knows about HTTP or SQL.

pub mod addresses;
pub mod alerts;
pub mod approval;
pub mod audit_chain;
pub mod circuit;
pub mod contact;
pub mod contact_checks;
pub mod fair;
pub mod incident;
pub mod keypress;
pub mod message;
pub mod next_step;
pub mod oncall;
pub mod progress;
pub mod quiet;
pub mod ratelimit;
pub mod resolve;
pub mod ssrf;
pub mod types;
pub mod validate;
