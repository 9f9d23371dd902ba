//! chatd: the CHmail server (part 50 of the method). It serves the CHmail-Link of every signed
//! mail, `/c/<port>/<room>`: a recipient clicks it and is in a chat with the sender; if the sender
//! is online their pages ring until answered, if not they get a reminder mail (S107-S117).
//!
//! - [`server`]: the router ([`app`]) and the running server ([`start`]), shutdown; [`http`]:
//!   the accept loop of `[chat] listen` and its bounds per connection and client address;
//!   [`tls`]: HTTPS and STARTTLS on chatd's own listeners
//! - [`state`]: what every handler shares ([`AppState`]); [`clock`]: time that tests can pause
//! - [`ws`]: the WebSocket protocol (`docs/protocol.md`); [`hub`]: fan-out of a room's frames;
//!   [`presence`]: who is online; [`ringer`]: ringing; [`reminder`]: reminder schedule, worker and what the mail says;
//!   [`unread`]: live unread counts for the sender's page; [`fanout`]: the hub's frames to and
//!   from the other chatd nodes on the same PostgreSQL (LISTEN/NOTIFY)
//! - [`picture`]: pictures judged by their bytes and their size (chats and the mall)
//! - [`people`]: who a room's people are as a chat shows them (names, the shop badge)
//! - [`web`]: the server-rendered pages and static assets; [`auth`]: sign-in links and sessions;
//!   [`client_ip`]: the client's address (behind a local proxy too), for pages and WebSockets
//! - [`outbox`]: every outgoing mail queued in the store, delivered once with retries;
//!   [`mail`]: how the mails are sent (lettre, to `[smtp] relay`); [`quote`]: which chat
//!   messages a reminder or notification quotes (the newest) and how;
//!   [`admin`]: look-ups for admins
//! - [`reply`]: replies by mail: their new text, which mails are automatic, the reply address
//!   of a participant, and the SMTP listener that takes replies ([`reply::listener`]);
//!   [`post`]: the one path that stores a message and sends it to the room (pages and replies)
//! - [`codes`]: proven addresses (a code mailed to a recipient's address); [`notify`]:
//!   notification mails to verified recipients who are not in the room, with back-off and
//!   one-click unsubscribe
//! - [`limit`]: rate limits shared by the process (sign-ins, messages, rings); [`ws`] also caps
//!   connections, in all and per client network
//! - [`mall`]: the internet mall under `/mall` (S201-S219): storefront, members, product
//!   inquiries that become chats, host pages, promotions
//! - [`error`]: [`AppError`], what a user sees when something fails
//! - [`metrics`]: Prometheus counters and gauges, served on `[chat] metrics_listen`
//!
//! Logging follows the policy of the `chmail` crate: `error` only when the service stops serving,
//! `warn` when the outside misbehaves. A room appears in the logs only as its [`room_tag`], never
//! as its id, which is the capability that lets anyone into the chat.

pub mod admin;
pub mod auth;
pub mod client_ip;
pub mod clock;
pub mod codes;
pub mod error;
pub mod fanout;
pub mod http;
pub mod hub;
pub mod limit;
pub mod mail;
pub mod mall;
pub mod metrics;
pub mod notify;
pub mod outbox;
pub mod people;
pub mod picture;
pub mod post;
pub mod presence;
pub mod quote;
pub mod reminder;
pub mod reply;
pub mod ringer;
pub mod room_tag;
pub mod server;
pub mod state;
pub mod tls;
pub mod unread;
pub mod web;
pub mod ws;

pub use error::AppError;
pub use server::{app, start, Running};
pub use state::AppState;
