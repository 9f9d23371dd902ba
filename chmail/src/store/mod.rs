//! The store: the [`Store`] trait over PostgreSQL and the embedded SQLite file.
//!
//! It holds the two tables of the CHmail method (`docs/chmail-method.md`): the first table maps a
//! login to the most recent IP address and hostname it was seen from ([`Store::record_login`]); the
//! second maps a chat port to the login it was granted to ([`Store::grant_port`]). Beside them live
//! the rooms (one per chat-capable mail) and their participants. The milter writes all of it for
//! one mail in one transaction with [`Store::record_submission`]. chatd adds the chat tables
//! ([`ChatStore`], a supertrait of [`Store`]): who joined, messages, rings, the reminder
//! schedule, sign-in tokens, sessions and presence; and the mail loop ([`MailStore`], another
//! supertrait): the outbox, reply-by-mail tokens, codes that prove an address, and the
//! notification schedule of participants who are not there; and the internet mall ([`MallStore`]:
//! companies, hosts, ads, members, inquiries, promotions).
//!
//! [`open_store`] picks the backend from the URL: `postgres://` or `postgresql://` for PostgreSQL,
//! `sqlite://PATH` or `sqlite::memory:` for SQLite. Both pass the same conformance suite
//! (`chmail/tests/store.rs`). Migrations are the files under `sql/`, embedded in the binary.
//! [`bus`] passes live frames between chatd nodes over PostgreSQL's LISTEN/NOTIFY.

pub mod bus;
mod chat;
mod mail_loop;
pub mod mall;
mod mall_sql;
mod migrate;
mod postgres;
mod postgres_chat;
mod postgres_mail;
mod postgres_mall;
mod sqlite;
mod sqlite_chat;
mod sqlite_mail;
mod sqlite_mall;

use std::{collections::HashSet, fmt, str::FromStr, sync::Arc, time::Duration};

use crate::config::PortRange;

pub use chat::{
    Added, ChatStore, Member, Message, NewMessage, Reminder, ReminderJob, Ring, RingState,
    RoomSummary, Session, SigninToken, Via, MAX_BODY_LEN, MAX_CLIENT_ID_LEN, MAX_HASH_LEN,
    MAX_PAGE, MAX_PRESENCE_BATCH, SIGNIN_TOKEN_KEEP_MS,
};
pub use mail_loop::{
    kind, CodeCheck, MailScope, MailStore, NewOutgoing, NotifyJob, NotifyState, OutgoingRecord,
    OutgoingState, ReplyToken, CODE_SEND_KEEP_MS, MAX_HEADER_NAME_LEN, MAX_HEADER_VALUE_LEN,
    MAX_MAIL_BODY_LEN, MAX_MAIL_ERROR_LEN, MAX_MAIL_HEADERS, MAX_MAIL_KIND_LEN, MAX_MAIL_TOKEN_LEN,
    MIN_MAIL_TOKEN_LEN,
};
pub use mall::MallStore;
pub use migrate::{Migration, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};

/// The result of a store call.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Longest login accepted, in bytes: the longest e-mail address (RFC 3696 erratum), since a
/// login is often one.
pub const MAX_LOGIN_LEN: usize = 320;
/// Longest hostname accepted, in bytes (RFC 1035's limit on a domain name).
pub const MAX_HOSTNAME_LEN: usize = 255;
/// Longest IP address text accepted, in bytes: an IPv6 address (45) with room for a zone id.
pub const MAX_IP_LEN: usize = 64;
/// Longest room id accepted, in bytes: room ids are short tokens; this only stops abuse.
pub const MAX_ROOM_ID_LEN: usize = 128;
/// Longest subject kept, in bytes (RFC 5322's line limit); a longer one is cut at a character
/// boundary, not rejected.
pub const MAX_SUBJECT_LEN: usize = 998;
/// Longest Message-ID accepted, in bytes (RFC 5322's line limit).
pub const MAX_MESSAGE_ID_LEN: usize = 998;
/// Longest participant address kept, in bytes (the longest e-mail address).
pub const MAX_ADDRESS_LEN: usize = 320;
/// Most participants kept per room: far above any real mail; the rest are dropped with a warning
/// so that one huge recipient list cannot bloat the store.
pub const MAX_PARTICIPANTS: usize = 1000;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL is not one we know; the message says what is wrong and what is accepted.
    #[error("bad store URL: {0}")]
    Url(String),
    /// The store cannot be opened or connected to.
    #[error("cannot connect to the store: {0}")]
    Connect(String),
    /// A migration failed; the message names it.
    #[error("store migration failed: {0}")]
    Migrate(String),
    /// A query failed.
    #[error("store query failed: {0}")]
    Backend(String),
    /// No port of the range is free and none has been unused long enough to be reclaimed.
    #[error("no free chat port in {range} and none unused long enough to reclaim")]
    PortsExhausted {
        /// The range that is full.
        range: PortRange,
    },
    /// The input is not acceptable (an empty login, a value that is too long, ...).
    #[error("invalid store input: {0}")]
    Invalid(String),
}

