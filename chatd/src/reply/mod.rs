//! Replies by mail, the pure part: what a reply says and whether it is a reply at all. chatd's
//! reply listener takes the mails people send back to its reminders and notifications; their new
//! text goes into the chat room. Nothing here touches the network or the store.
//!
//! - [`text`]: [`new_text`], the new text of a reply: the body part chosen and decoded (HTML
//!   turned into text), then the quoted history and the signature cut away ([`Removed`] lists
//!   what the heuristics for Gmail, Outlook, Apple Mail, Thunderbird and `>` quoting find)
//! - [`auto`]: [`is_automatic`], mails that must never be posted nor answered: vacation replies,
//!   bounces, mailing lists
//!
//! A reply is checked with [`is_automatic`] first; only a mail that is not automatic is passed to
//! [`new_text`].

pub mod auto;
mod history;
mod html;
pub mod text;

pub use auto::is_automatic;
pub use history::Removed;
pub use text::{new_text, BodyKind, ReplyError, ReplyText};
