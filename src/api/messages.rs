//! `/v1/messages`: send (single and batch), read, list, cancel.

use super::body::read_json;
use super::traces::AcceptSpan;
use super::{AppState, Caller, list_filter, page};
use crate::core::message::{Idempotency, NewMessage};
use crate::core::types::{Priority, Role, now_millis};
use crate::core::validate::{self, Context, FieldError};
use crate::error::ApiError;
use crate::metrics::{PriorityLabels, RequestLabels};
use crate::store::{Accepted, StoreError};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

const MAX_BATCH: usize = 1000;

fn idempotency(
    headers: &HeaderMap,
    scope: &str,
    body: &Value,
) -> Result<Option<Idempotency>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (0x21..=0x7e).contains(&b))
        })
        .ok_or_else(|| {
            ApiError::field(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )
        })?;
    // serde_json maps keep keys sorted, so equal documents hash equally.
    let canonical = serde_json::to_vec(body).unwrap_or_default();
    Ok(Some(Idempotency {
        scope: scope.to_string(),
        key: key.to_string(),
        body_hash: hex::encode(Sha256::digest(&canonical)),
    }))
}

/// Contacts read for one request (a batch names the same person many times).
type ContactsSeen = std::collections::HashMap<String, Option<crate::store::ContactRecord>>;

async fn build(
    state: &AppState,
    caller: &str,
    body: Value,
    idem: Option<Idempotency>,
    seen: &mut ContactsSeen,
) -> Result<NewMessage, ApiError> {
    let req = validate::decode(body).map_err(|e| ApiError::validation(vec![e]))?;
    // `to.user` names a contact: its addresses as they are now go into the message. While
    // the directory cannot be read such a message is refused (503), not sent to fewer
    // channels than the contact has.
    let contact = match req
        .to
        .user
        .as_deref()
        .filter(|u| crate::core::validate::valid_user(u).is_ok())
    {
        Some(user) => match seen.get(user) {
            Some(c) => c.clone(),
            None => {
                let c = state.store.contacts.get_contact(user).await?;
                seen.insert(user.to_string(), c.clone());
                c
            }
        },
        None => None,
    };
    let ctx = Context {
        contact: contact.as_ref().map(|r| &r.contact),
        now: now_millis(),
        channels_available: &state.channels,
        hosts: &state.hosts,
        sender: caller,
        templates: &state.templates,
        chat_targets: &state.chat_targets,
        degrade: &state.cfg.degrade,
        recipient_limits: &state.cfg.limits.recipient,
    };
    validate::validate(req, &ctx, idem).map_err(ApiError::validation)
}

/// Whether the gateway takes a message of this priority now: the mode (`read_only` takes
/// none, `core_only` only critical and high) and load shedding (`low` from 80 % of
/// `limits.max_queue`, `normal` from 100 %; never `high` or `critical`).
fn admit(state: &AppState, priority: Priority) -> Result<(), ApiError> {
    let mode = state
        .mode
        .read()
        .map(|m| m.mode.clone())
        .unwrap_or_else(|_| "normal".into());
    match mode.as_str() {
        "read_only" => {
            return Err(ApiError::degraded(
                "Herald is in read_only mode: no sends are accepted; reads work",
                30,
            ));
        }
        "core_only" if !matches!(priority, Priority::Critical | Priority::High) => {
            return Err(ApiError::degraded(
                format!(
                    "Herald is in core_only mode: only critical and high messages are accepted, not {priority}"
                ),
                30,
            ));
        }
        _ => {}
    }
    let depth = state.queue_depth.load(std::sync::atomic::Ordering::Relaxed);
    let max = state.cfg.limits.max_queue;
    let shed = match priority {
        Priority::Low => depth.saturating_mul(10) >= max.saturating_mul(8),
        Priority::Normal => depth >= max,
        Priority::High | Priority::Critical => false,
    };
    if shed {
        return Err(ApiError::degraded(
            format!(
                "the queue holds {depth} deliveries (limit {max}): {priority} messages are shed; retry later"
            ),
            10,
        ));
    }
    Ok(())
}

