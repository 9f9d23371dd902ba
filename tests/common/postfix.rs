//! A private Postfix instance with Dovecot SASL that relays everything to an `smtp-sink`, all in
//! one tempdir on their own ports: the MTA that calls the milter in the end-to-end tests.
//!
//! Order matters: the sink first (Postfix relays to it), then Postfix, then Dovecot (its auth
//! socket lives in Postfix's queue directory), and only once that socket exists may anything
//! connect to smtpd: an smtpd that finds no SASL server dies, and master then throttles the service
//! for a minute.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use tempfile::TempDir;

use crate::{free_port, port_open, stop_child, tail, tool, wait_until};

/// How long Postfix and Dovecot may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a submitted mail may take to reach the sink.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The milter socket in contrib/postfix/main.cf.snippet, replaced by the test milter's.
const CONTRIB_MILTER: &str = "inet:127.0.0.1:8890";

/// The reply domain in contrib/postfix/replies.cf.snippet and transport, replaced by the test's.
const CONTRIB_REPLY_DOMAIN: &str = "reply.example.com";

/// The transport map in contrib/postfix/replies.cf.snippet, replaced by the instance's own.
const CONTRIB_TRANSPORT_MAP: &str = "/etc/postfix/transport";

/// chatd's reply listener in contrib/postfix/transport, replaced by the test chatd's.
const CONTRIB_REPLY_NEXTHOP: &str = "[127.0.0.1]:2525";

/// Where the reply domain of chatd's reminder mails goes: the lines of
/// contrib/postfix/replies.cf.snippet and contrib/postfix/transport, pointed at a chatd reply
/// listener on 127.0.0.1:`port`.
#[derive(Debug, Clone)]
pub struct ReplyRoute {
    /// The reply domain (`[reply] domain`).
    pub domain: String,
    /// The port of chatd's reply listener (`[reply] listen`) on 127.0.0.1.
    pub port: u16,
}

/// The master.cf services Postfix needs to receive, queue and relay; every one without chroot,
/// so the instance needs nothing outside its tempdir. `SMTPD` is replaced by the listen address.
const MASTER_CF: &str = "\
SMTPD     inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

/// Postfix + Dovecot + smtp-sink; dropping it stops all three.
pub struct Postfix {
    dir: TempDir,
    smtpd_port: u16,
    sink: Option<Child>,
    dovecot: Option<Child>,
    started: bool,
}

impl Postfix {
    /// Starts the instance: smtpd on a free port with SASL for `users` (`(login, password)`),
    /// relaying to the sink, with the milter settings of contrib/postfix/main.cf.snippet pointed
    /// at 127.0.0.1:`milter_port`. Callers `require!` postfix, dovecot, smtp-sink and root.
    ///
    /// # Panics
    ///
    /// When a part does not start (the logs are in the message).
    pub fn start(milter_port: u16, users: &[(&str, &str)]) -> Self {
        Self::start_with(milter_port, users, None)
    }

    /// Like [`Postfix::start`], and routes `route.domain` to chatd's reply listener with the
    /// lines of contrib/postfix/replies.cf.snippet and contrib/postfix/transport (`postmap`ped):
    /// mail to the reply domain goes there, everything else to the sink. Callers also `require!`
    /// postmap.
    ///
    /// # Panics
    ///
    /// As [`Postfix::start`], and when postmap fails.
    pub fn start_with_replies(
        milter_port: u16,
        users: &[(&str, &str)],
        route: &ReplyRoute,
    ) -> Self {
        Self::start_with(milter_port, users, Some(route))
    }

