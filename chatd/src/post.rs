//! Posting a message into a room: the one path for every way a participant writes (typed in a
//! page, a reply by mail). Store it, send it to everyone in the room, update the sender's unread
//! count, and ask for a reminder when the sender is away, so that a reply by mail reaches the
//! room exactly as a typed message does.

use chmail::store::{Message, NewMessage, Room, Via};
use tracing::warn;

use crate::{
    error::AppError,
    hub::ConnId,
    presence, reminder,
    state::AppState,
    unread,
    ws::protocol::{MessageView, ServerFrame},
};

/// A message to post.
#[derive(Debug, Clone)]
pub struct Post<'a> {
    /// The room (as read from the store).
    pub room: &'a Room,
    /// The author's address (lowercased, as participants are stored).
    pub author: &'a str,
    /// The text, already checked against the limits of its channel.
    pub text: String,
    /// How it came.
    pub via: Via,
    /// The author's id for it: a second post with the same id in the room is the first message,
    /// not a new one.
    pub client_id: Option<String>,
    /// The author's own connection, which gets an `ack` instead of the `message` frame.
    pub except: Option<ConnId>,
}

/// What [`post`] stored.
#[derive(Debug, Clone)]
pub struct Posted {
    /// The message as stored (the first copy when this was a retry).
    pub message: Message,
    /// `false` when the client id was seen before: the message was already posted and nothing
    /// was sent again.
    pub new: bool,
}

/// Stores `post` and, when it is new, publishes it to the room's connections, marks the room read
/// for its author up to it, pushes the sender's unread count and, when the author is not the
/// sender and the sender is neither in the room nor online, asks for a reminder (S117).
///
/// # Errors
/// When the store refuses or fails to store the message. What follows (the read mark, the unread
/// count, the reminder) is best effort: a failure is logged.
pub async fn post(state: &AppState, post: Post<'_>) -> Result<Posted, AppError> {
    let room = post.room;
    let new = NewMessage {
        room_id: room.id.clone(),
        author: post.author.to_owned(),
        body: post.text,
        created_ms: state.clock.now_ms(),
        via: post.via,
        client_id: post.client_id,
    };
    let added = state.store_call(state.store.add_message(&new)).await?;
    let stored = added.message;
    if !added.inserted {
        // A retry of a client id the store has seen: it was published when it was stored.
        return Ok(Posted {
            message: stored,
            new: false,
        });
    }
    state.metrics.message(post.via);
    state.hub.publish_room(
        &room.id,
        &ServerFrame::Message {
            message: MessageView::from(&stored),
        },
        post.except,
    );
    let read = state.store.mark_read(&room.id, post.author, stored.id);
    if let Err(e) = state.store_call(read).await {
        warn!(room = %room.id, cause = %e, "read mark not stored");
    }
    // After the author's read mark: the sender's own message leaves their count at 0.
    unread::push(state, &room.login, &room.id).await;
    // Verified recipients who are not here get the news by mail (after the batching delay).
    crate::notify::spawn_schedule(state, &room.id, post.author);
    let is_sender = post.author == crate::auth::sender_address(&state.config, room);
    if !is_sender
        && !state.hub.sender_in_room(&room.id)
        && !presence::is_online(state, &room.login).await
    {
        // The sender is away: the message goes into a reminder. The message is stored either
        // way; failing the post now would only make the author retry a message that is there.
        if let Err(e) = reminder::schedule(state, &room.id, post.author).await {
            warn!(room = %room.id, cause = %e, "reminder not scheduled");
        }
    }
    Ok(Posted {
        message: stored,
        new: true,
    })
}
