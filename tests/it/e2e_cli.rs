//! The command line: `config check`, `migrate`, exit codes, and the client commands against
//! a running gateway.

use crate::utils::{ADMIN, Receiver, TestHerald};
use serde_json::Value;
use std::process::{Command, Output};

fn herald(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herald"));
    c.args(args)
        .env_remove("HERALD_CONFIG")
        .env_remove("HERALD_API_KEY")
        .env_remove("HERALD_URL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn config_check_prints_the_effective_configuration_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("h.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = \"127.0.0.1:9999\"\n[[api_keys]]\nname = \"svc\"\nkey = \"${SVC_KEY}\"\nrole = \"sender\"\n\
         [[providers]]\nid = \"hooks\"\nchannel = \"webhook\"\nkind = \"webhook\"\ncredentials = { secret = \"whsec_c2VjcmV0LXNpZ25pbmcta2V5\" }\n",
    )
    .unwrap();
    let out = herald(
        &["config", "check", "--config", cfg.to_str().unwrap()],
        &[
            ("SVC_KEY", "svc-secret-value-123456"),
            ("HERALD_DISPATCH_CONCURRENCY", "7"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("listen = \"127.0.0.1:9999\""), "{s}");
    assert!(s.contains("concurrency = 7"), "env override shown: {s}");
    assert!(
        !s.contains("svc-secret-value") && !s.contains("whsec_c2Vj"),
        "secrets leaked: {s}"
    );
    assert!(s.contains("[redacted]"));

    let out = herald(&["config", "check", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("SVC_KEY") && err.lines().count() == 1, "{err}");

    std::fs::write(&cfg, "[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n").unwrap();
    let out = herald(&["config", "check", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("lisen"), "{}", text(&out.stderr));

    let out = herald(&["no-such-command"], &[]);
    assert_eq!(out.status.code(), Some(2), "bad usage exits 2");
}

/// `config check` runs the validation `serve` runs: what one refuses, so does the other.
#[test]
fn config_check_refuses_what_serve_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "missing credential",
            "[[providers]]\nid = \"p\"\nchannel = \"push\"\nkind = \"fcm\"\n",
            "service_account_json",
        ),
        (
            "misspelt credential",
            "[[providers]]\nid = \"ali\"\nchannel = \"sms\"\nkind = \"aliyun\"\n\
             credentials = { access_key_id = \"a\", acess_key_secret = \"b\" }\noptions = { sign_name = \"H\" }\n",
            "acess_key_secret",
        ),
        (
            "open Aliyun receipts",
            "[[providers]]\nid = \"ali\"\nchannel = \"sms\"\nkind = \"aliyun\"\n\
             credentials = { access_key_id = \"a\", access_key_secret = \"b\" }\noptions = { sign_name = \"H\" }\n",
            "receipt_token",
        ),
        (
            "template syntax",
            "[[templates]]\nid = \"t\"\nchannels = [\"inbox\"]\ninbox = { text = \"Hi {{ name \" }\n",
            "t",
        ),
    ];
    for (what, body, named) in cases {
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{body}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let check = herald(&["config", "check", "--config", cfg.to_str().unwrap()], &[]);
        let err = text(&check.stderr);
        assert_eq!(check.status.code(), Some(1), "{what}: config check passed");
        assert!(err.contains(named), "{what}: {err}");
        let mut serve = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--config", cfg.to_str().unwrap()])
            .env("HERALD_ADMIN_KEY", ADMIN)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let code = loop {
            if let Some(st) = serve.try_wait().unwrap() {
                break st.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = serve.kill();
                panic!("{what}: serve started");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(code, Some(1), "{what}");
    }
}

/// The shipped sample passes as it is, in an empty environment, and the check shows the
/// storage in force.
#[test]
fn the_example_configuration_passes_config_check() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/herald.example.toml");
    let out = herald(&["config", "check", "--config", example], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("url = \"sqlite://./herald-data/herald.db\""),
        "the effective storage URL: {s}"
    );
    // --help does not show an empty environment value.
    let help = herald(&["send", "--help"], &[]);
    let h = text(&help.stdout);
    assert!(h.contains("[env: HERALD_URL]"), "{h}");
    assert!(!h.contains("HERALD_URL=]"), "{h}");
}

/// `config check --ha` on the shipped sample, on a deliberately weak configuration and on a
/// good one.
#[test]
fn config_check_ha_flags_single_points_of_failure() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/herald.example.toml");
    let out = herald(&["config", "check", "--ha", "--config", example], &[]);
    assert_eq!(out.status.code(), Some(1), "the sample has errors");
    let s = text(&out.stdout);
    for want in [
        "error   providers: no provider carries sms, which template `verify_code` sends through",
        "error   providers: no provider carries email",
        "error   backup.every: no backups are scheduled",
        "warning degrade.sms: sms falls back to push, which no provider carries",
        "warning storage.url: SQLite holds one node",
        "warning backup.encrypt_to:",
        "warning backup.dir:",
        "warning backup.offsite:",
        "# 9 findings: 3 errors, 6 warnings",
    ] {
        assert!(s.contains(want), "{want:?} in:\n{s}");
    }
    assert!(s.contains("        fix: "), "each finding has a fix");

    let dir = tempfile::tempdir().unwrap();
    let weak = dir.path().join("weak.toml");
    std::fs::write(
        &weak,
        "[server]\nlisten = \"0.0.0.0:8080\"\n[limits]\nrecipient = { sms = [] }\n\
         [[providers]]\nid = \"tw\"\nchannel = \"sms\"\nkind = \"twilio\"\n\
         credentials = { account_sid = \"ACx\", auth_token = \"y\" }\noptions = { from = \"+15005550006\" }\n\
         [[alert_routes]]\nid = \"db\"\nusers = [\"li\"]\nchannels = { P0 = [\"sms\"] }\n",
    )
    .unwrap();
    let out = herald(
        &[
            "config",
            "check",
            "--ha",
            "--format",
            "json",
            "--config",
            weak.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["level"].as_str().unwrap().to_string(),
                f["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (level, key) in [
        ("error", "providers"),
        ("error", "backup.every"),
        ("error", "alert_routes.db.escalation_policy"),
        ("warning", "degrade"),
        ("warning", "storage.url"),
        ("warning", "limits.recipient.sms"),
        ("warning", "server.metrics_open"),
    ] {
        assert!(
            found.contains(&(level.to_string(), key.to_string())),
            "{level} {key} in {found:?}"
        );
    }
    assert!(v["findings"][0]["fix"].is_string());
    assert_eq!(v["errors"], 3, "{v}");

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[server]\nlisten = \"0.0.0.0:8080\"\nmetrics_open = false\n\
         [storage]\nurl = \"postgres://herald@postgres-rw:5432/herald\"\n\
         [backup]\nevery = \"6h\"\nencrypt_to = \"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"\ndir = \"/mnt/backups\"\n\
         [backup.offsite]\nendpoint = \"https://s3.eu-west-1.amazonaws.com\"\nbucket = \"herald-backups\"\nregion = \"eu-west-1\"\naccess_key_id = \"AKIAEXAMPLE\"\nsecret_access_key = \"secret\"\n\
         [degrade]\nsms = [\"inbox\"]\n\
         [[providers]]\nid = \"aliyun-main\"\nchannel = \"sms\"\nkind = \"aliyun\"\n\
         credentials = { access_key_id = \"x\", access_key_secret = \"y\", receipt_token = \"t\" }\noptions = { sign_name = \"Herald\" }\n\
         [[providers]]\nid = \"twilio-backup\"\nchannel = \"sms\"\nkind = \"twilio\"\npriority = 2\n\
         credentials = { account_sid = \"ACx\", auth_token = \"y\" }\noptions = { from = \"+15005550006\" }\n",
    )
    .unwrap();
    let out = herald(
        &[
            "config",
            "check",
            "--ha",
            "--config",
            good.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "# 0 findings: 0 errors, 0 warnings"
    );
}

/// Runbook commands as written there: `dlq replay --channel` alone, and errors that name the
/// file they could not open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_commands_work_as_written() {
    let h = TestHerald::start().await;
    let out = herald(
        &["dlq", "replay", "--channel", "sms"],
        &[("HERALD_URL", &h.base), ("HERALD_API_KEY", ADMIN)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("replayed"),
        "{}",
        text(&out.stdout)
    );
    let out = herald(&["backup", "verify", "/nonexistent/backup.herald"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("/nonexistent/backup.herald"), "{err}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_managed_from_the_command_line() {
    let h = TestHerald::start().await;
    let env = [("HERALD_URL", h.base.as_str()), ("HERALD_API_KEY", ADMIN)];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("li.json");
    std::fs::write(
        &file,
        r#"{"id": "u-42", "name": "Li Wei", "time_zone": "Asia/Shanghai", "phones": ["+8613800138000"]}"#,
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let out = herald(&["contacts", "put", f], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\"version\": 1"),
        "{}",
        text(&out.stdout)
    );
    let patch = dir.path().join("patch.json");
    std::fs::write(&patch, r#"{"name": "Li W."}"#).unwrap();
    let out = herald(
        &["contacts", "patch", "u-42", patch.to_str().unwrap()],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = herald(&["contacts", "get", "u-42"], &env);
    assert!(text(&out.stdout).contains("Li W."), "{}", text(&out.stdout));
    let out = herald(&["contacts", "list", "--limit", "10"], &env);
    assert!(text(&out.stdout).contains("u-42"), "{}", text(&out.stdout));
    std::fs::write(&file, r#"{"id": "u-43", "phones": ["12"]}"#).unwrap();
    let out = herald(&["contacts", "put", f], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("phones[0]"),
        "{}",
        text(&out.stderr)
    );
    let out = herald(&["contacts", "delete", "u-42"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = herald(&["contacts", "get", "u-42"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));
    h.stop().await;
}

#[test]
fn push_keygen_prints_a_key_pair_that_belongs_together() {
    use herald::providers::webpush::vapid::VapidKey;
    let out = herald(&["push", "keygen"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let value = |name: &str| -> String {
        printed
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split('"').nth(1))
            .unwrap_or_default()
            .to_string()
    };
    let key = VapidKey::from_private_b64(&value("vapid_private_key")).unwrap();
    assert_eq!(key.public_b64(), value("public_key"), "{printed}");
    let again = text(&herald(&["push", "keygen"], &[]).stdout);
    assert_ne!(again, printed, "a new pair each time");
}

#[test]
fn migrate_creates_the_schema_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = herald(&["migrate"], &[("HERALD_DATA_DIR", d)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("applied [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]"),
        "{}",
        text(&out.stdout)
    );
    let out = herald(&["migrate"], &[("HERALD_DATA_DIR", d)]);
    assert!(
        text(&out.stdout).contains("[]"),
        "nothing to do the second time: {}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_commands_send_read_and_replay() {
    let rx = Receiver::start().await;
    rx.answer(400);
    let h = TestHerald::start().await;
    let env = [("HERALD_URL", h.base.as_str()), ("HERALD_API_KEY", ADMIN)];
    let run = |args: Vec<String>| {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        async move {
            tokio::task::spawn_blocking(move || {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                herald(&a, &env)
            })
            .await
            .unwrap()
        }
    };
    let out = run(vec![
        "send".into(),
        "--to-webhook".into(),
        rx.url.clone(),
        "--text".into(),
        "from the cli".into(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = r["id"].as_str().unwrap().to_string();
    h.wait_status(&id, "failed").await;

    let out = run(vec!["messages".into(), "get".into(), id.clone()]).await;
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["status"], "failed");
    let out = run(vec!["dlq".into(), "list".into()]).await;
    let dl: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dl["data"][0]["message_id"], id.as_str());
    rx.answer(200);
    let out = run(vec!["dlq".into(), "replay".into(), id.clone()]).await;
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["replayed"], 1);
    h.wait_status(&id, "sent").await;

    let out = run(vec!["send".into(), "--to-user".into(), "u".into()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("validation_failed"),
        "{}",
        text(&out.stderr)
    );
    let out = run(vec!["messages".into(), "get".into(), "msg_missing".into()]).await;
    assert_eq!(out.status.code(), Some(1));
    h.stop().await;
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `herald config check | head -1`: the reader goes away after one line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["config", "check"])
        .env_remove("HERALD_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // close the read end at once
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_are_read_and_handled_from_the_command_line() {
    let h = TestHerald::start_with(|c| {
        c.alert_routes = vec![herald::core::alerts::routes::RouteConfig {
            id: "ops".into(),
            users: vec!["u-1".into()],
            routing_key: Some(herald::config::Secret::new("cli-routing-key-0123456789")),
            ..Default::default()
        }];
    })
    .await;
    let r = h
        .http
        .post(h.url("/v1/alerts/events"))
        .json(&serde_json::json!({"routing_key": "cli-routing-key-0123456789", "event_action": "trigger",
            "payload": {"summary": "cron failed", "source": "cron01", "severity": "warning"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let env = [("HERALD_URL", h.base.as_str()), ("HERALD_API_KEY", ADMIN)];
    let out = herald(&["incidents", "list", "--status", "triggered"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(list["data"][0]["title"], "cron failed");
    let out = herald(&["incidents", "ack", &id, "--reason", "mine"], &env);
    assert!(
        text(&out.stdout).contains("\"acknowledged\""),
        "{}",
        text(&out.stdout)
    );
    let out = herald(&["incidents", "resolve", &id], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = herald(&["incidents", "get", &id], &env);
    assert!(
        text(&out.stdout).contains("\"resolved\""),
        "{}",
        text(&out.stdout)
    );
    let out = herald(&["incidents", "list", "--severity", "P9"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("severity"),
        "{}",
        text(&out.stderr)
    );
    h.stop().await;
}