/// A row of the first table: where a login was last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRecord {
    /// The login ID.
    pub login: String,
    /// The most recent IP address, if it was known.
    pub ip: Option<String>,
    /// The most recent hostname, if it was known.
    pub hostname: Option<String>,
    /// When it was recorded (unix seconds).
    pub last_seen: i64,
}

/// A row of the second table: a chat port and the login it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortGrant {
    /// The chat port.
    pub port: u16,
    /// The login that holds it.
    pub login: String,
    /// When the login was granted the port (unix seconds).
    pub granted_at: i64,
    /// When the port was last granted or confirmed (unix seconds).
    pub last_used: i64,
    /// True when this call granted it (new or reclaimed).
    pub fresh: bool,
    /// The login that lost it, when reclaimed.
    pub reclaimed_from: Option<String>,
}

/// How a participant took part in the mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The sender (`From:`).
    From,
    /// A receiver (`To:`).
    To,
    /// A C.C. receiver (`Cc:`).
    Cc,
}

impl Role {
    /// The name stored in the database: `"from"`, `"to"` or `"cc"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::From => "from",
            Role::To => "to",
            Role::Cc => "cc",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = StoreError;

    /// Parses `from`, `to` or `cc` (any case).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for anything else.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "from" => Ok(Role::From),
            "to" => Ok(Role::To),
            "cc" => Ok(Role::Cc),
            _ => Err(StoreError::Invalid(format!(
                "role {s:?} is not one of from, to, cc"
            ))),
        }
    }
}

/// Someone who may join a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The e-mail address (stored lowercased).
    pub address: String,
    /// How the address appeared in the mail.
    pub role: Role,
}

/// A chat room: one per chat-capable mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// The room id (from the CHmail header).
    pub id: String,
    /// The sender's chat port when the mail was sent.
    pub port: u16,
    /// The sender's login.
    pub login: String,
    /// The mail's Message-ID, if any.
    pub message_id: Option<String>,
    /// The mail's subject, if any (cut to [`MAX_SUBJECT_LEN`] bytes).
    pub subject: Option<String>,
    /// When the room was created (unix seconds).
    pub created: i64,
    /// Who may join: deduplicated by (lowercased address, role); read back in the order from, to,
    /// cc and, within a role, as written.
    pub participants: Vec<Participant>,
}

/// Everything the milter writes for one authenticated mail, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The authenticated login.
    pub login: String,
    /// The client's IP address, if known.
    pub ip: Option<String>,
    /// The client's hostname, if known.
    pub hostname: Option<String>,
    /// The time of the mail (unix seconds).
    pub now: i64,
    /// The chat port range to grant from.
    pub ports: PortRange,
    /// How long a port must be unused before it may be reclaimed.
    pub reclaim_after: Duration,
    /// The new room's id.
    pub room_id: String,
    /// The mail's Message-ID, if any.
    pub message_id: Option<String>,
    /// The mail's subject, if any.
    pub subject: Option<String>,
    /// The mail's From, To and Cc addresses.
    pub participants: Vec<Participant>,
}

impl Submission {
    /// The room this submission creates once `port` is granted.
    pub fn room(&self, port: u16) -> Room {
        Room {
            id: self.room_id.clone(),
            port,
            login: self.login.clone(),
            message_id: self.message_id.clone(),
            subject: self.subject.clone(),
            created: self.now,
            participants: self.participants.clone(),
        }
    }
}

