//! Posting a message into a room: the one path for every way a participant writes (typed in a
//! page, a reply by mail). Store it, send it to everyone in the room, update the sender's unread
//! count, and ask for a reminder when the sender is away, so that a reply by mail reaches the
//! room exactly as a typed message does.

use std::collections::HashSet;

use chmail::store::{Member, Message, NewMessage, Role, Room, Via};
use tracing::warn;

use crate::{
    error::AppError,
    hub::ConnId,
    presence, reminder,
    room_tag::room_tag,
    state::AppState,
    unread,
    ws::protocol::{MessageView, ServerFrame, Unreached},
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
    /// A picture of the room to show with the text ([`crate::web::pictures`]).
    pub picture: Option<i64>,
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
        picture_id: post.picture,
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
    // The author's read mark went with the message, in one transaction (`add_message`).
    // After the author's read mark: the sender's own message leaves their count at 0.
    unread::push(state, &room.login, &room.id).await;
    // Recipients signed in elsewhere (a shop's host on the mall, /me) see their count too.
    for address in recipients(room, post.author) {
        unread::push(state, &address, &room.id).await;
    }
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
            warn!(room = %room_tag(&room.id), cause = %e, "reminder not scheduled");
        }
    }
    Ok(Posted {
        message: stored,
        new: true,
    })
}

/// The room's To and Cc addresses but `author`, once each, at most [`crate::people::MAX_LOOKUPS`]:
/// whose unread counts a message changes (beyond the sender's).
fn recipients(room: &Room, author: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    room.participants
        .iter()
        .filter(|p| p.role != Role::From && p.address != author)
        .filter(|p| seen.insert(p.address.as_str()))
        .take(crate::people::MAX_LOOKUPS)
        .map(|p| p.address.clone())
        .collect()
}

/// Who a message of `author` in `room` will not reach: the room's recipients who are neither in
/// the room (on this node) nor proven, so that no notification mail goes to them (the sender is
/// always reached: rung while online, reminded by mail while away). Muted recipients are not
/// listed: they turned the mails off themselves. A store failure lists nobody (logged): the
/// message is stored either way.
pub async fn unreached(state: &AppState, room: &Room, author: &str) -> Vec<Unreached> {
    let members = match state.store_call(state.store.members(&room.id)).await {
        Ok(members) => members,
        Err(e) => {
            warn!(room = %room_tag(&room.id), cause = %e, "reach of a message unknown");
            return Vec::new();
        }
    };
    let here = state.hub.addresses_in_room(&room.id);
    let sender = crate::auth::sender_address(&state.config, room);
    unreached_of(&members, &here, &sender, author)
}

/// [`unreached`] for `members`, with `here` the addresses in the room now.
pub fn unreached_of(
    members: &[Member],
    here: &HashSet<String>,
    sender: &str,
    author: &str,
) -> Vec<Unreached> {
    let mut seen = HashSet::new();
    members
        .iter()
        .filter(|m| {
            m.role != Role::From
                && !m.verified
                && m.address != sender
                && m.address != author
                && !here.contains(&m.address)
                && seen.insert(m.address.as_str())
        })
        .map(|m| Unreached {
            address: m.address.clone(),
            why: if m.joined_at.is_some() {
                "not_proven"
            } else {
                "never_joined"
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(address: &str, role: Role, joined: bool, verified: bool) -> Member {
        Member {
            room_id: "r".into(),
            address: address.into(),
            role,
            joined_at: joined.then_some(1),
            last_read: None,
            verified,
        }
    }

    #[test]
    fn only_absent_unproven_recipients_are_unreached() {
        let members = [
            member("alice@a.example", Role::From, true, false),
            member("bob@b.example", Role::To, true, false),
            member("carol@c.example", Role::Cc, false, false),
            member("dan@d.example", Role::Cc, true, true),
            member("erin@e.example", Role::Cc, true, false),
            member("bob@b.example", Role::Cc, true, false),
        ];
        let here: HashSet<String> = ["erin@e.example".to_owned()].into();
        let got = unreached_of(&members, &here, "alice@a.example", "alice@a.example");
        let got: Vec<(&str, &str)> = got.iter().map(|u| (u.address.as_str(), u.why)).collect();
        // Bob left unproven, Carol never came; Dan gets mail, Erin is here, Alice is the sender.
        assert_eq!(
            got,
            vec![
                ("bob@b.example", "not_proven"),
                ("carol@c.example", "never_joined")
            ]
        );
        // The author is never told about themselves.
        let by_bob = unreached_of(&members, &here, "alice@a.example", "bob@b.example");
        assert!(by_bob.iter().all(|u| u.address != "bob@b.example"));
    }
}
