//! The behaviour every `Store` must have, written against `dyn Store` so each backend runs
//! the same suite: one module per storage domain (`queue`, `messages`, `receipts`, `inbox`,
//! `keys`, `operations`, `cluster`, `retention`, `contacts`, `incidents`, `oncall`, `escalations`, `bundles` with storms), each run on
//! SQLite and PostgreSQL.

use herald::core::message::{Content, Idempotency, NewDelivery, NewMessage};
use herald::core::next_step::{FailReason, Step};
use herald::core::types::{Channel, Priority, Strategy, new_id, now_millis};
use herald::store::sqlite::SqliteStore;
use herald::store::{
    Accepted, Attempt, AttemptError, ClaimRequest, Completion, ListFilter, ReplaySelector, Store,
};
use std::sync::Arc;

fn message(priority: Priority, channels: &[Channel], strategy: Strategy) -> NewMessage {
    let now = now_millis();
    NewMessage {
        id: new_id("msg"),
        priority,
        strategy,
        created_at: now,
        send_at: now,
        expires_at: now + 3_600_000,
        content: Content {
            text: Some("t".into()),
            ..Default::default()
        },
        template: None,
        params: None,
        metadata: Default::default(),
        deliveries: channels
            .iter()
            .map(|c| NewDelivery {
                id: new_id("dlv"),
                channel: *c,
                to: "u".into(),
                content: None,
                skip: None,
            })
            .collect(),
        idempotency: None,
        sender: "test".into(),
        trace: None,
        recipient_limits: vec![],
    }
}

fn claim(owner: &str, limit: usize, now: i64) -> ClaimRequest {
    ClaimRequest {
        owner: owner.into(),
        limit,
        lane_limits: [limit; 4],
        bulk_limit: limit,
        lease_ms: 30_000,
        now,
        skip_endpoints: vec![],
    }
}

fn attempt(n: i64, outcome: &'static str, error: Option<AttemptError>) -> Attempt {
    Attempt {
        n,
        provider: "p".into(),
        at: now_millis(),
        duration_ms: 1,
        outcome,
        error,
        provider_message_id: None,
    }
}

async fn postgres() -> (Arc<dyn Store>, ()) {
    let url = crate::utils::pg::fresh_db().await;
    let store: Arc<dyn Store> =
        herald::store::postgres::PgStore::open(&url, std::time::Duration::from_secs(10))
            .await
            .unwrap();
    (store, ())
}

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = SqliteStore::open(&dir.path().join("h.db"), true).unwrap();
    (store, dir)
}

/// Runs every case of a domain's module against both backends: `sqlite::<case>` and
/// `postgres::<case>`, each on a fresh store.
macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let (store, _keep) = crate::store_conformance::sqlite().await;
                    super::$case(store).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let (store, _keep) = crate::store_conformance::postgres().await;
                    super::$case(store).await;
                }
            )+
        }
    };
}

/// Opens a P0 incident of one firing alert with these labels, under `key`; its id.
async fn open_incident(s: &Arc<dyn Store>, key: &str, labels: serde_json::Value) -> String {
    use herald::core::incident::{Occurrence, Severity};
    use herald::store::{AlertBatch, Ingested, NewIncident};
    let id = new_id("inc");
    let at = now_millis();
    let r = s
        .ingest(vec![AlertBatch {
            dedup_key: key.into(),
            complete: false,
            occurrences: vec![Occurrence {
                fingerprint: key.into(),
                starts_at: at,
                status: "firing".into(),
                ends_at: None,
                labels,
                annotations: serde_json::json!({}),
                generator_url: String::new(),
            }],
            open: NewIncident {
                id: id.clone(),
                source: "alertmanager".into(),
                route: "r".into(),
                service: "db".into(),
                severity: Severity::P0,
                title: key.into(),
                details: serde_json::json!({}),
                suppressed: false,
                notify_resolved: false,
            },
            at,
        }])
        .await
        .unwrap();
    assert_eq!(r, vec![Ingested::Opened(id.clone())]);
    id
}

mod bundles;
mod cluster;
mod contacts;
mod escalations;
mod inbox;
mod incidents;
mod keys;
mod messages;
mod oncall;
mod operations;
mod queue;
mod receipts;
mod retention;

#[tokio::test]
async fn a_second_process_cannot_open_the_same_database_for_serving() {
    let (s, dir) = sqlite().await;
    let err = SqliteStore::open(&dir.path().join("h.db"), true)
        .err()
        .unwrap();
    assert!(err.to_string().contains("in use"), "{err}");
    drop(s);
}

/// The backup catalogue and a freshly migrated PostgreSQL schema agree both ways (the
/// SQLite side is a unit test of `backup::catalog`).
#[tokio::test]
async fn the_backup_catalogue_matches_the_postgres_schema_both_ways() {
    use herald::backup::catalog::{LEFT_OUT, TABLES, table};
    let url = crate::utils::pg::fresh_db().await;
    let _store = herald::store::postgres::PgStore::open(&url, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::TEXT, column_name::TEXT FROM information_schema.columns WHERE table_schema = 'public'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut by_table: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (t, c) in rows {
        by_table.entry(t).or_default().push(c);
    }
    for t in by_table.keys() {
        assert!(
            table(t).is_some() || LEFT_OUT.contains(&t.as_str()),
            "table `{t}` is neither catalogued nor left out on purpose"
        );
    }
    for t in TABLES {
        let mut real = by_table.get(t.name).cloned().unwrap_or_default();
        let mut listed: Vec<String> = t.columns.iter().map(|(c, _)| c.to_string()).collect();
        real.sort();
        listed.sort();
        assert_eq!(listed, real, "columns of `{}`", t.name);
    }
}
