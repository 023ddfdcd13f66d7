//! Moving a message on after one of its deliveries changed (an outcome, a cancel, a replay,
//! a receipt): shared by the domains that change deliveries.

use super::corrupt;
use crate::core::progress::{is_dead_letter, message_status, progress};
use crate::core::types::{DeliveryStatus, Millis, Strategy};
use crate::store::StoreError;
use rusqlite::{Connection, params};

/// Moves the message on after one of its deliveries changed: failover, skip, expiry, status,
/// dead letter.
pub(super) fn recompute(
    c: &Connection,
    message_id: &str,
    now: Millis,
    channel: &str,
    last_error: Option<String>,
) -> Result<(), StoreError> {
    let strategy: Strategy = c
        .prepare_cached("SELECT strategy FROM messages WHERE id = ?1")?
        .query_row([message_id], |r| r.get::<_, String>(0))?
        .parse()
        .map_err(corrupt)?;
    let rows: Vec<(String, DeliveryStatus)> = c
        .prepare_cached(
            "SELECT id, status FROM deliveries WHERE message_id = ?1 ORDER BY position",
        )?
        .query_map([message_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .map(|r| {
            let (id, s) = r?;
            Ok((
                id,
                s.parse()
                    .map_err(|e: String| rusqlite::Error::InvalidColumnName(e))?,
            ))
        })
        .collect::<Result<_, rusqlite::Error>>()?;
    settle(c, message_id, now, channel, last_error, strategy, rows)
}

/// Moves the message on from its deliveries' statuses (`rows`, in channel order).
pub(super) fn settle(
    c: &Connection,
    message_id: &str,
    now: Millis,
    channel: &str,
    last_error: Option<String>,
    strategy: Strategy,
    mut rows: Vec<(String, DeliveryStatus)>,
) -> Result<(), StoreError> {
    let statuses: Vec<DeliveryStatus> = rows.iter().map(|r| r.1).collect();
    let p = progress(strategy, &statuses);
    let mut set = c.prepare_cached(
        "UPDATE deliveries SET status = ?2, due_at = ?3, updated_at = ?4 WHERE id = ?1",
    )?;
    if let Some(i) = p.activate {
        set.execute(params![rows[i].0, "queued", now, now])?;
        c.prepare_cached("UPDATE deliveries SET activated_at = ?2 WHERE id = ?1")?
            .execute(params![rows[i].0, now])?;
        rows[i].1 = DeliveryStatus::Queued;
    }
    for i in p.skip {
        set.execute(params![rows[i].0, "skipped", Option::<i64>::None, now])?;
        rows[i].1 = DeliveryStatus::Skipped;
    }
    for i in p.expire {
        set.execute(params![rows[i].0, "expired", Option::<i64>::None, now])?;
        rows[i].1 = DeliveryStatus::Expired;
    }
    let statuses: Vec<DeliveryStatus> = rows.iter().map(|r| r.1).collect();
    let st = message_status(&statuses);
    c.prepare_cached("UPDATE messages SET status = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![message_id, st.as_str(), now])?;
    if is_dead_letter(&statuses) {
        c.prepare_cached(
            "INSERT OR REPLACE INTO dead_letters (message_id, channel, priority, failed_at, last_error)
             SELECT id, ?2, priority, ?3, ?4 FROM messages WHERE id = ?1",
        )?
        .execute(params![
            message_id,
            channel,
            now,
            last_error
        ])?;
    }
    Ok(())
}
