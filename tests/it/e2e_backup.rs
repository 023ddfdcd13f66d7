//! Backups: a snapshot taken under load restores consistently, damage and missing keys are
//! caught by `verify`, and a backup moves between SQLite and PostgreSQL with every message.

use crate::utils::{TestHerald, pg};
use herald::backup;
use herald::config::Backend;
use herald::core::types::now_millis;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn inbox_msg(i: usize) -> Value {
    json!({"to": {"user": format!("user-{}", i % 7)}, "content": {"text": format!("hello {i}")}})
}

async fn restored_store(path: &Path) -> Arc<dyn herald::store::Store> {
    herald::store::sqlite::SqliteStore::open(path, false).unwrap()
}

#[tokio::test]
async fn a_backup_taken_while_accepting_holds_every_message_acknowledged_before_it() {
    let h = Arc::new(TestHerald::start().await);
    let db = h.dir.path().join("herald.db");
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut senders = Vec::new();
    for w in 0..4 {
        let (h, acked, stop) = (h.clone(), acked.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let mut i = w * 100_000;
            while !stop.is_cancelled() && i < w * 100_000 + 5_000 {
                let (code, body) = h.send(inbox_msg(i)).await;
                assert_eq!(code, 202, "{body}");
                let id = body["id"].as_str().unwrap().to_string();
                acked.lock().unwrap().push((id, now_millis()));
                i += 1;
            }
        }));
    }
    // Let load build up, then back up while it goes on.
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out = h.dir.path().join("backups");
    let created = backup::create(&Backend::Sqlite(db.clone()), &out, None)
        .await
        .unwrap();
    let after_backup = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    for s in senders {
        s.await.unwrap();
    }
    let all = acked.lock().unwrap().clone();
    assert!(
        all.len() > after_backup,
        "sends went on after the snapshot ({} then {})",
        after_backup,
        all.len()
    );
    let before: Vec<&(String, i64)> = all
        .iter()
        .filter(|(_, at)| *at < created.manifest.created_at_ms)
        .collect();
    assert!(before.len() >= 300, "{} acknowledged before", before.len());

    backup::verify(&created.path, None).await.unwrap();
    let target = h.dir.path().join("restored/herald.db");
    backup::restore(
        &created.path,
        &format!("sqlite://{}", target.display()),
        None,
        false,
        "test",
        "drill",
    )
    .await
    .unwrap();
    let store = restored_store(&target).await;
    let source = restored_store(&db).await;
    let mut missing = Vec::new();
    for (id, _) in &before {
        match store.get_message(id).await.unwrap() {
            None => missing.push(id.clone()),
            Some(m) => {
                // The restored message has its deliveries and a status it really had.
                assert_eq!(m.deliveries.len(), 1, "{id}");
                assert!(
                    ["queued", "sending", "sent", "delivered"].contains(&m.status.as_str()),
                    "{id}: {}",
                    m.status
                );
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages missing, e.g. {:?}",
        missing.len(),
        before.len(),
        &missing[..missing.len().min(3)]
    );
    // And no more than the snapshot held: messages acknowledged well after it are absent
    // unless they were already committed at its start.
    let total = store
        .list_messages(herald::store::ListFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len() as u64;
    assert_eq!(
        total,
        created.manifest.part("messages").unwrap().rows,
        "restored messages = the manifest's count"
    );
    let live = source
        .list_messages(herald::store::ListFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    assert!(
        live as u64 > total,
        "the live database moved on ({live} > {total})"
    );
    Arc::try_unwrap(h).ok().unwrap().stop().await;
}

fn flip_byte(src: &Path, dst: &Path, at: usize) {
    let mut b = std::fs::read(src).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x01;
    std::fs::write(dst, b).unwrap();
}

#[tokio::test]
async fn verify_fails_on_a_flipped_byte_a_cut_file_and_a_missing_identity() {
    let h = TestHerald::start().await;
    for i in 0..200 {
        assert_eq!(h.send(inbox_msg(i)).await.0, 202);
    }
    let db = h.dir.path().join("herald.db");
    let out = h.dir.path().join("backups");
    let id = age::x25519::Identity::generate();
    let id_file = h.dir.path().join("backup.key");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&id_file, id.to_string().expose_secret()).unwrap();
    }
    let other_file = h.dir.path().join("other.key");
    {
        use age::secrecy::ExposeSecret;
        let other = age::x25519::Identity::generate();
        std::fs::write(&other_file, other.to_string().expose_secret()).unwrap();
    }
    let plain = backup::create(&Backend::Sqlite(db.clone()), &out, None)
        .await
        .unwrap();
    let sealed = backup::create(
        &Backend::Sqlite(db.clone()),
        &out,
        Some(&id.to_public().to_string()),
    )
    .await
    .unwrap();
    assert!(sealed.path.to_string_lossy().ends_with(".tar.zst.age"));
    assert_eq!(backup::list(&out).unwrap().len(), 2);

    backup::verify(&plain.path, None).await.unwrap();
    let m = backup::verify(&sealed.path, Some(&id_file)).await.unwrap();
    assert_eq!(m.part("messages").unwrap().rows, 200);

    let e = backup::verify(&sealed.path, None).await.unwrap_err();
    assert!(matches!(e, backup::BackupError::Encrypted(_)), "{e}");
    let e = backup::verify(&sealed.path, Some(&other_file))
        .await
        .unwrap_err();
    assert!(matches!(e, backup::BackupError::Identity(_)), "{e}");

    // A flipped byte anywhere: early, middle, near the end; plain and encrypted.
    let len = std::fs::metadata(&plain.path).unwrap().len() as usize;
    for at in [40, len / 3, len / 2, len - 10] {
        let bad = h.dir.path().join(format!("bad-{at}.tar.zst"));
        flip_byte(&plain.path, &bad, at);
        assert!(
            backup::verify(&bad, None).await.is_err(),
            "a flipped byte at {at} of {len} passed"
        );
    }
    let elen = std::fs::metadata(&sealed.path).unwrap().len() as usize;
    for at in [elen / 2, elen - 5] {
        let bad = h.dir.path().join(format!("bad-{at}.tar.zst.age"));
        flip_byte(&sealed.path, &bad, at);
        assert!(
            backup::verify(&bad, Some(&id_file)).await.is_err(),
            "a flipped byte at {at} of {elen} passed"
        );
    }
    // Cut short.
    let cut = h.dir.path().join("cut.tar.zst");
    let bytes = std::fs::read(&plain.path).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 16]).unwrap();
    assert!(backup::verify(&cut, None).await.is_err());
    h.stop().await;
}

