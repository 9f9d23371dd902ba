//! The end of the line for every test MTA: Postfix's `smtp-sink`, which accepts every mail and
//! dumps each into a directory, and `swaks`, which submits them.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{free_port, port_open, tool, wait_until};

/// How long smtp-sink may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How many connections smtp-sink queues (its `backlog` argument).
const BACKLOG: &str = "100";

/// A running `smtp-sink` on 127.0.0.1; dropping it stops it. Callers `require!` smtp-sink.
pub struct Sink {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl Sink {
    /// Starts the sink on a free port, dumping into `dir` (created world-writable: the sink runs
    /// as nobody, so every directory above must be searchable by others).
    ///
    /// # Panics
    ///
    /// When the directory cannot be made or the sink does not listen.
    pub fn start(dir: &Path) -> Self {
        fs::create_dir_all(dir).expect("create the sink directory");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).expect("chmod the sink dir");
        let port = free_port();
        let template = format!("{}/%H%M%S.", dir.display());
        let child = Command::new(tool("smtp-sink"))
            .args(["-u", "nobody", "-d", &template])
            .arg(format!("127.0.0.1:{port}"))
            .arg(BACKLOG)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn smtp-sink");
        let sink = Self {
            dir: dir.to_path_buf(),
            port,
            child,
        };
        assert!(
            wait_until(START_TIMEOUT, || port_open(port)),
            "smtp-sink does not listen on {port}"
        );
        sink
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every mail dumped so far, oldest first. Each dump starts with smtp-sink's
    /// `X-Client-Addr:`-style envelope lines, then the message as received.
    ///
    /// # Panics
    ///
    /// When the directory cannot be read.
    pub fn mails(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.dir)
            .expect("read the sink directory")
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        files.sort_by_key(|path| {
            let modified = fs::metadata(path).and_then(|m| m.modified()).ok();
            (modified, path.clone())
        });
        files
            .iter()
            .map(|path| fs::read_to_string(path).expect("read a dumped mail"))
            .collect()
    }

    /// Waits up to `timeout` for a dumped mail that `matches`, and returns it once its dump has
    /// stopped growing (a dump is written while the mail arrives: taken when two looks agree).
    /// `None` when none arrives in time.
    pub fn wait_for(&self, timeout: Duration, matches: impl Fn(&str) -> bool) -> Option<String> {
        let mut found: Option<String> = None;
        let settled = wait_until(timeout, || {
            let now = self.mails().into_iter().find(|mail| matches(mail));
            let settled = now.is_some() && now == found;
            found = now;
            settled
        });
        found.filter(|_| settled)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `swaks` made of one submission.
#[derive(Debug)]
pub struct Submission {
    /// Whether swaks exited 0: every command was accepted.
    pub accepted: bool,
    /// The SMTP transcript (swaks' stdout) and its complaints (stderr).
    pub transcript: String,
}

/// `args` for `swaks` after the options that log in as `(login, password)` with AUTH PLAIN.
pub fn with_auth<'a>((login, password): (&'a str, &'a str), args: &[&'a str]) -> Vec<&'a str> {
    [&["-a", "PLAIN", "-au", login, "-ap", password][..], args].concat()
}

/// Submits one mail with `swaks --server <server> <args>`. Callers `require!` swaks.
///
/// # Panics
///
/// When swaks cannot be run.
pub fn swaks(server: &str, args: &[&str]) -> Submission {
    let output = Command::new(tool("swaks"))
        .arg("--server")
        .arg(server)
        .args(["--timeout", "60"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run swaks");
    Submission {
        accepted: output.status.success(),
        transcript: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}
