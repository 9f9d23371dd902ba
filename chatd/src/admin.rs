//! Look-ups for admins (part 50 of the method): a login, a port, a room, as plain text for the
//! `chatd show-login`, `show-port` and `show-room` commands.
//!
//! Online state comes from the store's presence table ([`chmail::ChatStore::online`]), which
//! every chatd node refreshes on a heartbeat, so the commands see it from outside the server.

use std::{fmt::Write as _, sync::Arc};

use chmail::store::{MailScope, Store, StoreError, MAX_PAGE};

use crate::clock::format_utc_ms;

/// Why a look-up printed nothing.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Nothing by that name; the text says what was missing.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Most rooms listed by [`show_login`] (newest first).
pub const ROOMS_LISTED: u32 = 50;

/// Most failed mails listed by [`show_room`] (latest failure first).
pub const FAILED_MAILS_LISTED: u32 = 20;

/// Opens (without migrating) the store of `config`, for the commands.
///
/// # Errors
/// When the store cannot be opened.
pub async fn open(config: &chmail::Config) -> Result<Arc<dyn Store>, StoreError> {
    chmail::open_store(&config.store_url(), config.store.pool_size).await
}

/// A login: its port, where and when it was last seen, whether it is online, its rooms.
///
/// # Errors
/// [`AdminError::NotFound`] when the store knows neither a port nor a record of the login.
pub async fn show_login(store: &dyn Store, login: &str, now_ms: i64) -> Result<String, AdminError> {
    let port = store.port_of(login).await?;
    let seen = store.login(login).await?;
    if port.is_none() && seen.is_none() {
        return Err(AdminError::NotFound(format!("no login {login:?}")));
    }
    let mut out = format!("login:     {login}\n");
    match &port {
        Some(p) => {
            let _ = writeln!(
                out,
                "port:      {} (granted {}, last used {})",
                p.port,
                format_utc_ms(p.granted_at * 1000),
                format_utc_ms(p.last_used * 1000)
            );
        }
        None => out.push_str("port:      none\n"),
    }
    match &seen {
        Some(r) => {
            let _ = writeln!(
                out,
                "last seen: {} from IP {}, hostname {}",
                format_utc_ms(r.last_seen * 1000),
                r.ip.as_deref().unwrap_or("unknown"),
                r.hostname.as_deref().unwrap_or("unknown"),
            );
        }
        None => out.push_str("last seen: never\n"),
    }
    let online = store.online(login, now_ms).await?;
    let _ = writeln!(out, "online:    {}", if online { "yes" } else { "no" });
    let rooms = store.rooms_of_login(login, ROOMS_LISTED).await?;
    let _ = writeln!(out, "rooms:     {}", rooms.len());
    for r in &rooms {
        let _ = writeln!(
            out,
            "  {}  port {}  created {}  unread {}  {}",
            r.room_id,
            r.port,
            format_utc_ms(r.created * 1000),
            r.unread,
            quoted(r.subject.as_deref()),
        );
    }
    Ok(out)
}

/// A port: the login that holds it.
///
/// # Errors
/// [`AdminError::NotFound`] when nobody holds the port.
pub async fn show_port(store: &dyn Store, port: u16) -> Result<String, AdminError> {
    let grant = store
        .port_owner(port)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("port {port} is not granted")))?;
    Ok(format!(
        "port:      {}\nlogin:     {}\ngranted:   {}\nlast used: {}\n",
        grant.port,
        grant.login,
        format_utc_ms(grant.granted_at * 1000),
        format_utc_ms(grant.last_used * 1000),
    ))
}

