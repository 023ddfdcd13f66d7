#![forbid(unsafe_code)]
//! Herald: a self-hosted notification gateway.

pub mod api;
pub mod app;
pub mod backup;
pub mod cli;
pub mod config;
pub mod console;
pub mod core;
pub mod drill;
pub mod error;
pub mod log_escape;
pub mod metrics;
pub mod private_fs;
pub mod providers;
pub mod simulate;
pub mod spool;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod tls;
pub mod worker;
