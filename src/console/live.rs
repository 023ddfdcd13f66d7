//! `/console/events`: the overview's figures once a second, as Server-Sent Events
//! (`event: figures`, JSON data). The stream ends when the session's key is revoked (the
//! next connection is refused), when the page goes away, or at shutdown.

use super::figures;
use super::session::Session;
use crate::api::AppState;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use std::time::Duration;

pub async fn events(State(state): State<AppState>, _s: Session) -> Response {
    let shutdown = state.shutdown.clone();
    let s = crate::api::inbox::async_stream(move |tx| async move {
        let mut mark = None;
        loop {
            let (f, m) = figures::read(&state, mark).await;
            mark = m;
            if let Ok(ev) = Event::default().event("figures").json_data(&f)
                && tx.send(Ok(ev)).await.is_err()
            {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tx.closed() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    super::view::secure(Sse::new(s).keep_alive(KeepAlive::default()).into_response())
}
