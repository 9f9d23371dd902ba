//! A private Postfix instance with Dovecot SASL that relays everything to an `smtp-sink`, all in
//! one tempdir on their own ports: the MTA that calls the milter in the end-to-end tests.
//!
//! Order matters: the sink first (Postfix relays to it), then Postfix, then Dovecot (its auth
//! socket lives in Postfix's queue directory), and only once that socket exists may anything
//! connect to smtpd: an smtpd that finds no SASL server dies, and master then throttles the service
//! for a minute.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    free_port, port_open, run_ok, shared_tempdir, stop_child, swaks, tail, tool, wait_until, Sink,
};

/// How long Postfix and Dovecot may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a submitted mail may take to reach the sink.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The milter socket in contrib/postfix/main.cf.snippet, replaced by the test milter's.
const CONTRIB_MILTER: &str = "inet:127.0.0.1:8890";

/// The reply domain in contrib/postfix/replies.cf.snippet and transport, replaced by the test's.
const CONTRIB_REPLY_DOMAIN: &str = "reply.example.com";

/// The DKIM signer's socket in the example of contrib/postfix/main.cf.snippet, replaced by the
/// test signer's.
const CONTRIB_DKIM_MILTER: &str = "inet:127.0.0.1:8891";

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
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
";

/// What an instance has besides smtpd with the CHmail milter.
#[derive(Default)]
struct Extras<'a> {
    /// chatd's reply domain, routed to its listener.
    route: Option<&'a ReplyRoute>,
    /// A DKIM signer milter on 127.0.0.1, chained after CHmail, and the submission service.
    dkim_port: Option<u16>,
}

