//! Recording outcomes on PostgreSQL, a batch at a time with set-based statements: the
//! deliveries are locked in id order, checked against their fences one by one, updated with
//! one `UNNEST` statement, their attempts inserted with another, and their messages moved on
//! together (locked in id order too, so two nodes completing at once cannot deadlock).
//! About ten round trips and one commit per batch, whatever its size.

use crate::core::progress::{is_dead_letter, message_status, progress};
use crate::core::types::{DeliveryStatus, Millis, Strategy};
use crate::store::{Completion, StoreError, corrupt, rules};
use serde_json::json;
use sqlx::{PgConnection, Row};
use std::collections::{BTreeMap, HashMap, HashSet};

/// What a change to one of its deliveries asks of a message: when, and for a dead letter
/// the channel and error to show.
#[derive(Debug, Clone)]
pub struct Touched {
    pub now: Millis,
    pub channel: String,
    pub last_error: Option<String>,
}

/// Applies each completion whose fence still holds; `false` for the others (stale, or a
/// second completion of the same delivery in the batch).
pub async fn complete(
    tx: &mut PgConnection,
    batch: &[Completion],
) -> Result<Vec<bool>, StoreError> {
    let ids: Vec<&str> = batch.iter().map(|x| x.lease.delivery_id.as_str()).collect();
    let rows = sqlx::query(
        "SELECT id, message_id, status, fence, skip_providers, channel FROM deliveries
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut current: HashMap<String, (String, String, i64, Option<String>, String)> =
        HashMap::with_capacity(rows.len());
    for r in rows {
        current.insert(
            r.try_get(0)?,
            (
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
            ),
        );
    }
    let mut out = vec![false; batch.len()];
    let mut seen = HashSet::with_capacity(batch.len());
    let mut d = DeliveryUpdates::default();
    let mut a = AttemptRows::default();
    let mut touched: BTreeMap<String, Touched> = BTreeMap::new();
    for (i, x) in batch.iter().enumerate() {
        let id = &x.lease.delivery_id;
        let Some((message_id, status, fence, skip, channel)) = current.get(id) else {
            continue;
        };
        if status != "sending" || *fence != x.lease.fence || !seen.insert(id.as_str()) {
            continue; // a stale worker: another claim owns it now
        }
        out[i] = true;
        let skip: Vec<String> = skip
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let (new_status, due, skip) = rules::step_effect(x, skip);
        d.push(x, new_status, due, skip);
        let last_error = x.attempt.as_ref().and_then(|at| {
            a.push(id, at);
            at.error
                .as_ref()
                .map(|e| rules::last_error_json(Some(&at.provider), e))
        });
        let t = touched.entry(message_id.clone()).or_insert(Touched {
            now: x.now,
            channel: channel.clone(),
            last_error: None,
        });
        t.now = t.now.max(x.now);
        if last_error.is_some() {
            t.channel = channel.clone();
            t.last_error = last_error;
        }
    }
    if d.id.is_empty() {
        return Ok(out);
    }
    sqlx::query(
        "UPDATE deliveries d SET status = u.status, due_at = u.due, lease_owner = NULL,
                provider = COALESCE(u.provider, d.provider), skip_providers = u.skip,
                updated_at = u.now, provider_message_id = COALESCE(u.pmid, d.provider_message_id),
                tries = GREATEST(d.tries - u.untried, 0)
         FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::bigint[])
              AS u(id, status, due, provider, skip, now, pmid, untried)
         WHERE d.id = u.id",
    )
    .bind(&d.id)
    .bind(&d.status)
    .bind(&d.due)
    .bind(&d.provider)
    .bind(&d.skip)
    .bind(&d.now)
    .bind(&d.pmid)
    .bind(&d.untried)
    .execute(&mut *tx)
    .await?;
    if !a.delivery_id.is_empty() {
        sqlx::query(
            "INSERT INTO attempts (delivery_id, n, provider, at, duration_ms, outcome, error_class, error_code, error_detail, provider_message_id)
             SELECT u.id, COALESCE((SELECT MAX(n) FROM attempts x WHERE x.delivery_id = u.id), 0) + 1,
                    u.provider, u.at, u.duration, u.outcome, u.class, u.code, u.detail, u.pmid
             FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
                  AS u(id, provider, at, duration, outcome, class, code, detail, pmid)",
        )
        .bind(&a.delivery_id)
        .bind(&a.provider)
        .bind(&a.at)
        .bind(&a.duration_ms)
        .bind(&a.outcome)
        .bind(&a.class)
        .bind(&a.code)
        .bind(&a.detail)
        .bind(&a.pmid)
        .execute(&mut *tx)
        .await?;
    }
    recompute(tx, &touched).await?;
    Ok(out)
}

#[derive(Default)]
struct DeliveryUpdates {
    id: Vec<String>,
    status: Vec<&'static str>,
    due: Vec<Option<i64>>,
    provider: Vec<Option<String>>,
    skip: Vec<Option<String>>,
    now: Vec<i64>,
    pmid: Vec<Option<String>>,
    untried: Vec<i64>,
}

impl DeliveryUpdates {
    fn push(
        &mut self,
        x: &Completion,
        status: DeliveryStatus,
        due: Option<i64>,
        skip: Vec<String>,
    ) {
        self.id.push(x.lease.delivery_id.clone());
        self.status.push(status.as_str());
        self.due.push(due);
        self.provider
            .push(x.attempt.as_ref().map(|a| a.provider.clone()));
        self.skip
            .push((!skip.is_empty()).then(|| json!(skip).to_string()));
        self.now.push(x.now);
        self.pmid.push(
            x.attempt
                .as_ref()
                .and_then(|a| a.provider_message_id.clone()),
        );
        self.untried.push(rules::untried(x) as i64);
    }
}

