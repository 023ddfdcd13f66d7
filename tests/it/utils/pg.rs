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

/// A PostgreSQL cluster of a test's own, to stop and start (storage outages): the one the
/// drills use.
pub struct OwnCluster(herald::drill::pg::Cluster);

impl OwnCluster {
    pub fn start() -> Self {
        OwnCluster(herald::drill::pg::Cluster::start().unwrap())
    }
    pub fn url(&self) -> String {
        self.0.url()
    }
    pub fn up(&self) {
        self.0.up().unwrap()
    }
    pub fn down(&self) {
        self.0.down()
    }
}
