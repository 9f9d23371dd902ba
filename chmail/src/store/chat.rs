//! The chat side of the store (chatd): who joined which room, the messages, the rings, the
//! reminder schedule, sign-in tokens, sessions and presence.
//!
//! Times here are unix **milliseconds** (messages and rings need the order within a second).
//! Every write is a single statement or one short transaction, so several chatd nodes can share
//! one PostgreSQL: reminder jobs are claimed with a lease so that one node works each.

use std::{
    collections::{BTreeSet, HashSet},
    str::FromStr,
};

use super::{check_text, Result, Role, StoreError, MAX_ADDRESS_LEN, MAX_ROOM_ID_LEN};

/// Longest message body accepted by the store, in bytes; chatd's own limit
/// (`[chat] max_message_bytes`) is lower.
pub const MAX_BODY_LEN: usize = 64 * 1024;
/// Longest client-chosen message id, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 64;
/// Longest token or session hash accepted, in bytes: a hex SHA-512 is 128; this only stops abuse.
pub const MAX_HASH_LEN: usize = 128;
/// Most rows one call returns (messages, rooms, reminder jobs); a larger `limit` is cut to it so
/// that no request can make the store read a whole history at once.
pub const MAX_PAGE: u32 = 500;
/// How long a sign-in token's row is kept after it expired, in ms: longer than any rate-limit
/// window, so that [`ChatStore::count_signin_tokens`] still counts used and expired tokens.
pub const SIGNIN_TOKEN_KEEP_MS: i64 = 24 * 60 * 60 * 1000;
/// Most logins one [`ChatStore::online_logins`] call takes (as many as a room has participants).
pub const MAX_PRESENCE_BATCH: usize = 1000;

/// A participant of a room as chatd sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The room.
    pub room_id: String,
    /// The address (lowercased), one of the mail's From/To/Cc addresses.
    pub address: String,
    /// Its role in the mail.
    pub role: Role,
    /// When someone first joined the room as this address (ms), if ever.
    pub joined_at: Option<i64>,
    /// The id of the last message this address has read.
    pub last_read: Option<i64>,
    /// Whether the address was proven with a mailed code (set by
    /// [`super::MailStore::check_code`] on every row of the address in the room).
    pub verified: bool,
}

/// How a message reached the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Typed in a chat page or client.
    Web,
    /// A reply by mail.
    Mail,
    /// Written by chatd itself (a ring missed, a reminder sent).
    System,
}

impl Via {
    /// The name stored: `web`, `mail`, `system`.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Web => "web",
            Via::Mail => "mail",
            Via::System => "system",
        }
    }
}

impl FromStr for Via {
    type Err = StoreError;

    /// Parses `web`, `mail` or `system`.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for anything else.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "web" => Ok(Via::Web),
            "mail" => Ok(Via::Mail),
            "system" => Ok(Via::System),
            _ => Err(StoreError::Invalid(format!(
                "via {s:?} is not one of web, mail, system"
            ))),
        }
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its id: increasing in the order messages were stored, across all rooms.
    pub id: i64,
    /// The room.
    pub room_id: String,
    /// The author's address (for `Via::System`, empty).
    pub author: String,
    /// The text.
    pub body: String,
    /// When it was stored (ms).
    pub created_ms: i64,
    /// How it came.
    pub via: Via,
    /// The author's own id for it, if given (retries with the same id store it once).
    pub client_id: Option<String>,
    /// The picture it shows ([`ChatStore::add_chat_picture`]), if any.
    pub picture_id: Option<i64>,
}

/// A picture sent in a chat, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPicture {
    /// Its content type (`image/png`, `image/jpeg`, `image/gif`, `image/webp`).
    pub content_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Largest picture the store takes, in bytes: a ceiling for any configuration (chatd's own
/// limit, `[chat] max_picture_bytes`, is lower).
pub const MAX_PICTURE_LEN: usize = 16 * 1024 * 1024;

/// What [`ChatStore::add_message`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The message as stored: the first copy when its client id was seen before.
    pub message: Message,
    /// Whether this call stored it; `false` for a retry of a (room, author, client id) that
    /// was stored before. Callers act on a message once by this, never by comparing fields.
    pub inserted: bool,
}

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The room.
    pub room_id: String,
    /// The author's address.
    pub author: String,
    /// The text (at most [`MAX_BODY_LEN`] bytes).
    pub body: String,
    /// When (ms).
    pub created_ms: i64,
    /// How it came.
    pub via: Via,
    /// The author's own id, for idempotent retries.
    pub client_id: Option<String>,
    /// A picture of the same room to show with it (the text may then be empty).
    pub picture_id: Option<i64>,
}

