//! Proven addresses: a recipient who joined as one of the room's To/Cc addresses asks for a
//! six-digit code mailed to that address ([`request`]) and enters it ([`verify`]); the right code
//! marks the address verified in the room, for everyone to see. With `[chat] require_verified`
//! a recipient must do so before speaking. The sender, signed in by a mailed link, counts as
//! verified.
//!
//! Limits: at most `[chat] codes_per_hour` codes per address and room (counted in the store, so
//! across restarts and nodes), each valid `[chat] code_ttl_minutes`, with `[chat] code_attempts`
//! guesses (counted atomically in the store); a new code starts a fresh count. Counting the
//! codes sent and creating one are two store calls: [`CodeLocks`] lets one request of a room and
//! address at a time through them, so concurrent `prove` frames cannot pass the limit. The lock
//! is in this process: two chatd nodes could still each pass it once at the same moment (at
//! worst one code more per node), until the store counts and creates in one statement.
//!
//! The store keeps only a hash of each code. Six digits are too few for a plain hash: anyone who
//! read the table could try all million. So the hash is SHA-256 over a server secret, the room,
//! the address and the code ([`code_hash`]). The secret is 32 random bytes in
//! `<data_dir>/code.secret`, created (mode 0600) on first use: it survives restarts, which a
//! per-process key would not (a code mailed before a restart would never match). Several chatd
//! nodes must share that file (copy it, or share the data directory): a code mailed by one node
//! is checked by whichever node the recipient's page talks to. It is read on each request and
//! check: codes are rare, and no state has to be shared for it.

use crate::room_tag::room_tag;
use std::{
    collections::HashMap,
    io::{ErrorKind, Write as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use chmail::store::{kind, CodeCheck};
use sha2::{Digest, Sha256};
use tracing::info;

use crate::{error::AppError, mail::OutgoingMail, state::AppState, web::html::escape};

/// Digits in a code: a million choices, with `code_attempts` guesses per code.
pub const CODE_DIGITS: usize = 6;

/// The secret file's name in `data_dir`.
pub const SECRET_FILE: &str = "code.secret";

/// Random bytes in the secret: 256 bits, as SHA-256 can use.
const SECRET_BYTES: usize = 32;

/// The window of `[chat] codes_per_hour`, in ms.
const HOUR_MS: i64 = 60 * 60 * 1000;

/// One lock per room and address that asks for a code, held from counting the codes sent to
/// creating the new one. An entry lives only while a request holds or waits for it.
#[derive(Debug, Default)]
pub struct CodeLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl CodeLocks {
    fn lock_of(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        // A poisoned lock only means another request panicked mid-update; the map stays usable.
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(key.to_owned()).or_default().clone()
    }

    /// Drops the entry of `key` when no one else holds or waits for it.
    fn release(&self, key: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        // Ours and the map's: no other request has it.
        if Arc::strong_count(&lock) <= 2 {
            locks.remove(key);
        }
    }
}

/// What became of a request for a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// A code was mailed; it works for this many minutes.
    Sent {
        /// `[chat] code_ttl_minutes`.
        ttl_minutes: u64,
    },
    /// The address is verified already: nothing was mailed.
    AlreadyVerified,
    /// `[chat] codes_per_hour` codes went to this address in the last hour.
    TooMany,
}

/// Mails a fresh code to `address` in `room_id` unless it is verified already or over the limit.
/// The code replaces any earlier one (and its wrong guesses).
///
/// # Errors
/// When the secret, the store or the mail fails.
pub async fn request(
    state: &AppState,
    room_id: &str,
    subject: Option<&str>,
    address: &str,
) -> Result<Requested, AppError> {
    let key = format!("{room_id}\n{address}");
    let lock = state.code_locks.lock_of(&key);
    let result = {
        let _held = lock.lock().await;
        request_locked(state, room_id, subject, address).await
    };
    state.code_locks.release(&key, lock);
    result
}

/// [`request`], with the lock of `room_id` and `address` held.
async fn request_locked(
    state: &AppState,
    room_id: &str,
    subject: Option<&str>,
    address: &str,
) -> Result<Requested, AppError> {
    let chat = &state.config.chat;
    if state
        .store_call(state.store.is_verified(room_id, address))
        .await?
    {
        return Ok(Requested::AlreadyVerified);
    }
    let now = state.clock.now_ms();
    let sent = state
        .store_call(
            state
                .store
                .count_codes(room_id, address, now.saturating_sub(HOUR_MS)),
        )
        .await?;
    if sent >= chat.codes_per_hour {
        return Ok(Requested::TooMany);
    }
    let code = new_code()?;
    let secret = load_secret(&state.config.data_dir).await?;
    let hash = code_hash(&secret, room_id, address, &code);
    let ttl_ms = i64::try_from(chat.code_ttl().as_millis()).unwrap_or(i64::MAX);
    let expires = now.saturating_add(ttl_ms);
    state
        .store_call(
            state
                .store
                .create_code(room_id, address, &hash, now, expires),
        )
        .await?;
    let mail = code_mail(state, room_id, subject, address, &code, now);
    crate::outbox::queue(state, &mail, kind::CODE, Some(room_id)).await?;
    info!(room = %room_tag(room_id), to = %address, "address code mailed");
    Ok(Requested::Sent {
        ttl_minutes: chat.code_ttl_minutes,
    })
}

/// Checks `typed` against the code of `address` in `room_id`. Spaces and dashes are ignored;
/// anything but [`CODE_DIGITS`] digits is refused before it counts as a guess.
///
/// # Errors
/// [`AppError::BadRequest`] for a malformed code; when the secret or the store fails.
pub async fn verify(
    state: &AppState,
    room_id: &str,
    address: &str,
    typed: &str,
) -> Result<CodeCheck, AppError> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if code.len() != CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::BadRequest(format!(
            "a code has {CODE_DIGITS} digits"
        )));
    }
    let secret = load_secret(&state.config.data_dir).await?;
    let hash = code_hash(&secret, room_id, address, &code);
    let now = state.clock.now_ms();
    let check = state.store.check_code(
        room_id,
        address,
        &hash,
        now,
        state.config.chat.code_attempts,
    );
    let result = state.store_call(check).await?;
    if result == CodeCheck::Verified {
        info!(room = %room_tag(room_id), address = %address, "address proven");
    }
    Ok(result)
}

