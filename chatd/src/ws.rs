//! The WebSocket endpoint and protocol (`docs/protocol.md`). (Being built.)

use axum::Router;

use crate::state::AppState;

/// The WebSocket routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
