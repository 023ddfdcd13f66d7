//! The local spool: when storage is unreachable, accepted messages are appended here (length
//! and CRC-32 per record, fsync'd, group-committed: one fsync for all appends waiting) and the
//! caller gets its `202`. A replayer moves them into storage when it answers again; message
//! ids are fixed when spooled, so replaying twice stores nothing twice. A restart replays the
//! spool before serving.
//!
//! Files: `<data_dir>/spool/current.log` takes appends; a replay first rotates it to
//! `replay-<id>.log`, stores its records, then deletes it — or, when some of its bytes were
//! damaged, keeps it as `replay-<id>.quarantined` once every readable record is stored.

mod record;

use crate::core::message::NewMessage;
use crate::store::{Accepted, Queue, StoreError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

enum Job {
    Append(Vec<NewMessage>, oneshot::Sender<std::io::Result<()>>),
    Rotate(oneshot::Sender<std::io::Result<Option<PathBuf>>>),
}

/// What a replay's accepts answered.
#[derive(Debug, Default)]
struct Tally {
    new: usize,
    existing: usize,
    mismatch: usize,
    refused: usize,
}

impl Tally {
    fn count(&mut self, o: &Accepted) {
        match o {
            Accepted::New(_) => self.new += 1,
            Accepted::Existing(_) => self.existing += 1,
            Accepted::Mismatch => self.mismatch += 1,
            Accepted::RecipientLimited { .. } => self.refused += 1,
        }
    }
}

pub struct Spool {
    dir: PathBuf,
    tx: mpsc::UnboundedSender<Job>,
    depth: Arc<AtomicU64>,
    replaying: tokio::sync::Mutex<()>,
    /// Storage was found unreachable: accept straight into the spool until it answers again.
    down: std::sync::atomic::AtomicBool,
}

pub use record::{decode, encode};

fn open_current(dir: &Path) -> std::io::Result<std::fs::File> {
    crate::private_fs::options()
        .create(true)
        .append(true)
        .open(dir.join("current.log"))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Appends gathered together and made durable by one fsync. If any write of the group fails
/// (a full disk), the file is cut back to where the group began and every append of the group
/// is refused: an acknowledged record is in the file, a refused one is not, and nothing is
/// ever appended after a fragment.
struct Group {
    start: u64,
    failed: Option<std::io::Error>,
    replies: Vec<oneshot::Sender<std::io::Result<()>>>,
}

fn cut_back(file: &std::fs::File, to: u64) {
    if let Err(e) = file.set_len(to) {
        tracing::error!(error = %e, "spool: cannot cut a failed append back; the next open will");
    }
}

fn finish(file: &std::fs::File, group: &mut Group, len: &mut u64) {
    let result = match group.failed.take() {
        Some(e) => Err(e),
        None => file.sync_data(),
    };
    if result.is_err() {
        cut_back(file, group.start);
        *len = group.start;
    }
    for reply in group.replies.drain(..) {
        let _ = reply.send(match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        });
    }
    group.start = *len;
}

fn writer(
    dir: PathBuf,
    mut file: std::fs::File,
    mut len: u64,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        let mut group = Group {
            start: len,
            failed: None,
            replies: Vec::new(),
        };
        for job in jobs {
            match job {
                Job::Append(batch, reply) => {
                    if group.failed.is_none() {
                        let mut buf = Vec::new();
                        let encoded = batch.iter().try_for_each(|m| {
                            serde_json::to_vec(m).map(|p| buf.extend(encode(&p)))
                        });
                        let written = encoded
                            .map_err(std::io::Error::other)
                            .and_then(|_| file.write_all(&buf));
                        match written {
                            Ok(()) => len += buf.len() as u64,
                            Err(e) => {
                                tracing::error!(error = %e, "spool: append failed; the group is refused and cut back");
                                cut_back(&file, group.start);
                                len = group.start;
                                group.failed = Some(e);
                            }
                        }
                    }
                    group.replies.push(reply);
                }
                Job::Rotate(reply) => {
                    // Appends gathered so far are made durable before the file moves.
                    finish(&file, &mut group, &mut len);
                    let r = (|| {
                        if len == 0 {
                            return Ok(None);
                        }
                        let to =
                            dir.join(format!("replay-{}.log", crate::core::types::new_id("s")));
                        std::fs::rename(dir.join("current.log"), &to)?;
                        file = open_current(&dir)?;
                        len = 0;
                        group.start = 0;
                        sync_dir(&dir);
                        Ok(Some(to))
                    })();
                    let _ = reply.send(r);
                }
            }
        }
        finish(&file, &mut group, &mut len);
    }
}

/// Opens `current.log` for appends, repaired: a torn tail (a crash mid-append; never
/// acknowledged) is cut off; damage with valid records after it moves the whole file aside
/// for replay, which recovers those records and quarantines the rest. Returns the file and
/// its length.
fn open_repaired(dir: &Path) -> std::io::Result<(std::fs::File, u64)> {
    let path = dir.join("current.log");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let d = decode(&bytes);
    if d.skipped > 0 {
        if bytes.len() - d.valid_end == d.skipped {
            tracing::warn!(
                bytes = d.skipped,
                "spool: a torn record at the end of current.log (never acknowledged) is cut off"
            );
            let f = open_current(dir)?;
            f.set_len(d.valid_end as u64)?;
            f.sync_all()?;
        } else {
            let to = dir.join(format!("replay-{}.log", crate::core::types::new_id("s")));
            tracing::error!(
                bytes = d.skipped,
                file = %to.display(),
                "spool: current.log is damaged before its end; moved aside for replay"
            );
            std::fs::rename(&path, &to)?;
            sync_dir(dir);
        }
    }
    let f = open_current(dir)?;
    let len = f.metadata()?.len();
    Ok((f, len))
}

