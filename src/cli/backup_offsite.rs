//! `herald backup offsite push|list|fetch|prune`: the copies in `[backup.offsite]`.

use crate::backup::offsite;
use crate::cli::{ConfigArg, out};
use crate::config::{self, OffsiteConfig};
use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum OffsiteCmd {
    /// Upload a backup file (with its SHA-256), then prune to `keep` there.
    Push(PushArgs),
    /// List the backups there, oldest first.
    List(OnlyConfig),
    /// Download one (its SHA-256 checked) into a folder, ready for `verify` or `restore`.
    Fetch(FetchArgs),
    /// Delete all but the newest `keep` there.
    Prune(OnlyConfig),
}

#[derive(Args, Debug)]
pub struct OnlyConfig {
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The backup's name (as `list` shows it); `latest` for the newest.
    pub name: String,
    /// Folder to write into (default: the current one).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

fn offsite_config(c: &ConfigArg) -> Result<OffsiteConfig> {
    let (cfg, _) = config::load(c.config.as_deref())?;
    cfg.backup
        .offsite
        .ok_or_else(|| anyhow!("no [backup.offsite] in the configuration"))
}

pub async fn run(cmd: OffsiteCmd) -> Result<()> {
    match cmd {
        OffsiteCmd::Push(a) => {
            let o = offsite_config(&a.config)?;
            let name = offsite::push(&o, &a.file).await?;
            for gone in offsite::prune(&o).await? {
                eprintln!("deleted the older copy {gone}");
            }
            out(format!("s3://{}/{}{name}", o.bucket, o.prefix));
        }
        OffsiteCmd::List(a) => {
            let o = offsite_config(&a.config)?;
            let all = offsite::list(&o).await?;
            if all.is_empty() {
                eprintln!("no backups in s3://{}/{}", o.bucket, o.prefix);
            }
            for b in all {
                out(format!("{}\t{} bytes\t{}", b.name, b.size, b.last_modified));
            }
        }
        OffsiteCmd::Fetch(a) => {
            let o = offsite_config(&a.config)?;
            let name = if a.name == "latest" {
                offsite::list(&o)
                    .await?
                    .pop()
                    .map(|b| b.name)
                    .ok_or_else(|| anyhow!("no backups in s3://{}/{}", o.bucket, o.prefix))?
            } else {
                a.name
            };
            let path = offsite::fetch(&o, &name, &a.out).await?;
            eprintln!("checksum ok; run `herald backup verify` on it before restoring");
            out(path.display());
        }
        OffsiteCmd::Prune(a) => {
            let o = offsite_config(&a.config)?;
            for gone in offsite::prune(&o).await? {
                out(format!("deleted {gone}"));
            }
        }
    }
    Ok(())
}
