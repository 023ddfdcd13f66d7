//! Outcomes recorded in groups: every delivery task hands its completion to one completer,
//! which stores whatever has gathered while the previous group was being written in one
//! call (one transaction), then answers each task. Under load a group holds hundreds of
//! outcomes; alone, one outcome goes out at once (nobody waits for a timer).
//!
//! A group that storage refuses as a whole is tried again one outcome at a time, so one bad
//! outcome cannot fail the others; each fence is still checked on its own.

use crate::store::{Completion, Queue, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The most outcomes in one group.
pub const MAX_GROUP: usize = 512;

/// How long one group may take to be stored: past it (a row locked by somebody else, a
/// database that stopped answering) its callers hear `Unavailable` and the next groups go on.
const GROUP_TIMEOUT: Duration = Duration::from_secs(10);

async fn within<T>(
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(GROUP_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "storing outcomes took over 10 s".into(),
            ))
        })
}

type Job = (Completion, oneshot::Sender<Result<bool, StoreError>>);

#[derive(Clone)]
pub struct Completer {
    tx: mpsc::UnboundedSender<Job>,
}

impl Completer {
    /// Starts the completer's task; it ends when every handle is dropped.
    pub fn start(store: Arc<dyn Queue>) -> Completer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        Completer { tx }
    }

    /// Records one outcome with the group it joins: `true` when applied, `false` when its
    /// fence was stale.
    pub async fn complete(&self, c: Completion) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((c, reply))
            .map_err(|_| StoreError::Unavailable("the completer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the completer dropped an outcome".into()))?
    }
}

async fn run(store: Arc<dyn Queue>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut jobs, MAX_GROUP).await > 0 {
        let group: Vec<Job> = std::mem::take(&mut jobs);
        let (batch, replies): (Vec<Completion>, Vec<_>) = group.into_iter().unzip();
        match within(store.complete(batch.clone())).await {
            Ok(applied) if applied.len() == replies.len() => {
                for (reply, ok) in replies.into_iter().zip(applied) {
                    let _ = reply.send(Ok(ok));
                }
            }
            Ok(_) => answer_each(&store, batch, replies).await,
            // Storage away, or one outcome refused as a whole: everyone gets the error (the
            // callers retry while storage is away); one by one would not do better.
            Err(e) if replies.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
            Err(StoreError::Unavailable(why)) => {
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
                }
            }
            Err(_) => answer_each(&store, batch, replies).await,
        }
    }
}

/// One outcome at a time: what each caller gets when its group failed as a whole.
async fn answer_each(
    store: &Arc<dyn Queue>,
    batch: Vec<Completion>,
    replies: Vec<oneshot::Sender<Result<bool, StoreError>>>,
) {
    for (c, reply) in batch.into_iter().zip(replies) {
        let r = within(store.complete(vec![c]))
            .await
            .map(|v| v.first().copied().unwrap_or(false));
        let _ = reply.send(r);
    }
}
