//! `chmail-milter`: the CHmail milter for Postfix and Sendmail, on indymilter.
//!
//! For each mail an authenticated user sends it records the login's address (the first table),
//! gets the login's chat port (the second table), opens the room, removes every CHmail field the
//! client supplied and adds a signed `CHmail` header and a `CHmail-Link`. On other mail it gives
//! each CHmail header a result (pass, fail, neutral, temperror, permerror) against its domain's DNS
//! key, removes those that fail or cannot ever be checked, and keeps a `CHmail-Link` only beside a
//! header that passed. With `[milter] footer = true` a signed mail also gets the link in its text
//! body.
//!
//! - [`server`]: `start`/`run`, the shutdown signal; [`drain`]: a shutdown that lets the mails
//!   under way finish
//! - `callbacks`: the milter protocol stages; [`policy`]: the decision for one mail, with
//!   `outbound` (signing) and `inbound` (checking); [`footer`]: the link in the body;
//!   [`opening`]: the start of a signed mail's text, the first item of its chat
//! - [`headers`]: what is kept of the header block; [`auth_results`]: the Authentication-Results
//!   field; [`keys`]: DNS keys and reverse look-ups;
//!   [`table`]: our own keys, the signing table chosen by From domain
//! - [`listen`]: the socket; [`network`]: trusted networks; [`metrics`]: Prometheus
//! - [`commands`]: `serve`, `keygen`, `records`, `migrate`, `quickstart`; [`verify`]: the
//!   `verify` command, the check of one mail's CHmail headers
//!
//! A mail is never lost or refused because of CHmail: a failing store lets it go on unsigned (or
//! temp-fails it under `[milter] on_error = "tempfail"`); failing DNS never holds a mail up.

pub mod auth_results;
mod callbacks;
pub mod commands;
pub mod drain;
pub mod error;
pub mod footer;
pub mod headers;
mod inbound;
pub mod keys;
pub mod listen;
pub mod metrics;
pub mod network;
pub mod opening;
mod outbound;
pub mod policy;
pub mod server;
pub mod table;
pub mod verify;

pub use error::{MilterError, Result};
pub use policy::{Mail, Milter, Outcome};
pub use server::{run, start, start_with_keys, Running};
pub use table::SigningTable;