/// The stored form of `code` for `address` in `room_id`: lowercase hex of SHA-256 over a
/// version tag, the secret and the three values, each field ended by a NUL byte (no value
/// contains one, so no two inputs run together into the same bytes).
pub fn code_hash(secret: &[u8], room_id: &str, address: &str, code: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"chmail-code-v1\0");
    h.update(secret);
    h.update([0u8]);
    for part in [room_id, &address.trim().to_lowercase(), code] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A uniformly random code of [`CODE_DIGITS`] digits.
fn new_code() -> Result<String, AppError> {
    // The largest multiple of a million below 2^32: values above it would favour low codes.
    const LIMIT: u32 = u32::MAX - u32::MAX % 1_000_000;
    loop {
        let mut bytes = [0u8; 4];
        getrandom::fill(&mut bytes).map_err(|e| AppError::Internal(format!("random: {e}")))?;
        let n = u32::from_le_bytes(bytes);
        if n < LIMIT {
            return Ok(format!("{:06}", n % 1_000_000));
        }
    }
}

/// The secret of `data_dir` ([`SECRET_FILE`]), created on first use.
///
/// # Errors
/// [`AppError::Internal`] when it cannot be read or created, or is malformed.
pub async fn load_secret(data_dir: &Path) -> Result<Vec<u8>, AppError> {
    let path = data_dir.join(SECRET_FILE);
    tokio::task::spawn_blocking(move || read_or_create(&path))
        .await
        .map_err(|e| AppError::Internal(format!("code secret: {e}")))?
        .map_err(|e| AppError::Internal(format!("code secret: {e}")))
}