/// Postfix + Dovecot + smtp-sink; dropping it stops all three.
pub struct Postfix {
    dir: TempDir,
    smtpd_port: u16,
    submission_port: Option<u16>,
    sink: Option<Sink>,
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
        Self::start_with(milter_port, users, &Extras::default())
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
        let extras = Extras {
            route: Some(route),
            ..Extras::default()
        };
        Self::start_with(milter_port, users, &extras)
    }

    /// Like [`Postfix::start`], as a mail server that also signs DKIM: the milters are chained as
    /// the example at the end of contrib/postfix/main.cf.snippet shows, CHmail first and the DKIM
    /// signer on 127.0.0.1:`dkim_port` second; and users submit through the submission service of
    /// contrib/postfix/master.cf.snippet (STARTTLS with a fresh self-signed certificate, then
    /// AUTH), with [`Postfix::submit`]. Callers also `require!` openssl.
    ///
    /// # Panics
    ///
    /// As [`Postfix::start`], and when the certificate cannot be made.
    pub fn start_with_dkim(milter_port: u16, dkim_port: u16, users: &[(&str, &str)]) -> Self {
        let extras = Extras {
            dkim_port: Some(dkim_port),
            ..Extras::default()
        };
        Self::start_with(milter_port, users, &extras)
    }

    fn start_with(milter_port: u16, users: &[(&str, &str)], extras: &Extras) -> Self {
        // Postfix's and Dovecot's unprivileged users must reach the queue and the sink.
        let dir = shared_tempdir("chmail-postfix.");
        let mut postfix = Self {
            smtpd_port: free_port(),
            submission_port: extras.dkim_port.map(|_| free_port()),
            dir,
            sink: None,
            dovecot: None,
            started: false,
        };
        let sink = postfix.sink.insert(Sink::start(&postfix.path("sink")));
        let sink_port = sink.port();
        postfix.write_postfix_config(sink_port, milter_port, extras);
        postfix.write_dovecot_config(users);
        postfix.start_postfix();
        postfix.start_dovecot();
        for port in std::iter::once(postfix.smtpd_port).chain(postfix.submission_port) {
            assert!(
                wait_until(START_TIMEOUT, || port_open(port)),
                "smtpd does not listen on {port}:\n{}",
                postfix.maillog()
            );
        }
        postfix
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_postfix_config(&self, sink_port: u16, milter_port: u16, extras: &Extras) {
        let root = self.dir.path().display();
        // data/ is left to Postfix, which must own it; sink/ is the sink's.
        for sub in ["conf", "queue"] {
            fs::create_dir(self.path(sub)).expect("mkdir");
        }
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
        let milter = format!("inet:127.0.0.1:{milter_port}");
        let snippet = match extras.dkim_port {
            // As the snippet says: its chain replaces the two lines with CHmail alone.
            Some(dkim_port) => {
                let chain = dkim_chain(&snippet)
                    .replace(CONTRIB_DKIM_MILTER, &format!("inet:127.0.0.1:{dkim_port}"));
                without_milter_lines(&snippet) + &chain
            }
            None => snippet,
        };
        let mut main_cf = main_cf + &snippet.replace(CONTRIB_MILTER, &milter);
        if let Some(route) = extras.route {
            main_cf.push_str(&self.write_reply_route(route));
        }
        if extras.dkim_port.is_some() {
            main_cf.push_str(&self.write_certificate());
        }
        fs::write(self.path("conf/main.cf"), main_cf).expect("write main.cf");
        if extras.route.is_some() {
            self.postmap_transport();
        }
        let listen = format!("127.0.0.1:{}", self.smtpd_port);
        let mut master_cf = MASTER_CF.replacen("SMTPD", &listen, 1);
        if let Some(port) = self.submission_port {
            master_cf.push_str(&submission_service(port));
        }
        fs::write(self.path("conf/master.cf"), master_cf).expect("write master.cf");
    }

    /// Makes a self-signed certificate for smtpd's STARTTLS and returns the main.cf line naming
    /// it (the submission service of contrib/postfix/master.cf.snippet requires TLS).
    fn write_certificate(&self) -> String {
        let (key, cert) = (self.path("conf/tls.key"), self.path("conf/tls.crt"));
        run_ok(
            Command::new(tool("openssl"))
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
                .args(["-subj", "/CN=mx.example.test", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        format!(
            "smtpd_tls_chain_files = {}, {}\n",
            key.display(),
            cert.display()
        )
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
        run_ok(
            Command::new(tool("postmap"))
                .arg("-c")
                .arg(self.path("conf"))
                .arg(format!("hash:{}", map.display())),
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

    /// Submits one mail through the submission service ([`Postfix::start_with_dkim`]) with
    /// `swaks --tls <args>`, and returns swaks' transcript.
    ///
    /// # Panics
    ///
    /// When the instance has no submission service, or swaks fails.
    pub fn submit(&self, args: &[&str]) -> String {
        let port = self
            .submission_port
            .expect("the instance has a submission service (start_with_dkim)");
        let submission = swaks(&format!("127.0.0.1:{port}"), &[&["--tls"], args].concat());
        assert!(
            submission.accepted,
            "swaks --tls {args:?} failed on the submission port:\n{}\n--- maillog ---\n{}",
            submission.transcript,
            self.maillog()
        );
        submission.transcript
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
        let submission = swaks(&self.smtp_addr(), args);
        assert!(
            submission.accepted,
            "swaks {args:?} failed:\n{}\n--- maillog ---\n{}",
            submission.transcript,
            self.maillog()
        );
        submission.transcript
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
        self.sink.as_ref().map(Sink::mails).unwrap_or_default()
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

/// The lines that chain a DKIM signer after CHmail, from the commented example at the end of
/// contrib/postfix/main.cf.snippet (`#   smtpd_milters = ...`), uncommented.
///
/// # Panics
///
/// When the snippet has no such example, or it does not name both milters.
fn dkim_chain(snippet: &str) -> String {
    let lines: Vec<&str> = snippet
        .lines()
        .filter_map(|line| line.strip_prefix("#   "))
        .filter(|line| {
            line.starts_with("smtpd_milters =") || line.starts_with("non_smtpd_milters =")
        })
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "contrib/postfix/main.cf.snippet shows smtpd_milters and non_smtpd_milters for a DKIM signer"
    );
    let chain = lines[0];
    let (chmail, dkim) = (chain.find(CONTRIB_MILTER), chain.find(CONTRIB_DKIM_MILTER));
    assert!(
        matches!((chmail, dkim), (Some(c), Some(d)) if c < d),
        "the example lists {CONTRIB_MILTER} before {CONTRIB_DKIM_MILTER}: {chain}"
    );
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// `snippet` without its (uncommented) smtpd_milters and non_smtpd_milters lines.
fn without_milter_lines(snippet: &str) -> String {
    snippet
        .lines()
        .filter(|line| {
            !line.starts_with("smtpd_milters =") && !line.starts_with("non_smtpd_milters =")
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The submission service of contrib/postfix/master.cf.snippet, listening on 127.0.0.1:`port`
/// and without chroot (the instance lives in a tempdir).
///
/// # Panics
///
/// When the snippet has no `submission inet` service.
fn submission_service(port: u16) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/postfix/master.cf.snippet"
    );
    let snippet = fs::read_to_string(path).unwrap_or_else(|err| panic!("read {path}: {err}"));
    let mut service = String::new();
    let mut found = false;
    for line in snippet.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if line.starts_with("submission ") {
            // service type private unpriv chroot wakeup maxproc command
            let mut fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            assert_eq!(
                fields.len(),
                8,
                "a master.cf service line has 8 fields: {line}"
            );
            fields[0] = format!("127.0.0.1:{port}");
            fields[4] = "n".to_owned();
            service.push_str(&fields.join(" "));
            found = true;
        } else {
            service.push_str(line);
        }
        service.push('\n');
    }
    assert!(found, "{path} has a submission service");
    service
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
        // The sink stops when dropped, after Postfix.
        self.sink.take();
    }
}
