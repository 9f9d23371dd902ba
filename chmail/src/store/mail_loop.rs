//! The mail loop side of the store (chatd): the outbox, reply-by-mail tokens, address codes and
//! the notification schedule of participants who are not there.
//!
//! The store stores and claims; chatd decides. Delays, backoff growth, retry times and limits are
//! chatd's policy and reach the store only as times and counts in the calls. The store never makes
//! randomness either: chatd generates every token and hashes every code.
//!
//! Times are unix **milliseconds**. Addresses compare trimmed and lowercased, as participants are
//! stored. Jobs that several chatd processes could work (outgoing mail, notifications) are claimed
//! with a lease so that one process works each; an expired lease (a process that died) makes the
//! job claimable again.

use std::{fmt, str::FromStr};

use super::{
    chat::{check_hash, check_room_id, normalize_address},
    check_text, Result, StoreError, Via, MAX_MESSAGE_ID_LEN, MAX_SUBJECT_LEN,
};

/// Longest text or HTML body of an outgoing mail, in bytes. A notification holds several chat
/// messages of up to [`super::MAX_BODY_LEN`] each: chatd cuts it to fit.
pub const MAX_MAIL_BODY_LEN: usize = 1024 * 1024;
/// Most extra headers one outgoing mail carries (Reply-To, List-Unsubscribe, ... are a handful).
pub const MAX_MAIL_HEADERS: usize = 32;
/// Longest extra header name, in bytes (RFC 5322 recommends lines of at most 78 characters).
pub const MAX_HEADER_NAME_LEN: usize = 76;
/// Longest extra header value, unfolded, in bytes (RFC 5322's line limit).
pub const MAX_HEADER_VALUE_LEN: usize = 998;
/// Longest outgoing mail kind, in bytes: kinds are short names such as `notification`.
pub const MAX_MAIL_KIND_LEN: usize = 32;
/// Longest SMTP error kept with a failed attempt, in bytes; a longer one is cut, not rejected
/// (it comes from the relay, not from chatd).
pub const MAX_MAIL_ERROR_LEN: usize = 1000;
/// Shortest reply or unsubscribe token accepted: 26 base32 characters carry 130 bits, so a token
/// of chatd's 128 random bits or more always passes and a short, guessable one never does.
pub const MIN_MAIL_TOKEN_LEN: usize = 26;
/// Longest reply or unsubscribe token accepted, in characters. A reply token is the local part
/// of an address, which RFC 5321 limits to 64 octets.
pub const MAX_MAIL_TOKEN_LEN: usize = 64;
/// How long the log of code sends is kept, in ms: longer than any rate-limit window, so that
/// [`MailStore::count_codes`] counts exactly within a window of up to this length.
pub const CODE_SEND_KEEP_MS: i64 = 24 * 60 * 60 * 1000;

/// The common kinds of outgoing mail. [`NewOutgoing::kind`] is open: the mall adds its own.
pub mod kind {
    /// A reminder to a sender who did not answer a ring (S117).
    pub const REMINDER: &str = "reminder";
    /// New messages for a participant who is not there.
    pub const NOTIFICATION: &str = "notification";
    /// A code that proves an address.
    pub const CODE: &str = "code";
    /// A sign-in link.
    pub const SIGNIN: &str = "signin";
}

/// A mail to queue in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutgoing {
    /// The mail's Message-ID without the angle brackets (`id-left@id-right`): unique across the
    /// outbox, and the same in every attempt, so that a mail sent twice after a crash is one mail
    /// to the recipient's client. Printable ASCII without spaces, `<` or `>`, with an `@`.
    pub message_id: String,
    /// What it is ([`kind`]): lowercase ASCII letters, digits, `-` and `_`.
    pub kind: String,
    /// The recipient's address (stored trimmed and lowercased).
    pub to: String,
    /// The subject (at most [`MAX_SUBJECT_LEN`] bytes, no line breaks).
    pub subject: String,
    /// The plain text body.
    pub text: String,
    /// The HTML alternative, if any.
    pub html: Option<String>,
    /// Extra header fields in order (Reply-To, List-Unsubscribe, List-Unsubscribe-Post,
    /// Auto-Submitted, ...), unfolded; never Message-ID, To or Subject, which come from the
    /// fields above.
    pub headers: Vec<(String, String)>,
    /// The room the mail is about, if any (not checked: the outbox is a log, and a mail about a
    /// room that is gone is still shown as sent or failed).
    pub room_id: Option<String>,
    /// When it was queued (ms); the first attempt is due then.
    pub created_ms: i64,
}

