//! `GET /u/{token}` and `POST /u/{token}`: the one-click unsubscribe of notification mails
//! (RFC 8058), the URL of their `List-Unsubscribe` header and of the "Stop these mails" link.
//!
//! `GET` only shows what the button does: mail scanners fetch every link of a mail, and a `GET`
//! that muted would unsubscribe people who never clicked. `POST` mutes the room for the token's
//! address. A mail client's one-click POST (`List-Unsubscribe=One-Click`) comes without cookies
//! or a CSRF token, so none is asked for: a forged post can only stop mails, which the token's
//! holder can undo from the chat page, and the token (160 random bits) is the capability.

use crate::room_tag::room_tag;
use axum::{
    extract::{rejection::PathRejection, Path, State},
    http::StatusCode,
    response::Response,
};
use tracing::info;

use super::html::{attr, escape, page, Page};
use crate::{error::AppError, state::AppState};

/// The room and address of a well-formed, known token.
async fn owner(state: &AppState, token: &str) -> Result<(String, String), AppError> {
    let call = state.store.lookup_unsubscribe(token);
    state.store_call(call).await?.ok_or(AppError::NotFound)
}

/// What the page calls the chat: its subject, if the room still exists.
async fn subject(state: &AppState, room_id: &str) -> Result<Option<String>, AppError> {
    let room = state.store_call(state.store.room(room_id)).await?;
    Ok(room
        .and_then(|r| r.subject)
        .filter(|s| !s.trim().is_empty()))
}

fn about(subject: Option<&str>) -> String {
    subject.map_or_else(
        || "this chat".to_owned(),
        |s| format!("the chat about &ldquo;{}&rdquo;", escape(s)),
    )
}

fn render(title: &str, main: &str) -> Response {
    let html = page(
        &Page {
            title,
            body_attrs: attr("data-page", "unsubscribe"),
            scripts: &[],
        },
        main,
    );
    super::html_response(StatusCode::OK, [], html)
}

/// `GET /u/{token}`: what the button does, and the button.
///
/// # Errors
/// [`AppError::NotFound`] for an unknown token; a store failure.
pub async fn confirm(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, AppError> {
    let Path(token) = path.map_err(|_| AppError::NotFound)?;
    let (room_id, address) = owner(&state, &token).await?;
    let about = about(subject(&state, &room_id).await?.as_deref());
    let main = format!(
        "<section class=\"card stack\"><h1>Stop these mails?</h1>\
         <p>When new messages arrive in {about} while you are not in it, CHmail mails them to \
         <strong class=\"address\">{a}</strong>.</p>\
         <form method=\"post\"{action} class=\"row\">\
         <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\" id=\"unsubscribe\" class=\"primary\">Stop mails about this chat</button>\
         </form><p class=\"muted\">Only this chat is affected. You can turn the mails back on in \
         the chat page.</p></section>",
        a = escape(&address),
        action = attr("action", &format!("/u/{token}")),
    );
    Ok(render("Stop these mails? - CHmail", &main))
}

/// `POST /u/{token}`: mutes the room for the token's address (RFC 8058 one-click, or the
/// page's button).
///
/// # Errors
/// [`AppError::NotFound`] for an unknown token; a store failure.
pub async fn mute(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, AppError> {
    let Path(token) = path.map_err(|_| AppError::NotFound)?;
    let (room_id, address) = owner(&state, &token).await?;
    state
        .store_call(state.store.set_muted(&room_id, &address, true))
        .await?;
    info!(room = %room_tag(&room_id), address = %address, "notifications muted by unsubscribe link");
    let about = about(subject(&state, &room_id).await?.as_deref());
    let main = format!(
        "<section class=\"card stack\"><h1>Done</h1>\
         <p id=\"unsubscribed\"><strong class=\"address\">{a}</strong> gets no more mails about \
         {about}.</p><p class=\"muted\">To get them again, open the chat and turn mail \
         notifications back on.</p></section>",
        a = escape(&address),
    );
    Ok(render("Unsubscribed - CHmail", &main))
}