/// A room: its mail, its participants, how many messages, the ring and the reminder state, and
/// the mails about it that could not be delivered.
///
/// # Errors
/// [`AdminError::NotFound`] for an unknown room.
pub async fn show_room(
    store: &dyn Store,
    room_id: &str,
    now_ms: i64,
) -> Result<String, AdminError> {
    let room = store
        .room(room_id)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no room {room_id:?}")))?;
    let mut out = format!(
        "room:      {}\nlog tag:   {}\nport:      {}\nlogin:     {}\nsubject:   {}\nmessage-id: {}\ncreated:   {}\n",
        room.id,
        crate::room_tag::room_tag(&room.id),
        room.port,
        room.login,
        quoted(room.subject.as_deref()),
        room.message_id.as_deref().unwrap_or("none"),
        format_utc_ms(room.created * 1000),
    );
    let members = store.members(&room.id).await?;
    let _ = writeln!(out, "participants: {}", members.len());
    for m in &members {
        let joined = m.joined_at.map_or_else(
            || "not joined".to_owned(),
            |t| format!("joined {}", format_utc_ms(t)),
        );
        let read = m.last_read.map_or_else(
            || "read nothing".to_owned(),
            |id| format!("read up to #{id}"),
        );
        let _ = writeln!(
            out,
            "  {:<4} {}  {}  {}  {}",
            m.role.as_str(),
            m.address,
            joined,
            read,
            if m.verified { "verified" } else { "unverified" },
        );
    }
    let (count, newest) = count_messages(store, &room.id).await?;
    let _ = write!(out, "messages:  {count}");
    if let Some(t) = newest {
        let _ = write!(out, " (newest {})", format_utc_ms(t));
    }
    out.push('\n');
    match store.active_ring(&room.id).await? {
        Some(ring) => {
            let _ = writeln!(
                out,
                "ring:      ringing, called by {} at {}, {} attempts, {} s ago",
                ring.caller,
                format_utc_ms(ring.started_ms),
                ring.attempts,
                (now_ms - ring.started_ms).max(0) / 1000,
            );
        }
        None => out.push_str("ring:      none ringing\n"),
    }
    match store.reminder(&room.id).await? {
        Some(r) => {
            let due = r.due_ms.map_or_else(
                || "none pending".to_owned(),
                |t| format!("pending, due {}", format_utc_ms(t)),
            );
            let _ = writeln!(
                out,
                "reminder:  {due}; caller {}; {} sent{}",
                r.caller.as_deref().unwrap_or("none"),
                r.sent_count,
                r.last_sent_ms
                    .map_or_else(String::new, |t| format!(", last {}", format_utc_ms(t))),
            );
        }
        None => out.push_str("reminder:  none\n"),
    }
    let failed = store
        .failed_mail(MailScope::Room(&room.id), FAILED_MAILS_LISTED)
        .await?;
    let _ = writeln!(out, "failed mail: {}", failed.len());
    for f in &failed {
        let _ = writeln!(
            out,
            "  {}  {}  to {}  after {} attempts  <{}>  {}",
            f.failed_ms.map_or_else(String::new, format_utc_ms),
            f.mail.kind,
            f.mail.to,
            f.attempts,
            f.mail.message_id,
            f.last_error.as_deref().unwrap_or("no error recorded"),
        );
    }
    Ok(out)
}

/// How many messages a room holds and when the newest was written, paging back through the
/// history ([`MAX_PAGE`] at a time).
async fn count_messages(
    store: &dyn Store,
    room_id: &str,
) -> Result<(u64, Option<i64>), StoreError> {
    let mut count = 0u64;
    let mut newest = None;
    let mut before = None;
    loop {
        let page = store.messages(room_id, before, MAX_PAGE).await?;
        if newest.is_none() {
            newest = page.last().map(|m| m.created_ms);
        }
        count += page.len() as u64;
        match page.first() {
            Some(first) if page.len() == MAX_PAGE as usize => before = Some(first.id),
            _ => break,
        }
    }
    Ok((count, newest))
}

/// A subject in quotes, or `(none)`.
fn quoted(subject: Option<&str>) -> String {
    subject.map_or_else(|| "(none)".to_owned(), |s| format!("{s:?}"))
}