/// The state of a ring (S107-S115).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingState {
    /// The sender's sessions are ringing.
    Ringing,
    /// A session of the sender accepted.
    Accepted,
    /// The sender declined.
    Declined,
    /// Nobody answered within `ring_timeout`.
    TimedOut,
    /// The sender was offline: no ring, a reminder instead.
    Offline,
    /// The caller left before an answer.
    Cancelled,
}

impl RingState {
    /// The name stored: `ringing`, `accepted`, `declined`, `timed_out`, `offline`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            RingState::Ringing => "ringing",
            RingState::Accepted => "accepted",
            RingState::Declined => "declined",
            RingState::TimedOut => "timed_out",
            RingState::Offline => "offline",
            RingState::Cancelled => "cancelled",
        }
    }

    /// Whether the ring is over.
    pub fn is_final(self) -> bool {
        self != RingState::Ringing
    }
}

impl FromStr for RingState {
    type Err = StoreError;

    /// Parses the names of [`RingState::as_str`].
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for anything else.
    fn from_str(s: &str) -> Result<Self> {
        [
            RingState::Ringing,
            RingState::Accepted,
            RingState::Declined,
            RingState::TimedOut,
            RingState::Offline,
            RingState::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| StoreError::Invalid(format!("ring state {s:?} is not known")))
    }
}

/// A ring: a recipient pressed Chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// Its id.
    pub id: i64,
    /// The room.
    pub room_id: String,
    /// Who pressed Chat (their address).
    pub caller: String,
    /// Where it stands.
    pub state: RingState,
    /// How many times the sender's sessions were rung so far.
    pub attempts: u32,
    /// When Chat was pressed (ms).
    pub started_ms: i64,
    /// When the state or attempts last changed (ms).
    pub updated_ms: i64,
}

/// The reminder schedule of one room (S117).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    /// The room.
    pub room_id: String,
    /// When the next reminder is due (ms); `None` when none is pending.
    pub due_ms: Option<i64>,
    /// Who tried to reach the sender (the first caller since the last reminder).
    pub caller: Option<String>,
    /// When the last reminder was sent (ms).
    pub last_sent_ms: Option<i64>,
    /// The last message id that a sent reminder included.
    pub last_message_id: Option<i64>,
    /// How many reminders were sent for this room.
    pub sent_count: u32,
}

/// A reminder claimed for sending: the lease keeps other nodes off it until `lease_until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderJob {
    /// The schedule as claimed.
    pub reminder: Reminder,
    /// The claim's owner (a random id per chatd process).
    pub owner: String,
    /// Until when the claim holds (ms).
    pub lease_until_ms: i64,
}

/// A single-use sign-in token (only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigninToken {
    /// The login it signs in.
    pub login: String,
    /// The room to open after signing in, if any.
    pub room_id: Option<String>,
    /// When it was made (ms).
    pub created_ms: i64,
    /// When it stops working (ms).
    pub expires_ms: i64,
}

/// A signed-in session (only the hash of its cookie is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The login.
    pub login: String,
    /// When it was made (ms).
    pub created_ms: i64,
    /// When it ends (ms).
    pub expires_ms: i64,
}

/// One of a login's rooms, for the sender's page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSummary {
    /// The room id.
    pub room_id: String,
    /// The port the room is on.
    pub port: u16,
    /// The mail's subject.
    pub subject: Option<String>,
    /// When the room was made (unix seconds, as [`super::Room::created`]).
    pub created: i64,
    /// Messages not written by the sender and newer than the sender's `last_read`.
    pub unread: i64,
    /// The newest message's time (ms), if any.
    pub last_message_ms: Option<i64>,
}

