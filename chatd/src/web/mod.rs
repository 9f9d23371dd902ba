//! The server-rendered pages and static assets. (Being built.)

use axum::{http::StatusCode, Router};

use crate::state::AppState;

/// The page routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}

/// A complete error page with `message` (escaped).
pub fn error_page(status: StatusCode, message: &str) -> String {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!("<!doctype html><title>{status}</title><p>{escaped}</p>")
}
