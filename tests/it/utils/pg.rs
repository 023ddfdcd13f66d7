//! PostgreSQL for tests: the throwaway cluster `scripts/test.sh` starts
//! (`HERALD_TEST_DATABASE_URL`); each caller gets a fresh database of its own.

use sqlx::Executor;
use sqlx::postgres::PgPoolOptions;

pub fn server_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("HERALD_TEST_DATABASE_URL is not set: run ./scripts/test.sh, which starts a throwaway PostgreSQL cluster and sets it")
    })
}

/// A new, empty database on the test cluster; returns its URL.
pub async fn fresh_db() -> String {
    let server = server_url();
    let name = format!(
        "herald_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&server)
        .await
        .expect("cannot reach the test PostgreSQL");
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    pool.close().await;
    match server.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("HERALD_TEST_DATABASE_URL has no database part"),
    }
}

/// A PostgreSQL cluster of a test's own, to stop and start (storage outages). Removed on drop.
pub struct OwnCluster {
    dir: tempfile::TempDir,
    port: u16,
    bin: String,
    as_postgres: bool,
}

impl OwnCluster {
    fn pg(&self, tool: &str) -> std::process::Command {
        let exe = format!("{}/{tool}", self.bin);
        if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", &exe]);
            c
        } else {
            std::process::Command::new(exe)
        }
    }

    pub fn start() -> Self {
        let bin = std::env::var("HERALD_TEST_PGBIN")
            .unwrap_or_else(|_| panic!("HERALD_TEST_PGBIN is not set: run ./scripts/test.sh"));
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let dir = tempfile::Builder::new()
            .prefix("herald-own-pg")
            .tempdir()
            .unwrap();
        let as_postgres = uid == "0";
        if as_postgres {
            std::process::Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = OwnCluster {
            dir,
            port,
            bin,
            as_postgres,
        };
        let out = c
            .pg("initdb")
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
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        c.up();
        c
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn up(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-o", &opts, "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn down(&self) {
        let _ = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .output();
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
