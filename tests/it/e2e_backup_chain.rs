//! Incremental backups: a chain of a full backup and three incrementals restores to exactly
//! the rows of a full backup taken at the same moment; each incremental carries only what
//! changed; a damaged or missing link is caught; pruning keeps what a kept backup needs.

use crate::utils::TestHerald;
use herald::backup;
use herald::config::Backend;
use serde_json::json;
use std::path::Path;

async fn changes(h: &TestHerald, round: usize) {
    // The first round makes the state the later ones change a little.
    let n = if round == 0 { 200 } else { 15 };
    for i in 0..n {
        let (code, r) = h
            .send(json!({"to":{"user":format!("u-{round}-{i}")},"content":{"text":format!("r{round} m{i}")}}))
            .await;
        assert_eq!(code, 202, "{r}");
    }
    // An update and a delete: a contact written, changed and another one removed.
    let id = format!("c-{round}");
    let (code, _) = h
        .call(
            reqwest::Method::PUT,
            &format!("/v1/contacts/{id}"),
            Some(json!({"id": id, "name": format!("round {round}")})),
        )
        .await;
    assert!(code == 200 || code == 201);
    if round > 0 {
        let (code, _) = h
            .call(
                reqwest::Method::DELETE,
                &format!("/v1/contacts/c-{}", round - 1),
                None,
            )
            .await;
        assert_eq!(code, 204);
    }
}

fn changed_rows(m: &backup::Manifest) -> (u64, u64) {
    let sum = |suffix: &str| {
        m.changes
            .iter()
            .filter(|p| p.file.ends_with(suffix))
            .map(|p| p.rows)
            .sum()
    };
    (sum(".upserts.jsonl"), sum(".deletes.jsonl"))
}

#[tokio::test]
async fn a_chain_of_three_restores_to_exactly_a_full_backup_of_the_same_moment() {
    let mut h = TestHerald::start_with(|c| c.dispatch.enabled = false).await;
    let db = Backend::Sqlite(h.dir.path().join("herald.db"));
    let dir = h.dir.path().join("backups");
    changes(&h, 0).await;
    let full = backup::create(&db, &dir, None).await.unwrap();
    assert!(full.manifest.link.is_none());
    let mut chain = Vec::new();
    for round in 1..=3 {
        changes(&h, round).await;
        if round == 3 {
            // Nothing writes from here on: a full backup taken after the last link is of
            // the same moment.
            h.server.take().unwrap().shutdown().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await; // names differ
        let c = backup::create_auto(&db, &dir, None, 10).await.unwrap();
        let link = c.manifest.link.clone().expect("an incremental");
        assert_eq!(link.position, round as u32);
        assert_eq!(link.base, full.path.file_name().unwrap().to_str().unwrap());
        let (ups, dels) = changed_rows(&c.manifest);
        // Each round adds 15 messages (with their deliveries) and a contact, and deletes
        // one: far less than the whole state.
        assert!(
            ups >= 16 && ups < c.manifest.rows() / 2,
            "{ups} of {}",
            c.manifest.rows()
        );
        assert_eq!(dels, 1, "the deleted contact");
        chain.push(c);
    }
    let newest = chain.last().unwrap();
    let same_moment = backup::create(&db, &h.dir.path().join("full-now"), None)
        .await
        .unwrap();
    let verified = backup::verify(&newest.path, None).await.unwrap();
    assert_eq!(
        verified.tables, same_moment.manifest.tables,
        "the chain's state is the full one's"
    );

    // Restored, both hold the same rows: every message, the contacts as they are now.
    let a = h.dir.path().join("from-chain.db");
    let b = h.dir.path().join("from-full.db");
    backup::restore(
        &newest.path,
        &format!("sqlite://{}", a.display()),
        None,
        false,
        "test",
        "chain",
    )
    .await
    .unwrap();
    backup::restore(
        &same_moment.path,
        &format!("sqlite://{}", b.display()),
        None,
        false,
        "test",
        "full",
    )
    .await
    .unwrap();
    let dump = |p: &Path| {
        let p = p.to_path_buf();
        async move {
            backup::create(&Backend::Sqlite(p.clone()), &p.with_extension("dump"), None)
                .await
                .unwrap()
                .manifest
        }
    };
    let (ma, mb) = (dump(&a).await, dump(&b).await);
    for (x, y) in ma.tables.iter().zip(&mb.tables) {
        // The audit logs differ by the restore's own entry (it names its file).
        if x.name != "audit" {
            assert_eq!(x, y, "{}", x.name);
        }
    }
    let messages = ma.tables.iter().find(|p| p.name == "messages").unwrap();
    assert_eq!(messages.rows, 245, "200, then three rounds of 15");

    // A link changed after the fact breaks the chain; a missing one too.
    let middle = &chain[1].path;
    let mut bytes = std::fs::read(middle).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(middle, &bytes).unwrap();
    let err = backup::verify(&newest.path, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("chain is broken"), "{err}");
    std::fs::remove_file(middle).unwrap();
    let err = backup::verify(&newest.path, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not beside it"), "{err}");
}

#[tokio::test]
async fn pruning_keeps_every_backup_a_kept_incremental_needs() {
    let h = TestHerald::start_with(|c| c.dispatch.enabled = false).await;
    let db = Backend::Sqlite(h.dir.path().join("herald.db"));
    let dir = h.dir.path().join("backups");
    let mut names = Vec::new();
    for round in 0..4 {
        changes(&h, round).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let c = backup::create_auto(&db, &dir, None, 4).await.unwrap();
        assert_eq!(c.manifest.link.is_some(), round > 0);
        names.push(c.path);
    }
    // keep 2: the newest two are incrementals that need the two before.
    assert!(backup::prune(&dir, 2).unwrap().is_empty());
    // full_every 4: the chain is full, the next backup starts a new one.
    changes(&h, 4).await;
    let next = backup::create_auto(&db, &dir, None, 4).await.unwrap();
    assert!(next.manifest.link.is_none(), "a new chain begins");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let after = backup::create_auto(&db, &dir, None, 4).await.unwrap();
    assert!(after.manifest.link.is_some());
    let gone = backup::prune(&dir, 2).unwrap();
    assert_eq!(gone, names, "the old chain goes whole");
    for p in &names {
        assert!(!herald::backup::chain::index_path(p).exists());
    }
    backup::verify(&after.path, None).await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn a_chain_on_postgres_equals_a_full_backup_of_the_same_moment() {
    let url = crate::utils::pg::fresh_db().await;
    let u = url.clone();
    let mut h = TestHerald::start_with(move |c| {
        c.storage.url = Some(u);
        c.dispatch.enabled = false;
    })
    .await;
    let db = Backend::Postgres(url);
    let dir = h.dir.path().join("backups");
    changes(&h, 0).await;
    backup::create(&db, &dir, None).await.unwrap();
    changes(&h, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let first = backup::create_auto(&db, &dir, None, 10).await.unwrap();
    assert_eq!(first.manifest.link.as_ref().map(|l| l.position), Some(1));
    changes(&h, 2).await;
    h.server.take().unwrap().shutdown().await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = backup::create_auto(&db, &dir, None, 10).await.unwrap();
    assert_eq!(second.manifest.link.as_ref().map(|l| l.position), Some(2));
    assert_eq!(changed_rows(&second.manifest).1, 1, "the deleted contact");
    let full = backup::create(&db, &h.dir.path().join("full-now"), None)
        .await
        .unwrap();
    let verified = backup::verify(&second.path, None).await.unwrap();
    assert_eq!(verified.tables, full.manifest.tables);
}
