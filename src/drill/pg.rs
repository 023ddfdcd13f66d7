//! A throwaway PostgreSQL cluster (initdb + pg_ctl on a free loopback port, in a temporary
//! folder), for drills and tests that stop and start their database. Removed on drop.
//! As root, the tools run as the `postgres` user (initdb refuses root).

use std::path::PathBuf;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
#[error("throwaway PostgreSQL: {0}")]
pub struct PgError(String);

pub struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
    /// Server settings given at each start (`-c name=value …`), never written to the
    /// cluster's files (so a replica copied from it does not inherit them).
    settings: String,
}

/// Where `initdb` and `pg_ctl` are: `$HERALD_PGBIN`, `$HERALD_TEST_PGBIN`, the newest
/// `/usr/lib/postgresql/*/bin` (Debian), else `pg_config --bindir`.
pub fn find_bin() -> Option<PathBuf> {
    for var in ["HERALD_PGBIN", "HERALD_TEST_PGBIN"] {
        if let Ok(v) = std::env::var(var)
            && PathBuf::from(&v).join("initdb").exists()
        {
            return Some(PathBuf::from(v));
        }
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    debian.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(p) = debian.pop() {
        return Some(p);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.join("initdb").exists().then_some(p)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    fn tool(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// Creates and starts a cluster.
    pub fn start() -> Result<Self, PgError> {
        let bin = find_bin().ok_or_else(|| {
            PgError(
                "initdb not found: install PostgreSQL (Debian: postgresql) or set HERALD_PGBIN"
                    .into(),
            )
        })?;
        let c = Self::empty(bin, String::new())?;
        let out = c
            .tool("initdb")
            .arg("-D")
            .arg(c.dir.path().join("data"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .output()
            .map_err(|e| PgError(format!("initdb: {e}")))?;
        if !out.status.success() {
            return Err(PgError(format!(
                "initdb: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        c.up()?;
        Ok(c)
    }

    /// A folder (owned by `postgres` when run as root) and a free port, nothing started.
    fn empty(bin: PathBuf, settings: String) -> Result<Self, PgError> {
        let dir = tempfile::Builder::new()
            .prefix("herald-pg-")
            .tempdir()
            .map_err(|e| PgError(e.to_string()))?;
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(PgError(
                    "cannot hand the folder to the postgres user".into(),
                ));
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| PgError(e.to_string()))?
            .port();
        Ok(Cluster {
            dir,
            port,
            bin,
            as_postgres,
            settings,
        })
    }

    /// Server settings for the next start, such as `-c synchronous_standby_names=*`.
    pub fn set_settings(&mut self, settings: &str) {
        self.settings = settings.to_string();
    }

    /// A streaming replica of this (running) cluster: `pg_basebackup -R`, started.
    pub fn replica(&self) -> Result<Self, PgError> {
        let r = Self::empty(self.bin.clone(), String::new())?;
        let out = r
            .tool("pg_basebackup")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("-D")
            .arg(r.dir.path().join("data"))
            .args(["-R", "-X", "stream", "-c", "fast"])
            .output()
            .map_err(|e| PgError(format!("pg_basebackup: {e}")))?;
        if !out.status.success() {
            return Err(PgError(format!(
                "pg_basebackup: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        r.up()?;
        Ok(r)
    }

    /// Makes a replica the primary (`pg_ctl promote`, waiting until it takes writes).
    pub fn promote(&self) -> Result<(), PgError> {
        let out = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "promote"])
            .output()
            .map_err(|e| PgError(format!("pg_ctl promote: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(PgError(format!(
                "pg_ctl promote: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn up(&self) -> Result<(), PgError> {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} {}",
            self.port,
            self.dir.path().display(),
            self.settings
        );
        let out = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-o", &opts, "start"])
            .output()
            .map_err(|e| PgError(format!("pg_ctl: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(PgError(format!(
                "pg_ctl start: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Stops the server at once, as a crash would (`-m immediate`).
    pub fn down(&self) {
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.down();
    }
}

/// A database of a drill's or a benchmark's own, made on a server the user named; dropped
/// by [`ScratchDb::drop_now`] (only this one: its name is the one made here).
pub struct ScratchDb {
    server: String,
    name: String,
    /// The scratch database's URL (the server's, with the database part replaced).
    pub url: String,
}

/// Prefixes a scratch database may have: nothing else is ever created or dropped.
const SCRATCH_PREFIXES: [&str; 2] = ["herald_bench", "herald_drill"];

impl ScratchDb {
    /// A new, empty database `<prefix>_<ulid>` on the server `server` names (its URL), so
    /// that rows left by an earlier run cannot slow or skew this one. Needs the CREATEDB
    /// right there.
    pub async fn create(server: &str, prefix: &str) -> anyhow::Result<ScratchDb> {
        use anyhow::Context;
        anyhow::ensure!(
            SCRATCH_PREFIXES.contains(&prefix),
            "not a scratch database prefix: {prefix}"
        );
        let name = format!(
            "{prefix}_{}",
            ulid::Ulid::generate().to_string().to_lowercase()
        );
        let mut url = url::Url::parse(server).context("the PostgreSQL URL cannot be read")?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(server)
            .await
            .context("cannot reach PostgreSQL")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&pool)
            .await
            .with_context(|| format!("cannot create database {name} (needs CREATEDB)"))?;
        pool.close().await;
        url.set_path(&format!("/{name}"));
        Ok(ScratchDb {
            server: server.to_string(),
            name,
            url: url.to_string(),
        })
    }

    /// Drops the database (its sessions are ended first). Best effort: a failure is logged
    /// with the name, so that it can be dropped by hand.
    pub async fn drop_now(self) {
        let ScratchDb { server, name, .. } = self;
        let dropped = async {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&server)
                .await?;
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&name)
            .execute(&pool)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\""
            )))
            .execute(&pool)
            .await?;
            pool.close().await;
            Ok::<_, sqlx::Error>(())
        }
        .await;
        if let Err(e) = dropped {
            tracing::warn!(error = %e, database = %name, "could not drop the scratch database");
            eprintln!("could not drop the scratch database {name}: {e}");
        }
    }

    /// Drops the database, or with `keep` says where it is.
    pub async fn finish(self, keep: bool) {
        if keep {
            eprintln!("database kept: {}", self.url);
        } else {
            self.drop_now().await;
        }
    }
}