#[derive(Default)]
struct AttemptRows {
    delivery_id: Vec<String>,
    provider: Vec<String>,
    at: Vec<i64>,
    duration_ms: Vec<i64>,
    outcome: Vec<&'static str>,
    class: Vec<Option<&'static str>>,
    code: Vec<Option<String>>,
    detail: Vec<Option<String>>,
    pmid: Vec<Option<String>>,
}

impl AttemptRows {
    fn push(&mut self, delivery_id: &str, a: &crate::store::Attempt) {
        self.delivery_id.push(delivery_id.to_string());
        self.provider.push(a.provider.clone());
        self.at.push(a.at);
        self.duration_ms.push(a.duration_ms);
        self.outcome.push(a.outcome);
        self.class.push(a.error.as_ref().map(|e| e.class.as_str()));
        self.code.push(a.error.as_ref().map(|e| e.code.clone()));
        self.detail.push(a.error.as_ref().map(|e| e.detail.clone()));
        self.pmid.push(a.provider_message_id.clone());
    }
}

/// Moves each touched message on (see `core::progress`): activates, skips or expires its
/// waiting deliveries, sets its status, and files it as a dead letter when it failed. The
/// messages are locked in id order.
pub async fn recompute(
    tx: &mut PgConnection,
    touched: &BTreeMap<String, Touched>,
) -> Result<(), StoreError> {
    if touched.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = touched.keys().map(String::as_str).collect();
    let strategies: HashMap<String, String> = sqlx::query_as(
        "SELECT id, strategy FROM messages WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT message_id, id, status FROM deliveries WHERE message_id = ANY($1) ORDER BY message_id, position",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut by_message: HashMap<&str, Vec<(&str, DeliveryStatus)>> = HashMap::new();
    for (m, id, status) in &rows {
        by_message
            .entry(m.as_str())
            .or_default()
            .push((id.as_str(), status.parse().map_err(corrupt)?));
    }
    let (mut sib_id, mut sib_status, mut sib_due, mut sib_now, mut sib_activated) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut msg_id, mut msg_status, mut msg_now) = (Vec::new(), Vec::new(), Vec::new());
    let (mut dead_id, mut dead_channel, mut dead_now, mut dead_error) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (message_id, t) in touched {
        let Some(strategy) = strategies.get(message_id) else {
            continue;
        };
        let strategy: Strategy = strategy.parse().map_err(corrupt)?;
        let mut list = by_message.remove(message_id.as_str()).unwrap_or_default();
        let p = progress(strategy, &list.iter().map(|r| r.1).collect::<Vec<_>>());
        let mut set = |i: usize, st: DeliveryStatus, list: &mut Vec<(&str, DeliveryStatus)>| {
            let active = st == DeliveryStatus::Queued;
            sib_id.push(list[i].0.to_string());
            sib_status.push(st.as_str());
            sib_due.push(active.then_some(t.now));
            sib_now.push(t.now);
            sib_activated.push(active.then_some(t.now));
            list[i].1 = st;
        };
        if let Some(i) = p.activate {
            set(i, DeliveryStatus::Queued, &mut list);
        }
        for i in p.skip {
            set(i, DeliveryStatus::Skipped, &mut list);
        }
        for i in p.expire {
            set(i, DeliveryStatus::Expired, &mut list);
        }
        let statuses: Vec<DeliveryStatus> = list.iter().map(|r| r.1).collect();
        msg_id.push(message_id.clone());
        msg_status.push(message_status(&statuses).as_str());
        msg_now.push(t.now);
        if is_dead_letter(&statuses) {
            dead_id.push(message_id.clone());
            dead_channel.push(t.channel.clone());
            dead_now.push(t.now);
            dead_error.push(t.last_error.clone());
        }
    }
    if !sib_id.is_empty() {
        sqlx::query(
            "UPDATE deliveries d SET status = u.status, due_at = u.due, updated_at = u.now,
                    activated_at = COALESCE(u.activated, d.activated_at)
             FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
                  AS u(id, status, due, now, activated)
             WHERE d.id = u.id",
        )
        .bind(&sib_id)
        .bind(&sib_status)
        .bind(&sib_due)
        .bind(&sib_now)
        .bind(&sib_activated)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE messages m SET status = u.status, updated_at = u.now
         FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS u(id, status, now)
         WHERE m.id = u.id",
    )
    .bind(&msg_id)
    .bind(&msg_status)
    .bind(&msg_now)
    .execute(&mut *tx)
    .await?;
    if !dead_id.is_empty() {
        sqlx::query(
            "INSERT INTO dead_letters (message_id, channel, priority, failed_at, last_error)
             SELECT m.id, u.channel, m.priority, u.now, u.err
             FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[]) AS u(id, channel, now, err)
             JOIN messages m ON m.id = u.id
             ON CONFLICT (message_id) DO UPDATE
                SET channel = EXCLUDED.channel, failed_at = EXCLUDED.failed_at, last_error = EXCLUDED.last_error",
        )
        .bind(&dead_id)
        .bind(&dead_channel)
        .bind(&dead_now)
        .bind(&dead_error)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Moves one message on after one of its deliveries changed (see `complete::recompute`).
pub(super) async fn recompute_one(
    tx: &mut PgConnection,
    message_id: &str,
    now: Millis,
    channel: &str,
    last_error: Option<String>,
) -> Result<(), StoreError> {
    let touched = std::collections::BTreeMap::from([(
        message_id.to_string(),
        Touched {
            now,
            channel: channel.to_string(),
            last_error,
        },
    )]);
    recompute(tx, &touched).await
}