/// The chat tables. Part of every [`super::Store`].
#[async_trait::async_trait]
pub trait ChatStore: Send + Sync {
    /// Marks `address` as joined to `room_id` (first join time kept). `None` when the address is
    /// not one of the room's participants (or the room does not exist).
    ///
    /// # Errors
    /// On a store failure.
    async fn join_room(&self, room_id: &str, address: &str, now_ms: i64) -> Result<Option<Member>>;

    /// The participants of a room with their chat state, in the room's participant order.
    ///
    /// # Errors
    /// On a store failure.
    async fn members(&self, room_id: &str) -> Result<Vec<Member>>;

    /// Records that `address` has read up to `message_id` (never moves backwards).
    ///
    /// # Errors
    /// On a store failure.
    async fn mark_read(&self, room_id: &str, address: &str, message_id: i64) -> Result<()>;

    /// Stores a message and, in the same transaction, marks the room read for its author up to
    /// it (as [`ChatStore::mark_read`]: an author who writes has seen the room; one durable write
    /// per message). A second call with the same (room, author, client id) returns the first
    /// message unchanged instead of storing it twice, with [`Added::inserted`] `false`.
    ///
    /// # Errors
    /// [`super::StoreError::Invalid`] for an empty or oversized body or an unknown room.
    async fn add_message(&self, message: &NewMessage) -> Result<Added>;

    /// Stores a picture sent in `room_id`, of `content_type`, and returns its id; a message
    /// shows it by naming that id ([`NewMessage::picture_id`]).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an unknown room, a type other than PNG, JPEG, GIF or WebP,
    /// no bytes or more than [`MAX_PICTURE_LEN`]; otherwise on a store failure.
    async fn add_chat_picture(
        &self,
        room_id: &str,
        content_type: &str,
        bytes: &[u8],
        now_ms: i64,
    ) -> Result<i64>;

    /// The picture `id` if it belongs to `room_id` (`None` otherwise, the same as unknown).
    ///
    /// # Errors
    /// On a store failure.
    async fn chat_picture(&self, room_id: &str, id: i64) -> Result<Option<ChatPicture>>;

