//! The frames of the chat WebSocket protocol, version [`VERSION`] (`docs/protocol.md`): JSON
//! text frames with a `type` field. [`ClientFrame`] is what a page or client sends,
//! [`ServerFrame`] what chatd sends, [`ErrorCode`] the stable error names.
//!
//! Unknown fields are ignored (so a newer client can add optional fields); an unknown `type` is a
//! `bad_frame` error. Breaking changes get a new version number, announced in `hello`.

use axum::extract::ws::Utf8Bytes;
use chmail::store::{Member, Message, RingState, Role};

use crate::people::Person;
use serde::{Deserialize, Serialize};

/// The protocol version this server speaks; sent in `hello` and accepted in `join`/`watch`.
pub const VERSION: u32 = 1;

/// A frame from a page or client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Join a room: as one of its To/Cc addresses (`as`), or, without `as`, as its sender (needs
    /// the sender's session cookie).
    Join {
        /// The port of the link (`/c/<port>/<room>`).
        port: u16,
        /// The room id of the link.
        room: String,
        /// Which of the room's To/Cc addresses the recipient is.
        #[serde(default, rename = "as")]
        as_address: Option<String>,
        /// The protocol version the client speaks (default [`VERSION`]).
        #[serde(default)]
        v: Option<u32>,
    },
    /// The sender's page (`/me`): make the signed-in login online and receive its rings.
    Watch {
        /// The protocol version the client speaks (default [`VERSION`]).
        #[serde(default)]
        v: Option<u32>,
    },
    /// An older page of the joined room's history.
    History {
        /// Messages older than this id (default: the newest page).
        #[serde(default)]
        before: Option<i64>,
    },
    /// A chat message to the joined room.
    Message {
        /// The text (plain text, at most `[chat] max_message_bytes` bytes).
        text: String,
        /// The client's id for it: a retry with the same id is stored once.
        #[serde(default)]
        id: Option<String>,
        /// A picture uploaded to the room (`POST /c/<port>/<room>/pictures`) to show with the
        /// text, which may then be empty.
        #[serde(default)]
        picture: Option<i64>,
    },
    /// The client has shown messages up to `up_to`.
    Read {
        /// The newest message id shown.
        up_to: i64,
    },
    /// The user is typing (relayed to the room, never stored).
    Typing {},
    /// A recipient pressed Chat: ring the sender (S107).
    Ring {},
    /// The sender accepts ring `ring` of room `room`.
    Accept {
        /// The ring id (from the `ring` frame).
        ring: i64,
        /// The ring's room.
        room: String,
    },
    /// The sender declines ring `ring` of room `room`.
    Decline {
        /// The ring id (from the `ring` frame).
        ring: i64,
        /// The ring's room.
        room: String,
    },
    /// An application-level ping; answered with `pong`.
    Ping {},
    /// A recipient asks for a code mailed to the address they joined as ([`crate::codes`]).
    Prove {},
    /// A recipient enters the code from that mail.
    Code {
        /// The six digits (spaces and dashes between them are ignored).
        code: String,
    },
    /// Turns the notification mails of the joined room off (`true`) or on (`false`).
    Mute {
        /// Whether to mute.
        muted: bool,
    },
}

/// The stable error names of `error` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not a known frame, a field of the wrong type, an empty message.
    BadFrame,
    /// The `v` of `join`/`watch` is not one this server speaks.
    UnsupportedVersion,
    /// A message over `max_message_bytes`, or a frame over `max_frame_bytes` (then the connection
    /// closes, since the stream cannot be read past it).
    TooLarge,
    /// Over `messages_per_minute` (or the general frame budget).
    RateLimited,
    /// The room has `max_room_connections` connections.
    RoomFull,
    /// No such room on that port (the same answer for both).
    NotFound,
    /// Not allowed: not one of the room's addresses, or not signed in as the sender.
    Forbidden,
    /// The frame needs a joined room.
    NotJoined,
    /// This connection has joined a room (or is watching) already.
    AlreadyJoined,
    /// The ring was answered or ended already.
    RingOver,
    /// chatd could not do it now (the store failed); try again.
    ServerError,
    /// `[chat] require_verified` is on and this recipient has not proven the address yet.
    NotVerified,
    /// The code is wrong; `attempts_left` more guesses are allowed.
    WrongCode,
    /// Too many wrong guesses: the code no longer counts; ask for a new one.
    Locked,
    /// The code has expired; ask for a new one.
    Expired,
    /// No code was asked for (or it was used already).
    NoCode,
}

