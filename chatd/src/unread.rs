//! Live unread counts for a signed-in person's chats: `/me` and the mall's bar render each room's
//! count once; after that, whatever changes a count sends the login's connections an `unread`
//! frame with the new one. A login's chats are the rooms of its mails and the rooms it is a To or
//! Cc recipient of ([`crate::web::me::chats_of`]).
//!
//! Two things change a count: a message stored in the room (call [`push`] after storing it, for
//! the sender and the recipients, on every path that stores messages: typed in a page, a reply
//! by mail, chatd's own notes) and the person reading the room (the `read` frame; reading in one
//! tab clears the count in the others).
//!
//! The count is the store's own ([`chmail::store::RoomSummary::unread`] from `chats_of`),
//! so the live figure and the rendered one cannot disagree. That call counts all of the login's
//! listed rooms to report one, which is why it runs only while the login has connections: on
//! this process, or, with several nodes ([`crate::fanout`]), online anywhere per the store's
//! presence rows (the `/me` page may be on another node; the frame reaches it through the
//! fan-out). A store call for one room's count would make it cheaper.

use crate::room_tag::room_tag;
use tracing::warn;

use crate::{presence, state::AppState, ws::protocol::ServerFrame};

/// Sends `login`'s connections (on every node) the unread count of `room_id` (their `/me`
/// pages update it; room pages ignore it). Nothing when the login has no connection, or the
/// room is not among the chats that `/me` lists ([`crate::web::me::chats_of`]). A store failure is logged: the page
/// keeps its old figure until the next change.
pub async fn push(state: &AppState, login: &str, room_id: &str) {
    let connected = state.hub.has_login(login)
        || (state.hub.is_shared() && presence::is_online(state, login).await);
    if !connected {
        return;
    }
    let rooms = match crate::web::me::chats_of(state, login).await {
        Ok(rooms) => rooms,
        Err(e) => {
            warn!(login = %login, room = %room_tag(room_id), cause = %e, "unread count not read");
            return;
        }
    };
    if let Some(summary) = rooms.iter().find(|r| r.room_id == room_id) {
        state.hub.publish_login(
            login,
            &ServerFrame::Unread {
                room: room_id.to_owned(),
                count: summary.unread,
            },
        );
    }
}
