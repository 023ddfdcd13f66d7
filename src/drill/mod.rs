//! `herald drill run SCENARIO`: rehearsed disasters. Each drill starts Herald (and the
//! provider simulators or a webhook sink) as child processes on loopback, drives paced load,
//! injects one fault, and measures: time to detect, time to recover (RTO), messages
//! acknowledged but lost (RPO), and duplicates. It prints them, writes `--report` (JSON and
//! Markdown) and exits non-zero when a target of `[drill]` is missed.

mod failover;
pub mod harness;
mod page;
pub mod pg;
mod report;
mod scenarios;

pub use report::{Check, Report};

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum DrillCmd {
    /// Run one drill and report its figures.
    Run(DrillArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// The primary SMS provider answers 503 for a while (simulated Aliyun; Twilio backup).
    ProviderOutage,
    /// One of two nodes on PostgreSQL is killed with SIGKILL mid-flight.
    NodeKill,
    /// PostgreSQL crashes (immediate stop) for about 8 s under load (the node spools).
    StorageOutage,
    /// The node and its database are lost; a backup taken under load is restored.
    Restore,
    /// A drill incident is paged through a running gateway by `--policy`; the drill waits
    /// for a person to acknowledge it and reports time to page and to acknowledge.
    Page,
    /// A PostgreSQL primary with a synchronous streaming replica; under load on two nodes
    /// the primary crashes, the replica is promoted, the nodes follow it.
    DbFailover,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::ProviderOutage => "provider-outage",
            Scenario::NodeKill => "node-kill",
            Scenario::StorageOutage => "storage-outage",
            Scenario::Restore => "restore",
            Scenario::Page => "page",
            Scenario::DbFailover => "db-failover",
        }
    }
}

#[derive(Args, Debug)]
pub struct DrillArgs {
    pub scenario: Scenario,
    #[command(flatten)]
    pub config: crate::cli::ConfigArg,
    /// Write the report here as JSON, and beside it as Markdown (`.md`).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Messages offered per second during the drill.
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// node-kill: use this PostgreSQL server instead of a throwaway cluster (a fresh database
    /// is created on it).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Keep the drill's folder (configs, data, logs) and print where it is.
    #[arg(long)]
    pub keep: bool,
    /// page: the escalation policy that pages the drill.
    #[arg(long)]
    pub policy: Option<String>,
    /// page: the drill incident's severity.
    #[arg(long, default_value = "P1")]
    pub severity: String,
    /// page: the running gateway (and an operator key) the drill goes through.
    #[command(flatten)]
    pub client: crate::cli::ClientArgs,
}

pub async fn run(cmd: DrillCmd) -> Result<()> {
    let DrillCmd::Run(a) = cmd;
    let (cfg, _) = crate::config::load(a.config.config.as_deref())?;
    eprintln!("drill {}: starting", a.scenario.name());
    let report = if a.scenario == Scenario::Page {
        page::run(&a, &cfg.drill).await?
    } else {
        let mut r = scenarios::run(&a).await?;
        r.judge(&cfg.drill);
        r
    };
    for line in report.summary_lines() {
        crate::cli::out(line);
    }
    if let Some(path) = &a.report {
        report.write(path)?;
        eprintln!(
            "report written to {} and {}",
            report::json_path(path).display(),
            report::md_path(path).display()
        );
    }
    if !report.passed {
        anyhow::bail!(
            "drill {} missed its targets: {}",
            report.scenario,
            report
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{} {} (target {})", c.name, c.value, c.target))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