/// Where an outgoing mail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutgoingState {
    /// Waiting for its next attempt (the first, or a retry after a temporary failure).
    Queued,
    /// The relay accepted it.
    Sent,
    /// The relay refused it for good, or chatd gave up retrying.
    Failed,
}

impl OutgoingState {
    /// The name stored: `queued`, `sent`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutgoingState::Queued => "queued",
            OutgoingState::Sent => "sent",
            OutgoingState::Failed => "failed",
        }
    }
}

impl fmt::Display for OutgoingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutgoingState {
    type Err = StoreError;

    /// Parses the names of [`OutgoingState::as_str`].
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for anything else.
    fn from_str(s: &str) -> Result<Self> {
        [
            OutgoingState::Queued,
            OutgoingState::Sent,
            OutgoingState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| StoreError::Invalid(format!("outgoing state {s:?} is not known")))
    }
}

/// A mail in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRecord {
    /// Its id: increasing in the order mails were queued.
    pub id: i64,
    /// The mail as stored (the recipient lowercased).
    pub mail: NewOutgoing,
    /// Where it stands.
    pub state: OutgoingState,
    /// How many attempts failed so far (temporarily or for good).
    pub attempts: u32,
    /// When the next attempt is due (ms); meaningful while queued.
    pub next_attempt_ms: i64,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// When the relay accepted it (ms), once sent.
    pub sent_ms: Option<i64>,
    /// When it failed for good (ms), once failed.
    pub failed_ms: Option<i64>,
    /// Who claimed it last, while an attempt is under way (see [`MailStore::claim_mail`]).
    pub lease_owner: Option<String>,
    /// Until when that claim holds (ms).
    pub lease_until_ms: Option<i64>,
}

/// Which permanent failures [`MailStore::failed_mail`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailScope<'a> {
    /// The mails about one room (shown in the room).
    Room(&'a str),
    /// The mails to one address (compared lowercased).
    Recipient(&'a str),
}

/// A reply-by-mail token: the local part of the reply address of the mails to `address` about
/// `room_id`. A reply is accepted only while the token has not expired and only from `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyToken {
    /// The token: lowercase RFC 4648 base32 (`a`-`z`, `2`-`7`), [`MIN_MAIL_TOKEN_LEN`] to
    /// [`MAX_MAIL_TOKEN_LEN`] characters.
    pub token: String,
    /// The room a reply goes to.
    pub room_id: String,
    /// The participant who may reply with it (lowercased).
    pub address: String,
    /// When it was stored (ms).
    pub created_ms: i64,
    /// When it stops working (ms): a reply at or after this time is refused.
    pub expires_ms: i64,
}

/// The answer of [`MailStore::check_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// The code was right: the address is verified in the room and the code is used up.
    Verified,
    /// The code was wrong; this many more guesses are allowed (0: the next answer is
    /// [`CodeCheck::Locked`]).
    Wrong {
        /// Guesses left before the code locks.
        attempts_left: u32,
    },
    /// The code has expired; a new one must be asked for.
    Expired,
    /// No code was sent to this address in this room (or it was used).
    NoCode,
    /// Too many wrong guesses: this code no longer counts; a new one must be asked for.
    Locked,
}

/// The notification schedule of one participant of one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyState {
    /// The room.
    pub room_id: String,
    /// The participant (lowercased).
    pub address: String,
    /// Whether they muted the room (unsubscribed): nothing is scheduled or claimed while muted.
    pub muted: bool,
    /// When the pending notification is due (ms); `None` when none is pending.
    pub due_ms: Option<i64>,
    /// A notification asked for while the pending one was claimed (ms): it becomes `due_ms` when
    /// that claim finishes, so that messages arriving during a send are not forgotten.
    pub next_due_ms: Option<i64>,
    /// When the last notification was sent (ms).
    pub last_sent_ms: Option<i64>,
    /// chatd's current backoff for this room and participant (ms; 0 before the first mail).
    pub backoff_ms: i64,
    /// The last message id that a sent notification included.
    pub last_message_id: Option<i64>,
    /// How many notifications were sent.
    pub sent_count: u32,
}

