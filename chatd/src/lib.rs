//! chatd: the CHmail server (part 50 of the method). It serves the CHmail-Link of every signed
//! mail, `/c/<port>/<room>`: a recipient clicks it and is in a chat with the sender; if the sender
//! is online their pages ring until answered, if not they get a reminder mail (S107-S117).
//!
//! - [`server`]: the router ([`app`]) and the running server ([`start`]), shutdown
//! - [`state`]: what every handler shares ([`AppState`]); [`clock`]: time that tests can pause
//! - [`ws`]: the WebSocket protocol (`docs/protocol.md`); [`hub`]: fan-out of a room's frames;
//!   [`presence`]: who is online; [`ringer`]: ringing; [`reminder`]: reminder schedule and worker;
//!   [`unread`]: live unread counts for the sender's page
//! - [`web`]: the server-rendered pages and static assets; [`auth`]: sign-in links and sessions;
//!   [`client_ip`]: the client's address (behind a local proxy too), for pages and WebSockets
//! - [`mail`]: outgoing mail (lettre, to `[smtp] relay`); [`admin`]: look-ups for admins
//! - [`reply`]: replies by mail, the pure part: their new text, and which mails are automatic
//! - [`error`]: [`AppError`], what a user sees when something fails
//!
//! Logging follows the policy of the `chmail` crate: `error` only when the service stops serving,
//! `warn` when the outside misbehaves.

pub mod admin;
pub mod auth;
pub mod client_ip;
pub mod clock;
pub mod error;
pub mod hub;
pub mod mail;
pub mod presence;
pub mod reminder;
pub mod reply;
pub mod ringer;
pub mod server;
pub mod state;
pub mod unread;
pub mod web;
pub mod ws;

pub use error::AppError;
pub use server::{app, start, Running};
pub use state::AppState;
