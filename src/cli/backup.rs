//! `herald backup create|list|verify|restore|keygen`: backups work on storage directly (from
//! `--config`, like `serve`), not through the API.

use crate::backup;
use crate::cli::{ConfigArg, out};
use crate::config;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Take a backup now (a live gateway may keep running) and print the file's path.
    Create(CreateArgs),
    /// List the backups in the backup folder, oldest first.
    List(ListArgs),
    /// Decrypt, check every checksum and restore into a scratch database; exit 0 only if all hold.
    Verify(VerifyArgs),
    /// Restore a backup into a storage URL (refuses a non-empty target without --force).
    Restore(RestoreArgs),
    /// Make an age key pair for encrypted backups: writes the identity, prints the recipient.
    Keygen(KeygenArgs),
    /// Off-site copies in S3-compatible storage (`[backup.offsite]`).
    #[command(subcommand)]
    Offsite(super::backup_offsite::OffsiteCmd),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Folder to write into (default `[backup] dir`, else <data_dir>/backups).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Encrypt to this age recipient (age1…); default `[backup] encrypt_to`.
    #[arg(long)]
    pub encrypt_to: Option<String>,
    /// Only what changed since the newest backup in the folder (a full one when it has no
    /// index). Default: as `[backup] full_every` says.
    #[arg(long, conflicts_with = "full")]
    pub incremental: bool,
    /// A full backup, whatever `[backup] full_every` says.
    #[arg(long)]
    pub full: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Folder to list (default `[backup] dir`, else <data_dir>/backups).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    pub file: PathBuf,
    /// age identity file, for encrypted backups.
    #[arg(long)]
    pub identity: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    pub file: PathBuf,
    /// Where to restore: sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB.
    #[arg(long)]
    pub into: String,
    /// age identity file, for encrypted backups.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Replace what the target holds.
    #[arg(long)]
    pub force: bool,
    /// Why (kept in the audit log).
    #[arg(long, default_value = "restore from backup")]
    pub reason: String,
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// File to write the identity (secret key) to; it must not exist.
    #[arg(long)]
    pub out: PathBuf,
}

pub async fn run(cmd: BackupCmd) -> Result<()> {
    match cmd {
        BackupCmd::Create(a) => {
            let (cfg, _) = config::load(a.config.config.as_deref())?;
            let dir = a.out.unwrap_or_else(|| cfg.backup_dir());
            let to = a.encrypt_to.or(cfg.backup.encrypt_to.clone());
            let full_every = match (a.incremental, a.full) {
                (true, _) => 1000, // the longest chain fetch and restore follow
                (_, true) => 1,
                _ => cfg.backup.full_every,
            };
            let c = backup::create_auto(&cfg.backend()?, &dir, to.as_deref(), full_every).await?;
            let kind = match &c.manifest.link {
                Some(l) => format!(
                    "incremental #{} after {} ({} rows changed, {} deleted)",
                    l.position,
                    l.parent,
                    c.manifest
                        .changes
                        .iter()
                        .filter(|p| p.file.ends_with(".upserts.jsonl"))
                        .map(|p| p.rows)
                        .sum::<u64>(),
                    c.manifest
                        .changes
                        .iter()
                        .filter(|p| p.file.ends_with(".deletes.jsonl"))
                        .map(|p| p.rows)
                        .sum::<u64>()
                ),
                None => "full".to_string(),
            };
            eprintln!(
                "{kind} backup of {} rows in {} tables, {} bytes{}, {} ms",
                c.manifest.rows(),
                c.manifest.tables.len(),
                c.bytes,
                if to.is_some() { ", encrypted" } else { "" },
                c.took.as_millis()
            );
            out(c.path.display());
            if let Some(o) = &cfg.backup.offsite {
                let name = backup::offsite::push(o, &c.path).await?;
                backup::offsite::prune(o).await?;
                eprintln!("copied off-site as s3://{}/{}{name}", o.bucket, o.prefix);
            }
            Ok(())
        }
        BackupCmd::Offsite(cmd) => super::backup_offsite::run(cmd).await,
        BackupCmd::List(a) => {
            let (cfg, _) = config::load(a.config.config.as_deref())?;
            let dir = a.dir.unwrap_or_else(|| cfg.backup_dir());
            let all = backup::list(&dir)?;
            if all.is_empty() {
                eprintln!("no backups in {}", dir.display());
            }
            for b in all {
                let chain = match backup::chain::index_header(&b.path).and_then(|h| h.link) {
                    Some(l) => format!("\tincremental #{} after {}", l.position, l.parent),
                    None => String::new(),
                };
                let what = match (&b.manifest, b.encrypted) {
                    (Some(m), _) => format!(
                        "{} rows from {} (created {}){chain}",
                        m.rows(),
                        m.source,
                        m.created_at
                    ),
                    (None, true) => format!("encrypted{chain}"),
                    (None, false) => "unreadable manifest".to_string(),
                };
                out(format!("{}\t{} bytes\t{what}", b.path.display(), b.bytes));
            }
            Ok(())
        }
        BackupCmd::Verify(a) => {
            let m = backup::verify(&a.file, a.identity.as_deref()).await?;
            out(format!(
                "ok: {} — {} tables, {} rows, taken {} from {} (schema {}), restored and compared",
                a.file.display(),
                m.tables.len(),
                m.rows(),
                m.created_at,
                m.source,
                m.source_schema
            ));
            Ok(())
        }
        BackupCmd::Restore(a) => {
            let actor = format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into())
            );
            let m = backup::restore(
                &a.file,
                &a.into,
                a.identity.as_deref(),
                a.force,
                &actor,
                &a.reason,
            )
            .await?;
            out(format!(
                "restored {} rows ({} tables, taken {} from {}) into {}",
                m.rows(),
                m.tables.len(),
                m.created_at,
                m.source,
                config::redact_url(&a.into)
            ));
            Ok(())
        }
        BackupCmd::Keygen(a) => {
            let id = age::x25519::Identity::generate();
            let recipient = id.to_public().to_string();
            use age::secrecy::ExposeSecret;
            let text = format!(
                "# created by herald backup keygen\n# public key: {recipient}\n{}\n",
                id.to_string().expose_secret()
            );
            write_secret(&a.out, &text)
                .with_context(|| format!("cannot write {}", a.out.display()))?;
            eprintln!(
                "identity written to {} (keep it apart from the backups)",
                a.out.display()
            );
            out(recipient);
            Ok(())
        }
    }
}

fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
