//! The tag that stands for a room in chatd's logs. A room id is the capability that lets anyone
//! into its chat (it is in the CHmail-Link of the mail), and logs are read by more people and
//! kept longer than the store; so a log line carries only the first 8 hex digits of the room
//! id's SHA-256, enough to follow one room through the logs and useless to join it. `chatd
//! show-room` prints a room's tag, to find its lines.

use std::fmt;

use sha2::{Digest, Sha256};

/// A room's tag in the logs; shows as 8 hex digits (with `%` and `?` alike).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RoomTag([u8; 4]);

/// The tag of `room_id`.
pub fn room_tag(room_id: impl AsRef<str>) -> RoomTag {
    let digest = Sha256::digest(room_id.as_ref().as_bytes());
    RoomTag([digest[0], digest[1], digest[2], digest[3]])
}

impl fmt::Display for RoomTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RoomTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_eight_hex_digits_that_never_show_the_room_id() {
        let room = "3q2-7wVYx1T0gD1m5rQh2A";
        let tag = room_tag(room).to_string();
        assert_eq!(tag.len(), 8);
        assert_eq!(
            format!("{:?}", Some(room_tag(room))),
            format!("Some({tag})")
        );
        assert!(tag.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!room.contains(&tag) && !tag.contains(&room[..4]));
        assert_eq!(
            room_tag(room),
            room_tag(String::from(room)),
            "the same room, the same tag"
        );
        assert_ne!(room_tag(room), room_tag("3q2-7wVYx1T0gD1m5rQh2B"));
    }
}
