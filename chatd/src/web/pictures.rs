//! Pictures in a chat: `POST /c/{port}/{room}/pictures` takes the bytes of one picture and
//! answers `{"id": N}`; the page then sends a `message` frame naming that id, and everyone in
//! the room sees it from `GET /c/{port}/{room}/pictures/{id}`.
//!
//! The room id is the capability, as for the page: whoever may open the chat may send it a
//! picture, and a picture is served only under its own room (an unknown picture, a picture of
//! another room and a wrong port all get the same 404). A picture is judged by its bytes (PNG,
//! JPEG, GIF or WebP, at most [`crate::picture::MAX_PIXELS`]), never by its name or claimed
//! type; at most `[chat] max_picture_bytes` bytes (0 turns pictures off), `[chat]
//! pictures_per_hour` per client network. A browser's `Origin` must be ours. Pictures are
//! stored with the room's messages and go with the room.

use std::{net::IpAddr, sync::Arc};

use axum::{
    body::{to_bytes, Body},
    extract::{DefaultBodyLimit, Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Extension, Json, Router,
};
use serde_json::json;

use super::room::find_room;
use crate::{
    client_ip::ClientIp,
    error::AppError,
    limit::{network, RateLimiter},
    picture::{self, Refused},
    state::AppState,
};

/// One hour, the window of `[chat] pictures_per_hour`.
const HOUR_MS: i64 = 60 * 60 * 1000;

/// The limiter of uploads per client network.
type PictureLimiter = RateLimiter<IpAddr>;

/// The routes; their own body limit (`[chat] max_picture_bytes`) is applied in the handler.
pub fn routes(state: &AppState) -> Router<AppState> {
    let limiter = Arc::new(PictureLimiter::new(
        state.config.chat.pictures_per_hour,
        HOUR_MS,
    ));
    Router::new()
        .route("/c/{port}/{room}/pictures", post(upload))
        .route("/c/{port}/{room}/pictures/{id}", get(serve))
        .layer(DefaultBodyLimit::disable())
        .layer(Extension(limiter))
}

/// `POST /c/{port}/{room}/pictures`: stores one picture of the room; `{"id": N}`.
async fn upload(
    State(state): State<AppState>,
    Extension(limiter): Extension<Arc<PictureLimiter>>,
    ClientIp(ip): ClientIp,
    Path((port, room_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    if !crate::ws::origin_allowed(&state, &headers) {
        return Err(AppError::Forbidden);
    }
    let room = find_room(&state, &port, &room_id).await?;
    let max = state.config.chat.max_picture_bytes;
    if max == 0 {
        return Ok(refusal(
            StatusCode::FORBIDDEN,
            "Pictures are turned off on this chat server.",
        ));
    }
    let key = ip.map_or(IpAddr::from([0u8; 4]), network);
    if !limiter.allow(&key, state.clock.now_ms()) {
        return Err(AppError::TooMany);
    }
    let Ok(bytes) = to_bytes(body, max).await else {
        return Ok(refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "A picture may have at most {} MB.",
                max.div_ceil(1024 * 1024)
            ),
        ));
    };
    let kind = match picture::check(&bytes) {
        Ok(kind) => kind,
        Err(Refused::NotAPicture) => {
            return Ok(refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Only PNG, JPEG, GIF and WebP pictures can be sent.",
            ))
        }
        Err(Refused::TooManyPixels) => {
            return Ok(refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "That picture has too many pixels; send a smaller one.",
            ))
        }
    };
    let now = state.clock.now_ms();
    let id = state
        .store_call(state.store.add_chat_picture(&room.id, kind, &bytes, now))
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

/// A refused upload: its status and a sentence for people, as JSON (`{"error": ...}`).
fn refusal(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// `GET /c/{port}/{room}/pictures/{id}`: a picture of the room, with its type.
async fn serve(
    State(state): State<AppState>,
    Path((port, room_id, id)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    let room = find_room(&state, &port, &room_id).await?;
    let id: i64 = id.parse().map_err(|_| AppError::NotFound)?;
    let picture = state
        .store_call(state.store.chat_picture(&room.id, id))
        .await?
        .ok_or(AppError::NotFound)?;
    let content_type =
        HeaderValue::from_str(&picture.content_type).map_err(|_| AppError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            // A picture never changes under its id; only this browser keeps it.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=31536000, immutable"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("inline"),
            ),
        ],
        picture.bytes,
    )
        .into_response())
}
