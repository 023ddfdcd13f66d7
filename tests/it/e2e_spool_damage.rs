//! The spool keeps every acknowledged message through damage: a record torn mid-append (a
//! crash) is cut off at the next open, a write that fails for a full disk is cut back and
//! refused (never acknowledged, never followed by later appends), and replay resynchronises
//! after damaged bytes, storing every valid record and keeping the damaged file aside.

use herald::core::message::{Content, NewDelivery, NewMessage};
use herald::core::types::{Channel, Priority, Strategy, new_id, now_millis};
use herald::spool::Spool;
use herald::store::Messages;
use herald::store::sqlite::SqliteStore;
use std::path::Path;
use std::process::Command;

fn message() -> NewMessage {
    let now = now_millis();
    NewMessage {
        id: new_id("msg"),
        priority: Priority::Normal,
        strategy: Strategy::Failover,
        created_at: now,
        send_at: now,
        expires_at: now + 3_600_000,
        content: Content {
            text: Some("x".repeat(200)),
            ..Default::default()
        },
        template: None,
        params: None,
        metadata: Default::default(),
        deliveries: vec![NewDelivery {
            id: new_id("dlv"),
            channel: Channel::Inbox,
            to: "u-1".into(),
            content: None,
            skip: None,
        }],
        idempotency: None,
        sender: "test".into(),
        trace: None,
        recipient_limits: vec![],
    }
}

/// Replays `data`'s spool into a fresh SQLite store; true for each id found there.
async fn replayed(data: &Path, ids: &[String]) -> Vec<bool> {
    let spool = Spool::open(data).unwrap();
    let db = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db.path().join("h.db"), false).unwrap();
    spool.replay(store.as_ref()).await.unwrap();
    let mut found = Vec::new();
    for id in ids {
        found.push(store.get_message(id).await.unwrap().is_some());
    }
    found
}

fn append_raw(data: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("spool/current.log"))
        .unwrap();
    f.write_all(bytes).unwrap();
}

#[tokio::test]
async fn a_record_torn_mid_append_loses_nothing_acknowledged_after_it() {
    let t = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let spool = Spool::open(t.path()).unwrap();
        for _ in 0..3 {
            let m = message();
            ids.push(m.id.clone());
            spool.append(vec![m]).await.unwrap();
        }
    }
    // The process died in the middle of the next append: half a record at the end.
    let torn = herald::spool::encode(&serde_json::to_vec(&message()).unwrap());
    append_raw(t.path(), &torn[..torn.len() / 2]);
    {
        // Restarted: appends go on, acknowledged.
        let spool = Spool::open(t.path()).unwrap();
        for _ in 0..2 {
            let m = message();
            ids.push(m.id.clone());
            spool.append(vec![m]).await.unwrap();
        }
    }
    assert_eq!(replayed(t.path(), &ids).await, vec![true; 5]);
    let left: Vec<_> = std::fs::read_dir(t.path().join("spool"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        left,
        vec!["current.log".to_string()],
        "a torn tail needs no quarantine"
    );
}

#[tokio::test]
async fn damage_in_the_middle_is_skipped_and_the_file_kept_aside() {
    let t = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    let spool = Spool::open(t.path()).unwrap();
    let m = message();
    ids.push(m.id.clone());
    spool.append(vec![m]).await.unwrap();
    drop(spool);
    // A fragment, then records written after it (what an older version did after a failed
    // write): all of these were acknowledged.
    append_raw(t.path(), b"\x40\x00\x00\x00garbage");
    for _ in 0..3 {
        let m = message();
        ids.push(m.id.clone());
        append_raw(
            t.path(),
            &herald::spool::encode(&serde_json::to_vec(&m).unwrap()),
        );
    }
    assert_eq!(replayed(t.path(), &ids).await, vec![true; 4]);
    let quarantined = std::fs::read_dir(t.path().join("spool"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".quarantined"))
        .count();
    assert_eq!(quarantined, 1, "the damaged bytes are kept, not deleted");
}

/// A full disk: the spool lives on a 1 MiB tmpfs (mounted for the test; needs root, as the
/// test command and CI run). Appends fail once it is full and are refused; after space is
/// freed, appends go on; every acknowledged message is replayed.
#[tokio::test]
async fn a_full_disk_refuses_appends_and_keeps_every_acknowledged_one() {
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "cannot mount a tmpfs (the test needs root)");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    std::fs::write(mnt.join("filler"), vec![0u8; 600 * 1024]).unwrap();
    let data = mnt.join("data");
    let spool = Spool::open(&data).unwrap();
    let mut acked = Vec::new();
    let mut refused = 0;
    for _ in 0..2_000 {
        let batch: Vec<NewMessage> = (0..4).map(|_| message()).collect();
        let ids: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
        match spool.append(batch).await {
            Ok(()) => acked.extend(ids),
            Err(_) => {
                refused += 1;
                break;
            }
        }
    }
    assert_eq!(refused, 1, "the disk never filled");
    // Space comes back; appends go on after the cut-back point.
    std::fs::remove_file(mnt.join("filler")).unwrap();
    for _ in 0..20 {
        let m = message();
        let id = m.id.clone();
        spool.append(vec![m]).await.unwrap();
        acked.push(id);
    }
    drop(spool);
    let found = replayed(&data, &acked).await;
    let lost = found.iter().filter(|f| !**f).count();
    assert_eq!(
        lost,
        0,
        "{lost} of {} acknowledged messages lost",
        acked.len()
    );
}
