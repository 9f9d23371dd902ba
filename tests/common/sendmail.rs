//! A private Sendmail with SMTP AUTH that relays everything to an `smtp-sink`: the second MTA that
//! calls the milter in the end-to-end tests, configured with the lines of
//! contrib/sendmail/chmail.mc.
//!
//! It is Debian's Sendmail, fetched and unpacked by `tests/sendmail/prepare` but never installed
//! (sendmail-bin would replace Postfix). Its `sendmail.cf` is built with m4 from a test `.mc` and
//! the unpacked `cf/` macros. AUTH is Cyrus SASL with a sasldb of the test's users.
//!
//! The daemon runs in its own UTS and mount namespaces (`unshare`), where:
//! - the host name is `mx.example.test`: Sendmail sleeps a minute at start when it cannot find a
//!   fully qualified name for the machine, before it reads its configuration;
//! - `/usr/lib/sasl2`, one of the directories Cyrus SASL reads `Sendmail.conf` from, shows the
//!   test's own `Sendmail.conf` and sasldb (Sendmail clears its environment, so `SASL_CONF_PATH`
//!   cannot point elsewhere);
//! - `/etc/hosts` names that host, so nothing waits on DNS.
//!
//! Nothing outside the tempdir changes, and the namespaces end with the daemon.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    free_port, run_ok, run_ok_with_input, shared_tempdir, stop_child, swaks, tail, tool,
    wait_listening, Sink, Submission,
};

/// The host name Sendmail runs under.
pub const SENDMAIL_HOST: &str = "mx.example.test";

/// How long Sendmail may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The milter socket in contrib/sendmail/chmail.mc, replaced by the test milter's.
const CONTRIB_MILTER: &str = "S=inet:8890@127.0.0.1";

/// contrib/sendmail/chmail.mc.
const CONTRIB_MC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/sendmail/chmail.mc");

/// tests/sendmail/prepare.
const PREPARE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sendmail/prepare");

/// Where Cyrus SASL looks for `Sendmail.conf` (after /etc/sasl2 and /etc/sasl, which may not
/// exist to mount over); the libsasl2 package owns it.
const SASL_CONF_DIR: &str = "/usr/lib/sasl2";

