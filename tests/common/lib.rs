//! The harness of CHmail's end-to-end tests: the real peers, started privately per test.
//!
//! - `tools`: finding a peer, and skipping without it (failing when `CI=true`); free ports;
//!   tempdirs; running a command that must succeed; waiting for a daemon to listen; stopping
//!   children.
//! - `dns`: [`TestDns`], an authoritative DNS server on 127.0.0.1 answering TXT key records, or
//!   failing for a name as told ([`DnsFailure`]).
//! - `milter`: [`Milter`], the built `chmail-milter` binary as a child with its own config; its
//!   `verify` command on a delivered mail.
//! - `postfix`: [`Postfix`], a private Postfix with Dovecot SASL relaying to an `smtp-sink`; with a
//!   [`ReplyRoute`], also routing chatd's reply domain to its listener (contrib/postfix); or
//!   chaining a DKIM signer after CHmail, with the submission service (contrib/postfix).
//! - `sendmail`: [`Sendmail`], a private Sendmail (Debian's, unpacked by `tests/sendmail/prepare`)
//!   with Cyrus SASL and the milter lines of contrib/sendmail, relaying to an `smtp-sink`.
//! - `opendkim`: [`OpenDkim`], a private OpenDKIM signer with a fresh key, and its test mode as
//!   the verifier.
//! - `sink`: [`Sink`], the `smtp-sink` at the end of every MTA; [`swaks`], which submits, with
//!   AUTH by [`with_auth`].
//! - `postgres`: [`PgSchema`], a fresh PostgreSQL schema per test.
//! - `miltertest`: [`run_miltertest`], OpenDKIM's Lua milter client with a script of `tests/lua/`.
//! - `mail`: reading delivered header fields; signing and tampering "foreign" CHmail headers.
//!
//! Every test starts its own peers on its own ports and directories, so the tests of one binary
//! run in parallel.

mod dns;
mod mail;
mod milter;
mod miltertest;
mod opendkim;
mod postfix;
mod postgres;
mod sendmail;
mod sink;
mod tools;

pub use dns::{Failure as DnsFailure, TestDns};
pub use mail::{
    field_names, has_subject, header_section, header_values, now, single_header, tamper_signature,
    unfold, ForeignSigner,
};
pub use milter::{
    built_binary, KeyRecord, Milter, MilterOptions, PUBLIC_URL, SELECTOR, SIGNING_DOMAIN,
};
pub use miltertest::{
    check_incoming, lua_script, printed_block, run_miltertest, Expect, SUCCESS_LINE,
};
pub use opendkim::{OpenDkim, DKIM_SELECTOR};
pub use postfix::{Postfix, ReplyRoute, DELIVERY_TIMEOUT};
pub use postgres::{PgSchema, DEFAULT_POSTGRES_URL};
pub use sendmail::{prepare_sendmail, Sendmail, SENDMAIL_HOST};
pub use sink::{swaks, with_auth, Sink, Submission};
pub use tools::{
    check_tools, find_tool, free_port, in_ci, is_root, port_open, run_ok, run_ok_with_input,
    shared_tempdir, skip, stop_child, tail, tempdir, tool, wait_listening, wait_until,
};

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}
