//! Every drill, run as an operator would (`herald drill run … --report`), with targets loose
//! enough that a slow machine cannot fail them: what is checked here is that the drill
//! works and that nothing acknowledged is lost. The figures are in the issue notes.

use serde_json::Value;
use std::process::Command;

fn drill(scenario: &str, targets: &str) -> (bool, Value, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("drill.toml");
    std::fs::write(&cfg, format!("[drill]\n{targets}\n")).unwrap();
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["drill", "run", scenario, "--config"])
        .arg(&cfg)
        .arg("--report")
        .arg(&report)
        .env_remove("HERALD_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json: Value = std::fs::read_to_string(&report)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap_or_default();
    assert!(
        md.contains(&format!("# Drill `{scenario}`")),
        "no markdown report; stdout {stdout} stderr {stderr}"
    );
    println!("{stdout}");
    (out.status.success(), json, stdout, stderr)
}

const LOOSE: &str = "max_detect = \"60s\"\nmax_recover = \"120s\"\nmax_duplicates = 1000";

fn check_held(scenario: &str) -> Value {
    let (ok, r, stdout, stderr) = drill(scenario, LOOSE);
    assert!(ok, "drill {scenario} failed: {stdout}\n{stderr}");
    assert_eq!(r["passed"], true, "{r:#}");
    assert_eq!(r["lost"], 0, "{r:#}");
    assert!(r["accepted"].as_u64().unwrap() > 100, "{r:#}");
    assert!(r["recover_ms"].is_u64(), "{r:#}");
    r
}

#[test]
fn drill_provider_outage() {
    let r = check_held("provider-outage");
    assert!(r["detect_ms"].is_u64(), "{r:#}");
    assert!(r["extra"]["sent_by_backup"].as_u64().unwrap() > 0, "{r:#}");
    assert_eq!(r["delivered"], r["accepted"]);
}

#[test]
fn drill_node_kill() {
    let r = check_held("node-kill");
    assert!(r["detect_ms"].is_u64(), "{r:#}");
    assert_eq!(r["delivered"], r["accepted"]);
}

#[test]
fn drill_storage_outage() {
    let r = check_held("storage-outage");
    assert!(r["extra"]["spooled"].as_u64().unwrap() > 0, "{r:#}");
    assert_eq!(r["delivered"], r["accepted"]);
}

#[test]
fn drill_db_failover() {
    let r = check_held("db-failover");
    assert!(r["detect_ms"].is_u64(), "{r:#}");
    assert!(r["extra"]["promoted_after_ms"].is_u64(), "{r:#}");
    assert!(r["extra"]["nodes_ready_after_ms"].is_u64(), "{r:#}");
    assert_eq!(r["delivered"], r["accepted"]);
    assert!(
        r["extra"]["storage_url"]
            .as_str()
            .is_some_and(|u| u.contains(",127.0.0.1:")),
        "both hosts in the URL: {r:#}"
    );
}

#[test]
fn drill_restore_and_a_missed_target_fails() {
    let r = check_held("restore");
    assert!(
        r["extra"]["acknowledged_before_snapshot"].as_u64().unwrap() > 0,
        "{r:#}"
    );
    // Restoring and restarting cannot take 0 ms: the target is missed, the exit code says so.
    let (ok, r, _, stderr) = drill("restore", "max_recover = \"0s\"");
    assert!(!ok, "a missed target must fail the drill");
    assert_eq!(r["passed"], false);
    assert!(stderr.contains("missed its targets"), "{stderr}");
}

/// A benchmark's or drill's scratch database is made on the server named and dropped
/// afterwards; nothing but a scratch prefix is ever made (so nothing else can be dropped).
#[tokio::test]
async fn scratch_databases_are_made_and_dropped_only_by_their_prefix() {
    use herald::drill::pg::ScratchDb;
    let server = crate::utils::pg::server_url();
    let pool = sqlx::PgPool::connect(&server).await.unwrap();
    let exists = |name: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            )
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert!(ScratchDb::create(&server, "herald").await.is_err());
    let db = ScratchDb::create(&server, "herald_bench").await.unwrap();
    let name = db.url.rsplit('/').next().unwrap().to_string();
    assert!(name.starts_with("herald_bench_"), "{}", db.url);
    assert!(exists(name.clone()).await);
    // A session left open in it does not keep it alive.
    let open = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query("SELECT 1").execute(&open).await.unwrap();
    db.drop_now().await;
    assert!(!exists(name).await, "the scratch database is gone");
}
