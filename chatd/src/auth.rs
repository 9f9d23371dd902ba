//! Sign-in for senders: single-use magic links mailed to the login's address, and the session
//! cookie they lead to.
//!
//! Tokens and session ids are 32 random bytes (the OS CSPRNG) written as URL-safe base64; the
//! store keeps only their SHA-256 ([`hash_token`]), so a copy of the database signs nobody in.
//! The session cookie `chmail_session` is `HttpOnly`, `SameSite=Lax` (a link clicked in a mail
//! client must arrive signed in, which `Strict` would prevent), `Path=/`, with a `Max-Age` of
//! `[chat] session_days`, and `Secure` whenever `[chat] public_url` is `https://`.

use axum::http::{header, HeaderMap};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chmail::store::{Session, SigninToken, MAX_LOGIN_LEN};
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::{error::AppError, state::AppState};

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "chmail_session";

/// Random bytes in a sign-in token or session id: 256 bits, beyond any guessing.
const TOKEN_BYTES: usize = 32;

/// Length of a token as written ([`TOKEN_BYTES`] in base64 without padding); anything else in a
/// link or cookie is rejected before the store is asked.
const TOKEN_LEN: usize = 43;

/// The window of the per-login sign-in limit (`[chat] signins_per_hour`), in ms.
pub const SIGNIN_WINDOW_MS: i64 = 60 * 60 * 1000;

