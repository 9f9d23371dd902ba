//! Member passwords: argon2id hashes (PHC strings), made and checked on the blocking pool so that
//! the tens of milliseconds a hash costs never hold up the async threads, and the rules a new
//! password must meet.
//!
//! Each hash or check takes 19 MiB of memory while it runs (argon2id's default m=19456 KiB). A burst of sign-ins would
//! otherwise run them all at once (a hundred wrong passwords cost chatd over a gigabyte), so
//! every one passes one gate per process: at most [`MAX_RUNNING`] run at once, at most
//! [`MAX_WAITING`] more wait for a turn, and one more is answered [`AppError::Busy`] ("try again
//! shortly") at once. The memory the passwords take is so bounded by `MAX_RUNNING` x 19 MiB,
//! whatever comes in.
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    LazyLock,
};

use argon2::{
    password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString},
    Argon2,
};
use tokio::sync::Semaphore;
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

/// Most password hashes and checks running at once in this process: a few cores' worth, so that
/// they keep the CPUs busy while their memory stays under `4 x 19 MiB`.
pub const MAX_RUNNING: usize = 4;

/// Most password hashes and checks waiting for one of the [`MAX_RUNNING`] turns: a few seconds
/// of work (each takes tens of ms). A waiting check holds no argon2 memory; one beyond these is
/// answered at once instead of queueing without end.
pub const MAX_WAITING: usize = 64;

/// The gate every hash and check of this process passes (see the module doc).
static GATE: Gate = Gate::new(MAX_RUNNING, MAX_WAITING);

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
/// a fresh random salt, computed off the async threads through the process's gate.
///
/// # Errors
/// [`AppError::Busy`] when too many hashes and checks are waiting; [`AppError::Internal`] when
/// the OS random number generator or the hashing fails.
pub async fn hash_password(password: &str) -> Result<String, AppError> {
    let password = password.to_owned();
    GATE.run(move || hash_now(&password)).await?
}

/// Whether `password` matches `hash` (a PHC string made by [`hash_password`]), checked off the
/// async threads through the process's gate, in time that does not depend on where they
/// differ. A hash that cannot be read matches nothing (and is logged).
///
/// # Errors
/// [`AppError::Busy`] when too many hashes and checks are waiting; [`AppError::Internal`] when
/// the blocking task cannot run.
pub async fn verify_password(password: &str, hash: &str) -> Result<bool, AppError> {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    GATE.run(move || verify_now(&password, &hash)).await
}

/// Spends the time of one [`verify_password`] on a hash that matches nothing: the answer for an
/// unknown address then takes as long as for a known one.
///
/// # Errors
/// As [`verify_password`].
pub async fn verify_nothing(password: &str) -> Result<(), AppError> {
    let password = password.to_owned();
    GATE.run(move || {
        if let Some(hash) = DUMMY_HASH.as_deref() {
            let _ = verify_now(&password, hash);
        }
    })
    .await
}

/// Bounds the password work of a process: `running` at once on the blocking pool, `waiting`
/// more queued, the rest refused at once.
struct Gate {
    /// One permit per hash that may run.
    turns: Semaphore,
    /// The calls admitted: running or waiting for a turn.
    admitted: AtomicUsize,
    /// Most calls admitted at once: `running + waiting`.
    max_admitted: usize,
}

impl Gate {
    const fn new(running: usize, waiting: usize) -> Self {
        Self {
            turns: Semaphore::const_new(running),
            admitted: AtomicUsize::new(0),
            max_admitted: running + waiting,
        }
    }

    /// Runs `work` on the blocking pool when a turn is free. The turn is held by the blocking
    /// task itself, so a request that goes away does not free it while the hash still runs.
    ///
    /// # Errors
    /// [`AppError::Busy`] when `running + waiting` calls are already admitted;
    /// [`AppError::Internal`] when the blocking task cannot run.
    async fn run<T: Send + 'static>(
        &'static self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.max_admitted {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            warn!("password checks over the waiting bound; answered busy");
            return Err(AppError::Busy);
        }
        let admitted = Admitted(&self.admitted);
        // The semaphore is never closed, so acquiring fails never; map it all the same.
        let turn = self
            .turns
            .acquire()
            .await
            .map_err(|e| AppError::Internal(format!("password gate: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let value = work();
            drop((turn, admitted));
            value
        })
        .await
        .map_err(|e| AppError::Internal(format!("password work stopped: {e}")))
    }
}

/// One admitted call of a [`Gate`]; leaving (done, or the request gone) lets another in.
struct Admitted(&'static AtomicUsize);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_gate_runs_at_most_its_turns_at_once_and_refuses_beyond_its_queue() {
        static SMALL: Gate = Gate::new(2, 3);
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let calls = (0..20).map(|_| {
            SMALL.run(|| {
                let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
                MOST.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(50));
                RUNNING.fetch_sub(1, Ordering::SeqCst);
            })
        });
        let results = futures_util::future::join_all(calls).await;
        let done = results.iter().filter(|r| r.is_ok()).count();
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(AppError::Busy)))
            .count();
        assert_eq!((done, busy), (5, 15), "2 running + 3 waiting admitted");
        assert_eq!(MOST.load(Ordering::SeqCst), 2, "never more than 2 at once");
        assert!(SMALL.run(|| ()).await.is_ok(), "free again once done");
    }

    #[test]
    fn passwords_between_10_and_200_characters_are_accepted() {
        assert!(check_new_password("123456789").is_err());
        assert!(check_new_password("1234567890").is_ok());
        assert!(check_new_password(&"é".repeat(200)).is_ok());
        assert!(check_new_password(&"é".repeat(201)).is_err());
    }
}
