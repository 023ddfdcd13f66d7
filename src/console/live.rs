//! `/console/events`: the overview's figures once a second, as Server-Sent Events
//! (`event: figures`, JSON data). The stream ends within seconds of the session ending
//! (signed out, expired, or its key revoked: `event: signed_out`), when the page goes
//! away, or at shutdown.

use super::figures;
use super::session::Session;
use crate::api::AppState;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use std::time::Duration;

/// Ticks between checks that the session still stands.
const RECHECK: u32 = 10;

pub async fn events(State(state): State<AppState>, s: Session) -> Response {
    let shutdown = state.shutdown.clone();
    let token = s.token_hash().to_string();
    let s = crate::api::inbox::async_stream(move |tx| async move {
        let mut tick = 0u32;
        loop {
            tick = tick.wrapping_add(1);
            if tick.is_multiple_of(RECHECK)
                && !super::session::still_signed_in(&state, &token).await
            {
                let _ = tx
                    .send(Ok(Event::default()
                        .event("signed_out")
                        .data("the session has ended")))
                    .await;
                break;
            }
            let f = figures::shared(&state).await;
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
