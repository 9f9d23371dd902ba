//! The room id: a random, unguessable name for one mail's conversation (the capability in the link).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Random bytes in a generated room id: 128 bits, enough that nobody guesses a room.
const ROOM_ID_BYTES: usize = 16;

/// Shortest room id [`RoomId::parse`] accepts: 16 bytes in URL-safe base64 without padding.
pub(crate) const MIN_ROOM_ID_LEN: usize = 22;

/// Longest room id [`RoomId::parse`] accepts, so other generators may use more entropy.
pub(crate) const MAX_ROOM_ID_LEN: usize = 64;

/// A room id: at least 128 bits from the OS CSPRNG, written as URL-safe base64 without padding.
///
/// Generated ids have 22 characters; [`RoomId::parse`] accepts 22 to 64 characters of
/// `A-Z a-z 0-9 _ -`, so the id is safe in a URL path, in a header and in a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomId(String);

impl RoomId {
    /// A new room id of 16 random bytes (22 characters).
    ///
    /// # Panics
    ///
    /// Only if the operating system's random number generator is unavailable, which leaves no
    /// safe way to name a room.
    #[must_use]
    pub fn generate() -> RoomId {
        let mut bytes = [0u8; ROOM_ID_BYTES];
        // Without the OS RNG there is no safe key or room id to make; the doc says it panics.
        getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
        RoomId(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The room id in `s`, if `s` is 22 to 64 characters of `A-Z a-z 0-9 _ -`.
    #[must_use]
    pub fn parse(s: &str) -> Option<RoomId> {
        let ok = (MIN_ROOM_ID_LEN..=MAX_ROOM_ID_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| RoomId(s.to_owned()))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RoomId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_room_ids_are_22_url_safe_chars_and_distinct() {
        let ids: HashSet<RoomId> = (0..1000).map(|_| RoomId::generate()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.as_str().len(), 22);
            assert_eq!(RoomId::parse(id.as_str()).as_ref(), Some(id));
        }
    }

    #[test]
    fn room_id_parse_rejects_wrong_length_and_characters() {
        assert!(RoomId::parse(&"a".repeat(21)).is_none());
        assert!(RoomId::parse(&"a".repeat(22)).is_some());
        assert!(RoomId::parse(&"a".repeat(64)).is_some());
        assert!(RoomId::parse(&"a".repeat(65)).is_none());
        for bad in ["+", "/", "=", " ", ";", "\n", "é", "\0"] {
            let s = format!("{}{bad}", "a".repeat(22));
            assert!(RoomId::parse(&s).is_none(), "{s:?}");
        }
    }
}