/// Runs `tests/sendmail/prepare` (fetching and unpacking Sendmail the first time) and returns the
/// unpacked root, after checking that this machine lets us give Sendmail its own namespaces.
///
/// # Errors
///
/// Why Sendmail cannot run here: no apt, no network, a missing library, no namespaces (a
/// container without `CAP_SYS_ADMIN`).
pub fn prepare_sendmail() -> Result<PathBuf, String> {
    let unshare = Command::new(tool("unshare"))
        .args(["--uts", "--mount", "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run unshare: {err}"))?;
    if !unshare.status.success() {
        return Err(format!(
            "Sendmail runs in its own UTS and mount namespaces, and unshare cannot make them: {}",
            String::from_utf8_lossy(&unshare.stderr).trim()
        ));
    }
    let output = Command::new(PREPARE)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run {PREPARE}: {err}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let root = stdout.lines().last().map(PathBuf::from);
    match root {
        Some(root) if output.status.success() && root.is_dir() => Ok(root),
        _ => Err(format!(
            "tests/sendmail/prepare could not provide Sendmail ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// The Sendmail daemon and its sink; dropping it stops both. Callers `require!` root, m4,
/// saslpasswd2, unshare, smtp-sink and swaks.
pub struct Sendmail {
    dir: TempDir,
    port: u16,
    sink: Option<Sink>,
    daemon: Option<Child>,
}

impl Sendmail {
    /// Builds `sendmail.cf` from `root`'s macros with the milter lines of
    /// contrib/sendmail/chmail.mc pointed at 127.0.0.1:`milter_port`, and starts the daemon on a
    /// free port with AUTH for `users` (`(login, password)`), relaying everything to a sink.
    ///
    /// # Panics
    ///
    /// When a part does not start (the output is in the message).
    pub fn start(root: &Path, milter_port: u16, users: &[(&str, &str)]) -> Self {
        // smtp-sink runs as nobody and writes below.
        let dir = shared_tempdir("chmail-sendmail.");
        let mut sendmail = Self {
            port: free_port(),
            dir,
            sink: None,
            daemon: None,
        };
        let sink_port = sendmail
            .sink
            .insert(Sink::start(&sendmail.path("sink")))
            .port();
        sendmail.write_config(root, sink_port, milter_port);
        sendmail.write_sasl(users);
        sendmail.run(root);
        sendmail
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The test .mc: files in the tempdir, no DNS, every mail to the sink, AUTH, and the lines of
    /// contrib/sendmail/chmail.mc; then m4 makes sendmail.cf of it.
    fn write_config(&self, root: &Path, sink_port: u16, milter_port: u16) {
        let dir = self.dir.path().display();
        let queue = self.path("queue");
        fs::create_dir(&queue).expect("mkdir queue");
        // Sendmail refuses a queue directory others can write to.
        fs::set_permissions(&queue, fs::Permissions::from_mode(0o700)).expect("chmod queue");
        for empty in ["local-host-names", "trusted-users", "statistics"] {
            fs::write(self.path(empty), "").expect("write an empty Sendmail file");
        }
        fs::write(self.path("service.switch"), "hosts files\naliases files\n")
            .expect("write service.switch");
        fs::write(
            self.path("hosts"),
            format!("127.0.0.1 {SENDMAIL_HOST} mx localhost\n::1 localhost\n"),
        )
        .expect("write hosts");
        let contrib = fs::read_to_string(CONTRIB_MC).expect("read contrib/sendmail/chmail.mc");
        assert!(
            contrib.contains(CONTRIB_MILTER),
            "contrib/sendmail/chmail.mc names {CONTRIB_MILTER}"
        );
        let contrib = contrib.replace(CONTRIB_MILTER, &format!("S=inet:{milter_port}@127.0.0.1"));
        let cf = root.join("usr/share/sendmail/cf");
        let port = self.port;
        let mc = format!(
            "\
divert(-1)
A private Sendmail for CHmail's end-to-end tests.
divert(0)dnl
include(`{cf}/m4/cf.m4')dnl
VERSIONID(`CHmail end-to-end test')dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `{SENDMAIL_HOST}')dnl
dnl Everything Sendmail reads and writes is in the test's directory.
define(`QUEUE_DIR', `{dir}/queue')dnl
define(`confPID_FILE', `{dir}/sendmail.pid')dnl
define(`confSTATUS_FILE', `{dir}/statistics')dnl
define(`confCW_FILE', `{dir}/local-host-names')dnl
define(`confCT_FILE', `{dir}/trusted-users')dnl
define(`confSERVICE_SWITCH_FILE', `{dir}/service.switch')dnl
define(`confHELP_FILE', `')dnl
define(`confHOST_STATUS_DIRECTORY', `')dnl
define(`ALIAS_FILE', `')dnl
dnl No DNS: every address stays as it is and every mail goes to the sink.
FEATURE(`nocanonify')dnl
FEATURE(`accept_unresolvable_domains')dnl
define(`SMART_HOST', `relay:[127.0.0.1]')dnl
define(`RELAY_MAILER_ARGS', `TCP $h {sink_port}')dnl
dnl SMTP AUTH (Cyrus SASL); an authenticated client may relay, and so may 127.0.0.1.
define(`confAUTH_MECHANISMS', `PLAIN LOGIN')dnl
TRUST_AUTH_MECH(`PLAIN LOGIN')dnl
FEATURE(`no_default_msa')dnl
DAEMON_OPTIONS(`Family=inet, Name=MTA, Port={port}, Addr=127.0.0.1')dnl
dnl ---- contrib/sendmail/chmail.mc ----
{contrib}dnl ---- end of contrib/sendmail/chmail.mc ----
MAILER(`smtp')dnl
",
            cf = cf.display()
        );
        fs::write(self.path("test.mc"), &mc).expect("write test.mc");
        let output = run_ok(Command::new(tool("m4")).arg(self.path("test.mc")));
        assert!(
            !output.stdout.is_empty(),
            "m4 test.mc printed nothing: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        fs::write(self.path("sendmail.cf"), &output.stdout).expect("write sendmail.cf");
    }

    /// `sasl/Sendmail.conf` and `sasl/sasldb2` with `users`, made by `saslpasswd2`. The realm is
    /// Sendmail's host name, which it hands to SASL for a login without one.
    fn write_sasl(&self, users: &[(&str, &str)]) {
        let sasl = self.path("sasl");
        fs::create_dir(&sasl).expect("mkdir sasl");
        fs::write(
            sasl.join("Sendmail.conf"),
            format!(
                "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: {SASL_CONF_DIR}/sasldb2\nmech_list: PLAIN LOGIN\n"
            ),
        )
        .expect("write Sendmail.conf");
        for (login, password) in users {
            run_ok_with_input(
                Command::new(tool("saslpasswd2"))
                    .args(["-p", "-c", "-u", SENDMAIL_HOST, "-f"])
                    .arg(sasl.join("sasldb2"))
                    .arg(login),
                password.as_bytes(),
            );
        }
    }

    fn run(&mut self, root: &Path) {
        assert!(
            Path::new(SASL_CONF_DIR).is_dir(),
            "{SASL_CONF_DIR} is missing (the libsasl2-2 package makes it)"
        );
        let binary = root.join("usr/libexec/sendmail/sendmail");
        // `-bD`: the daemon in the foreground, so that the child is the daemon.
        let script = format!(
            "set -e\n\
             hostname {SENDMAIL_HOST}\n\
             mount --bind '{sasl}' {SASL_CONF_DIR}\n\
             mount --bind '{hosts}' /etc/hosts\n\
             exec '{binary}' -C '{cf}' -bD\n",
            sasl = self.path("sasl").display(),
            hosts = self.path("hosts").display(),
            binary = binary.display(),
            cf = self.path("sendmail.cf").display(),
        );
        let out = fs::File::create(self.path("sendmail.out")).expect("create sendmail.out");
        let child = Command::new(tool("unshare"))
            .args(["--uts", "--mount", "sh", "-c", &script])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("output handle"))
            .stderr(out)
            .spawn()
            .expect("spawn unshare sendmail");
        let out = self.path("sendmail.out");
        let child = self.daemon.insert(child);
        wait_listening("sendmail", child, self.port, START_TIMEOUT, &out, 20);
    }

    /// The `sendmail.cf` m4 made.
    pub fn cf(&self) -> String {
        fs::read_to_string(self.path("sendmail.cf")).unwrap_or_default()
    }

    /// `127.0.0.1:PORT` of the daemon.
    pub fn smtp_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Submits one mail with `swaks --server <daemon> <args>`; the caller judges the answer.
    pub fn swaks(&self, args: &[&str]) -> Submission {
        swaks(&self.smtp_addr(), args)
    }

    /// Waits up to `timeout` for a mail in the sink that `matches`. `what` names it in the
    /// failure message, which shows what is still in Sendmail's queue and why.
    ///
    /// # Panics
    ///
    /// When none arrives in time.
    pub fn wait_for_mail(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let sink = self.sink.as_ref().expect("the sink runs");
        sink.wait_for(timeout, matches).unwrap_or_else(|| {
            panic!(
                "no {what} reached the sink within {timeout:?}; Sendmail's queue:\n{}\n{} mails in the sink",
                self.queue(),
                sink.mails().len()
            )
        })
    }

    /// Every mail the sink has received so far, oldest first.
    pub fn sink_mails(&self) -> Vec<String> {
        self.sink.as_ref().map(Sink::mails).unwrap_or_default()
    }

    /// The mails in Sendmail's queue with their last delivery status (the `M` lines of the qf
    /// files): Sendmail has no log of its own here (it logs to syslog).
    pub fn queue(&self) -> String {
        let Ok(entries) = fs::read_dir(self.path("queue")) else {
            return "(no queue directory)".to_owned();
        };
        let mut lines = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_prefix("qf") {
                let qf = fs::read_to_string(entry.path()).unwrap_or_default();
                let status = qf
                    .lines()
                    .find_map(|line| line.strip_prefix('M'))
                    .unwrap_or("(no status yet)");
                lines.push(format!("{id}: {status}"));
            }
        }
        if lines.is_empty() {
            "(empty)".to_owned()
        } else {
            lines.join("\n")
        }
    }
}

impl Drop for Sendmail {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.as_mut() {
            stop_child(daemon, Duration::from_secs(5));
            if std::thread::panicking() {
                eprintln!(
                    "--- sendmail output ---\n{}\n--- sendmail queue ---\n{}",
                    tail(&self.path("sendmail.out"), 20),
                    self.queue()
                );
            }
        }
        self.sink.take();
    }
}
