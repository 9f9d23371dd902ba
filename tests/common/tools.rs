//! Finding the real peers, skipping (or failing under CI) without them, ports, processes and
//! their directories.

use std::{
    collections::HashSet,
    env, fs,
    io::Write as _,
    net::{TcpListener, TcpStream, UdpSocket},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use tempfile::TempDir;

/// Where Debian keeps programs that are not always on a user's `PATH` (smtp-sink, postfix,
/// dovecot live in `/usr/sbin`).
const EXTRA_BIN_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/lib/postfix/sbin"];

/// Whether this run is CI's (`CI=true`): there a missing peer fails the test instead of skipping it.
pub fn in_ci() -> bool {
    env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Ends a test that cannot run here: under CI it panics (a missing peer is a broken CI machine),
/// elsewhere it prints `SKIPPED: <why>` to stderr and the caller returns.
///
/// # Panics
///
/// When [`in_ci`].
pub fn skip(why: &str) {
    if in_ci() {
        panic!("{why} (CI=true: a missing test peer is a failure; tests/run installs them)");
    }
    eprintln!("SKIPPED: {why}");
}

/// Returns from the calling test through [`skip`] unless every named tool is present. `"root"`
/// stands for running as root (the `postfix` command needs it).
#[macro_export]
macro_rules! require {
    ($($tool:expr),+ $(,)?) => {
        if let Err(why) = $crate::check_tools(&[$($tool),+]) {
            $crate::skip(&why);
            return;
        }
    };
}

/// Unwraps an `Ok`, or returns from the calling test through [`skip`] with the `Err` as reason.
#[macro_export]
macro_rules! or_skip {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(why) => {
                $crate::skip(&why);
                return;
            }
        }
    };
}

/// Checks that each tool is installed (`"root"`: that we run as root).
///
/// # Errors
///
/// A sentence naming what is missing.
pub fn check_tools(tools: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|&tool| {
            if tool == "root" {
                !is_root()
            } else {
                find_tool(tool).is_none()
            }
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "needs {} (run tests/run, which installs the peers, as root)",
            missing.join(", ")
        ))
    }
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The full path of an installed program, looked up on `PATH` and in the sbin directories.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(EXTRA_BIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Like [`find_tool`], for a tool the caller has already [`require`]d.
///
/// # Panics
///
/// When the tool is not installed.
pub fn tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| panic!("{name} is not installed"))
}

/// Ports handed out in this process, so that parallel tests never get the same one.
static GIVEN_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that is free for both TCP and UDP right now and not handed out before by
/// this process.
///
/// # Panics
///
/// When the system has no free port.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let Ok(tcp) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = tcp.local_addr().map(|a| a.port()) else {
            continue;
        };
        if UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut given = GIVEN_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// Polls `ready` every 50 ms until it returns true or `timeout` passes; returns its last answer.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Stops a child we started: SIGTERM, up to `grace` to exit, then SIGKILL. Errors are ignored: it
/// runs in `Drop`.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    if !wait_until(grace, || matches!(child.try_wait(), Ok(Some(_)))) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The last `lines` lines of a file, or a note that it cannot be read: for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("({}: {err})", path.display()),
    }
}

/// A fresh tempdir `<prefix>XXXX` for a peer's files.
///
/// # Panics
///
/// When it cannot be made.
pub fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir")
}

/// Like [`tempdir`], searchable by everyone (mode 0755): for an MTA whose unprivileged users
/// (Postfix's, Dovecot's, the sink's `nobody`) must reach the files below.
///
/// # Panics
///
/// When it cannot be made.
pub fn shared_tempdir(prefix: &str) -> TempDir {
    let dir = tempdir(prefix);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Runs `command` to its end with stdin on /dev/null and returns what it printed.
///
/// # Panics
///
/// When it cannot be run or exits unsuccessfully; the message names the command line and holds
/// its status, stdout and stderr.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", command_line(command)));
    check_output(command, output)
}

/// Like [`run_ok`], writing `input` to the command's stdin.
///
/// # Panics
///
/// As [`run_ok`].
pub fn run_ok_with_input(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", command_line(command)));
    child
        .stdin
        .take()
        .expect("the piped stdin")
        .write_all(input)
        .unwrap_or_else(|err| panic!("cannot write to {}: {err}", command_line(command)));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|err| panic!("cannot wait for {}: {err}", command_line(command)));
    check_output(command, output)
}

fn check_output(command: &Command, output: Output) -> Output {
    assert!(
        output.status.success(),
        "{} failed ({}):\nstdout: {}\nstderr: {}",
        command_line(command),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `program arg...` of `command`, for failure messages.
fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits up to `timeout` until the daemon `child` listens on 127.0.0.1:`port`.
///
/// # Panics
///
/// When the child exits first or nothing listens in time; the message is `name`'s and holds the
/// last `lines` lines of its `log`.
pub fn wait_listening(
    name: &str,
    child: &mut Child,
    port: u16,
    timeout: Duration,
    log: &Path,
    lines: usize,
) {
    let mut exited = None;
    let up = wait_until(timeout, || {
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
            return true;
        }
        port_open(port)
    });
    if let Some(status) = exited {
        panic!("{name} exited with {status}:\n{}", tail(log, lines));
    }
    assert!(
        up,
        "{name} does not listen on {port} within {timeout:?}:\n{}",
        tail(log, lines)
    );
}
