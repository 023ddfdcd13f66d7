//! The command line (SPEC §4). Client commands talk HTTP to `HERALD_URL` with
//! `HERALD_API_KEY`; `serve`, `migrate` and `config check` work on the configuration.

pub mod approvals;
pub mod backup;
pub mod backup_offsite;
pub mod bench;
pub mod bench_alerts;
pub mod bench_e2e;
pub mod bench_failover;
pub mod bench_http;
pub mod bench_push;
pub mod client;
pub mod contacts;
pub mod incidents;
pub mod oncall;
pub mod sink;

use clap::{Args, Parser, Subcommand};
use std::io::Write;

/// Writes a line to stdout. When the reader has gone away (`herald … | head`), the command
/// ends quietly instead of failing, as Unix tools do.
pub fn out(line: impl std::fmt::Display) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = writeln!(o, "{line}").and_then(|_| o.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "herald",
    version,
    about = "Herald: a self-hosted, highly available notification gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct ConfigArg {
    /// Configuration file (else $HERALD_CONFIG, else ./herald.toml if present, else defaults).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Herald's base URL.
    #[arg(
        long,
        env = "HERALD_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// API key.
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway: API and workers.
    Serve(ConfigArg),
    /// Apply storage migrations and exit.
    Migrate(ConfigArg),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Send one message.
    Send(client::SendArgs),
    /// Read messages.
    Messages {
        #[command(subcommand)]
        cmd: client::MessagesCmd,
    },
    /// Dead letters: list and replay.
    Dlq {
        #[command(subcommand)]
        cmd: client::DlqCmd,
    },
    /// Providers: health, and manual switches (operator).
    Providers {
        #[command(subcommand)]
        cmd: client::ProvidersCmd,
    },
    /// The gateway's mode: normal, core_only, read_only (admin to set).
    Mode {
        #[command(subcommand)]
        cmd: client::ModeCmd,
    },
    /// Contacts: the people `to.user` names (list, get, put, patch, delete).
    Contacts {
        #[command(subcommand)]
        cmd: contacts::ContactsCmd,
    },
    /// Incidents: list, get, ack, resolve, escalate, snooze, stats.
    Incidents {
        #[command(subcommand)]
        cmd: incidents::IncidentsCmd,
    },
    /// On-call: schedules and escalation policies (list, get, put, delete), who is on call.
    Oncall {
        #[command(subcommand)]
        cmd: oncall::OncallCmd,
    },
    /// Upsert the contacts, schedules and escalation policies of a JSON file.
    Apply {
        file: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Two-person approval: list, get, approve, reject, review.
    Approvals {
        #[command(subcommand)]
        cmd: approvals::ApprovalsCmd,
    },
    /// The audit log: list, and verify its hash chain.
    Audit {
        #[command(subcommand)]
        cmd: approvals::AuditCmd,
    },
    /// Backups: create, list, verify, restore (work on storage directly, like `serve`).
    Backup {
        #[command(subcommand)]
        cmd: backup::BackupCmd,
    },
    /// Drills: provider-outage, node-kill, storage-outage, restore, and page (a paging drill).
    Drill {
        #[command(subcommand)]
        cmd: crate::drill::DrillCmd,
    },
    /// Measure durable accept throughput and latency against a gateway this command starts.
    Bench(bench::BenchArgs),
    /// A local webhook receiver that prints what arrives and checks signatures.
    Sink(sink::SinkArgs),
    /// Web Push: `keygen` makes a VAPID key pair.
    Push {
        #[command(subcommand)]
        cmd: PushCmd,
    },
    /// Serve loopback simulators of Aliyun SMS, Twilio (SMS and calls), DingTalk, Feishu, WeCom,
    /// Slack, Teams and a Web Push service.
    Simulate(crate::simulate::SimArgs),
}

#[derive(Subcommand, Debug)]
pub enum PushCmd {
    /// Make a VAPID key pair (P-256): the private key for a `webpush` provider's
    /// `credentials.vapid_private_key`, the public key for browsers' `applicationServerKey`.
    Keygen,
}

/// The key pair as `herald push keygen` prints it.
pub fn push_keygen() -> String {
    let k = crate::providers::webpush::vapid::VapidKey::generate();
    format!(
        "vapid_private_key = \"{}\"  # secret: a webpush provider's credentials, e.g. via ${{VAPID_KEY}}\npublic_key = \"{}\"  # browsers' applicationServerKey\n",
        k.private_b64(),
        k.public_b64()
    )
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Validate the configuration and print it, secrets redacted; with `--ha`, list single
    /// points of failure and risky settings instead (exit 1 when any is an error).
    Check(CheckArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Look for single points of failure and risky settings.
    #[arg(long)]
    pub ha: bool,
    /// `text` or `json` (with `--ha`).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}
