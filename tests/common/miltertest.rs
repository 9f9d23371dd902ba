//! Running OpenDKIM's `miltertest` with a Lua script from `tests/lua/`.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use crate::tool;

/// The line every script prints last on success: a script that calls a step the milter
/// negotiated away ends with exit status 0 and no message, so the status alone proves nothing.
pub const SUCCESS_LINE: &str = "OK";

/// `tests/lua/<name>`.
pub fn lua_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("lua")
        .join(name)
}

/// Runs `miltertest -s tests/lua/<script> -D lua_dir=tests/lua -D name=value ...` and returns its
/// stdout. The defines become Lua globals (strings) in the script.
///
/// # Panics
///
/// When miltertest fails or the last line it prints is not [`SUCCESS_LINE`].
pub fn run_miltertest(script: &str, defines: &[(&str, &str)]) -> String {
    let mut command = Command::new(tool("miltertest"));
    command.arg("-s").arg(lua_script(script));
    let lua_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lua");
    command
        .arg("-D")
        .arg(format!("lua_dir={}", lua_dir.display()));
    for (name, value) in defines {
        command.arg("-D").arg(format!("{name}={value}"));
    }
    let output = command
        .stdin(Stdio::null())
        .output()
        .expect("run miltertest");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "miltertest {script} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert_eq!(
        stdout.lines().rev().find(|line| !line.trim().is_empty()),
        Some(SUCCESS_LINE),
        "miltertest {script} stopped before its end (a negotiated-away step?):\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// The text a script printed between the lines `BEGIN <label>` and `END <label>`.
pub fn printed_block(stdout: &str, label: &str) -> Option<String> {
    let begin = format!("BEGIN {label}\n");
    let end = format!("\nEND {label}");
    let start = stdout.find(&begin)? + begin.len();
    let len = stdout[start..].find(&end)?;
    Some(stdout[start..start + len].to_owned())
}

/// What the milter should do with the CHmail field of an incoming (unauthenticated) mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Leave it in place.
    Keep,
    /// Delete it.
    Delete,
}

/// Sends one unauthenticated mail with `From: <from>` and `CHmail: <chmail>` through
/// `tests/lua/unauthenticated.lua` and asserts the milter keeps or deletes the field and does
/// not sign the mail.
///
/// # Panics
///
/// When the milter does otherwise.
pub fn check_incoming(socket: &str, from: &str, chmail: &str, expect: Expect) {
    let expect = match expect {
        Expect::Keep => "keep",
        Expect::Delete => "delete",
    };
    run_miltertest(
        "unauthenticated.lua",
        &[
            ("socket", socket),
            ("from", from),
            ("chmail", chmail),
            ("expect", expect),
        ],
    );
}