impl ErrorCode {
    /// The name as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::RingOver => "ring_over",
            ErrorCode::ServerError => "server_error",
            ErrorCode::NotVerified => "not_verified",
            ErrorCode::WrongCode => "wrong_code",
            ErrorCode::Locked => "locked",
            ErrorCode::Expired => "expired",
            ErrorCode::NoCode => "no_code",
        }
    }
}

/// A stored message as sent to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageView {
    /// The message id: increasing in the order messages were stored.
    pub id: i64,
    /// The author's address (empty for chatd's own notes).
    pub author: String,
    /// The text (plain text: clients must not render it as HTML).
    pub text: String,
    /// When it was stored (unix ms).
    pub at: i64,
    /// `web`, `mail` or `system`.
    pub via: &'static str,
    /// The author's own id for it, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The picture it shows, served at `/c/<port>/<room>/pictures/<picture>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<i64>,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id,
            author: m.author.clone(),
            text: m.body.clone(),
            at: m.created_ms,
            via: m.via.as_str(),
            client_id: m.client_id.clone(),
            picture: m.picture_id,
        }
    }
}

/// A participant as sent in `joined`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// The address.
    pub address: String,
    /// `from`, `to` or `cc`.
    pub role: &'static str,
    /// Whether someone ever joined as this address.
    pub joined: bool,
    /// Whether the address was proven with a mailed code (the sender, signed in, always is).
    pub verified: bool,
    /// Whether the address is online (recipients: in this room; the sender: anywhere).
    pub online: bool,
    /// Whether the address has a connection in this room now.
    pub in_room: bool,
    /// The name to show for the address ([`crate::people`]), when one is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `shop` for a shop's host in the mall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub badge: Option<&'static str>,
    /// The newest message id this address has read (read receipts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_read: Option<i64>,
}

impl MemberView {
    /// The view of `member`, shown as `person`.
    pub fn new(member: &Member, online: bool, in_room: bool, person: Person) -> Self {
        Self {
            address: member.address.clone(),
            role: role_name(member.role),
            joined: member.joined_at.is_some(),
            verified: member.verified || member.role == Role::From,
            online,
            in_room,
            name: person.name,
            badge: person.badge,
            last_read: member.last_read,
        }
    }
}

/// Someone a message will not reach (in `ack`): not in the room, and no mail will tell them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreached {
    /// The address.
    pub address: String,
    /// Why: `not_proven` (their address is not proven, so chatd mails them nothing) or
    /// `never_joined` (the same, and they have not opened the chat yet).
    pub why: &'static str,
}

/// The name of a role as sent.
pub fn role_name(role: Role) -> &'static str {
    role.as_str()
}

/// The name of a ring state as sent (as stored).
pub fn ring_state_name(state: RingState) -> &'static str {
    state.as_str()
}

