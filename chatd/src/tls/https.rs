//! HTTPS on `[chat] listen` when `[chat] tls_cert` is set: what the TLS handshake offers and how
//! it is bounded. The accept loop, shared with plain HTTP, is [`crate::http`]: it makes the
//! handshake of each accepted connection under these bounds, then serves it with the same router
//! as plain HTTP, upgrades to WebSockets (`wss://`) included.

use std::time::Duration;

/// The application protocol offered in the handshake: chatd speaks HTTP/1.1 only.
pub const ALPN: &[&[u8]] = &[b"http/1.1"];

/// Longest TLS handshake: a browser needs a round trip or two, well under a second even on a
/// slow mobile link; a client that stalls longer only holds a handshake slot.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most TLS handshakes under way at once; one more connection is closed at once. A flood of
/// clients that never finish their handshake so takes at most this many slots, and never the
/// CPU of the handshakes that do finish.
pub const MAX_HANDSHAKES: usize = 256;

/// Most TLS handshakes under way at once from one client network: a browser opens a few
/// connections at a time; more from one address are closed at once, so that silent connections
/// from one address cannot take the slots of the others.
pub const MAX_HANDSHAKES_PER_ADDRESS: u32 = 8;