    fn start_with(milter_port: u16, users: &[(&str, &str)], route: Option<&ReplyRoute>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("chmail-postfix.")
            .tempdir()
            .expect("tempdir");
        // Postfix's and Dovecot's unprivileged users must reach the queue and the sink.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut postfix = Self {
            smtpd_port: free_port(),
            dir,
            sink: None,
            dovecot: None,
            started: false,
        };
        let sink_port = free_port();
        postfix.write_postfix_config(sink_port, milter_port, route);
        postfix.write_dovecot_config(users);
        postfix.start_sink(sink_port);
        postfix.start_postfix();
        postfix.start_dovecot();
        let port = postfix.smtpd_port;
        assert!(
            wait_until(START_TIMEOUT, || port_open(port)),
            "smtpd does not listen on {port}:\n{}",
            postfix.maillog()
        );
        postfix
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_postfix_config(&self, sink_port: u16, milter_port: u16, route: Option<&ReplyRoute>) {
        let root = self.dir.path().display();
        // data/ is left to Postfix, which must own it.
        for sub in ["conf", "queue", "sink"] {
            fs::create_dir(self.path(sub)).expect("mkdir");
        }
        // smtp-sink runs as nobody and writes here.
        fs::set_permissions(self.path("sink"), fs::Permissions::from_mode(0o777)).expect("chmod");
        let main_cf = format!(
            "\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
syslog_name = chmail-test
myhostname = mx.example.test
mydomain = example.test
myorigin = example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink_port}
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination
"
        );
        // The milter settings are contrib/postfix's, as an admin would paste them.
        let snippet = fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../contrib/postfix/main.cf.snippet"
        ))
        .expect("read contrib/postfix/main.cf.snippet");
        assert!(
            snippet.contains(CONTRIB_MILTER),
            "the snippet names {CONTRIB_MILTER}"
        );
        let mut main_cf =
            main_cf + &snippet.replace(CONTRIB_MILTER, &format!("inet:127.0.0.1:{milter_port}"));
        if let Some(route) = route {
            main_cf.push_str(&self.write_reply_route(route));
        }
        fs::write(self.path("conf/main.cf"), main_cf).expect("write main.cf");
        if route.is_some() {
            self.postmap_transport();
        }
        let listen = format!("127.0.0.1:{}", self.smtpd_port);
        fs::write(
            self.path("conf/master.cf"),
            MASTER_CF.replacen("SMTPD", &listen, 1),
        )
        .expect("write master.cf");
    }

    /// Writes conf/transport from contrib/postfix/transport and returns the lines
    /// of contrib/postfix/replies.cf.snippet for main.cf, both for `route`.
    fn write_reply_route(&self, route: &ReplyRoute) -> String {
        let contrib = |name: &str| {
            let path = format!("{}/../contrib/postfix/{name}", env!("CARGO_MANIFEST_DIR"));
            let text = fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {path}: {err}"));
            assert!(
                text.contains(CONTRIB_REPLY_DOMAIN),
                "contrib/postfix/{name} names {CONTRIB_REPLY_DOMAIN}"
            );
            text.replace(CONTRIB_REPLY_DOMAIN, &route.domain)
        };
        let transport = contrib("transport");
        assert!(
            transport.contains(CONTRIB_REPLY_NEXTHOP),
            "contrib/postfix/transport names {CONTRIB_REPLY_NEXTHOP}"
        );
        let map = self.path("conf/transport");
        fs::write(
            &map,
            transport.replace(
                CONTRIB_REPLY_NEXTHOP,
                &format!("[127.0.0.1]:{}", route.port),
            ),
        )
        .expect("write transport");
        let snippet = contrib("replies.cf.snippet");
        assert!(
            snippet.contains(CONTRIB_TRANSPORT_MAP),
            "contrib/postfix/replies.cf.snippet names {CONTRIB_TRANSPORT_MAP}"
        );
        snippet.replace(CONTRIB_TRANSPORT_MAP, &map.display().to_string())
    }

    /// `postmap`s conf/transport (after main.cf is written: postmap reads it).
    fn postmap_transport(&self) {
        let map = self.path("conf/transport");
        let output = Command::new(tool("postmap"))
            .arg("-c")
            .arg(self.path("conf"))
            .arg(format!("hash:{}", map.display()))
            .stdin(Stdio::null())
            .output()
            .expect("run postmap");
        assert!(
            output.status.success(),
            "postmap of {} failed ({}): {}",
            map.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn write_dovecot_config(&self, users: &[(&str, &str)]) {
        let root = self.dir.path().display();
        let passwd: String = users
            .iter()
            .map(|(login, password)| format!("{login}:{{PLAIN}}{password}\n"))
            .collect();
        fs::write(self.path("passwd"), passwd).expect("write passwd");
        let conf = format!(
            "\
base_dir = {root}/dovecot-run
state_dir = {root}/dovecot-state
log_path = {root}/dovecot.log
instance_name = chmail-test-{port}
protocols =
ssl = no
auth_mechanisms = plain login
disable_plaintext_auth = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {root}/queue/private/auth {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
",
            port = self.smtpd_port
        );
        fs::write(self.path("dovecot.conf"), conf).expect("write dovecot.conf");
    }

    fn start_sink(&mut self, port: u16) {
        let template = format!("{}/sink/%H%M%S.", self.dir.path().display());
        let sink = Command::new(tool("smtp-sink"))
            .args(["-u", "nobody", "-d", &template])
            .arg(format!("127.0.0.1:{port}"))
            .arg("100")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn smtp-sink");
        self.sink = Some(sink);
        assert!(
            wait_until(START_TIMEOUT, || port_open(port)),
            "smtp-sink does not listen on {port}"
        );
    }

    fn postfix_command(&self, action: &str) -> Output {
        Command::new(tool("postfix"))
            .arg("-c")
            .arg(self.path("conf"))
            .arg(action)
            .stdin(Stdio::null())
            .output()
            .expect("run postfix")
    }

    fn start_postfix(&mut self) {
        let output = self.postfix_command("start");
        self.started = output.status.success();
        assert!(
            self.started,
            "postfix start failed ({}): {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.maillog()
        );
    }

    fn start_dovecot(&mut self) {
        let dovecot = Command::new(tool("dovecot"))
            .arg("-F")
            .arg("-c")
            .arg(self.path("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.path("dovecot.err")).expect("create dovecot.err"))
            .spawn()
            .expect("spawn dovecot");
        self.dovecot = Some(dovecot);
        let socket = self.path("queue/private/auth");
        assert!(
            wait_until(START_TIMEOUT, || socket.exists()),
            "Dovecot did not create its auth socket:\n{}\n{}",
            tail(&self.path("dovecot.err"), 20),
            tail(&self.path("dovecot.log"), 20)
        );
    }

    /// `127.0.0.1:PORT` of smtpd.
    pub fn smtp_addr(&self) -> String {
        format!("127.0.0.1:{}", self.smtpd_port)
    }

    /// Postfix's log so far.
    pub fn maillog(&self) -> String {
        fs::read_to_string(self.path("maillog")).unwrap_or_default()
    }

    /// Submits one mail with `swaks --server <smtpd> <args>` and returns swaks' transcript.
    ///
    /// # Panics
    ///
    /// When swaks fails (the server refused or temp-failed a command).
    pub fn swaks(&self, args: &[&str]) -> String {
        let output = Command::new(tool("swaks"))
            .arg("--server")
            .arg(self.smtp_addr())
            .args(["--timeout", "60"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run swaks");
        let transcript = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "swaks {args:?} failed ({}):\n{transcript}\n{}\n--- maillog ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.maillog()
        );
        transcript
    }

    /// Waits until Postfix has relayed `count` mails to the sink, and returns what the sink dumped,
    /// oldest first. Each dump starts with smtp-sink's `X-Client-Addr:`-style envelope lines, then
    /// the message as received.
    ///
    /// # Panics
    ///
    /// When Postfix defers or bounces a mail, or fewer arrive within [`DELIVERY_TIMEOUT`].
    pub fn delivered(&self, count: usize) -> Vec<String> {
        let arrived = wait_until(DELIVERY_TIMEOUT, || {
            let log = self.maillog();
            assert!(
                !log.contains("status=deferred") && !log.contains("status=bounced"),
                "Postfix could not relay a mail to the sink:\n{log}"
            );
            log.matches("status=sent").count() >= count
        });
        assert!(
            arrived,
            "fewer than {count} mails reached the sink:\n{}",
            self.maillog()
        );
        self.sink_mails()
    }

    /// Every mail the sink has dumped so far, oldest first (as [`Postfix::delivered`] returns
    /// them), without waiting.
    ///
    /// # Panics
    ///
    /// When the sink directory cannot be read.
    pub fn sink_mails(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.path("sink"))
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

    /// Waits up to `timeout` for a mail in the sink that `matches`, and returns it once its dump
    /// has stopped growing. `what` names it in the failure message, which holds the tail of the
    /// maillog.
    ///
    /// # Panics
    ///
    /// When none arrives in time, or Postfix bounces a mail meanwhile.
    pub fn wait_for_mail(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let mut found: Option<String> = None;
        let arrived = wait_until(timeout, || {
            let log = self.maillog();
            assert!(
                !log.contains("status=bounced"),
                "Postfix bounced a mail while waiting for {what}:\n{}",
                tail(&self.path("maillog"), 40)
            );
            let now = self.sink_mails().into_iter().find(|mail| matches(mail));
            // A dump is written while the mail arrives: take it when two looks agree.
            let settled = now.is_some() && now == found;
            found = now;
            settled
        });
        match found {
            Some(mail) if arrived => mail,
            _ => panic!(
                "no {what} reached the sink within {timeout:?}; Postfix maillog (last 40 lines):\n{}",
                tail(&self.path("maillog"), 40)
            ),
        }
    }

    /// The instance's directory (config, queue, logs, sink dumps).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- Postfix maillog (last 40 lines) ---\n{}",
                tail(&self.path("maillog"), 40)
            );
        }
        if self.started {
            let _ = self.postfix_command("stop");
        }
        if let Some(dovecot) = self.dovecot.as_mut() {
            stop_child(dovecot, Duration::from_secs(5));
        }
        if let Some(sink) = self.sink.as_mut() {
            let _ = sink.kill();
            let _ = sink.wait();
        }
    }
}
