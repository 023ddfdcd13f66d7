//! The local spool: when storage is unreachable, accepted messages are appended here (length
//! and CRC-32 per record, fsync'd, group-committed: one fsync for all appends waiting) and the
//! caller gets its `202`. A replayer moves them into storage when it answers again; message
//! ids are fixed when spooled, so replaying twice stores nothing twice. A restart replays the
//! spool before serving.
//!
//! Files: `<data_dir>/spool/current.log` takes appends; a replay first rotates it to
//! `replay-<id>.log`, stores its records, then deletes it.

use crate::core::message::NewMessage;
use crate::store::{Store, StoreError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

enum Job {
    Append(Vec<NewMessage>, oneshot::Sender<std::io::Result<()>>),
    Rotate(oneshot::Sender<std::io::Result<Option<PathBuf>>>),
}

pub struct Spool {
    dir: PathBuf,
    tx: mpsc::UnboundedSender<Job>,
    depth: Arc<AtomicU64>,
    replaying: tokio::sync::Mutex<()>,
    /// Storage was found unreachable: accept straight into the spool until it answers again.
    down: std::sync::atomic::AtomicBool,
}

/// Encodes one record: length (u32 LE), CRC-32 of the payload (u32 LE), payload.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes records until the end or the first torn or corrupt one (a write cut short by a
/// crash was never acknowledged); returns the payloads and whether the end was clean.
pub fn decode(mut bytes: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 8 {
            return (out, false);
        }
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let Some(payload) = bytes.get(8..8 + len) else {
            return (out, false);
        };
        if crc32fast::hash(payload) != crc {
            return (out, false);
        }
        out.push(payload.to_vec());
        bytes = &bytes[8 + len..];
    }
    (out, true)
}

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

fn writer(dir: PathBuf, mut file: std::fs::File, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        let mut replies = Vec::new();
        let mut wrote = Ok(());
        for job in jobs {
            match job {
                Job::Append(batch, reply) => {
                    for m in &batch {
                        let r = serde_json::to_vec(m)
                            .map_err(std::io::Error::other)
                            .and_then(|p| file.write_all(&encode(&p)));
                        if let Err(e) = r {
                            wrote = Err(e);
                        }
                    }
                    replies.push(reply);
                }
                Job::Rotate(reply) => {
                    // Appends gathered so far are made durable before the file moves.
                    let r = file.sync_data().and_then(|_| {
                        if file.metadata()?.len() == 0 {
                            return Ok(None);
                        }
                        let to =
                            dir.join(format!("replay-{}.log", crate::core::types::new_id("s")));
                        std::fs::rename(dir.join("current.log"), &to)?;
                        file = open_current(&dir)?;
                        sync_dir(&dir);
                        Ok(Some(to))
                    });
                    let _ = reply.send(r);
                }
            }
        }
        let synced = wrote.and_then(|_| file.sync_data());
        for reply in replies {
            let _ = reply.send(match &synced {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}

impl Spool {
    pub fn open(data_dir: &Path) -> std::io::Result<Arc<Spool>> {
        let dir = data_dir.join("spool");
        crate::private_fs::dir(data_dir)?;
        crate::private_fs::dir(&dir)?;
        let mut depth = 0u64;
        for f in std::fs::read_dir(&dir)?.flatten() {
            if f.path().extension().is_some_and(|e| e == "log") {
                let mut bytes = Vec::new();
                std::fs::File::open(f.path())?.read_to_end(&mut bytes)?;
                depth += decode(&bytes).0.len() as u64;
            }
        }
        let file = open_current(&dir)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let d = dir.clone();
        std::thread::Builder::new()
            .name("herald-spool".into())
            .spawn(move || writer(d, file, rx))?;
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
    pub async fn replay(&self, store: &dyn Store) -> Result<usize, StoreError> {
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
            let (records, clean) = decode(&bytes);
            if !clean {
                tracing::warn!(file = %f.display(), "spool file ends in a torn record (a write cut short, never acknowledged); it is skipped");
            }
            let mut messages = Vec::with_capacity(records.len());
            for r in records {
                match serde_json::from_slice::<NewMessage>(&r) {
                    // Limits were for the moment of sending: a spooled message was promised.
                    Ok(mut m) => {
                        m.recipient_limits.clear();
                        messages.push(m);
                    }
                    Err(e) => tracing::error!(error = %e, "unreadable spool record skipped"),
                }
            }
            let n = messages.len();
            for chunk in messages.chunks(500) {
                store.accept(chunk.to_vec()).await?;
            }
            std::fs::remove_file(&f).map_err(|e| StoreError::Unavailable(format!("spool: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_tail_is_dropped() {
        let mut bytes = encode(b"one");
        bytes.extend(encode(b"two"));
        let (r, clean) = decode(&bytes);
        assert_eq!((r, clean), (vec![b"one".to_vec(), b"two".to_vec()], true));
        let cut = &bytes[..bytes.len() - 1];
        let (r, clean) = decode(cut);
        assert_eq!((r, clean), (vec![b"one".to_vec()], false));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            decode(&flipped).0.len(),
            1,
            "a record whose CRC does not match is not trusted"
        );
        assert_eq!(decode(&[]).0.len(), 0);
    }
}