/// A frame from chatd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The first frame of every connection.
    Hello {
        /// The protocol version ([`VERSION`]).
        v: u32,
        /// `[chat] max_message_bytes`.
        max_message_bytes: usize,
        /// `[chat] messages_per_minute`.
        messages_per_minute: u32,
        /// `[chat] history_page`.
        history_page: u32,
    },
    /// The answer to `join`.
    Joined {
        /// The room id.
        room: String,
        /// The room's port.
        port: u16,
        /// The mail's subject.
        subject: Option<String>,
        /// The sender's address.
        sender: String,
        /// The address this connection speaks as.
        you: String,
        /// Whether this connection is the sender.
        is_sender: bool,
        /// The room's participants, in the order from, to, cc.
        members: Vec<MemberView>,
        /// The last message id this address has read.
        last_read: Option<i64>,
        /// How the conversation began (the start of the mail's text, the mall question): its
        /// first item, above the messages.
        #[serde(skip_serializing_if = "Option::is_none")]
        opening: Option<String>,
        /// When the mail was sent (unix ms): the time of the opening item.
        started: i64,
    },
    /// The answer to `watch`.
    Watching {
        /// The signed-in login.
        login: String,
    },
    /// A page of history, oldest first (after `join`, and the answer to `history`).
    History {
        /// The messages.
        messages: Vec<MessageView>,
        /// Whether older messages exist.
        more: bool,
    },
    /// A message someone else posted to the room.
    Message {
        /// The message.
        message: MessageView,
    },
    /// The author's message was stored (the answer to `message`).
    Ack {
        /// The client's id for it, as sent.
        id: Option<String>,
        /// The stored message.
        message: MessageView,
        /// Who this message will not reach, and why (absent when it reaches everyone).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        unreached: Vec<Unreached>,
    },
    /// To the room: `address` has read the room's messages up to `up_to` (read receipts).
    Read {
        /// Who read.
        address: String,
        /// The newest message id they have read.
        up_to: i64,
    },
    /// To the sender's sessions: ring (repeated every `ring_interval` with a growing `attempt`).
    Ring {
        /// The ring id (answer with `accept`/`decline`).
        ring: i64,
        /// The room.
        room: String,
        /// The room's port.
        port: u16,
        /// Who pressed Chat.
        caller: String,
        /// The caller's name, when the room knows one.
        #[serde(skip_serializing_if = "Option::is_none")]
        caller_name: Option<String>,
        /// The mail's subject.
        subject: Option<String>,
        /// 1 for the first ring, 2 for the second, ...
        attempt: u32,
    },
    /// To the sender's sessions: stop ringing (answered somewhere, declined, timed out).
    RingOver {
        /// The ring id.
        ring: i64,
        /// The room.
        room: String,
        /// How it ended: `accepted`, `declined`, `timed_out`, `offline`, `cancelled`, or `over`
        /// (ended elsewhere).
        state: &'static str,
    },
    /// To the room: where the call to the sender stands, with a sentence to show.
    Call {
        /// The ring id (absent for reminder news).
        ring: Option<i64>,
        /// `ringing`, `accepted`, `declined`, `timed_out`, `offline`, `cancelled`, `reminded`.
        state: &'static str,
        /// Which try (for `ringing`).
        attempt: u32,
        /// The sender's address.
        sender: String,
        /// The status line, e.g. "ringing alice@example.com (2nd try)".
        text: String,
    },
    /// To the sender's connections: the unread count of one of their rooms changed (a message
    /// was stored there, or the sender read it). The count of [`chmail::store::RoomSummary`]'s
    /// `unread`, as `/me` shows it.
    Unread {
        /// The room.
        room: String,
        /// Messages not written by the sender and newer than what the sender has read.
        count: i64,
    },
    /// To the room: an address came or went.
    Presence {
        /// The address.
        address: String,
        /// Whether it is online (recipients: in this room; the sender: anywhere).
        online: bool,
        /// Whether it has a connection in this room now.
        in_room: bool,
    },
    /// To the room: someone is typing.
    Typing {
        /// Who.
        from: String,
    },
    /// The answer to `ping`.
    Pong {},
    /// The answer to `prove`: a code is on its way to the address.
    ProofSent {
        /// The address it was mailed to.
        address: String,
        /// How long it works, in minutes.
        ttl_minutes: u64,
    },
    /// To the room: `address` was proven with a mailed code (also the answer to `prove` or
    /// `code` when it already was).
    Verified {
        /// The address.
        address: String,
    },
    /// To the connection: whether notification mails of this room are off for its address (the
    /// answer to `mute`; after a recipient's `join` only when they are off).
    Muted {
        /// Whether they are off.
        muted: bool,
    },
    /// Something the client sent was refused; nothing else changed.
    Error {
        /// The stable name.
        code: ErrorCode,
        /// A sentence for people.
        message: String,
        /// For `wrong_code`: how many more guesses the code allows.
        #[serde(skip_serializing_if = "Option::is_none")]
        attempts_left: Option<u32>,
    },
}