/// Storage is unreachable: append to the local spool (durable) and answer `202` with
/// `"spooled": true`.
async fn spool(
    state: &AppState,
    batch: Vec<NewMessage>,
    why: &str,
) -> Result<Vec<Value>, ApiError> {
    let Some(spool) = &state.spool else {
        return Err(StoreError::Unavailable(why.to_string()).into());
    };
    spool.set_storage_down(true);
    let replies: Vec<Value> = batch
        .iter()
        .map(|m| {
            let mut r = json!(crate::store::reply_for(m));
            r["spooled"] = json!(true);
            r
        })
        .collect();
    let priorities: Vec<Priority> = batch.iter().map(|m| m.priority).collect();
    spool.append(batch).await.map_err(|e| {
        tracing::error!(error = %e, "storage is down and the spool cannot be written");
        ApiError::from(StoreError::Unavailable(format!(
            "storage is down and the spool failed: {e}"
        )))
    })?;
    state.metrics.spooled.inc_by(replies.len() as u64);
    for p in priorities {
        note_accepted(state, p);
    }
    tracing::warn!(
        messages = replies.len(),
        reason = why,
        "storage unreachable: accepted into the local spool"
    );
    Ok(replies)
}

fn recipient_limited(channel: crate::core::types::Channel, retry_after_ms: i64) -> ApiError {
    ApiError {
        retry_after: Some(((retry_after_ms + 999) / 1000).max(1) as u64),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "recipient_rate_limited",
            format!(
                "this {channel} address has had as many messages as limits.recipient allows; only critical messages go through"
            ),
        )
    }
}

fn refused(state: &AppState, e: ApiError) -> ApiError {
    state
        .metrics
        .refused
        .get_or_create(&RequestLabels {
            code: e.code.into(),
        })
        .inc();
    e
}

fn note_accepted(state: &AppState, priority: Priority) {
    state
        .metrics
        .accepted
        .get_or_create(&PriorityLabels {
            priority: priority.as_str().into(),
        })
        .inc();
}

pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Only requests that may send are traced: refused callers cannot fill the span buffer.
    caller.0.require(Role::Sender)?;
    let mut span = AcceptSpan::start(&state.tracer, &headers, "POST /v1/messages");
    let answer = send_one(&state, caller, &headers, body, &mut span).await;
    span.finish(&state.tracer, &answer);
    answer
}

async fn send_one(
    state: &AppState,
    Caller(who): Caller,
    headers: &HeaderMap,
    body: Body,
    span: &mut AcceptSpan,
) -> Result<Response, ApiError> {
    who.require(Role::Sender)?;
    let value = read_json(body, state.cfg.server.max_body.0)
        .await
        .map_err(|e| refused(state, e))?;
    let idem = idempotency(headers, &who.id, &value)?;
    let mut msg = build(state, &who.name, value, idem, &mut ContactsSeen::new())
        .await
        .map_err(|e| refused(state, e))?;
    admit(state, msg.priority).map_err(|e| refused(state, e))?;
    msg.trace = Some(span.ctx.to_string());
    span.attr("herald.message_id", msg.id.clone());
    let _store = state.tracer.until_dropped(span.child("store"));
    let deliveries = msg.deliveries.len() as u64;
    let due_now = msg.send_at <= now_millis();
    let priority = msg.priority;
    if state.spool.as_ref().is_some_and(|s| s.storage_down()) {
        let mut r = spool(state, vec![msg], "storage is down").await?;
        return Ok((StatusCode::ACCEPTED, Json(r.pop().unwrap_or_default())).into_response());
    }
    // A copy is kept only where the spool may need it (PostgreSQL): not on the SQLite path.
    let fallback = state.spool.as_ref().map(|_| msg.clone());
    let outcome = match state.store.queue.accept(vec![msg]).await {
        Ok(mut o) => o.pop().ok_or_else(ApiError::internal)?,
        Err(StoreError::Unavailable(why)) if let Some(msg) = fallback => {
            return spool(state, vec![msg], &why).await.map(|mut r| {
                let one = r.pop().unwrap_or_default();
                (StatusCode::ACCEPTED, Json(one)).into_response()
            });
        }
        Err(e) => return Err(e.into()),
    };
    match outcome {
        Accepted::New(reply) => {
            note_accepted(state, priority);
            state
                .queue_depth
                .fetch_add(deliveries, std::sync::atomic::Ordering::Relaxed);
            if due_now {
                state.wake.notify_one();
            }
            Ok((StatusCode::ACCEPTED, Json(reply)).into_response())
        }
        Accepted::Existing(reply) => {
            let mut r = (StatusCode::ACCEPTED, Json(reply)).into_response();
            r.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            Ok(r)
        }
        Accepted::Mismatch => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_mismatch",
            "this Idempotency-Key was used with a different body",
        )),
        Accepted::RecipientLimited {
            channel,
            retry_after_ms,
        } => Err(refused(state, recipient_limited(channel, retry_after_ms))),
    }
}

