//! `bench`: CHmail's speed and memory figures, run by hand and written down in docs/bench.md;
//! never part of the test suite, whose timings would only be noise on a shared CI machine.
//!
//! - `bench mta`: mails per second through a private Postfix with no milter, a no-op milter,
//!   the CHmail milter and OpenDKIM, from Postfix's `smtp-source` (module `mta`, the no-op milter
//!   in `noop`).
//! - `bench milter`: mails per second and end-of-message times of the CHmail milter (SQLite,
//!   PostgreSQL) and of the no-op milter, the bench speaking the milter protocol itself (module
//!   `milter`).
//! - `bench ws`: chatd's memory per idle WebSocket (module `ws`; file-descriptor limits and
//!   resident memory in `system`).
//!
//! Both use the end-to-end harness (`chmail_tests`) for the real peers.

mod milter;
mod mta;
mod noop;
mod system;
mod ws;

use std::{process::ExitCode, str::FromStr};

/// What `bench help` prints.
const USAGE: &str = "\
usage: bench mta [--mails N] [--sessions S] [--size BYTES] [--rounds R] [--postgres]
       bench milter [--mails N] [--connections C1,C2,..] [--logins L] [--rounds R] [--no-postgres]
       bench ws [--connections N] [--room-size K] [--no-broadcast] [--no-join]

mta  mails/s through a private Postfix (smtp-source -> Postfix -> smtp-sink) with no milter, a
     no-op milter, the CHmail milter (SQLite; also PostgreSQL with --postgres), OpenDKIM, and
     CHmail + OpenDKIM. Needs root, postfix, dovecot, opendkim. Defaults: 5000 mails of 2048
     bytes over 20 sessions, 1 round.
milter  mails/s and end-of-message p50/p99 of the CHmail milter over SQLite and PostgreSQL (when
     it answers, unless --no-postgres) and of a no-op milter adding the same two fields, the
     bench acting as the MTA over C parallel connections (default 10,100) for L logins (default
     50). Defaults: 10000 mails per case, 1 round.
ws   chatd's resident memory per idle WebSocket: N connections (default 20000), K per room
     (default 10), then one message per room; --no-join: connections only. Needs an open-files
     limit above N + 128 in each process (raised up to the hard limit, beyond it as root).

Build the binaries first: cargo build --release --workspace --bins";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match command {
        "mta" => mta::Options::parse(rest).and_then(|options| mta::run(&options)),
        "milter" => milter::Options::parse(rest).and_then(|options| milter::run(&options)),
        "ws" => ws::Options::parse(rest).and_then(|options| ws::run(&options)),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("bench {command}: {why}");
            ExitCode::FAILURE
        }
    }
}

/// The value after `flag`, parsed.
///
/// # Errors
///
/// When it is missing or does not parse.
fn value<T: FromStr>(flag: &str, value: Option<&String>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    value
        .parse()
        .map_err(|_| format!("{flag} {value:?} is not a valid number"))
}

/// The error for an argument no subcommand knows.
fn unknown(arg: &str) -> String {
    format!("unknown argument {arg:?}\n{USAGE}")
}