/// A notification claimed for sending: the lease keeps other processes off it until
/// `lease_until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyJob {
    /// The schedule as claimed.
    pub state: NotifyState,
    /// The claim's owner (a random id per chatd process).
    pub owner: String,
    /// Until when the claim holds (ms).
    pub lease_until_ms: i64,
}

/// The mail loop tables. Part of every [`super::Store`].
#[async_trait::async_trait]
pub trait MailStore: Send + Sync {
    // The outbox.

    /// Queues a mail, due at once (`next_attempt_ms = created_ms`). Idempotent on the
    /// Message-ID: when a mail with that Message-ID is already in the outbox (in any state),
    /// nothing changes and its id comes back with `false`; otherwise the new id with `true`.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a malformed Message-ID, kind, recipient, subject or header, a
    /// body over [`MAX_MAIL_BODY_LEN`] or more than [`MAX_MAIL_HEADERS`] headers; otherwise on a
    /// store failure.
    async fn enqueue_mail(&self, mail: &NewOutgoing) -> Result<(i64, bool)>;

    /// Claims up to `limit` (at most [`super::MAX_PAGE`]) queued mails whose next attempt is due
    /// (`next_attempt_ms <= now_ms`) and whose lease is free or expired (`lease_until_ms <
    /// now_ms`), for `owner` until `now_ms + lease_ms`; the longest waiting first. Across
    /// processes each mail is claimed by one. The lease must outlast an SMTP attempt: when it
    /// expires before the attempt is recorded, another process sends the mail again (with the same
    /// Message-ID), so a crash between sending and recording sends a mail at most once more.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an empty or too long owner; otherwise on a store failure.
    async fn claim_mail(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutgoingRecord>>;

    /// Records that the relay accepted mail `id` at `now_ms`: state sent, lease cleared. `false`
    /// (and nothing changes) unless the mail is queued and `owner` holds its claim (a claim that
    /// expired but was not taken over still counts: the mail was sent once either way).
    ///
    /// # Errors
    /// On a store failure.
    async fn mail_sent(&self, id: i64, owner: &str, now_ms: i64) -> Result<bool>;

    /// Records a failed attempt at mail `id` with the relay's `error` (cut to
    /// [`MAX_MAIL_ERROR_LEN`] bytes): `attempts` grows by one and the lease is cleared. With
    /// `retry_at_ms` the mail stays queued until then (a temporary failure); with `None` it fails
    /// for good (state failed, `failed_ms = now_ms`) and is listed by
    /// [`MailStore::failed_mail`]. `false` (and nothing changes) unless the mail is queued and
    /// `owner` holds its claim.
    ///
    /// # Errors
    /// On a store failure.
    async fn mail_failed(
        &self,
        id: i64,
        owner: &str,
        now_ms: i64,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<bool>;

    /// The outgoing mail `id`, if it exists.
    ///
    /// # Errors
    /// On a store failure.
    async fn outgoing(&self, id: i64) -> Result<Option<OutgoingRecord>>;

    /// The outgoing mail with this Message-ID (without `<>`, compared exactly), if it exists.
    ///
    /// # Errors
    /// On a store failure.
    async fn outgoing_by_message_id(&self, message_id: &str) -> Result<Option<OutgoingRecord>>;

    /// The mails of `scope` that failed for good, the latest failure first, at most `limit` (at
    /// most [`super::MAX_PAGE`]).
    ///
    /// # Errors
    /// On a store failure.
    async fn failed_mail(&self, scope: MailScope<'_>, limit: u32) -> Result<Vec<OutgoingRecord>>;

    /// Deletes the sent mails with `sent_ms < before_ms` and the failed ones with `failed_ms <
    /// before_ms`; returns how many. Queued mails stay. A Message-ID is idempotent only while
    /// its row exists: prune after any retry of an enqueue could come.
    ///
    /// # Errors
    /// On a store failure.
    async fn prune_mail(&self, before_ms: i64) -> Result<u64>;

    /// How many mails are queued (not yet sent, not failed for good): the outbox's backlog.
    ///
    /// # Errors
    /// On a store failure.
    async fn queued_mail_count(&self) -> Result<u32>;

    // Reply by mail.

    /// The reply token of `address` in `room_id`: the stored one when it has not expired at
    /// `now_ms` (its expiry moved to `expires_ms` when that is later), or else `candidate`,
    /// stored from `now_ms` to `expires_ms` in place of any expired one. Concurrent calls for one
    /// (room, address) return the same token. `candidate` is chatd's: at least 128 random bits
    /// as lowercase base32 (see [`ReplyToken::token`]). Expired tokens of any room are deleted
    /// on the way.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when `address` is not a participant of `room_id`, the candidate
    /// is malformed or already another participant's token, or `expires_ms <= now_ms`; otherwise
    /// on a store failure.
    async fn reply_token(
        &self,
        room_id: &str,
        address: &str,
        candidate: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<ReplyToken>;

    /// The reply token `token` if it is known and has not expired at `now_ms`. The token is
    /// lowercased first (a mail system may change the case of a local part; the base32 alphabet
    /// makes that harmless); anything outside the alphabet is no token.
    ///
    /// # Errors
    /// On a store failure.
    async fn lookup_reply_token(&self, token: &str, now_ms: i64) -> Result<Option<ReplyToken>>;

    /// How many messages `author` wrote in `room_id` through `via` at or after `since_ms` (for
    /// the rate limit of replies by mail, and of chat).
    ///
    /// # Errors
    /// On a store failure.
    async fn count_messages(
        &self,
        room_id: &str,
        author: &str,
        via: Via,
        since_ms: i64,
    ) -> Result<u32>;

    // Proven addresses.

    /// Stores the hash of a code mailed to `address` for `room_id`, valid until `expires_ms`. It
    /// replaces any earlier code of that (room, address) and starts with no wrong attempts; it
    /// counts as one send for [`MailStore::count_codes`]. chatd hashes the code with a secret
    /// (six digits are too few to keep a plain hash secret) and compares the same way in
    /// [`MailStore::check_code`].
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when `address` is not a participant of `room_id`, for a malformed
    /// hash, or `expires_ms <= now_ms`; otherwise on a store failure.
    async fn create_code(
        &self,
        room_id: &str,
        address: &str,
        code_hash: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<()>;

    /// How many codes were sent to `address` for `room_id` at or after `since_ms` (exact for
    /// windows up to [`CODE_SEND_KEEP_MS`]).
    ///
    /// # Errors
    /// On a store failure.
    async fn count_codes(&self, room_id: &str, address: &str, since_ms: i64) -> Result<u32>;

    /// Checks a guess at the code of `address` in `room_id`, in this order: no code stored:
    /// [`CodeCheck::NoCode`]; expired (`expires_ms <= now_ms`): [`CodeCheck::Expired`];
    /// `max_attempts` wrong guesses already: [`CodeCheck::Locked`]; the right hash:
    /// [`CodeCheck::Verified`], every participant row of `address` in the room is marked
    /// verified and the code is deleted; else the wrong guess is counted and
    /// [`CodeCheck::Wrong`] says how many are left. Guesses are counted atomically: however many
    /// run at once, no more than `max_attempts` are ever compared.
    ///
    /// # Errors
    /// On a store failure.
    async fn check_code(
        &self,
        room_id: &str,
        address: &str,
        code_hash: &str,
        now_ms: i64,
        max_attempts: u32,
    ) -> Result<CodeCheck>;

    /// Whether `address` is verified in `room_id` (the `verified` of its
    /// [`super::Member`] rows).
    ///
    /// # Errors
    /// On a store failure.
    async fn is_verified(&self, room_id: &str, address: &str) -> Result<bool>;

    /// Marks `address` verified in `room_id` without a code: its owner proved it otherwise (a
    /// session of that login, started by a mailed link or a confirmed mall account). Returns
    /// whether it was unverified before (nothing changes for an address that is not one of the
    /// room's recipients).
    ///
    /// # Errors
    /// On a store failure.
    async fn prove_address(&self, room_id: &str, address: &str) -> Result<bool>;

    // Notifications.

    /// Asks for a notification of `address` in `room_id` no earlier than `due_ms`. If one is
    /// already pending the earlier due time stays; if the pending one is claimed right now, the
    /// request waits in `next_due_ms` (the earlier one kept) for the claim to finish. Returns
    /// `false`, changing nothing, when the participant muted the room.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when `address` is not a participant of `room_id`; otherwise on a
    /// store failure.
    async fn schedule_notification(
        &self,
        room_id: &str,
        address: &str,
        due_ms: i64,
    ) -> Result<bool>;

    /// The notification schedule of `address` in `room_id`, if it has one.
    ///
    /// # Errors
    /// On a store failure.
    async fn notify_state(&self, room_id: &str, address: &str) -> Result<Option<NotifyState>>;

    /// Claims up to `limit` (at most [`super::MAX_PAGE`]) due notifications (`due_ms <= now_ms`,
    /// not muted, lease free or expired: `lease_until_ms < now_ms`) for `owner` until `now_ms +
    /// lease_ms`; the most overdue first. Across processes each is claimed by one.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an empty or too long owner; otherwise on a store failure.
    async fn claim_notifications(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<NotifyJob>>;

    /// Records that the claimed notification was sent at `sent_ms`, covering messages up to
    /// `last_message_id` (the last one stays when `None`), with chatd's `next_backoff_ms`; the
    /// lease is cleared and `next_due_ms`, if any, becomes the pending due time. `false` (and
    /// nothing changes) when `owner` no longer holds the claim.
    ///
    /// # Errors
    /// On a store failure.
    async fn finish_notification(
        &self,
        room_id: &str,
        address: &str,
        owner: &str,
        sent_ms: i64,
        last_message_id: Option<i64>,
        next_backoff_ms: i64,
    ) -> Result<bool>;

    /// Gives up a claimed notification without sending (everything was read meanwhile, or the
    /// participant came back): as [`MailStore::finish_notification`] but nothing is recorded as
    /// sent. `false` (and nothing changes) when `owner` no longer holds the claim.
    ///
    /// # Errors
    /// On a store failure.
    async fn skip_notification(&self, room_id: &str, address: &str, owner: &str) -> Result<bool>;

    /// Mutes (`true`) or unmutes `address` in `room_id`. Muting drops the pending notification
    /// (and any waiting in `next_due_ms`); unmuting schedules nothing.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when `address` is not a participant of `room_id`; otherwise on a
    /// store failure.
    async fn set_muted(&self, room_id: &str, address: &str, muted: bool) -> Result<()>;

    /// The unsubscribe token of `address` in `room_id` (for the one-click List-Unsubscribe of
    /// RFC 8058): the stored one, or else `candidate`, stored. It never expires, so every
    /// notification mail ever sent keeps a working link. Concurrent calls return the same token.
    /// `candidate` is formed as a reply token (see [`ReplyToken::token`]).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when `address` is not a participant of `room_id`, or the candidate
    /// is malformed or already another participant's token; otherwise on a store failure.
    async fn unsubscribe_token(
        &self,
        room_id: &str,
        address: &str,
        candidate: &str,
    ) -> Result<String>;

    /// The (room id, address) that the unsubscribe token belongs to, if any (the token
    /// lowercased first, as in [`MailStore::lookup_reply_token`]).
    ///
    /// # Errors
    /// On a store failure.
    async fn lookup_unsubscribe(&self, token: &str) -> Result<Option<(String, String)>>;
}

// Input checks and conversions shared by both backends.

/// A mail as stored: checked, the recipient normalized; and its headers as stored (see
/// [`encode_headers`]).
pub(crate) fn normalize_outgoing(m: &NewOutgoing) -> Result<(NewOutgoing, String)> {
    check_message_id(&m.message_id)?;
    if m.kind.is_empty()
        || m.kind.len() > MAX_MAIL_KIND_LEN
        || !m
            .kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(StoreError::Invalid(format!(
            "mail kind {:?} is not 1 to {MAX_MAIL_KIND_LEN} of a-z, 0-9, - and _",
            m.kind
        )));
    }
    let to = normalize_address("recipient", &m.to)?;
    check_line("recipient", &to)?;
    check_text("subject", &m.subject, MAX_SUBJECT_LEN)?;
    check_line("subject", &m.subject)?;
    check_text("mail text", &m.text, MAX_MAIL_BODY_LEN)?;
    if let Some(html) = &m.html {
        check_text("mail HTML", html, MAX_MAIL_BODY_LEN)?;
    }
    if let Some(room) = &m.room_id {
        check_room_id(room)?;
    }
    let headers = encode_headers(&m.headers)?;
    Ok((NewOutgoing { to, ..m.clone() }, headers))
}

/// Rejects a Message-ID that is not `id-left@id-right` in printable ASCII without `<`, `>`.
pub(crate) fn check_message_id(id: &str) -> Result<()> {
    let printable = id
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    if id.is_empty() || id.len() > MAX_MESSAGE_ID_LEN || !printable || !id.contains('@') {
        return Err(StoreError::Invalid(format!(
            "Message-ID {id:?} is not id-left@id-right in printable ASCII without <>"
        )));
    }
    Ok(())
}

/// Rejects a line break in a value that becomes (part of) a header line: it would let the value
/// add header fields of its own.
fn check_line(what: &str, value: &str) -> Result<()> {
    if value.contains(['\r', '\n']) {
        return Err(StoreError::Invalid(format!("{what} contains a line break")));
    }
    Ok(())
}

/// Header names that [`NewOutgoing`] has fields for.
const RECORD_HEADERS: [&str; 3] = ["message-id", "to", "subject"];

/// The extra headers as stored: one `Name: value` line each, joined by `\n` (the mail's own
/// format, readable in the database). Checked so that it reads back the same: a name is 1 to
/// [`MAX_HEADER_NAME_LEN`] printable ASCII characters without `:`; a value has no line break.
pub(crate) fn encode_headers(headers: &[(String, String)]) -> Result<String> {
    if headers.len() > MAX_MAIL_HEADERS {
        return Err(StoreError::Invalid(format!(
            "{} mail headers, more than {MAX_MAIL_HEADERS}",
            headers.len()
        )));
    }
    let mut lines = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        if name.is_empty()
            || name.len() > MAX_HEADER_NAME_LEN
            || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        {
            return Err(StoreError::Invalid(format!(
                "header name {name:?} is not 1 to {MAX_HEADER_NAME_LEN} printable ASCII characters without ':'"
            )));
        }
        if RECORD_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(StoreError::Invalid(format!(
                "header {name} comes from the mail's own field, not from the extra headers"
            )));
        }
        check_text("header value", value, MAX_HEADER_VALUE_LEN)?;
        check_line("header value", value)?;
        lines.push(format!("{name}: {value}"));
    }
    Ok(lines.join("\n"))
}

/// The extra headers read back from [`encode_headers`]' form.
pub(crate) fn decode_headers(stored: &str) -> Result<Vec<(String, String)>> {
    if stored.is_empty() {
        return Ok(Vec::new());
    }
    stored
        .split('\n')
        .map(|line| {
            line.split_once(": ")
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .ok_or_else(|| {
                    StoreError::Backend(format!("stored mail header {line:?} has no ': '"))
                })
        })
        .collect()
}

/// An SMTP error as kept: NUL bytes dropped, cut to [`MAX_MAIL_ERROR_LEN`] bytes at a character
/// boundary.
pub(crate) fn clean_error(error: &str) -> String {
    let mut s: String = error.chars().filter(|&c| c != '\0').collect();
    if s.len() > MAX_MAIL_ERROR_LEN {
        let mut end = MAX_MAIL_ERROR_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Whether `token` is a reply or unsubscribe token as stored: [`MIN_MAIL_TOKEN_LEN`] to
/// [`MAX_MAIL_TOKEN_LEN`] characters of lowercase base32 (`a`-`z`, `2`-`7`).
fn is_mail_token(token: &str) -> bool {
    (MIN_MAIL_TOKEN_LEN..=MAX_MAIL_TOKEN_LEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

/// Rejects a candidate token that is not lowercase base32 of the accepted length.
pub(crate) fn check_mail_token(what: &str, token: &str) -> Result<()> {
    if is_mail_token(token) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{what} is not {MIN_MAIL_TOKEN_LEN} to {MAX_MAIL_TOKEN_LEN} characters of lowercase base32 (a-z, 2-7)"
        )))
    }
}

/// A token to look up: lowercased; `None` when it cannot be a token.
pub(crate) fn lookup_form(token: &str) -> Option<String> {
    let token = token.trim().to_ascii_lowercase();
    is_mail_token(&token).then_some(token)
}

/// Checks the room, address and validity of a token or code about to be stored; returns the
/// address as stored.
pub(crate) fn check_grant(
    room_id: &str,
    address: &str,
    now_ms: i64,
    expires_ms: i64,
) -> Result<String> {
    check_room_id(room_id)?;
    let address = normalize_address("address", address)?;
    if expires_ms <= now_ms {
        return Err(StoreError::Invalid(format!(
            "expiry {expires_ms} is not after now ({now_ms})"
        )));
    }
    Ok(address)
}

/// The room id and address of a lookup as stored; `None` when the store could not hold them
/// (so there is nothing to find).
pub(crate) fn lookup_pair(room_id: &str, address: &str) -> Option<String> {
    check_room_id(room_id).ok()?;
    normalize_address("address", address).ok()
}

/// Checks the room, address and code hash of [`MailStore::create_code`].
pub(crate) fn check_code_input(
    room_id: &str,
    address: &str,
    code_hash: &str,
    now_ms: i64,
    expires_ms: i64,
) -> Result<String> {
    check_hash("code hash", code_hash)?;
    check_grant(room_id, address, now_ms, expires_ms)
}

/// Compares two code hashes in time that depends only on their lengths.
pub(crate) fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What [`MailStore::check_code`] answers for a stored code (its hash, expiry and wrong
/// attempts so far), before anything is written.
pub(crate) fn judge_code(
    stored_hash: &str,
    expires_ms: i64,
    attempts: i64,
    guess: &str,
    now_ms: i64,
    max_attempts: u32,
) -> CodeCheck {
    if expires_ms <= now_ms {
        CodeCheck::Expired
    } else if attempts >= i64::from(max_attempts) {
        CodeCheck::Locked
    } else if same_hash(stored_hash, guess) {
        CodeCheck::Verified
    } else {
        // attempts < max_attempts here, so this neither underflows nor overflows.
        let left = i64::from(max_attempts) - attempts - 1;
        CodeCheck::Wrong {
            attempts_left: u32::try_from(left).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail() -> NewOutgoing {
        NewOutgoing {
            message_id: "abc.1@chat.example".into(),
            kind: kind::NOTIFICATION.into(),
            to: " Bob@X.example ".into(),
            subject: "New messages".into(),
            text: "hello".into(),
            html: None,
            headers: vec![
                ("Reply-To".into(), "r-abc@reply.example".into()),
                (
                    "List-Unsubscribe-Post".into(),
                    "List-Unsubscribe=One-Click".into(),
                ),
                ("X-Empty".into(), String::new()),
                ("X-Spaced".into(), " a: b ".into()),
            ],
            room_id: Some("room".into()),
            created_ms: 1,
        }
    }

    #[test]
    fn outgoing_state_round_trips_through_its_name() {
        for state in [
            OutgoingState::Queued,
            OutgoingState::Sent,
            OutgoingState::Failed,
        ] {
            assert_eq!(state.as_str().parse::<OutgoingState>().ok(), Some(state));
        }
        assert!("Sent".parse::<OutgoingState>().is_err());
    }

    #[test]
    fn headers_round_trip_exactly() {
        let m = mail();
        let (stored, headers) = normalize_outgoing(&m).expect("a good mail");
        assert_eq!(stored.to, "bob@x.example");
        assert_eq!(decode_headers(&headers).ok(), Some(m.headers));
        assert_eq!(encode_headers(&[]).ok(), Some(String::new()));
        assert_eq!(decode_headers("").ok(), Some(vec![]));
    }

    #[test]
    fn header_injection_and_record_fields_are_rejected() {
        let bad_headers: [(&str, &str); 6] = [
            ("Reply-To", "a@b\r\nBcc: all@x"),
            ("Reply-To", "a@b\nX: y"),
            ("Bad Name", "v"),
            ("Bad:Name", "v"),
            ("", "v"),
            ("message-ID", "<x@y>"),
        ];
        for (name, value) in bad_headers {
            let m = NewOutgoing {
                headers: vec![(name.into(), value.into())],
                ..mail()
            };
            assert!(normalize_outgoing(&m).is_err(), "{name:?}: {value:?}");
        }
        let too_many = NewOutgoing {
            headers: vec![("X-A".into(), "b".into()); MAX_MAIL_HEADERS + 1],
            ..mail()
        };
        assert!(normalize_outgoing(&too_many).is_err());
        for subject in ["a\r\nBcc: x", "a\nb"] {
            let m = NewOutgoing {
                subject: subject.into(),
                ..mail()
            };
            assert!(normalize_outgoing(&m).is_err(), "{subject:?}");
        }
    }

    #[test]
    fn message_ids_and_kinds_are_checked() {
        for id in ["", "<a@b>", "a b@c", "noat", "a@b\n"] {
            assert!(check_message_id(id).is_err(), "{id:?}");
        }
        assert!(check_message_id("a.b-c@d.example").is_ok());
        for kind in [
            "",
            "Notification",
            "a b",
            &"k".repeat(MAX_MAIL_KIND_LEN + 1),
        ] {
            let m = NewOutgoing {
                kind: kind.into(),
                ..mail()
            };
            assert!(normalize_outgoing(&m).is_err(), "{kind:?}");
        }
        let big = NewOutgoing {
            text: "x".repeat(MAX_MAIL_BODY_LEN + 1),
            ..mail()
        };
        assert!(normalize_outgoing(&big).is_err());
    }

    #[test]
    fn tokens_are_lowercase_base32_of_the_accepted_length() {
        let good = "a".repeat(MIN_MAIL_TOKEN_LEN);
        assert!(check_mail_token("t", &good).is_ok());
        assert!(check_mail_token("t", "abcdefghijklmnopqrstuvwxyz234567").is_ok());
        for bad in [
            "a".repeat(MIN_MAIL_TOKEN_LEN - 1),
            "a".repeat(MAX_MAIL_TOKEN_LEN + 1),
            "A".repeat(MIN_MAIL_TOKEN_LEN),
            format!("{}1", "a".repeat(MIN_MAIL_TOKEN_LEN)),
            format!("{}8", "a".repeat(MIN_MAIL_TOKEN_LEN)),
            format!("{}-", "a".repeat(MIN_MAIL_TOKEN_LEN)),
        ] {
            assert!(check_mail_token("t", &bad).is_err(), "{bad:?}");
        }
        assert_eq!(lookup_form(&good.to_uppercase()), Some(good));
        assert_eq!(lookup_form("short"), None);
    }

    #[test]
    fn errors_are_cut_at_a_char_boundary() {
        let e = clean_error(&"é".repeat(MAX_MAIL_ERROR_LEN));
        assert!(e.len() <= MAX_MAIL_ERROR_LEN && e.chars().all(|c| c == 'é'));
        assert_eq!(clean_error("a\0b"), "ab");
    }

    #[test]
    fn codes_are_judged_expiry_then_lock_then_hash() {
        assert_eq!(judge_code("h", 10, 0, "h", 10, 3), CodeCheck::Expired);
        assert_eq!(judge_code("h", 11, 3, "h", 10, 3), CodeCheck::Locked);
        assert_eq!(judge_code("h", 11, 2, "h", 10, 3), CodeCheck::Verified);
        assert_eq!(
            judge_code("h", 11, 0, "x", 10, 3),
            CodeCheck::Wrong { attempts_left: 2 }
        );
        assert_eq!(
            judge_code("h", 11, 2, "x", 10, 3),
            CodeCheck::Wrong { attempts_left: 0 }
        );
        assert_eq!(judge_code("h", 11, 0, "h", 10, 0), CodeCheck::Locked);
        assert!(!same_hash("ab", "abc"));
        assert!(same_hash("abc", "abc"));
    }
}
