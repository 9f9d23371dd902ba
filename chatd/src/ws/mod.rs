//! The WebSocket endpoint `GET /ws` and its protocol (`docs/protocol.md`).
//!
//! - [`protocol`]: the JSON frames and error codes (version 1)
//! - [`connection`]: one connection's send and receive loops (one task), heartbeat and time-outs
//! - [`session`]: who a connection is and what each frame does
//!
//! - [`capacity`]: how many connections the process and one client network may hold
//!
//! The upgrade checks the `Origin` against `[chat] public_url` (a browser on another site must
//! not ride on the sender's cookie) and sizes the buffers for many idle connections.

pub mod capacity;
pub mod connection;
pub mod protocol;
pub mod session;

use axum::{
    extract::{ws::WebSocketUpgrade, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use tracing::debug;

use crate::{client_ip::ClientIp, state::AppState};

/// The read buffer of a connection, allocated at the upgrade and kept while it is idle: client
/// frames are small JSON (a `message` frame at most `[chat] max_message_bytes` plus a little),
/// so 1 KiB reads almost every frame at once; a larger one grows the buffer while it arrives and
/// takes a few more reads. 20k idle connections must cost a few KB each (tungstenite's default
/// is 128 KiB).
pub const READ_BUFFER_BYTES: usize = 1024;

/// Bytes written at once; frames go out as they come (tungstenite's default is 128 KiB).
pub const WRITE_BUFFER_BYTES: usize = 0;

/// The WebSocket routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

/// Whether `origin` may open a WebSocket: our own public origin, or none at all (a client that
/// is not a browser: it has no other site's cookies to abuse).
pub fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN) {
        None => true,
        Some(value) => value
            .to_str()
            .is_ok_and(|o| o.trim_end_matches('/').eq_ignore_ascii_case(&state.origin)),
    }
}

async fn upgrade(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&state, &headers) {
        debug!(origin = ?headers.get(header::ORIGIN), "WebSocket from a foreign origin refused");
        state.metrics.connection_refused("origin");
        return (
            StatusCode::FORBIDDEN,
            "This origin may not open a chat connection.",
        )
            .into_response();
    }
    let Some(admission) = state.capacity.admit(ip) else {
        debug!(ip = ?ip, "WebSocket refused: at the connection cap");
        state.metrics.connection_refused("capacity");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many chat connections right now; please try again later.",
        )
            .into_response();
    };
    let login = crate::auth::session_login(&state, &headers).await;
    let peer = session::Peer { ip, login };
    let max = state.config.chat.max_frame_bytes;
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            let open = state.metrics.connection_opened();
            let served = connection::run(socket, state, peer);
            async move {
                served.await;
                drop(open);
                drop(admission);
            }
        })
}