/// The idempotency scope of batch-level keys (apart from single sends' keys).
fn batch_scope(caller: &str) -> String {
    format!("{caller}\u{1f}batch")
}

/// The idempotency of one batch item: its own `idempotency_key` (taken out of the item, and
/// scoped like a single send's header), else the batch's key with the item's index.
fn item_idempotency(
    caller: &str,
    item: &mut Value,
    index: usize,
    batch: Option<&Idempotency>,
) -> Result<Option<Idempotency>, ApiError> {
    let own = match item
        .as_object_mut()
        .and_then(|o| o.remove("idempotency_key"))
    {
        None => None,
        Some(Value::String(k)) => Some(k),
        Some(_) => {
            return Err(ApiError::field(
                &format!("messages[{index}].idempotency_key"),
                "must be a string",
            ));
        }
    };
    match own {
        Some(key) => {
            let mut h = HeaderMap::new();
            let v = axum::http::HeaderValue::from_str(&key).map_err(|_| {
                ApiError::field(
                    &format!("messages[{index}].idempotency_key"),
                    "must be 1 to 255 visible ASCII characters",
                )
            })?;
            h.insert("idempotency-key", v);
            idempotency(&h, caller, item).map_err(|_| {
                ApiError::field(
                    &format!("messages[{index}].idempotency_key"),
                    "must be 1 to 255 visible ASCII characters",
                )
            })
        }
        None => Ok(batch.map(|b| Idempotency {
            scope: b.scope.clone(),
            key: format!("{}#{index}", b.key),
            body_hash: b.body_hash.clone(),
        })),
    }
}

pub async fn send_batch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.0.require(Role::Sender)?;
    let mut span = AcceptSpan::start(&state.tracer, &headers, "POST /v1/messages/batch");
    let answer = send_many(&state, caller, &headers, body, &mut span).await;
    span.finish(&state.tracer, &answer);
    answer
}

