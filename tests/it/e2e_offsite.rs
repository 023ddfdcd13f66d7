//! Off-site copies on a real S3-compatible server (moto, with signatures checked against its
//! IAM): a backup uploaded with its checksum is listed, fetched and restored; keep-N prunes
//! there; a corrupted object and a wrong key are refused.

use crate::utils::TestHerald;
use herald::backup::{self, offsite};
use herald::config::{Backend, OffsiteConfig, Secret};
use herald::store::Messages;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct S3Peer {
    child: Child,
    info: Value,
}

impl Drop for S3Peer {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // it serves until its stdin closes
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3_peer.py")
}

fn start_s3() -> S3Peer {
    let port = crate::utils::process::free_port();
    let mut child = Command::new(crate::utils::python())
        .arg(script())
        .args(["serve", "--port", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start the S3 server (moto)");
    // Its first line, once it is ready (it exits with an error otherwise, ending the read).
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: Value = serde_json::from_str(&line)
        .unwrap_or_else(|_| panic!("the S3 server did not start: {line:?}"));
    S3Peer { child, info }
}

fn config(s3: &S3Peer, keep: usize) -> OffsiteConfig {
    OffsiteConfig {
        endpoint: s3.info["endpoint"].as_str().unwrap().into(),
        bucket: s3.info["bucket"].as_str().unwrap().into(),
        region: "us-east-1".into(),
        prefix: "prod/herald/".into(),
        access_key_id: Secret::new(s3.info["access_key_id"].as_str().unwrap()),
        secret_access_key: Secret::new(s3.info["secret_access_key"].as_str().unwrap()),
        keep,
        path_style: true,
    }
}

#[tokio::test]
async fn an_offsite_copy_restores_keep_n_prunes_and_damage_or_a_wrong_key_is_refused() {
    let s3 = start_s3();
    let cfg = config(&s3, 2);
    let h = TestHerald::start().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let (code, r) = h
            .send(json!({"to":{"user":format!("u-{i}")},"content":{"text":format!("m{i}")}}))
            .await;
        assert_eq!(code, 202);
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    let db = h.dir.path().join("herald.db");
    let local = h.dir.path().join("backups");
    // Three backups copied off-site; two are kept there.
    let mut names = Vec::new();
    for _ in 0..3 {
        let c = backup::create(&Backend::Sqlite(db.clone()), &local, None)
            .await
            .unwrap();
        names.push(offsite::push(&cfg, &c.path).await.unwrap());
        offsite::prune(&cfg).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // names differ by second
    }
    let listed: Vec<String> = offsite::list(&cfg)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(listed, names[1..].to_vec(), "the newest two are kept");

    // Region loss: fetch the newest into an empty place, verify, restore, read every message.
    let elsewhere = tempfile::tempdir().unwrap();
    let fetched = offsite::fetch(&cfg, &names[2], elsewhere.path())
        .await
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&fetched).unwrap().permissions().mode() & 0o777,
        0o600
    );
    backup::verify(&fetched, None).await.unwrap();
    let target = elsewhere.path().join("restored.db");
    backup::restore(
        &fetched,
        &format!("sqlite://{}", target.display()),
        None,
        false,
        "test",
        "region loss",
    )
    .await
    .unwrap();
    let store = herald::store::sqlite::SqliteStore::open(&target, false).unwrap();
    for id in &ids {
        assert!(
            store.get_message(id).await.unwrap().is_some(),
            "{id} restored"
        );
    }

    // Bit rot there: the fetch refuses the copy and writes nothing.
    let status = Command::new(crate::utils::python())
        .arg(script())
        .arg("corrupt")
        .args(["--endpoint", s3.info["endpoint"].as_str().unwrap()])
        .args(["--bucket", s3.info["bucket"].as_str().unwrap()])
        .args(["--key", &format!("prod/herald/{}", names[2])])
        .args([
            "--access-key-id",
            s3.info["access_key_id"].as_str().unwrap(),
        ])
        .args([
            "--secret-access-key",
            s3.info["secret_access_key"].as_str().unwrap(),
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let again = tempfile::tempdir().unwrap();
    let err = offsite::fetch(&cfg, &names[2], again.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("SHA-256"), "{err}");
    assert_eq!(std::fs::read_dir(again.path()).unwrap().count(), 0);

    // A wrong secret is refused by the server's signature check.
    let mut wrong = cfg.clone();
    wrong.secret_access_key = Secret::new("not-the-secret");
    let err = offsite::list(&wrong).await.unwrap_err().to_string();
    assert!(err.contains("403"), "{err}");

    // The CLI: list and fetch latest from the configuration.
    let conf = h.dir.path().join("offsite.toml");
    std::fs::write(
        &conf,
        format!(
            "[storage]\nurl = \"sqlite://{}\"\n[backup.offsite]\nendpoint = \"{}\"\nbucket = \"{}\"\nprefix = \"prod/herald/\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nkeep = 2\n",
            db.display(),
            cfg.endpoint,
            cfg.bucket,
            cfg.access_key_id.expose(),
            cfg.secret_access_key.expose()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["backup", "offsite", "list", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains(&names[1]), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["backup", "offsite", "fetch", "latest", "--out"])
        .arg(again.path())
        .arg("--config")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the corrupted newest copy is refused"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("SHA-256"));

    // An incremental whose full backup never reached the bucket (a failed upload): pushing
    // it copies the missing link first, so the copy there restores.
    let mut chain_cfg = cfg.clone();
    chain_cfg.prefix = "chain/".into();
    let chain_dir = h.dir.path().join("chain");
    let base = backup::create(&Backend::Sqlite(db.clone()), &chain_dir, None)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let next = backup::create_auto(&Backend::Sqlite(db.clone()), &chain_dir, None, 5)
        .await
        .unwrap();
    assert!(next.manifest.link.is_some());
    offsite::push(&chain_cfg, &next.path).await.unwrap();
    let there: Vec<String> = offsite::list(&chain_cfg)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(there, vec![name(&base.path), name(&next.path)]);
    let into = tempfile::tempdir().unwrap();
    let fetched = offsite::fetch(&chain_cfg, &name(&next.path), into.path())
        .await
        .unwrap();
    backup::verify(&fetched, None).await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn scheduled_backups_are_copied_off_site_and_measured() {
    let s3 = start_s3();
    let cfg = config(&s3, 2);
    let offsite_cfg = cfg.clone();
    let h = TestHerald::start_with(|c| {
        c.backup.every = Some(herald::config::Dur::secs(1));
        c.backup.keep = 2;
        c.backup.full_every = 3;
        c.backup.offsite = Some(offsite_cfg);
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let there = offsite::list(&cfg).await.unwrap();
        let ts = h
            .metric_sum("herald_backup_offsite_last_success_timestamp_seconds")
            .await;
        if there.len() >= 4 && ts > 0.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled off-site copies: {there:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Stopped first, so that no newer copy prunes the one fetched.
    h.stop().await;
    // Chains of three (full_every 3): keep 2 keeps the newest two and what they need.
    let there = offsite::list(&cfg).await.unwrap();
    assert!(there.len() <= 4, "pruned to keep and the chain: {there:?}");
    // Of any two backups in a row one is an incremental: fetch the newest of those.
    let bucket = offsite::Bucket::new(&cfg).unwrap();
    let mut incremental = None;
    for o in there.iter().rev() {
        if bucket.parent_of(&o.name).await.unwrap().is_some() {
            incremental = Some(o.name.clone());
            break;
        }
    }
    let name = incremental.expect("an incremental among the kept copies");
    let into = tempfile::tempdir().unwrap();
    let path = offsite::fetch(&cfg, &name, into.path()).await.unwrap();
    let fetched = std::fs::read_dir(into.path()).unwrap().count() as u32;
    let m = backup::verify(&path, None).await.unwrap();
    let link = m.link.expect("an incremental");
    assert_eq!(fetched, link.position + 1, "the whole chain came");
}
