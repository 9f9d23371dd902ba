//! Member passwords: argon2id hashes (PHC strings), made and checked on the blocking pool so that
//! the tens of milliseconds a hash costs never hold up the async threads, and the rules a new
//! password must meet.

use std::sync::LazyLock;

use argon2::{
    password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString},
    Argon2,
};
use tracing::warn;

use crate::error::AppError;

/// Fewest characters of a password: long enough that guessing it online, under the sign-in
/// limits, is hopeless.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Most characters of a password: room for any passphrase, and a bound on the work one sign-in
/// can cause.
pub const MAX_PASSWORD_CHARS: usize = 200;

/// Random bytes of a salt: 128 bits, the size the PHC string format recommends.
const SALT_BYTES: usize = 16;

/// A hash of a password nobody has, checked when a sign-in names an unknown address, so that
/// the answer takes as long as for a known one. Made on first use (on the blocking pool).
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| hash_now("not a password").ok());

/// Whether `password` may be a member's password; the sentence to show when it may not.
///
/// # Errors
/// The message for a password that is too short or too long.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(format!(
            "Your password needs at least {MIN_PASSWORD_CHARS} characters."
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(format!(
            "Your password can have at most {MAX_PASSWORD_CHARS} characters."
        ));
    }
    Ok(())
}

/// The argon2id hash of `password` as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`), with
/// a fresh random salt, computed off the async threads.
///
/// # Errors
/// [`AppError::Internal`] when the OS random number generator or the hashing fails.
pub async fn hash_password(password: &str) -> Result<String, AppError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|e| AppError::Internal(format!("password hashing stopped: {e}")))?
}

/// Whether `password` matches `hash` (a PHC string made by [`hash_password`]), checked off the
/// async threads in time that does not depend on where they differ. A hash that cannot be read
/// matches nothing (and is logged).
///
/// # Errors
/// [`AppError::Internal`] when the blocking task cannot run.
pub async fn verify_password(password: &str, hash: &str) -> Result<bool, AppError> {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || verify_now(&password, &hash))
        .await
        .map_err(|e| AppError::Internal(format!("password check stopped: {e}")))
}

/// Spends the time of one [`verify_password`] on a hash that matches nothing: the answer for an
/// unknown address then takes as long as for a known one.
///
/// # Errors
/// [`AppError::Internal`] when the blocking task cannot run.
pub async fn verify_nothing(password: &str) -> Result<(), AppError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        if let Some(hash) = DUMMY_HASH.as_deref() {
            let _ = verify_now(&password, hash);
        }
    })
    .await
    .map_err(|e| AppError::Internal(format!("password check stopped: {e}")))
}

fn hash_now(password: &str) -> Result<String, AppError> {
    let mut salt = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt).map_err(|e| AppError::Internal(format!("random: {e}")))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| AppError::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AppError::Internal(format!("password hashing failed: {e}")))
}

fn verify_now(password: &str, hash: &str) -> bool {
    let parsed = match PasswordHash::new(hash) {
        Ok(parsed) => parsed,
        Err(e) => {
            warn!(cause = %e, "a stored password hash cannot be read; it matches nothing");
            return false;
        }
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_is_argon2id_salted_and_verifies_only_its_password() {
        let a = hash_password("correct horse battery").await.ok();
        let b = hash_password("correct horse battery").await.ok();
        let a = a.unwrap_or_default();
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(Some(a.clone()), b, "each hash has its own salt");
        assert_eq!(
            verify_password("correct horse battery", &a).await.ok(),
            Some(true)
        );
        assert_eq!(
            verify_password("correct horse batterY", &a).await.ok(),
            Some(false)
        );
        assert_eq!(verify_password("x", "not a hash").await.ok(), Some(false));
        assert!(verify_nothing("anything").await.is_ok());
    }

    #[test]
    fn passwords_between_10_and_200_characters_are_accepted() {
        assert!(check_new_password("123456789").is_err());
        assert!(check_new_password("1234567890").is_ok());
        assert!(check_new_password(&"é".repeat(200)).is_ok());
        assert!(check_new_password(&"é".repeat(201)).is_err());
    }
}