/// A fresh random token: [`TOKEN_BYTES`] from the OS CSPRNG, URL-safe base64 without padding.
///
/// # Errors
/// [`AppError::Internal`] when the OS random number generator fails: no safe token can be made.
pub fn new_token() -> Result<String, AppError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| AppError::Internal(format!("random: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `token` looks like one of ours (length and alphabet), so that junk never reaches the
/// store.
pub fn is_token(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the store keeps of a token or session id: its SHA-256 in lowercase hex.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two secrets in time that depends only on their lengths.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request's `Cookie` headers, if present.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether cookies must carry `Secure`: the public URL is `https://`.
pub fn secure_cookies(state: &AppState) -> bool {
    state.config.chat.public_url.starts_with("https://")
}

/// A `Set-Cookie` value for `name=value` with our flags: `Path=/; HttpOnly; SameSite=<same_site>`,
/// `Secure` on https, and `Max-Age` when given (0 deletes the cookie).
pub fn set_cookie(
    state: &AppState,
    name: &str,
    value: &str,
    same_site: &str,
    max_age_secs: Option<u64>,
) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(age) = max_age_secs {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure_cookies(state) {
        c.push_str("; Secure");
    }
    c
}

/// The signed-in login of the request (from the `chmail_session` cookie), or `None`. A store
/// failure counts as signed out (and is logged).
pub async fn session_login(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let token = cookie(headers, SESSION_COOKIE)?;
    if !is_token(token) {
        return None;
    }
    let hash = hash_token(token);
    let call = state.store.session(&hash, state.clock.now_ms());
    match state.store_call(call).await {
        Ok(session) => session.map(|s| s.login),
        Err(e) => {
            warn!(cause = %e, "session look-up failed; treating the request as signed out");
            None
        }
    }
}

/// A single-use link that signs `login` in (valid for `[chat] signin_ttl_minutes`) and then
/// opens the room `room` (port, room id) or, without one, the sender's page `/me`. An absolute
/// URL under the public base URL.
///
/// # Errors
/// When no token can be made or the store fails.
pub async fn signin_url(
    state: &AppState,
    login: &str,
    room: Option<(u16, &str)>,
) -> Result<String, AppError> {
    let token = new_token()?;
    let now = state.clock.now_ms();
    let ttl = i64::try_from(state.config.chat.signin_ttl().as_millis()).unwrap_or(i64::MAX);
    let record = SigninToken {
        login: login.to_owned(),
        room_id: room.map(|(_, id)| id.to_owned()),
        created_ms: now,
        expires_ms: now.saturating_add(ttl),
    };
    state
        .store_call(
            state
                .store
                .create_signin_token(&hash_token(&token), &record),
        )
        .await?;
    Ok(format!("{}/auth/{token}", state.base_url()))
}

/// Starts a session for `login` and returns the `Set-Cookie` value that carries it.
///
/// # Errors
/// When no id can be made or the store fails.
pub async fn start_session(state: &AppState, login: &str) -> Result<String, AppError> {
    let id = new_token()?;
    let now = state.clock.now_ms();
    let ttl = state.config.chat.session_ttl();
    let session = Session {
        login: login.to_owned(),
        created_ms: now,
        expires_ms: now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
    };
    state
        .store_call(state.store.create_session(&hash_token(&id), &session))
        .await?;
    Ok(set_cookie(
        state,
        SESSION_COOKIE,
        &id,
        "Lax",
        Some(ttl.as_secs()),
    ))
}

/// Ends the request's session (if any) and returns the `Set-Cookie` value that deletes the
/// cookie.
///
/// # Errors
/// When the store fails.
pub async fn end_session(state: &AppState, headers: &HeaderMap) -> Result<String, AppError> {
    if let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| is_token(t)) {
        state
            .store_call(state.store.delete_session(&hash_token(token)))
            .await?;
    }
    Ok(set_cookie(state, SESSION_COOKIE, "", "Lax", Some(0)))
}

/// The address a login's mail goes to: the login itself when it is an address, else
/// `login@<[signing] domain>` (the milter's rule for logins without `@`).
pub fn login_address(config: &chmail::Config, login: &str) -> String {
    if login.contains('@') {
        login.to_owned()
    } else {
        format!("{login}@{}", config.signing.domain)
    }
}

/// The address of `room`'s sender, as participants are stored (lowercase): its From
/// participant, else the address of its login ([`login_address`]). The one rule for the page,
/// the WebSocket, the reminder mail and the notifications, so that all of them name (and mail)
/// the same address.
pub fn sender_address(config: &chmail::Config, room: &chmail::store::Room) -> String {
    room.participants
        .iter()
        .find(|p| p.role == chmail::store::Role::From)
        .map_or_else(
            || login_address(config, &room.login).to_lowercase(),
            |p| p.address.clone(),
        )
}

/// The login that the address typed into the sign-in form names, if the store knows it (it holds
/// a port, was seen by the milter, or is a host of the mall: hosts may never have sent a mail).
/// Tries the text as typed, lowercased, and, for an address in one of our domains, its local part
/// (SASL logins are often bare user names).
///
/// # Errors
/// When the store fails.
pub async fn known_login(state: &AppState, typed: &str) -> Result<Option<String>, AppError> {
    let typed = typed.trim();
    if typed.is_empty() || typed.len() > MAX_LOGIN_LEN {
        return Ok(None);
    }
    let mut candidates = vec![typed.to_owned(), typed.to_lowercase()];
    if let Some((local, domain)) = typed.rsplit_once('@') {
        if state
            .config
            .own_domains()
            .contains(&domain.to_ascii_lowercase())
        {
            candidates.push(local.to_owned());
            candidates.push(local.to_lowercase());
        }
    }
    candidates.dedup();
    for login in candidates {
        if login.is_empty() {
            continue;
        }
        if state
            .store_call(state.store.port_of(&login))
            .await?
            .is_some()
            || state.store_call(state.store.login(&login)).await?.is_some()
        {
            return Ok(Some(login));
        }
    }
    if state.config.mall.enabled {
        // A host's login is their lowercased address, as the store keeps it.
        if let Some(host) = state
            .store_call(state.store.host(&typed.to_lowercase()))
            .await?
        {
            return Ok(Some(host.login));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tokens_are_43_url_safe_characters_and_distinct() {
        let (a, b) = (new_token().ok(), new_token().ok());
        assert!(a.as_deref().is_some_and(is_token), "{a:?}");
        assert_ne!(a, b);
        assert!(!is_token("short"));
        assert!(!is_token(&"a/".repeat(22)[..43]));
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn cookies_are_found_among_several_headers() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; chmail_session=xyz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