/// Every message of a batch joins the batch request's trace.
async fn send_many(
    state: &AppState,
    Caller(who): Caller,
    headers: &HeaderMap,
    body: Body,
    span: &mut AcceptSpan,
) -> Result<Response, ApiError> {
    who.require(Role::Sender)?;
    let value = read_json(body, state.cfg.server.max_batch_body.0)
        .await
        .map_err(|e| refused(state, e))?;
    let Value::Object(mut obj) = value else {
        return Err(ApiError::field(
            "body",
            "must be an object {\"messages\": [...]}",
        ));
    };
    if let Some(k) = obj.keys().find(|k| *k != "messages") {
        return Err(ApiError::field(
            k,
            "unknown field; the body is {\"messages\": [...]}",
        ));
    }
    let items = match obj.remove("messages") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::field("messages", "must be an array")),
        None => return Err(ApiError::field("messages", "is required")),
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::field(
            "messages",
            format!("must hold 1 to {MAX_BATCH} messages"),
        ));
    }
    // `Idempotency-Key` on the batch: each item is keyed `KEY#index` in a scope of its own,
    // with the whole batch's hash, so that a retry of the same batch answers the first reply
    // and another batch under the same key is refused before anything is stored.
    let batch_idem = idempotency(headers, &batch_scope(&who.id), &Value::Array(items.clone()))?;
    let mut replayed = false;
    let mut results: Vec<Option<Value>> = vec![None; items.len()];
    let mut valid = Vec::new();
    let mut slots = Vec::new();
    let mut seen = ContactsSeen::new();
    for (i, mut item) in items.into_iter().enumerate() {
        let idem = match item_idempotency(&who.id, &mut item, i, batch_idem.as_ref()) {
            Ok(idem) => idem,
            Err(e) => {
                results[i] = Some(json!({ "error": refused(state, e).body() }));
                continue;
            }
        };
        match build(state, &who.name, item, idem, &mut seen)
            .await
            .and_then(|m| admit(state, m.priority).map(|_| m))
        {
            Ok(m) => {
                slots.push(i);
                valid.push(m);
            }
            Err(mut e) => {
                for fe in &mut e.errors {
                    *fe =
                        FieldError::new(format!("messages[{i}].{}", fe.field), fe.message.clone());
                }
                results[i] = Some(json!({ "error": refused(state, e).body() }));
            }
        }
    }
    if let Some(b) = &batch_idem {
        let keyed: Vec<String> = valid
            .iter()
            .filter_map(|m| m.idempotency.as_ref())
            .filter(|i| i.scope == b.scope)
            .map(|i| i.key.clone())
            .collect();
        let hashes = match state
            .store
            .queue
            .idempotency_hashes(
                &b.scope,
                keyed,
                now_millis() - crate::store::rules::IDEMPOTENCY_WINDOW_MS,
            )
            .await
        {
            Ok(h) => h,
            // Storage is down and the batch goes to the spool: its replay still honours
            // each item's key.
            Err(StoreError::Unavailable(_)) if state.spool.is_some() => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        if hashes.iter().flatten().any(|h| h != &b.body_hash) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_mismatch",
                "this Idempotency-Key was used with a different batch",
            ));
        }
    }
    if !valid.is_empty() {
        for m in &mut valid {
            m.trace = Some(span.ctx.to_string());
        }
        span.attr("herald.messages", valid.len() as i64);
        let _store = state.tracer.until_dropped(span.child("store"));
        let due_now = valid.iter().any(|m| m.send_at <= now_millis());
        let priorities: Vec<Priority> = valid.iter().map(|m| m.priority).collect();
        let down = state.spool.as_ref().is_some_and(|s| s.storage_down());
        let fallback = state.spool.as_ref().map(|_| valid.clone());
        let stored = if down {
            Err(StoreError::Unavailable("storage is down".into()))
        } else {
            state.store.queue.accept(valid).await
        };
        let outcomes = match stored {
            Ok(o) => o,
            Err(StoreError::Unavailable(why)) if let Some(valid) = fallback => {
                let replies = spool(state, valid, &why).await?;
                for (slot, r) in slots.into_iter().zip(replies) {
                    results[slot] = Some(r);
                }
                let results: Vec<Value> = results
                    .into_iter()
                    .map(|r| r.unwrap_or(Value::Null))
                    .collect();
                return Ok(
                    (StatusCode::ACCEPTED, Json(json!({ "results": results }))).into_response()
                );
            }
            Err(e) => return Err(e.into()),
        };
        for ((slot, outcome), priority) in slots.into_iter().zip(outcomes).zip(priorities) {
            results[slot] = Some(match outcome {
                Accepted::New(r) => {
                    note_accepted(state, priority);
                    state.queue_depth.fetch_add(
                        r.deliveries.len() as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    json!(r)
                }
                Accepted::Existing(r) => {
                    replayed = true;
                    json!(r)
                }
                Accepted::RecipientLimited {
                    channel,
                    retry_after_ms,
                } => {
                    json!({"error": refused(state, recipient_limited(channel, retry_after_ms)).body()})
                }
                Accepted::Mismatch => {
                    json!({"error": ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_mismatch", "this idempotency key was used with a different message").body()})
                }
            });
        }
        if due_now {
            state.wake.notify_one();
        }
    }
    let results: Vec<Value> = results
        .into_iter()
        .map(|r| r.unwrap_or(Value::Null))
        .collect();
    let mut resp = (StatusCode::ACCEPTED, Json(json!({ "results": results }))).into_response();
    if replayed {
        resp.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(resp)
}

pub async fn get_one(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    match state.store.messages.get_message(&id).await? {
        Some(m) => Ok(Json(m).into_response()),
        None => Err(ApiError::not_found(format!(
            "message `{}`",
            id.chars().take(64).collect::<String>()
        ))),
    }
}

pub async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let mut filter = list_filter(&q)?;
    filter.limit = filter.limit.min(200);
    let limit = filter.limit;
    let items = state.store.messages.list_messages(filter).await?;
    Ok(page(items, limit, |m| m.id.clone()))
}

pub async fn cancel(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require(Role::Sender)?;
    match state.store.messages.cancel(&id, &who.name).await? {
        Some(m) => Ok(Json(m).into_response()),
        None => Err(ApiError::not_found(format!(
            "message `{}`",
            id.chars().take(64).collect::<String>()
        ))),
    }
}
