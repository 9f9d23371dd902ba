//! The CHmail header v1: the signed `CHmail:` field and the `CHmail-Link:` field (see `docs/header.md`).
//!
//! - `field`: the [`ChmailHeader`] values, their checks and the field bodies the milter writes.
//! - `parse`: reading a `CHmail:` field body as the MTA hands it over.
//! - `canon`: the canonical bytes that `b` signs.
//! - `from`: the From address they cover, [`from_address`]: one parser for signer and verifier.
//! - `check`: the [`AuthResult`] of one header on a mail, DNS answer included (pass, fail,
//!   neutral, temperror, permerror), as a verifier acts on it.
//! - `sign`: the [`Signer`] (domain, selector, Ed25519 key).
//! - `verify`: the [`Verdict`] on a header, and the alignment of `d` with the From domain.
//! - `key`: the private key file and the public key's DNS TXT record.
//! - `room`: the random [`RoomId`].
//! - `error`: [`HeaderError`], why a field body or a value is rejected.

mod canon;
mod check;
mod error;
mod field;
mod from;
mod key;
mod parse;
mod room;
mod sign;
mod verify;

pub use canon::canonical_bytes;
pub use check::{check_header, AuthResult, Checked, KeyAnswer, Pending, Stage};
pub use error::HeaderError;
pub use field::{link_value, ChmailHeader};
pub use from::from_address;
pub use key::{key_record, key_record_name, parse_key_record, KeyError};
pub use room::RoomId;
pub use sign::Signer;
pub use verify::{aligned, Verdict};

/// The Ed25519 public key of a signing domain, as published in DNS.
pub use ed25519_dalek::VerifyingKey as PublicKey;

/// Name of the signed header field.
pub const HEADER_NAME: &str = "CHmail";

/// Name of the header field that carries the chat link for people and plain mail clients.
pub const LINK_HEADER_NAME: &str = "CHmail-Link";

/// Largest `CHmail:` field body [`ChmailHeader::parse`] reads, in bytes.
///
/// A real v1 header is under 1,100 bytes even with the longest allowed values; 4 KiB leaves room for
/// generous folding and still bounds the work an attacker can cause.
pub const MAX_HEADER_LEN: usize = 4096;
