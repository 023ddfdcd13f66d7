//! The operator console at `/console`: pages rendered on the server from templates built
//! into the binary, one CSS file and one small script of our own (live figures over
//! Server-Sent Events). The console is one more client of the API: every page reads through
//! the same `/v1` handlers and every button sends the same request an API client would,
//! signed in as the session's key (see [`client`]), so roles, approvals and the audit log
//! apply exactly as they do for curl or the CLI.

mod act;
mod client;
mod figures;
mod live;
mod pages;
mod pages_more;
mod session;
mod view;

use crate::api::AppState;
use crate::api::auth::Principal;
use axum::Router;
use axum::routing::{get, post};

/// Set by the console on the requests it hands to the API router: who is signed in.
#[derive(Clone, Debug)]
pub struct SignedIn(pub Principal);

pub use session::Session;

/// The console's routes, when `[console] enabled`.
pub fn routes(state: &AppState) -> Router<AppState> {
    if !state.cfg.console.enabled {
        return Router::new();
    }
    Router::new()
        .route("/console", get(pages::overview))
        .route("/console/signin", get(session::form).post(session::sign_in))
        .route("/console/signout", post(session::sign_out))
        .route("/console/assets/console.css", get(view::css))
        .route("/console/assets/console.js", get(view::js))
        .route("/console/events", get(live::events))
        .route("/console/messages", get(pages::messages))
        .route("/console/messages/{id}", get(pages::message))
        .route("/console/dead-letters", get(pages::dead_letters))
        .route("/console/providers", get(pages::providers))
        .route("/console/mode", get(pages::mode))
        .route("/console/approvals", get(pages::approvals))
        .route("/console/audit", get(pages::audit))
        .route("/console/nodes", get(pages_more::nodes))
        .route("/console/keys", get(pages_more::keys))
        .route("/console/contacts", get(pages_more::contacts))
        .route("/console/incidents", get(pages_more::incidents))
        .route("/console/backups", get(pages_more::backups))
        .route("/console/status", get(pages_more::status_posts))
        .route("/console/do/{action}", post(act::act))
}
