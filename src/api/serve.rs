//! The HTTP server loop: HTTP/1.1 connections served by hyper with the limits a public
//! endpoint needs. A client has `header_read_timeout` to send a request's head (also the
//! longest a kept-alive connection may idle), at most `max_connections` are open at once (and
//! never more than the process's file limit allows: at the cap the connection idle longest
//! is closed to make room), and an accept error (`EMFILE`) backs off instead of spinning.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Files kept free for everything but client connections: storage, the spool, provider calls.
const RESERVED_FILES: u64 = 256;
/// Largest request head hyper buffers; below it, `limits` answers 414 and 431 as problem+json.
const MAX_HEAD_BUFFER: usize = 256 * 1024;
/// Most headers hyper parses; the API's own limit (answered as problem+json) is lower.
const MAX_HEAD_HEADERS: usize = 1_000;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Raises the soft limit on open files to the hard limit and returns the soft limit now in
/// force (so the connection cap can stay under it).
pub fn raise_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// The connection cap: the configured one, held under the file limit.
pub fn connection_cap(configured: usize, file_limit: Option<u64>) -> usize {
    match file_limit {
        Some(n) => configured.min(n.saturating_sub(RESERVED_FILES).max(16) as usize),
        None => configured,
    }
    .max(1)
}

/// One open client connection: whether a request is being answered on it (its response
/// body included), and how to close it when room is needed.
struct Conn {
    busy: AtomicUsize,
    last_active: Mutex<Instant>,
    kick: CancellationToken,
}

/// The open connections. At the cap, the one idle longest (no request in progress: a client
/// still sending its head slowly, or a kept-alive connection between requests) is closed to
/// make room, so a flood of slow clients cannot keep a new one out.
#[derive(Default)]
struct Conns {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Conns {
    fn add(&self) -> (u64, Arc<Conn>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            last_active: Mutex::new(Instant::now()),
            kick: CancellationToken::new(),
        });
        if let Ok(mut m) = self.open.lock() {
            m.insert(id, c.clone());
        }
        (id, c)
    }

    fn remove(&self, id: u64) {
        if let Ok(mut m) = self.open.lock() {
            m.remove(&id);
        }
    }

    fn len(&self) -> usize {
        self.open.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Connections open and not being closed.
    fn live(&self) -> usize {
        self.open
            .lock()
            .map(|m| m.values().filter(|c| !c.kick.is_cancelled()).count())
            .unwrap_or(0)
    }

    /// Closes the connection idle longest; false when every one is answering a request.
    fn evict_one(&self) -> bool {
        let Ok(m) = self.open.lock() else {
            return false;
        };
        let victim = m
            .values()
            .filter(|c| c.busy.load(Ordering::Relaxed) == 0 && !c.kick.is_cancelled())
            .min_by_key(|c| {
                c.last_active
                    .lock()
                    .map(|t| *t)
                    .unwrap_or_else(|_| Instant::now())
            });
        match victim {
            Some(c) => {
                c.kick.cancel();
                true
            }
            None => false,
        }
    }
}

/// Marks its connection idle again when the response (body included) is done.
struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut t) = self.0.last_active.lock() {
            *t = Instant::now();
        }
    }
}

/// A response body that keeps its connection marked busy until it is dropped.
struct GuardedBody {
    inner: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for GuardedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` on `listener` until `stop` is cancelled, then lets open requests finish
/// (the caller bounds how long).
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, stop: CancellationToken) {
    let cap = connection_cap(limits.max_connections, raise_file_limit());
    let conns = Arc::new(Conns::default());
    let tracker = TaskTracker::new();
    let mut backoff = Duration::from_millis(5);
    let mut last_warn: Option<Instant> = None;
    loop {
        // At the cap, make room (the longest-idle connection goes); when every connection is
        // busy answering, wait for one to end.
        while conns.len() >= cap && conns.live() >= cap && !conns.evict_one() {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                backoff = Duration::from_millis(5);
                stream
            }
            Err(e) => {
                // Out of files or memory: make room and wait rather than spin.
                if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, open = conns.len(), "accept failed; backing off");
                    last_warn = Some(Instant::now());
                }
                conns.evict_one();
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (id, conn) = conns.add();
        let inner = TowerToHyperService::new(app.clone());
        let svc = {
            let conn = conn.clone();
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                conn.busy.fetch_add(1, Ordering::Relaxed);
                let busy = Busy(conn.clone());
                let fut = hyper::service::Service::call(&inner, req);
                async move {
                    let resp = fut.await?;
                    // The connection stays busy until the body has been sent (event streams).
                    Ok::<_, std::convert::Infallible>(
                        resp.map(|inner| GuardedBody { inner, _busy: busy }),
                    )
                }
            })
        };
        let stop = stop.clone();
        let conns2 = conns.clone();
        tracker.spawn(async move {
            let conn_io = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(MAX_HEAD_BUFFER)
                .max_headers(MAX_HEAD_HEADERS)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn_io);
            tokio::select! {
                r = conn_io.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = conn.kick.cancelled() => {}
                _ = stop.cancelled() => {
                    conn_io.as_mut().graceful_shutdown();
                    let _ = conn_io.await;
                }
            }
            conns2.remove(id);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_under_the_file_limit() {
        assert_eq!(connection_cap(10_000, Some(1_024)), 768);
        assert_eq!(connection_cap(10_000, Some(1_048_576)), 10_000);
        assert_eq!(connection_cap(500, None), 500);
        assert_eq!(connection_cap(10_000, Some(100)), 16, "never below a few");
        assert_eq!(connection_cap(0, None), 1);
    }
}
