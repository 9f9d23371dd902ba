//! `GET /c/{port}/{room}`: the chat page behind a CHmail-Link.
//!
//! The room id is the capability; the port alone grants nothing. An unknown room, a known room
//! under another port and a malformed link all get the very same 404 page, so the answer tells
//! nobody which rooms or ports exist. The page is only the frame: the history, presence and
//! ringing come over the WebSocket (`static/chat.js`, `docs/protocol.md`), which relies on the
//! ids and `data-` attributes written here.

use std::{collections::HashSet, fmt::Write as _};

use axum::{
    extract::{rejection::PathRejection, Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chmail::store::{Member, Role, Room, MAX_ROOM_ID_LEN};

use super::html::{attr, escape, page, Page};
use crate::{auth::session_login, error::AppError, state::AppState};

/// The room a link names, if the link is well formed, the room exists and it is on that port.
///
/// # Errors
/// [`AppError::NotFound`] for every way of not matching; a store failure.
pub async fn find_room(state: &AppState, port: &str, room_id: &str) -> Result<Room, AppError> {
    let port = parse_port(port).ok_or(AppError::NotFound)?;
    if !is_room_id(room_id) {
        return Err(AppError::NotFound);
    }
    match state.store_call(state.store.room(room_id)).await? {
        Some(room) if room.port == port => Ok(room),
        _ => Err(AppError::NotFound),
    }
}

/// A port as written in a link: 1 to 5 digits, 1..=65535.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|p| *p != 0)
}

/// A room id as written in a link: URL-safe base64 characters, at most the store's limit.
fn is_room_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_ROOM_ID_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET /c/{port}/{room}`.
pub async fn room_page(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Path((port, room_id)) = path.map_err(|_| AppError::NotFound)?;
    let room = find_room(&state, &port, &room_id).await?;
    let members = state.store_call(state.store.members(&room.id)).await?;
    let login = session_login(&state, &headers).await;
    let is_sender = login.as_deref().is_some_and(|l| l == room.login);
    let html = render(&state, &room, &members, login.as_deref(), is_sender);
    Ok(super::html_response(StatusCode::OK, [], html))
}

/// The page for `room` as seen by `login` (signed in or not).
fn render(
    state: &AppState,
    room: &Room,
    members: &[Member],
    login: Option<&str>,
    is_sender: bool,
) -> String {
    let sender = crate::auth::sender_address(&state.config, room);
    let subject = room.subject.as_deref().unwrap_or("");
    let shown_subject = if subject.trim().is_empty() {
        "(no subject)"
    } else {
        subject
    };
    let body_attrs = [
        attr("data-page", "room"),
        attr("data-port", &room.port.to_string()),
        attr("data-room", &room.id),
        attr("data-sender", &sender),
        attr("data-subject", subject),
        attr("data-login", login.unwrap_or("")),
        attr("data-is-sender", if is_sender { "true" } else { "false" }),
        attr(
            "data-max-message-bytes",
            &state.config.chat.max_message_bytes.to_string(),
        ),
    ]
    .concat();

    let mut main = String::new();
    let _ = write!(
        main,
        "<section class=\"card room-head\">\
         <h1 id=\"subject\">{subject}</h1>\
         <p class=\"meta\">A chat about this mail from <strong class=\"address\">{sender}</strong>.</p>\
         </section>\n\
         <p id=\"status\" role=\"status\" aria-live=\"polite\">Loading the chat&hellip;</p>\n\
         <noscript><p class=\"notice\">This chat needs JavaScript. Please turn it on for this \
         page, or simply reply to the mail.</p></noscript>\n",
        subject = escape(shown_subject),
        sender = escape(&sender),
    );
    main.push_str(&participants(room, members, &sender));
    if !is_sender {
        main.push_str(&whoami(members));
        main.push_str(PROOF_AND_MAIL);
        let _ = writeln!(
            main,
            "<section class=\"card row\" id=\"call\">\
             <button type=\"button\" id=\"chat-button\">Chat with {sender}</button>\
             <span class=\"muted\">Rings {sender} if they are online, else they get a reminder \
             mail with your messages.</span></section>",
            sender = escape(&sender),
        );
    }
    let _ = writeln!(
        main,
        "<section class=\"card chat\" aria-label=\"Messages\">\
         <button type=\"button\" id=\"older\">Show older messages</button>\
         <ol id=\"messages\" aria-live=\"polite\"></ol>\
         <form id=\"composer\" autocomplete=\"off\">\
         <label for=\"text\" class=\"visually-hidden\">Message</label>\
         <textarea id=\"text\" name=\"text\" rows=\"2\" maxlength=\"{max}\" \
         placeholder=\"Write a message\" required></textarea>\
         <button type=\"submit\" id=\"send\">Send</button>\
         </form></section>",
        max = state.config.chat.max_message_bytes,
    );
    page(
        &Page {
            title: &format!("{shown_subject} - CHmail"),
            body_attrs,
            scripts: &["/static/chat.js"],
        },
        &main,
    )
}

/// `#participants`: the sender first, then the To and Cc addresses, each with its role and, for
/// recipients, a mark: verified (proven with a mailed code) or unverified.
fn participants(room: &Room, members: &[Member], sender: &str) -> String {
    let mut items = String::new();
    let mut seen = HashSet::new();
    let mut item = |address: &str, role: Role, verified: bool| {
        if !seen.insert(address.to_owned()) {
            return;
        }
        let role_name = match role {
            Role::From => "sender",
            Role::To => "to",
            Role::Cc => "cc",
        };
        let mark = if role == Role::From {
            String::new()
        } else if verified {
            " <span class=\"verified\" title=\"Proven with a code mailed to this address\">\
             verified</span>"
                .to_owned()
        } else {
            " <span class=\"unverified\" title=\"Whoever joins as this address has not proven \
             it\">unverified</span>"
                .to_owned()
        };
        let _ = write!(
            items,
            "<li{a}{r} data-presence=\"offline\"><span class=\"presence\" aria-hidden=\"true\">\
             </span><span class=\"address\">{addr}</span> <span class=\"role\">{role_name}</span>\
             {mark}<span class=\"visually-hidden presence-text\">offline</span></li>",
            a = attr("data-address", address),
            r = attr("data-role", role.as_str()),
            addr = escape(address),
        );
    };
    item(sender, Role::From, true);
    for m in members.iter().filter(|m| m.role == Role::From) {
        item(&m.address, Role::From, true);
    }
    if members.is_empty() {
        for p in room.participants.iter().filter(|p| p.role != Role::From) {
            item(&p.address, p.role, false);
        }
    }
    for m in members.iter().filter(|m| m.role != Role::From) {
        item(&m.address, m.role, m.verified);
    }
    format!(
        "<section class=\"card\"><h2>Participants</h2><ul id=\"participants\">{items}</ul></section>\n"
    )
}

/// `#proof`, the code form of a recipient proving their address (after "Prove it's you"), and
/// `#mail-settings`, the toggle of notification mails; `chat.js` shows them when they apply.
const PROOF_AND_MAIL: &str = "<section class=\"card stack\" id=\"proof\" hidden>\
     <form id=\"code-form\" class=\"row\" autocomplete=\"off\">\
     <label for=\"code\">Code from the mail</label>\
     <input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" \
     autocomplete=\"one-time-code\" maxlength=\"12\" placeholder=\"123456\" required>\
     <button type=\"submit\" id=\"code-send\" class=\"primary\">Confirm</button>\
     <button type=\"button\" id=\"code-again\" class=\"link-button\">Mail a new code</button>\
     </form></section>\n\
     <section class=\"card row\" id=\"mail-settings\" hidden>\
     <span id=\"mute-text\" class=\"muted\"></span>\
     <button type=\"button\" id=\"mute-toggle\"></button></section>\n";

/// `#whoami`: which of the room's To/Cc addresses the visitor is.
fn whoami(members: &[Member]) -> String {
    let mut options = String::new();
    let mut seen = HashSet::new();
    for m in members.iter().filter(|m| m.role != Role::From) {
        if seen.insert(m.address.as_str()) {
            let _ = write!(
                options,
                "<option{v}>{a}</option>",
                v = attr("value", &m.address),
                a = escape(&m.address),
            );
        }
    }
    format!(
        "<section class=\"card\"><form id=\"whoami\" class=\"row\">\
         <label for=\"as\">I am</label>\
         <select id=\"as\" name=\"as\" required><option value=\"\">choose your address</option>\
         {options}</select>\
         <button type=\"submit\" id=\"join\">Join</button>\
         </form><p class=\"muted\">Pick the address this mail reached you at. Others see it as \
         unverified until you prove it with a code mailed there.</p></section>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ports_and_room_ids_pass() {
        assert_eq!(parse_port("20417"), Some(20417));
        for bad in ["", "0", "65536", "+1", "1e3", "020417x", "123456"] {
            assert_eq!(parse_port(bad), None, "{bad}");
        }
        assert!(is_room_id("AbC_-9"));
        assert!(!is_room_id("a/b"));
        assert!(!is_room_id(&"a".repeat(MAX_ROOM_ID_LEN + 1)));
    }
}
