//! Several PostgreSQL hosts in one `storage.url` (`postgres://u@db-a:5432,db-b:5432/herald
//! ?target_session_attrs=read-write`, as libpq writes it): Herald connects to the one that
//! takes writes and, when that one stops answering or turns into a replica, finds the new
//! primary among the others and moves its pool there.

use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// One single-host URL per host of `url`, in order (one for a plain URL). The
/// `target_session_attrs` parameter is taken out: with several hosts Herald always looks for
/// the one that takes writes (`read-write` or `primary`; other values are refused).
pub fn split_hosts(url: &str) -> Result<Vec<String>, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "not a postgres:// URL".to_string())?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostlist) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let mut kept = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some(("target_session_attrs", v)) => {
                if !matches!(v, "read-write" | "primary") {
                    return Err(format!(
                        "target_session_attrs={v}: Herald needs the host that takes writes (read-write)"
                    ));
                }
            }
            _ if pair.is_empty() => {}
            _ => kept.push(pair),
        }
    }
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    let hosts: Vec<&str> = hostlist.split(',').collect();
    if hosts.iter().any(|h| h.trim().is_empty()) {
        return Err("an empty host in the host list".into());
    }
    Ok(hosts
        .iter()
        .map(|h| format!("{scheme}://{userinfo}{}{path}{query}", h.trim()))
        .collect())
}

/// Connect options per host of `url`.
pub fn host_options(url: &str) -> Result<Vec<PgConnectOptions>, String> {
    split_hosts(url)?
        .iter()
        .map(|u| PgConnectOptions::from_str(u).map_err(|e| e.to_string()))
        .collect()
}

/// Whether the host takes writes: `Some(true)` a primary, `Some(false)` a replica (in
/// recovery), `None` unreachable within 2 s.
pub async fn takes_writes(opts: &PgConnectOptions) -> Option<bool> {
    let probe = async {
        let mut c = opts.connect().await.ok()?;
        let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut c)
            .await
            .ok()?;
        let _ = c.close().await;
        Some(!in_recovery)
    };
    tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()
        .flatten()
}

/// The first host that takes writes.
pub async fn find_primary(hosts: &[PgConnectOptions]) -> Option<usize> {
    for (i, h) in hosts.iter().enumerate() {
        if takes_writes(h).await == Some(true) {
            return Some(i);
        }
    }
    None
}

/// Which host the pool uses, and when it last moved.
#[derive(Debug)]
pub struct Following {
    pub current: AtomicUsize,
    since: std::time::Instant,
    /// Milliseconds from `since` to the last move (0: never moved).
    moved_at_ms: AtomicU64,
}

impl Following {
    pub fn starting_on(host: usize) -> Self {
        Following {
            current: AtomicUsize::new(host),
            since: std::time::Instant::now(),
            moved_at_ms: AtomicU64::new(0),
        }
    }

    fn moved_now(&self) {
        let ms = self.since.elapsed().as_millis().max(1) as u64;
        self.moved_at_ms.store(ms, Ordering::SeqCst);
    }

    /// Whether a connection of this age was opened before the last move (to the old host).
    pub fn opened_before_move(&self, age: Duration) -> bool {
        let moved = self.moved_at_ms.load(Ordering::SeqCst);
        if moved == 0 {
            return false;
        }
        let since_move = (self.since.elapsed().as_millis() as u64).saturating_sub(moved);
        age.as_millis() as u64 > since_move
    }
}

/// Every 500 ms: does the pool's host still take writes? When it does not (down, or a
/// replica now), the new primary is looked for and the pool moved there: new connections go
/// to it, and connections opened before the move are closed instead of being handed out or
/// taken back (the pool's acquire and release hooks ask [`Following::opened_before_move`]).
pub async fn follow(pool: PgPool, hosts: Vec<PgConnectOptions>, state: Arc<Following>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if pool.is_closed() {
            return;
        }
        let check = tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(&pool),
        )
        .await;
        if matches!(check, Ok(Ok(false))) {
            continue;
        }
        let Some(next) = find_primary(&hosts).await else {
            continue; // none takes writes yet (a promotion under way): look again
        };
        let was = state.current.swap(next, Ordering::SeqCst);
        if was == next {
            continue;
        }
        pool.set_connect_options(hosts[next].clone());
        state.moved_now();
        tracing::warn!(
            from = hosts[was].get_host(),
            to = hosts[next].get_host(),
            port = hosts[next].get_port(),
            "the PostgreSQL primary moved: following it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_url_is_one_host() {
        assert_eq!(
            split_hosts("postgres://u:p@db:5432/herald?sslmode=require").unwrap(),
            vec!["postgres://u:p@db:5432/herald?sslmode=require"]
        );
        assert_eq!(split_hosts("postgres://db").unwrap(), vec!["postgres://db"]);
    }

    #[test]
    fn a_host_list_becomes_one_url_per_host_without_the_session_attribute() {
        assert_eq!(
            split_hosts(
                "postgresql://herald:s%40cret@10.0.0.1:5432,db-b:5433,[::1]:5434/herald?target_session_attrs=read-write&sslmode=require"
            )
            .unwrap(),
            vec![
                "postgresql://herald:s%40cret@10.0.0.1:5432/herald?sslmode=require",
                "postgresql://herald:s%40cret@db-b:5433/herald?sslmode=require",
                "postgresql://herald:s%40cret@[::1]:5434/herald?sslmode=require",
            ]
        );
        assert_eq!(
            split_hosts("postgres://a,b?target_session_attrs=primary").unwrap(),
            vec!["postgres://a", "postgres://b"]
        );
    }

    #[test]
    fn what_cannot_be_followed_is_refused() {
        assert!(split_hosts("postgres://a,,b/db").is_err());
        assert!(split_hosts("postgres://a,b/db?target_session_attrs=read-only").is_err());
        assert!(split_hosts("postgres://a,b/db?target_session_attrs=any").is_err());
        assert!(split_hosts("db-a,db-b").is_err());
    }

    #[test]
    fn after_a_move_only_connections_opened_since_are_kept() {
        let f = Following::starting_on(0);
        assert!(
            !f.opened_before_move(Duration::from_secs(3600)),
            "never moved"
        );
        std::thread::sleep(Duration::from_millis(20));
        f.moved_now();
        std::thread::sleep(Duration::from_millis(20));
        assert!(f.opened_before_move(Duration::from_millis(500)));
        assert!(!f.opened_before_move(Duration::from_millis(1)));
    }

    #[test]
    fn every_host_parses_into_options() {
        let o = host_options("postgres://u@h1:5001,h2:5002/d").unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!((o[0].get_host(), o[0].get_port()), ("h1", 5001));
        assert_eq!((o[1].get_host(), o[1].get_port()), ("h2", 5002));
        assert_eq!(o[1].get_database(), Some("d"));
    }
}
