//! The reply address of a participant of a room: `<token>@<reply domain>`, the Reply-To of every
//! reminder and notification mail to them. The token is the only secret: whoever knows it and
//! sends from the participant's address writes into the room.

use crate::{error::AppError, state::AppState};

/// Random bytes in a reply token: 160 bits, far past guessing, and exactly 32 base32 characters
/// (a local part well under RFC 5321's 64 octets).
pub const TOKEN_BYTES: usize = 20;

/// RFC 4648 base32, lowercase: what the store accepts as a token (`a`-`z`, `2`-`7`). Lowercase
/// because a mail system may lowercase a local part; the store looks tokens up lowercased.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The reply address of `participant` in `room_id`, valid for `[reply] token_days` from now. The
/// participant's stored token is reused while it works (its expiry moves on), so every mail to
/// them carries the same address; an expired one is replaced by a fresh token.
///
/// # Errors
/// [`AppError::Internal`] when the OS random number generator fails or the store times out;
/// [`AppError::Store`] when `participant` is not a participant of `room_id` or the store fails.
pub async fn address(
    state: &AppState,
    room_id: &str,
    participant: &str,
) -> Result<String, AppError> {
    let candidate = new_token()?;
    let now = state.clock.now_ms();
    let expires = now.saturating_add(crate::clock::ms(state.config.reply.token_ttl()));
    let token = state
        .store_call(
            state
                .store
                .reply_token(room_id, participant, &candidate, now, expires),
        )
        .await?;
    Ok(format!("{}@{}", token.token, state.config.reply_domain()))
}

/// A fresh token: [`TOKEN_BYTES`] from the OS CSPRNG as lowercase base32.
///
/// # Errors
/// [`AppError::Internal`] when the OS random number generator fails: no safe token can be made.
pub fn new_token() -> Result<String, AppError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| AppError::Internal(format!("random: {e}")))?;
    Ok(base32(&bytes))
}

/// `bytes` as unpadded lowercase base32.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_follows_rfc_4648_in_lowercase() {
        // RFC 4648 section 10 test vectors, lowercased and unpadded.
        for (input, expected) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(base32(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn tokens_are_32_base32_characters_and_differ() {
        let a = new_token().expect("random works");
        let b = new_token().expect("random works");
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c)));
        assert_ne!(a, b);
    }
}