impl Spool {
    pub fn open(data_dir: &Path) -> std::io::Result<Arc<Spool>> {
        let dir = data_dir.join("spool");
        crate::private_fs::dir(data_dir)?;
        crate::private_fs::dir(&dir)?;
        let (file, len) = open_repaired(&dir)?;
        let mut depth = 0u64;
        for f in std::fs::read_dir(&dir)?.flatten() {
            if f.path().extension().is_some_and(|e| e == "log") {
                let mut bytes = Vec::new();
                std::fs::File::open(f.path())?.read_to_end(&mut bytes)?;
                depth += decode(&bytes).records.len() as u64;
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let d = dir.clone();
        std::thread::Builder::new()
            .name("herald-spool".into())
            .spawn(move || writer(d, file, len, rx))?;
        Ok(Arc::new(Spool {
            dir,
            tx,
            depth: Arc::new(AtomicU64::new(depth)),
            replaying: tokio::sync::Mutex::new(()),
            down: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Whether storage is known to be unreachable.
    pub fn storage_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    pub fn set_storage_down(&self, down: bool) {
        if self.down.swap(down, Ordering::Relaxed) != down {
            if down {
                tracing::warn!("storage unreachable: accepting into the local spool");
            } else {
                tracing::info!("storage answers again");
            }
        }
    }

    /// Messages in the spool, not yet in storage.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Appends durably; returns after the fsync that covers these messages.
    pub async fn append(&self, batch: Vec<NewMessage>) -> std::io::Result<()> {
        let n = batch.len() as u64;
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Append(batch, tx))
            .map_err(|_| std::io::Error::other("the spool writer has stopped"))?;
        rx.await
            .map_err(|_| std::io::Error::other("the spool writer has stopped"))??;
        self.depth.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Moves every spooled message into storage; returns how many were stored. Stops at the
    /// first storage error, keeping what is not stored yet for the next try.
    pub async fn replay<S: Queue + ?Sized>(&self, store: &S) -> Result<usize, StoreError> {
        let _one_at_a_time = self.replaying.lock().await;
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Rotate(tx))
            .map_err(|_| StoreError::Unavailable("the spool writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the spool writer has stopped".into()))?
            .map_err(|e| StoreError::Unavailable(format!("spool: {e}")))?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|e| StoreError::Unavailable(format!("spool: {e}")))?
            .flatten()
            .map(|f| f.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("replay-"))
            })
            .collect();
        files.sort();
        let mut stored = 0;
        for f in files {
            let bytes =
                std::fs::read(&f).map_err(|e| StoreError::Unavailable(format!("spool: {e}")))?;
            let decoded = decode(&bytes);
            let mut messages = Vec::with_capacity(decoded.records.len());
            for r in &decoded.records {
                match serde_json::from_slice::<NewMessage>(r) {
                    // Limits were for the moment of sending: a spooled message was promised.
                    Ok(mut m) => {
                        m.recipient_limits.clear();
                        messages.push(m);
                    }
                    Err(e) => tracing::error!(error = %e, "unreadable spool record skipped"),
                }
            }
            let n = messages.len();
            let mut tally = Tally::default();
            for chunk in messages.chunks(500) {
                let outcomes = store.accept(chunk.to_vec()).await?;
                // A key reused meanwhile (on another node) for another message: this one was
                // acknowledged with its own id, so it is stored without the key.
                let mut again = Vec::new();
                for (m, o) in chunk.iter().zip(&outcomes) {
                    tally.count(o);
                    if matches!(o, Accepted::Mismatch) {
                        let mut m = m.clone();
                        m.idempotency = None;
                        again.push(m);
                    }
                }
                if !again.is_empty() {
                    tracing::warn!(
                        messages = again.len(),
                        "spool replay: idempotency keys were reused meanwhile for other messages; these are stored without their key"
                    );
                    store.accept(again).await?;
                }
            }
            if tally.new != n {
                tracing::warn!(file = %f.display(), new = tally.new, already_stored = tally.existing, key_reused = tally.mismatch, refused = tally.refused, "spool replay: not every record was new");
            } else {
                tracing::info!(file = %f.display(), new = tally.new, "spool file replayed");
            }
            if decoded.skipped > 0 {
                // Never delete bytes that were not understood: keep them for inspection.
                let to = f.with_extension("quarantined");
                tracing::error!(file = %to.display(), bytes = decoded.skipped, records = decoded.records.len(), "spool file had damaged bytes: its records are stored, the file is kept aside");
                std::fs::rename(&f, &to)
                    .map_err(|e| StoreError::Unavailable(format!("spool: {e}")))?;
            } else {
                std::fs::remove_file(&f)
                    .map_err(|e| StoreError::Unavailable(format!("spool: {e}")))?;
            }
            sync_dir(&self.dir);
            stored += n;
            let _ = self
                .depth
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                    Some(d.saturating_sub(n as u64))
                });
        }
        Ok(stored)
    }
}
