//! Integration tests: real SQLite files, real HTTP on loopback, the real binary where a
//! process must die.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod utils;

mod e2e_alert_oncall;
mod e2e_alertmanager;
mod e2e_alerts;
mod e2e_approvals;
mod e2e_auth;
mod e2e_backup;
mod e2e_backup_chain;
mod e2e_bad_input;
mod e2e_browser_push;
mod e2e_chat;
mod e2e_cli;
mod e2e_cluster;
mod e2e_console;
mod e2e_console_browser;
mod e2e_contacts;
mod e2e_crash;
mod e2e_dead_letters;
mod e2e_deploy;
mod e2e_drills;
mod e2e_email;
mod e2e_failover;
mod e2e_file_modes;
mod e2e_idempotency;
mod e2e_isolation;
mod e2e_log_injection;
mod e2e_mobile_push;
mod e2e_offsite;
mod e2e_oncall;
mod e2e_oncall_api;
mod e2e_oncall_cluster;
mod e2e_operators;
mod e2e_outage;
mod e2e_prometheus;
mod e2e_push;
mod e2e_secrets;
mod e2e_send;
mod e2e_slow_clients;
mod e2e_sms;
mod e2e_spool_damage;
mod e2e_ssrf;
mod e2e_status;
mod e2e_storm;
mod e2e_storm_cluster;
mod e2e_traces;
mod e2e_voice;
mod store_conformance;
