//! CHmail's shared library: what the milter and chatd both need.
//!
//! - [`header`]: the CHmail header v1 (`CHmail:` and `CHmail-Link:`): build, parse, sign, verify,
//!   the DNS key record and the `keygen` helpers. See `docs/header.md`.
//! - [`store`]: the [`Store`] trait over PostgreSQL and the embedded SQLite store: the first table
//!   (login -> last IP/hostname), the second table (port -> login), rooms and participants; and
//!   chatd's tables ([`ChatStore`]): messages, rings, reminders, sign-in tokens, sessions; and the
//!   mail loop ([`MailStore`]): the outbox, reply tokens, address codes, notifications.
//! - [`config`]: the one TOML file for the whole system, with environment overrides.
//!
//! Logging policy (for every CHmail crate): libraries only emit `tracing` events and never install a
//! subscriber; `error` only when a service stops serving, `warn` when the outside misbehaves (a peer,
//! the store, DNS), `info` once per mail or per administrative action, `debug` for the rest.

pub mod config;
pub mod header;
pub mod store;

pub use config::Config;
pub use header::{ChmailHeader, RoomId, Signer, Verdict};
pub use store::{open_store, ChatStore, MailStore, Store};