impl ServerFrame {
    /// An error frame.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            code,
            message: message.into(),
            attempts_left: None,
        }
    }

    /// The frame as the text of a WebSocket message, serialized once for every recipient.
    pub fn to_text(&self) -> Utf8Bytes {
        match serde_json::to_string(self) {
            Ok(text) => Utf8Bytes::from(text),
            // Only strings, numbers and enums: serializing cannot fail; stay valid regardless.
            Err(_) => Utf8Bytes::from_static(
                r#"{"type":"error","code":"server_error","message":"internal error"}"#,
            ),
        }
    }
}

/// Reads a client frame from the text of a WebSocket message.
///
/// # Errors
/// A sentence saying what is wrong, for a `bad_frame` error.
pub fn parse(text: &str) -> Result<ClientFrame, String> {
    serde_json::from_str(text).map_err(|e| {
        // serde's message names the field or variant; never echo the input itself.
        let what = e.to_string();
        let what = what.split(" at line").next().unwrap_or("bad frame");
        format!("not a valid frame: {what}")
    })
}

/// "1st", "2nd", "3rd", "4th", ... "11th", "12th", "13th", "21st".
pub fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_with_defaults_and_unknown_fields() {
        assert_eq!(
            parse(r#"{"type":"join","port":20417,"room":"r1","as":"bob@x.example","extra":1}"#),
            Ok(ClientFrame::Join {
                port: 20417,
                room: "r1".into(),
                as_address: Some("bob@x.example".into()),
                v: None
            })
        );
        assert_eq!(parse(r#"{"type":"typing"}"#), Ok(ClientFrame::Typing {}));
        assert_eq!(parse(r#"{"type":"prove"}"#), Ok(ClientFrame::Prove {}));
        assert_eq!(
            parse(r#"{"type":"code","code":"123 456"}"#),
            Ok(ClientFrame::Code {
                code: "123 456".into()
            })
        );
        assert_eq!(
            parse(r#"{"type":"mute","muted":true}"#),
            Ok(ClientFrame::Mute { muted: true })
        );
        assert!(parse(r#"{"type":"mute"}"#).is_err());
        assert_eq!(
            parse(r#"{"type":"history"}"#),
            Ok(ClientFrame::History { before: None })
        );
        assert!(parse(r#"{"type":"nope"}"#).is_err());
        assert!(parse(r#"{"type":"message"}"#).is_err());
        assert!(parse(r#"{"type":"join","port":70000,"room":"r"}"#).is_err());
        assert!(parse("[1,2]").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn server_frames_serialize_with_their_type_and_codes() {
        let text = ServerFrame::error(ErrorCode::RoomFull, "full").to_text();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "room_full");
        assert_eq!(v["code"], ErrorCode::RoomFull.as_str());
        for code in [
            ErrorCode::NotVerified,
            ErrorCode::WrongCode,
            ErrorCode::Locked,
            ErrorCode::Expired,
            ErrorCode::NoCode,
        ] {
            let text = ServerFrame::error(code, "x").to_text();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            assert_eq!(v["code"], code.as_str());
            assert!(v.get("attempts_left").is_none(), "{text:?}");
        }
        let wrong = ServerFrame::Error {
            code: ErrorCode::WrongCode,
            message: "x".into(),
            attempts_left: Some(2),
        }
        .to_text();
        assert!(wrong.as_str().contains(r#""attempts_left":2"#), "{wrong:?}");
        let pong = ServerFrame::Pong {}.to_text();
        assert_eq!(pong.as_str(), r#"{"type":"pong"}"#);
        let over = ServerFrame::RingOver {
            ring: 1,
            room: "r".into(),
            state: "accepted",
        }
        .to_text();
        assert!(
            over.as_str().starts_with(r#"{"type":"ring_over""#),
            "{over:?}"
        );
    }

    #[test]
    fn ordinals_read_as_english() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }
}