/// The CHmail tables, over one backend. Handlers hold it as `Arc<dyn Store>`, which has the chat
/// tables' methods ([`ChatStore`]) and the mail loop's ([`MailStore`]) too.
#[async_trait::async_trait]
pub trait Store: ChatStore + MailStore + MallStore + Send + Sync + 'static {
    /// `"postgres"` or `"sqlite"`.
    fn backend(&self) -> &'static str;

    /// The fan-out bus between the chatd nodes that share this database ([`bus`]): PostgreSQL's
    /// LISTEN/NOTIFY. `None` for SQLite, where one process owns the file and there is nobody to
    /// tell.
    fn bus(&self) -> Option<Arc<dyn bus::Bus>> {
        None
    }

    /// Applies the embedded migrations that are not yet recorded in `schema_migrations`, each in
    /// its own transaction. Idempotent, and safe when several processes start at once.
    ///
    /// # Errors
    /// [`StoreError::Migrate`] naming the migration that failed; [`StoreError::Connect`] when the
    /// database cannot be reached.
    async fn migrate(&self) -> Result<()>;

    /// Checks that the database answers.
    ///
    /// # Errors
    /// [`StoreError::Connect`] or [`StoreError::Backend`] when it does not.
    async fn ping(&self) -> Result<()>;

    /// First table: records that `login` was seen at `ip`/`hostname` at `now`. The latest record
    /// wins entirely: a `None` stores NULL, since an old address is worse than none (the method
    /// wants the *most recent* address).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an empty or too long login, IP or hostname; otherwise a backend
    /// error.
    async fn record_login(
        &self,
        login: &str,
        ip: Option<&str>,
        hostname: Option<&str>,
        now: i64,
    ) -> Result<()>;

    /// First table: where `login` was last seen, if ever.
    ///
    /// # Errors
    /// A backend error.
    async fn login(&self, login: &str) -> Result<Option<LoginRecord>>;

    /// Second table: the login's port, which is sticky (its `last_used` becomes `now`), or a fresh
    /// grant from `ports`: the lowest free port; when the range is full, the port unused longest
    /// is reclaimed provided its `last_used <= now - reclaim_after`. A login whose port lies
    /// outside `ports` (the range changed) gets a new one.
    ///
    /// # Errors
    /// [`StoreError::PortsExhausted`] when no port is free or old enough;
    /// [`StoreError::Invalid`] for a bad login or range; otherwise a backend error.
    async fn grant_port(
        &self,
        login: &str,
        ports: PortRange,
        reclaim_after: Duration,
        now: i64,
    ) -> Result<PortGrant>;

    /// Second table: who holds `port` (`fresh` is false, `reclaimed_from` is `None`).
    ///
    /// # Errors
    /// A backend error.
    async fn port_owner(&self, port: u16) -> Result<Option<PortGrant>>;

    /// Second table: the port `login` holds, if any (`fresh` is false, `reclaimed_from` is `None`).
    ///
    /// # Errors
    /// A backend error.
    async fn port_of(&self, login: &str) -> Result<Option<PortGrant>>;

    /// Creates a room with its participants (deduplicated by lowercased address and role, at most
    /// [`MAX_PARTICIPANTS`]). Creating a room that exists for the same login keeps its row and
    /// adds any new participants, so a retried mail is harmless.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for bad fields or a room id that belongs to another login;
    /// otherwise a backend error.
    async fn create_room(&self, room: &Room) -> Result<()>;

    /// The room `id`, with its participants in a stable order (from, to, cc; then as written).
    ///
    /// # Errors
    /// A backend error.
    async fn room(&self, id: &str) -> Result<Option<Room>>;

    /// [`record_login`](Store::record_login) + [`grant_port`](Store::grant_port) +
    /// [`create_room`](Store::create_room) (on the granted port) in ONE transaction: on any error
    /// nothing is written, not even the login's address.
    ///
    /// # Errors
    /// As the three calls.
    async fn record_submission(&self, sub: &Submission) -> Result<PortGrant>;
}

/// Opens the store named by `url`; does not migrate.
///
/// - `postgres://...` or `postgresql://...`: PostgreSQL, through a pool of at most `pool_size`
///   connections (at least 1). The pool connects lazily: a dead server shows up as
///   [`StoreError::Connect`] from the first call (try [`Store::ping`]), within a few seconds.
/// - `sqlite://PATH` (`sqlite://data/chmail.db`, `sqlite:///var/lib/chmail/chmail.db`): an SQLite
///   file, created with its parent directory; `pool_size` is ignored.
/// - `sqlite::memory:`: a private in-memory SQLite database (for tests).
///
/// # Errors
/// [`StoreError::Url`] for any other URL; [`StoreError::Connect`] when the SQLite file cannot be
/// opened.
pub async fn open_store(url: &str, pool_size: usize) -> Result<Arc<dyn Store>> {
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::PostgresStore::open(url, pool_size)?;
        return Ok(Arc::new(store));
    }
    if url == "sqlite::memory:" {
        return Ok(Arc::new(sqlite::SqliteStore::open_memory().await?));
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StoreError::Url(
                "sqlite:// needs a file path, as in sqlite://data/chmail.db".into(),
            ));
        }
        return Ok(Arc::new(sqlite::SqliteStore::open_file(path.into()).await?));
    }
    let scheme = match url.split_once(':') {
        Some((scheme, _)) if !scheme.is_empty() => format!("scheme {scheme:?} is not supported"),
        _ => "no URL scheme".to_owned(),
    };
    Err(StoreError::Url(format!(
        "{scheme}; use postgres://USER@HOST/DB, postgresql://..., sqlite://PATH or sqlite::memory:"
    )))
}

/// Rejects an empty or too long login, or one with a NUL byte.
pub(crate) fn check_login(login: &str) -> Result<()> {
    if login.is_empty() {
        return Err(StoreError::Invalid("login is empty".into()));
    }
    check_text("login", login, MAX_LOGIN_LEN)
}