#[tokio::test]
async fn a_sqlite_backup_restored_into_postgres_is_served_there_and_comes_back() {
    // Source: SQLite with sent, dead-lettered and inbox messages, an API key and a mode.
    let h = TestHerald::start().await;
    let mut ids = Vec::new();
    for i in 0..50 {
        let (code, body) = h.send(inbox_msg(i)).await;
        assert_eq!(code, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (code, key) = h
        .call(
            reqwest::Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "billing", "role": "sender"})),
        )
        .await;
    assert_eq!(code, 201, "{key}");
    let secret = key["key"].as_str().unwrap().to_string();
    // A contact, and a message whose email it declined (a skip note).
    let (code, c) = h
        .call(
            reqwest::Method::PUT,
            "/v1/contacts/u-9",
            Some(
                json!({"name": "Nine", "time_zone": "Europe/Berlin", "phones": ["+8613800138000"],
                         "preferences": {"opt_out": {"categories": ["news"]}}}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{c}");
    let (code, body) = h
        .send(json!({"to": {"user": "u-9"}, "content": {"text": "n"}, "metadata": {"category": "news"}}))
        .await;
    assert_eq!(code, 202, "{body}");
    ids.push(body["id"].as_str().unwrap().to_string());
    for id in &ids[..50] {
        h.wait_status(id, "sent").await;
    }
    let db = h.dir.path().join("herald.db");
    let out = h.dir.path().join("backups");
    let mut expected = Vec::new();
    for id in &ids {
        let (_, m) = h.get(&format!("/v1/messages/{id}")).await;
        expected.push(m);
    }
    let keep = tempfile::tempdir().unwrap();
    let created = backup::create(&Backend::Sqlite(db), &out, None)
        .await
        .unwrap();
    let file = keep.path().join("b.tar.zst");
    std::fs::copy(&created.path, &file).unwrap();
    h.stop().await;

    // Into PostgreSQL; a node there serves every message as it was.
    let url = pg::fresh_db().await;
    backup::restore(&file, &url, None, false, "test", "move to postgres")
        .await
        .unwrap();
    let e = backup::restore(&file, &url, None, false, "test", "again")
        .await
        .unwrap_err();
    assert!(matches!(e, backup::BackupError::NotEmpty(_)), "{e}");
    let node = TestHerald::start_with(|c| c.storage.url = Some(url.clone())).await;
    for (id, want) in ids.iter().zip(&expected) {
        let (code, got) = node.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(code, 200, "{id}: {got}");
        assert_eq!(got, *want, "{id} differs after the restore");
    }
    let (code, _) = node
        .call_as(&secret, reqwest::Method::GET, "/v1/messages?limit=1", None)
        .await;
    assert_eq!(code, 200, "the restored API key works");
    let (code, got) = node.get("/v1/contacts/u-9").await;
    assert_eq!(code, 200, "the contact is restored: {got}");
    assert_eq!(
        (got["name"].as_str(), got["version"].as_i64()),
        (Some("Nine"), Some(1))
    );
    let (_, audit) = node.get("/v1/audit?limit=100").await;
    assert!(
        audit.to_string().contains("backup.restore"),
        "the restore is audited: {audit}"
    );
    // New messages get audit ids and rows after the restored ones.
    let (code, body) = node.send(inbox_msg(999)).await;
    assert_eq!(code, 202, "{body}");
    node.wait_status(body["id"].as_str().unwrap(), "sent").await;

    // And back: PostgreSQL → SQLite, with the new message too.
    let back_dir = tempfile::tempdir().unwrap();
    let from_pg = backup::create(&Backend::Postgres(url.clone()), back_dir.path(), None)
        .await
        .unwrap();
    assert_eq!(from_pg.manifest.source, "postgres");
    assert_eq!(from_pg.manifest.part("messages").unwrap().rows, 52);
    assert_eq!(from_pg.manifest.part("contacts").unwrap().rows, 1);
    assert_eq!(from_pg.manifest.part("delivery_notes").unwrap().rows, 1);
    backup::verify(&from_pg.path, None).await.unwrap();
    node.stop().await;
    let sqlite_again = back_dir.path().join("again/herald.db");
    backup::restore(
        &from_pg.path,
        &format!("sqlite://{}", sqlite_again.display()),
        None,
        false,
        "test",
        "back to sqlite",
    )
    .await
    .unwrap();
    let store = restored_store(&sqlite_again).await;
    for id in &ids[..50] {
        let m = store.get_message(id).await.unwrap().unwrap();
        assert_eq!(m.status.as_str(), "sent");
    }
    let skipped = store.get_message(&ids[50]).await.unwrap().unwrap();
    assert_eq!(skipped.status.as_str(), "cancelled");
    assert_eq!(
        skipped.deliveries[0]
            .reason
            .as_ref()
            .map(|r| r.code.as_str()),
        Some("opted_out_category")
    );
    assert!(store.get_contact("u-9").await.unwrap().is_some());
}

#[tokio::test]
async fn scheduled_backups_run_keep_the_newest_and_are_measured() {
    let h = TestHerald::start_with(|c| {
        c.backup.every = Some(herald::config::Dur::secs(1));
        c.backup.keep = 2;
    })
    .await;
    for i in 0..10 {
        assert_eq!(h.send(inbox_msg(i)).await.0, 202);
    }
    let dir = h.dir.path().join("backups");
    // Bounded wait: at least three backups taken (names differ), two kept.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 3 && std::time::Instant::now() < deadline {
        for b in backup::list(&dir).unwrap() {
            seen.insert(b.path);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 3, "backups seen: {seen:?}");
    // Each backup is written, then the oldest pruned: a listing between the two sees one
    // more for a moment. Bounded wait for the pruned listing.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut kept = backup::list(&dir).unwrap();
    while kept.len() > 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        kept = backup::list(&dir).unwrap();
    }
    assert!(kept.len() <= 2, "{} kept", kept.len());
    // A backup is written every second and the oldest pruned, so the newest listed may be
    // gone by the time a slow machine reads it: copy it aside first (bounded retries).
    let aside = h.dir.path().join("verify-copy.tar.zst");
    let mut copied = false;
    for _ in 0..50 {
        let listed = backup::list(&dir).unwrap();
        if let Some(newest) = listed.last()
            && std::fs::copy(&newest.path, &aside).is_ok()
        {
            copied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(copied, "no backup could be copied aside");
    backup::verify(&aside, None).await.unwrap();
    let metrics = h.metrics().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("herald_backup_last_success_timestamp_seconds "))
        .unwrap_or_else(|| panic!("no backup metric in {metrics}"));
    let ts: i64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(ts > now_millis() / 1000 - 60, "{line}");
    assert!(metrics.contains("herald_backup_interval_seconds 1"));
    h.stop().await;
}