    /// A page of a room's history: the `limit` newest messages older than `before_id` (all when
    /// `None`), returned oldest first.
    ///
    /// # Errors
    /// On a store failure.
    async fn messages(
        &self,
        room_id: &str,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>>;

    /// Messages newer than `after_id`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// On a store failure.
    async fn messages_after(
        &self,
        room_id: &str,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Message>>;

    /// The rooms of `login`'s mails, newest first, with the unread count for `address` (the
    /// sender's From address in those rooms is their login).
    ///
    /// # Errors
    /// On a store failure.
    async fn rooms_of_login(&self, login: &str, limit: u32) -> Result<Vec<RoomSummary>>;

    /// The rooms `address` was a To or Cc recipient of (not its own mails), newest first, with
    /// its unread count: messages of others newer than what it has read.
    ///
    /// # Errors
    /// On a store failure.
    async fn rooms_of_recipient(&self, address: &str, limit: u32) -> Result<Vec<RoomSummary>>;

    /// Starts a ring in `room_id` by `caller`; if one is already ringing there, returns it.
    ///
    /// # Errors
    /// On a store failure or an unknown room.
    async fn start_ring(&self, room_id: &str, caller: &str, now_ms: i64) -> Result<Ring>;

    /// Moves a ringing ring to `state` with `attempts`; `None` when the ring is already over (the
    /// first accept wins: a later accept or decline changes nothing).
    ///
    /// # Errors
    /// On a store failure.
    async fn update_ring(
        &self,
        ring_id: i64,
        state: RingState,
        attempts: u32,
        now_ms: i64,
    ) -> Result<Option<Ring>>;

    /// The ring that is ringing in `room_id`, if any.
    ///
    /// # Errors
    /// On a store failure.
    async fn active_ring(&self, room_id: &str) -> Result<Option<Ring>>;

    /// Up to `limit` rings still ringing that started at or before `started_before_ms`, oldest
    /// first: rings whose ringing task must have ended them by now, so it died with its node.
    /// Whoever finds one ends it with [`ChatStore::update_ring`], whose compare-and-set lets one
    /// node win.
    ///
    /// # Errors
    /// On a store failure.
    async fn orphaned_rings(&self, started_before_ms: i64, limit: u32) -> Result<Vec<Ring>>;

    /// Asks for a reminder in `room_id` no earlier than `due_ms`, naming `caller`. If one is
    /// already pending the earlier due time stays (and its caller).
    ///
    /// # Errors
    /// On a store failure.
    async fn schedule_reminder(&self, room_id: &str, caller: &str, due_ms: i64) -> Result<()>;

    /// The reminder schedule of a room.
    ///
    /// # Errors
    /// On a store failure.
    async fn reminder(&self, room_id: &str) -> Result<Option<Reminder>>;

    /// Claims up to `limit` due reminders (due <= now, not leased by anyone else) for `owner`
    /// until `now + lease_ms`. Across processes each due reminder is claimed by one.
    ///
    /// # Errors
    /// On a store failure.
    async fn claim_reminders(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<ReminderJob>>;

    /// Records that the claimed reminder of `room_id` was sent at `sent_ms`, covering messages up
    /// to `last_message_id`; clears the pending due time and the lease. Does nothing when `owner`
    /// no longer holds the claim.
    ///
    /// # Errors
    /// On a store failure.
    async fn finish_reminder(
        &self,
        room_id: &str,
        owner: &str,
        sent_ms: i64,
        last_message_id: Option<i64>,
    ) -> Result<bool>;

    /// Stores a sign-in token's hash.
    ///
    /// # Errors
    /// On a store failure.
    async fn create_signin_token(&self, token_hash: &str, token: &SigninToken) -> Result<()>;

    /// How many sign-in tokens `login` was given since `since_ms` (for the rate limit).
    ///
    /// # Errors
    /// On a store failure.
    async fn count_signin_tokens(&self, login: &str, since_ms: i64) -> Result<u32>;

    /// Uses a sign-in token: returns it once if it exists and has not expired; afterwards it is
    /// gone.
    ///
    /// # Errors
    /// On a store failure.
    async fn consume_signin_token(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<SigninToken>>;

    /// Stores a session under its cookie's hash.
    ///
    /// # Errors
    /// On a store failure.
    async fn create_session(&self, session_hash: &str, session: &Session) -> Result<()>;

    /// The session for a cookie hash, if it exists and has not expired.
    ///
    /// # Errors
    /// On a store failure.
    async fn session(&self, session_hash: &str, now_ms: i64) -> Result<Option<Session>>;

    /// Ends a session.
    ///
    /// # Errors
    /// On a store failure.
    async fn delete_session(&self, session_hash: &str) -> Result<()>;

    /// Records that `login` has `connections` connections on chatd node `node`, counting until
    /// `until_ms`; replaces that node's previous row for the login (a later `until_ms` or an
    /// earlier one). A login is online while some node's row for it has `until_ms` > now: each
    /// node refreshes its rows on a heartbeat, so the rows of a node that died expire by
    /// themselves. `connections` 0 with `until_ms` in the future is the grace period after the
    /// last connection closed. Logins compare trimmed and lowercased.
    ///
    /// # Errors
    /// [`super::StoreError::Invalid`] for an empty or too long login or node, or more than
    /// `i32::MAX` connections; otherwise on a store failure.
    async fn set_presence(
        &self,
        login: &str,
        node: &str,
        connections: u32,
        until_ms: i64,
    ) -> Result<()>;

    /// Removes `node`'s row for `login` (its last connection closed and no grace is wanted, or
    /// the node shuts down). Other nodes' rows stay. Removing a missing row is harmless.
    ///
    /// # Errors
    /// On a store failure.
    async fn clear_presence(&self, login: &str, node: &str) -> Result<()>;

    /// Whether `login` is online at `now_ms`: some node's row for it has `until_ms` > `now_ms`.
    ///
    /// # Errors
    /// On a store failure.
    async fn online(&self, login: &str, now_ms: i64) -> Result<bool>;

    /// The logins of `logins` that are online at `now_ms` (see [`ChatStore::online`]), as given
    /// and in the given order; one query for the whole batch.
    ///
    /// # Errors
    /// [`super::StoreError::Invalid`] for more than [`MAX_PRESENCE_BATCH`] logins; otherwise on
    /// a store failure.
    async fn online_logins(&self, logins: &[String], now_ms: i64) -> Result<Vec<String>>;

    /// Deletes the rows that have expired at `now_ms` (`until_ms` <= `now_ms`, which no longer
    /// count) and returns how many.
    ///
    /// # Errors
    /// On a store failure.
    async fn prune_presence(&self, now_ms: i64) -> Result<u64>;
}

// Input checks and conversions shared by both backends.

/// An address as stored: trimmed and lowercased, as [`super::normalize_room`] stores
/// participants.
///
/// # Errors
/// [`StoreError::Invalid`] for an empty or too long address.
pub(crate) fn normalize_address(what: &str, address: &str) -> Result<String> {
    let address = address.trim().to_lowercase();
    if address.is_empty() {
        return Err(StoreError::Invalid(format!("{what} is empty")));
    }
    check_text(what, &address, MAX_ADDRESS_LEN)?;
    Ok(address)
}

/// Rejects an empty or too long room id.
pub(crate) fn check_room_id(room_id: &str) -> Result<()> {
    if room_id.is_empty() {
        return Err(StoreError::Invalid("room id is empty".into()));
    }
    check_text("room id", room_id, MAX_ROOM_ID_LEN)
}

/// Rejects an empty or too long token or session hash.
pub(crate) fn check_hash(what: &str, hash: &str) -> Result<()> {
    if hash.is_empty() {
        return Err(StoreError::Invalid(format!("{what} is empty")));
    }
    check_text(what, hash, MAX_HASH_LEN)
}

/// Longest reminder lease owner accepted, in bytes: owners are short random ids.
const MAX_OWNER_LEN: usize = 128;

/// Rejects an empty or too long reminder lease owner.
pub(crate) fn check_owner(owner: &str) -> Result<()> {
    if owner.is_empty() {
        return Err(StoreError::Invalid("reminder owner is empty".into()));
    }
    check_text("reminder owner", owner, MAX_OWNER_LEN)
}

/// Validates a message and returns what is stored (the author normalized like an address).
pub(crate) fn normalize_message(m: &NewMessage) -> Result<NewMessage> {
    check_room_id(&m.room_id)?;
    let author = if m.via == Via::System && m.author.trim().is_empty() {
        String::new()
    } else {
        normalize_address("author", &m.author)?
    };
    if m.via != Via::System && m.body.trim().is_empty() && m.picture_id.is_none() {
        return Err(StoreError::Invalid("message body is empty".into()));
    }
    check_text("message body", &m.body, MAX_BODY_LEN)?;
    if let Some(id) = &m.client_id {
        if id.is_empty() {
            return Err(StoreError::Invalid("client id is empty".into()));
        }
        check_text("client id", id, MAX_CLIENT_ID_LEN)?;
    }
    Ok(NewMessage {
        author,
        ..m.clone()
    })
}

/// The rooms of a recipient address (`$1`) with its unread count, newest first, at most `$2`: the
/// columns of `rooms_of_login`. One statement for both backends (SQLite numbers `$1` and `$2` in
/// the order they first appear, as PostgreSQL does).
pub(crate) const ROOMS_OF_RECIPIENT_SQL: &str = "SELECT r.id, r.port, r.subject, r.created,
    (SELECT COUNT(*) FROM messages m
     WHERE m.room_id = r.id
       AND m.id > COALESCE((SELECT MAX(p.last_read) FROM room_participants p
                            WHERE p.room_id = r.id AND p.address = $1), 0)
       AND m.author <> $1 AND m.author <> ''),
    (SELECT MAX(m.created_ms) FROM messages m WHERE m.room_id = r.id)
    FROM rooms r
    WHERE EXISTS (SELECT 1 FROM room_participants p
                  WHERE p.room_id = r.id AND p.address = $1 AND p.role <> 'from')
      AND NOT EXISTS (SELECT 1 FROM room_participants p
                      WHERE p.room_id = r.id AND p.address = $1 AND p.role = 'from')
    ORDER BY r.created DESC, r.id DESC LIMIT $2";

/// The author's read mark raised to the message just stored (`$1` id, `$2` room, `$3` address),
/// inside `add_message`'s transaction. One statement for both backends: SQLite numbers `$N` in
/// the order they first appear, so they appear here in order.
pub(crate) const MARK_OWN_READ_SQL: &str = "UPDATE room_participants SET last_read = $1
    WHERE (last_read IS NULL OR last_read < $1) AND room_id = $2 AND address = $3";

/// Checks a picture before it is stored (see [`ChatStore::add_chat_picture`]).
pub(crate) fn check_picture(room_id: &str, content_type: &str, bytes: &[u8]) -> Result<()> {
    check_room_id(room_id)?;
    if !matches!(
        content_type,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    ) {
        return Err(StoreError::Invalid(format!(
            "picture type {content_type:?} is not PNG, JPEG, GIF or WebP"
        )));
    }
    if bytes.is_empty() || bytes.len() > MAX_PICTURE_LEN {
        return Err(StoreError::Invalid(format!(
            "a picture has 1 to {MAX_PICTURE_LEN} bytes"
        )));
    }
    Ok(())
}

/// Checks a sign-in token before it is stored.
pub(crate) fn check_signin_token(token_hash: &str, token: &SigninToken) -> Result<()> {
    check_hash("token hash", token_hash)?;
    super::check_login(&token.login)?;
    if let Some(room) = &token.room_id {
        check_room_id(room)?;
    }
    Ok(())
}

/// Checks a session before it is stored.
pub(crate) fn check_session(session_hash: &str, session: &Session) -> Result<()> {
    check_hash("session hash", session_hash)?;
    super::check_login(&session.login)
}

/// A login as presence stores it: trimmed and lowercased, as [`normalize_address`] stores
/// authors.
///
/// # Errors
/// [`StoreError::Invalid`] for an empty or too long login.
pub(crate) fn normalize_login(login: &str) -> Result<String> {
    let login = login.trim().to_lowercase();
    super::check_login(&login)?;
    Ok(login)
}

/// Longest presence node id accepted, in bytes: nodes are short ids; this only stops abuse.
const MAX_NODE_LEN: usize = 128;

/// Rejects an empty or too long presence node id.
pub(crate) fn check_node(node: &str) -> Result<()> {
    if node.is_empty() {
        return Err(StoreError::Invalid("presence node is empty".into()));
    }
    check_text("presence node", node, MAX_NODE_LEN)
}

/// Checks a presence row before it is written: the login as stored and the connection count as
/// stored (an SQL INTEGER).
pub(crate) fn check_presence(login: &str, node: &str, connections: u32) -> Result<(String, i32)> {
    let login = normalize_login(login)?;
    check_node(node)?;
    let connections = i32::try_from(connections).map_err(|_| {
        StoreError::Invalid(format!("{connections} presence connections are too many"))
    })?;
    Ok((login, connections))
}

/// The distinct logins an [`ChatStore::online_logins`] call asks about, as stored; those the
/// store could not hold are left out (they are never online).
///
/// # Errors
/// [`StoreError::Invalid`] for more than [`MAX_PRESENCE_BATCH`] logins.
pub(crate) fn presence_batch(logins: &[String]) -> Result<Vec<String>> {
    if logins.len() > MAX_PRESENCE_BATCH {
        return Err(StoreError::Invalid(format!(
            "{} logins asked for presence at once, more than {MAX_PRESENCE_BATCH}",
            logins.len()
        )));
    }
    let batch: BTreeSet<String> = logins
        .iter()
        .filter_map(|login| normalize_login(login).ok())
        .collect();
    Ok(batch.into_iter().collect())
}

/// The logins of `logins` (as given, in order) whose stored form is in `online`.
pub(crate) fn select_online(logins: &[String], online: &HashSet<String>) -> Vec<String> {
    logins
        .iter()
        .filter(|login| normalize_login(login).is_ok_and(|l| online.contains(&l)))
        .cloned()
        .collect()
}

/// A caller's `limit` as a SQL `LIMIT`, at most [`MAX_PAGE`].
pub(crate) fn page(limit: u32) -> i64 {
    i64::from(limit.min(MAX_PAGE))
}

/// A stored count (attempts, sent reminders) as the `u32` of the interface.
pub(crate) fn to_count(n: i64) -> Result<u32> {
    u32::try_from(n)
        .map_err(|_| StoreError::Backend(format!("count {n} in the database is out of range")))
}

/// A stored name parsed into its enum; a bad one is the database's fault, not the caller's.
pub(crate) fn parse_stored<T: FromStr<Err = StoreError>>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|e: StoreError| StoreError::Backend(e.to_string()))
}

/// Members read back as (member, position), in the room's participant order (from, to, cc;
/// then as written).
pub(crate) fn sort_members(mut rows: Vec<(Member, i64)>) -> Vec<Member> {
    rows.sort_by_key(|(m, position)| (m.role, *position));
    rows.into_iter().map(|(m, _)| m).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_and_ring_state_round_trip_through_their_names() {
        for via in [Via::Web, Via::Mail, Via::System] {
            assert_eq!(via.as_str().parse::<Via>().ok(), Some(via));
        }
        for state in [
            RingState::Ringing,
            RingState::Accepted,
            RingState::Declined,
            RingState::TimedOut,
            RingState::Offline,
            RingState::Cancelled,
        ] {
            assert_eq!(state.as_str().parse::<RingState>().ok(), Some(state));
        }
        assert!("Web".parse::<Via>().is_err());
        assert!("rung".parse::<RingState>().is_err());
    }

    #[test]
    fn messages_are_checked_and_authors_normalized() {
        let m = NewMessage {
            room_id: "r".into(),
            author: " Bob@X.example ".into(),
            body: "hi".into(),
            created_ms: 1,
            via: Via::Web,
            client_id: None,
            picture_id: None,
        };
        assert_eq!(
            normalize_message(&m).ok().map(|m| m.author),
            Some("bob@x.example".into())
        );
        let blank = NewMessage {
            body: " \n".into(),
            ..m.clone()
        };
        assert!(normalize_message(&blank).is_err());
        let system = NewMessage {
            author: String::new(),
            via: Via::System,
            ..blank
        };
        assert!(normalize_message(&system).is_ok());
        let big = NewMessage {
            body: "x".repeat(MAX_BODY_LEN + 1),
            ..m.clone()
        };
        assert!(normalize_message(&big).is_err());
        let long_id = NewMessage {
            client_id: Some("c".repeat(MAX_CLIENT_ID_LEN + 1)),
            ..m.clone()
        };
        assert!(normalize_message(&long_id).is_err());
        let nobody = NewMessage {
            author: " ".into(),
            ..m
        };
        assert!(normalize_message(&nobody).is_err());
    }

    #[test]
    fn pages_are_capped() {
        assert_eq!(page(10), 10);
        assert_eq!(page(u32::MAX), i64::from(MAX_PAGE));
    }

    #[test]
    fn presence_logins_are_normalized_batched_and_selected_as_given() {
        assert_eq!(
            normalize_login(" Alice@X.example ").ok(),
            Some("alice@x.example".into())
        );
        assert!(normalize_login(" ").is_err());
        assert!(check_presence("a", "", 1).is_err());
        assert!(check_presence("a", "n", u32::MAX).is_err());
        assert_eq!(check_presence(" A ", "n", 3).ok(), Some(("a".into(), 3)));

        let logins: Vec<String> = ["Bob", "alice", " ", "bob", "carol"]
            .map(String::from)
            .into();
        assert_eq!(
            presence_batch(&logins).ok(),
            Some(vec!["alice".into(), "bob".into(), "carol".into()])
        );
        let online: HashSet<String> = ["bob".to_owned()].into();
        assert_eq!(select_online(&logins, &online), ["Bob", "bob"]);
        assert!(presence_batch(&vec![String::from("a"); MAX_PRESENCE_BATCH]).is_ok());
        assert!(presence_batch(&vec![String::from("a"); MAX_PRESENCE_BATCH + 1]).is_err());
    }
}