fn read_or_create(path: &Path) -> Result<Vec<u8>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => return parse_secret(&text).ok_or_else(|| malformed(path)),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| format!("random: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // Written under a temporary name, then linked into place: a process that races us either
    // links first (and we read its secret) or finds the file complete.
    let tmp = temp_path(path, &hex);
    let written = write_private(&tmp, &hex);
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(bytes.to_vec()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            parse_secret(&text).ok_or_else(|| malformed(path))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn temp_path(path: &Path, hex: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.tmp", &hex[..8]));
    PathBuf::from(name)
}

fn write_private(path: &Path, hex: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(format!("{hex}\n").as_bytes())?;
    file.sync_all()
}

/// The secret bytes of the file's text: [`SECRET_BYTES`] or more bytes in hex.
fn parse_secret(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() < SECRET_BYTES * 2 || text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn malformed(path: &Path) -> String {
    format!(
        "{} is not {SECRET_BYTES} or more bytes in hex; delete it to make a new one (codes \
         already mailed stop working)",
        path.display()
    )
}

/// The mail with `code` for `address`. The code is in the subject too: it shows in a phone's
/// notification, so the recipient need not open the mail.
fn code_mail(
    state: &AppState,
    room_id: &str,
    subject: Option<&str>,
    address: &str,
    code: &str,
    now_ms: i64,
) -> OutgoingMail {
    let ttl = state.config.chat.code_ttl_minutes;
    let about = subject
        .map(|s| crate::mail::one_line(s, crate::mail::SUBJECT_QUOTE_CHARS))
        .filter(|s| !s.is_empty())
        .map_or_else(String::new, |s| format!(" about \"{s}\""));
    let text = format!(
        "Hello,\n\nsomeone in the chat{about} asked to prove that they are {address}.\n\n\
         Your code: {code}\n\nIt works for {ttl} minutes. If that was not you, ignore this mail: \
         without the code nobody can prove this address.\n\n-- \nCHmail\n"
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5;color:#1d2330\">\
         <p>Hello,</p><p>someone in the chat{a} asked to prove that they are {addr}.</p>\
         <p>Your code: <strong style=\"font-size:1.4em;letter-spacing:0.15em\">{code}</strong></p>\
         <p style=\"color:#5f6b7a;font-size:0.9em\">It works for {ttl} minutes. If that was not \
         you, ignore this mail: without the code nobody can prove this address.</p></body></html>",
        a = escape(&about),
        addr = escape(address),
    );
    let message_id = crate::mail::message_id(
        &state.config,
        "code",
        &[room_id, address, &now_ms.to_string(), code],
    );
    OutgoingMail {
        to: address.to_owned(),
        subject: format!("Your CHmail code: {code}"),
        text,
        html: Some(html),
        message_id,
        // Auto-Submitted comes with every mail chatd sends (crate::mail).
        headers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_six_digits() {
        for _ in 0..100 {
            let code = new_code().unwrap_or_default();
            assert_eq!(code.len(), CODE_DIGITS);
            assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
        }
    }

    #[test]
    fn the_hash_binds_secret_room_address_and_code() {
        let base = code_hash(b"s", "room", "bob@x", "123456");
        assert_eq!(base.len(), 64);
        assert_eq!(base, code_hash(b"s", "room", " Bob@X ", "123456"));
        for other in [
            code_hash(b"t", "room", "bob@x", "123456"),
            code_hash(b"s", "room2", "bob@x", "123456"),
            code_hash(b"s", "room", "carol@x", "123456"),
            code_hash(b"s", "room", "bob@x", "123457"),
            code_hash(b"s", "roo", "mbob@x", "123456"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn the_secret_is_created_once_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join(SECRET_FILE);
        let first = read_or_create(&path).expect("created");
        assert_eq!(first.len(), SECRET_BYTES);
        assert_eq!(read_or_create(&path).ok(), Some(first));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600));
        }
        let leftovers = std::fs::read_dir(dir.path().join("sub")).map(Iterator::count);
        assert_eq!(leftovers.ok(), Some(1), "no temporary file stays");
        std::fs::write(&path, "short").expect("overwrite");
        assert!(read_or_create(&path).is_err());
    }
}
