//! Replies by mail: what a reply says and whether it is a reply at all, where it is sent, and the
//! listener that takes it. chatd's reply listener takes the mails people send back to its
//! reminders and notifications; their new text goes into the chat room. [`text`], [`auto`] and
//! [`links`] are pure: they touch neither the network nor the store.
//!
//! - [`text`]: [`new_text`], the new text of a reply: the body part chosen and decoded (HTML
//!   turned into text), then the quoted history and the signature cut away ([`Removed`] lists
//!   what the heuristics for Gmail, Outlook, Apple Mail, Thunderbird and `>` quoting find)
//! - [`auto`]: [`is_automatic`], mails that must never be posted nor answered: vacation replies,
//!   bounces, mailing lists
//! - [`links`]: chatd's own sign-in links, cut out of a reply before it is posted
//! - [`mod@address`]: [`address()`], a participant's reply address (the Reply-To of chatd's mails)
//! - [`listener`]: the SMTP listener on `[reply] listen` that takes replies and posts them
//!
//! A reply is checked with [`is_automatic`] first; only a mail that is not automatic is passed to
//! [`new_text`].

pub mod address;
pub mod auto;
mod history;
mod html;
pub mod links;
pub mod listener;
pub mod text;

pub use address::address;
pub use auto::is_automatic;
pub use history::Removed;
pub use text::{new_text, BodyKind, ReplyError, ReplyText};
