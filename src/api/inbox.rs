//! `/v1/inbox/{user}`: list, mark read, and a Server-Sent Events stream of new items.

use super::{AppState, Caller, list_filter, page};
use crate::core::types::{Role, now_millis};
use crate::core::validate::valid_user;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use tokio::sync::broadcast::error::RecvError;

fn check_user(user: &str) -> Result<(), ApiError> {
    valid_user(user).map_err(|m| ApiError::field("user", m))
}

pub async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(user): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    check_user(&user)?;
    let unread = match q.get("unread").map(String::as_str) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::field("unread", "must be true or false")),
    };
    let f = list_filter(&q)?;
    let limit = f.limit;
    let items = state.store.inbox.inbox_list(&user, unread, f).await?;
    Ok(page(items, limit, |i| i.id.clone()))
}

pub async fn mark_read(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((user, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    who.require(Role::Sender)?;
    check_user(&user)?;
    if state
        .store
        .inbox
        .inbox_mark_read(&user, &id, now_millis())
        .await?
    {
        Ok(Json(json!({ "id": id, "read": true })).into_response())
    } else {
        Err(ApiError::not_found(format!(
            "inbox item `{}`",
            id.chars().take(64).collect::<String>()
        )))
    }
}

pub async fn stream(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(user): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    who.require(Role::Viewer)?;
    check_user(&user)?;
    let mut rx = state.inbox_events.subscribe();
    let shutdown = state.shutdown.clone();
    let s = async_stream(move |tx| async move {
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tx.closed() => break,
                n = rx.recv() => n,
            };
            match next {
                Ok(item) if item.user == user => {
                    let ev = Event::default()
                        .event("inbox")
                        .id(item.id.clone())
                        .json_data(&item);
                    if let Ok(ev) = ev
                        && tx.send(Ok(ev)).await.is_err()
                    {
                        break;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    let ev = Event::default().event("lagged").data(n.to_string());
                    if tx.send(Ok(ev)).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
    Ok(Sse::new(s).keep_alive(KeepAlive::default()))
}

/// A stream fed by a task through a small channel; the task ends when the client goes away.
pub(crate) fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|ev| (ev, rx)) },
    )
}