/// Rejects a value longer than `max` bytes or with a NUL byte (which PostgreSQL cannot store).
pub(crate) fn check_text(what: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(StoreError::Invalid(format!(
            "{what} is {} bytes long, more than {max}",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(StoreError::Invalid(format!("{what} contains a NUL byte")));
    }
    Ok(())
}

/// Checks the fields of a [`Store::record_login`] call.
pub(crate) fn check_login_record(
    login: &str,
    ip: Option<&str>,
    hostname: Option<&str>,
) -> Result<()> {
    check_login(login)?;
    if let Some(ip) = ip {
        check_text("ip", ip, MAX_IP_LEN)?;
    }
    if let Some(hostname) = hostname {
        check_text("hostname", hostname, MAX_HOSTNAME_LEN)?;
    }
    Ok(())
}

/// Rejects a range that holds port 0 or runs backwards (the fields are public).
pub(crate) fn check_range(ports: PortRange) -> Result<()> {
    if ports.first == 0 || ports.first > ports.last {
        return Err(StoreError::Invalid(format!(
            "port range {ports} must have 1 <= first <= last"
        )));
    }
    Ok(())
}

/// The newest `last_used` that may still be reclaimed at `now`.
pub(crate) fn reclaim_cutoff(now: i64, reclaim_after: Duration) -> i64 {
    let after = i64::try_from(reclaim_after.as_secs()).unwrap_or(i64::MAX);
    now.saturating_sub(after)
}

/// Validates `room` and returns what is stored: subject cut to [`MAX_SUBJECT_LEN`], addresses
/// lowercased and deduplicated, unusable or surplus participants dropped with a warning.
pub(crate) fn normalize_room(room: &Room) -> Result<Room> {
    if room.id.is_empty() {
        return Err(StoreError::Invalid("room id is empty".into()));
    }
    check_text("room id", &room.id, MAX_ROOM_ID_LEN)?;
    check_login(&room.login)?;
    if room.port == 0 {
        return Err(StoreError::Invalid("room port is 0".into()));
    }
    if let Some(id) = &room.message_id {
        check_text("message_id", id, MAX_MESSAGE_ID_LEN)?;
    }
    let subject = room.subject.as_deref().map(clean_subject);

    let mut seen = HashSet::new();
    let mut participants = Vec::new();
    let mut dropped = 0usize;
    for p in &room.participants {
        let address = p.address.trim().to_lowercase();
        if address.is_empty() || address.len() > MAX_ADDRESS_LEN || address.contains('\0') {
            tracing::warn!(room = %room.id, len = address.len(), "unusable participant address dropped");
            continue;
        }
        if !seen.insert((address.clone(), p.role)) {
            continue;
        }
        if participants.len() >= MAX_PARTICIPANTS {
            dropped += 1;
            continue;
        }
        participants.push(Participant {
            address,
            role: p.role,
        });
    }
    if dropped > 0 {
        tracing::warn!(room = %room.id, dropped, kept = MAX_PARTICIPANTS, "too many participants, extra ignored");
    }
    Ok(Room {
        id: room.id.clone(),
        port: room.port,
        login: room.login.clone(),
        message_id: room.message_id.clone(),
        subject,
        created: room.created,
        participants,
    })
}

/// Drops NUL bytes and cuts the subject to [`MAX_SUBJECT_LEN`] bytes at a character boundary.
fn clean_subject(subject: &str) -> String {
    let mut s: String = subject.chars().filter(|&c| c != '\0').collect();
    if s.len() > MAX_SUBJECT_LEN {
        let mut end = MAX_SUBJECT_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Sorts participants read back from the database: from, to, cc; then by position.
pub(crate) fn sort_participants(rows: &mut [(Role, i64, String)]) {
    rows.sort_by_key(|(role, position, _)| (*role, *position));
}

/// The current time in unix seconds (for `schema_migrations.applied_at`).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_is_cut_at_a_char_boundary() {
        let s = "é".repeat(600); // 1200 bytes
        let cut = clean_subject(&s);
        assert!(cut.len() <= MAX_SUBJECT_LEN);
        assert_eq!(cut.len(), 998);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn role_round_trips_through_its_name() {
        for role in [Role::From, Role::To, Role::Cc] {
            assert_eq!(role.as_str().parse::<Role>().ok(), Some(role));
        }
        assert!(matches!("bcc".parse::<Role>(), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn reclaim_cutoff_saturates() {
        assert_eq!(reclaim_cutoff(100, Duration::from_secs(30)), 70);
        assert_eq!(reclaim_cutoff(i64::MIN, Duration::from_secs(30)), i64::MIN);
        assert_eq!(reclaim_cutoff(0, Duration::MAX), -i64::MAX);
    }
}
