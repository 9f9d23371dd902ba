//! `bench mta`: how much each milter slows Postfix down. Postfix's `smtp-source` sends the same
//! mail `--mails` times over `--sessions` parallel SMTP sessions (one mail per session, as
//! submissions come) to a private Postfix that relays to `smtp-sink`; the figure is mails per
//! second accepted (until `smtp-source` is done) and delivered (until the sink has them all),
//! for each set of milters in turn on the same instance (`postconf -e` and `postfix reload`
//! between them).
//!
//! `smtp-source` cannot log in, so the CHmail milter signs through `[milter] trusted_networks`
//! (127.0.0.0/8) and a From in its signing domain (`sender_login` in milter/src/policy.rs): the
//! same signing work as for an authenticated submission. A sample of each case's delivered mail
//! is checked for the milter's header, so a milter that silently let mail through would show.

use std::{
    fs,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use chmail_tests::{
    check_tools, header_values, run_ok, tempdir, tool, Milter, MilterOptions, OpenDkim, PgSchema,
    Postfix, TestDns, SIGNING_DOMAIN,
};

use crate::{noop, unknown, value};

/// The sender: in the signing domain, so CHmail signs and OpenDKIM signs.
const FROM: &str = "alice@example.test";
/// The recipient: relayed to the sink.
const TO: &str = "bob@remote.test";
/// What `smtp-source` says in HELO.
const HELO: &str = "client.example.test";
/// A SASL user for the instance's Dovecot; the load does not log in (see the module doc).
const USERS: &[(&str, &str)] = &[("alice", "bench-password")];
/// Mails sent before each measurement and not counted: they start smtpd processes and the
/// milter connections' first work (the store's first transaction, OpenDKIM's key).
const WARMUP_MAILS: usize = 200;
/// How long the newly configured smtpd processes take to replace the old ones after a reload.
const RELOAD_SETTLE: Duration = Duration::from_secs(2);
/// The longest a round of one case may take to reach the sink after `smtp-source` is done.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);
/// Line length of the generated body (RFC 5322 recommends at most 78).
const BODY_LINE: usize = 72;

/// The options of `bench mta`.
#[derive(Debug)]
pub struct Options {
    /// Mails per case and round.
    mails: usize,
    /// Parallel SMTP sessions.
    sessions: usize,
    /// Body bytes per mail.
    size: usize,
    /// Rounds over all cases; each case's figure is its median.
    rounds: usize,
    /// Also CHmail over PostgreSQL (`CHMAIL_TEST_POSTGRES_URL` or the tests' default).
    postgres: bool,
}

impl Options {
    /// Parses the arguments after `mta`.
    ///
    /// # Errors
    ///
    /// An unknown argument or a bad number.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            mails: 5_000,
            sessions: 20,
            size: 2_048,
            rounds: 1,
            postgres: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--mails" => options.mails = value(arg, args.next())?,
                "--sessions" => options.sessions = value(arg, args.next())?,
                "--size" => options.size = value(arg, args.next())?,
                "--rounds" => options.rounds = value(arg, args.next())?,
                "--postgres" => options.postgres = true,
                other => return Err(unknown(other)),
            }
        }
        if options.mails == 0 || options.sessions == 0 || options.rounds == 0 {
            return Err("--mails, --sessions and --rounds must be at least 1".into());
        }
        Ok(options)
    }
}

/// One set of milters Postfix calls, in order.
struct Case {
    name: &'static str,
    /// The milters' ports on 127.0.0.1.
    milters: Vec<u16>,
    /// Header fields every delivered mail of this case has.
    marks: &'static [&'static str],
    /// Accepted and delivered mails per second, one pair per round.
    rates: Vec<(f64, f64)>,
}

impl Case {
    fn new(name: &'static str, milters: Vec<u16>, marks: &'static [&'static str]) -> Self {
        Self {
            name,
            milters,
            marks,
            rates: Vec::new(),
        }
    }

    /// The median accepted and delivered rates over the rounds.
    fn median(&self) -> (f64, f64) {
        let pick = |part: fn(&(f64, f64)) -> f64| {
            let mut all: Vec<f64> = self.rates.iter().map(part).collect();
            all.sort_by(f64::total_cmp);
            all.get(all.len() / 2).copied().unwrap_or(0.0)
        };
        (pick(|r| r.0), pick(|r| r.1))
    }
}

/// Runs `bench mta` and prints its table.
///
/// # Errors
///
/// When a peer is missing, a tool fails, or a case's mail lacks its milter's header.
pub fn run(options: &Options) -> Result<(), String> {
    check_tools(&[
        "root",
        "postfix",
        "postconf",
        "dovecot",
        "smtp-source",
        "smtp-sink",
        "opendkim",
        "opendkim-genkey",
    ])?;
    let runtime = tokio::runtime::Runtime::new().map_err(|err| format!("runtime: {err}"))?;
    let noop_port = runtime
        .block_on(noop::start(&[]))
        .map_err(|err| format!("no-op milter: {err}"))?;
    let dns = TestDns::start(Vec::<(String, String)>::new());
    let chmail_options = MilterOptions {
        trusted_networks: vec!["127.0.0.0/8".into()],
        log: Some("info".into()),
        ..Default::default()
    };
    let (chmail, _) = Milter::start_with_dns(&dns, chmail_options.clone());
    let schema = if options.postgres {
        Some(runtime.block_on(PgSchema::create())?)
    } else {
        None
    };
    let chmail_pg = schema.as_ref().map(|schema| {
        let options = MilterOptions {
            store_url: Some(schema.url()),
            ..chmail_options
        };
        Milter::start_with_dns(&dns, options).0
    });
    let opendkim = OpenDkim::start(SIGNING_DOMAIN);
    let postfix = Postfix::start(noop_port, USERS);
    let files = tempdir("chmail-bench-mta.");
    let message = files.path().join("message.eml");
    fs::write(&message, message_text(options.size)).map_err(|err| format!("message: {err}"))?;

    let mut cases = vec![
        Case::new("no milter", vec![], &[]),
        Case::new("no-op milter", vec![noop_port], &[]),
        Case::new("CHmail (SQLite)", vec![chmail.port()], &["CHmail"]),
    ];
    if let Some(milter) = &chmail_pg {
        cases.push(Case::new(
            "CHmail (PostgreSQL)",
            vec![milter.port()],
            &["CHmail"],
        ));
    }
    cases.push(Case::new(
        "OpenDKIM (RSA 2048)",
        vec![opendkim.port()],
        &["DKIM-Signature"],
    ));
    cases.push(Case::new(
        "CHmail + OpenDKIM",
        vec![chmail.port(), opendkim.port()],
        &["CHmail", "DKIM-Signature"],
    ));

    println!(
        "bench mta: {} mails of {} body bytes, {} sessions, {} round(s)",
        options.mails, options.size, options.sessions, options.rounds
    );
    let mut maillog = Maillog::new(postfix.dir().join("maillog"));
    for round in 1..=options.rounds {
        for case in &mut cases {
            use_milters(&postfix, &case.milters);
            maillog.sent_since_last()?;
            smtp_source(
                &postfix,
                &message,
                WARMUP_MAILS.min(options.mails),
                options.sessions,
            )?;
            maillog.wait_sent(WARMUP_MAILS.min(options.mails))?;
            let start = Instant::now();
            smtp_source(&postfix, &message, options.mails, options.sessions)?;
            let accepted = start.elapsed();
            maillog.wait_sent(options.mails)?;
            let delivered = start.elapsed();
            check_marks(&postfix.dir().join("sink"), case)?;
            let rates = (
                per_second(options.mails, accepted),
                per_second(options.mails, delivered),
            );
            println!(
                "round {round}: {:<22} {:>8.1} accepted/s {:>8.1} delivered/s",
                case.name, rates.0, rates.1
            );
            case.rates.push(rates);
        }
    }
    print_table(&cases);
    drop(postfix);
    drop(runtime);
    Ok(())
}

/// A mail from [`FROM`] to [`TO`] with a body of about `size` bytes, for `smtp-source -F`.
fn message_text(size: usize) -> String {
    let mut text = format!(
        "From: Alice <{FROM}>\nTo: Bob <{TO}>\nSubject: CHmail benchmark\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n"
    );
    let mut left = size;
    while left > 0 {
        // smtp-source sends each line with CRLF: two bytes of each line are the line break.
        let line = left.min(BODY_LINE + 2).saturating_sub(2);
        text.push_str(&"x".repeat(line));
        text.push('\n');
        left = left.saturating_sub(line + 2);
    }
    text
}

/// Makes Postfix call exactly these milters (none for an empty list), as every entry of
/// contrib/postfix says but with `default_action=tempfail`: a milter that fails shows up as
/// failed mail instead of a fast figure.
fn use_milters(postfix: &Postfix, ports: &[u16]) {
    let list = ports
        .iter()
        .map(|port| format!("{{ inet:127.0.0.1:{port}, default_action=tempfail }}"))
        .collect::<Vec<_>>()
        .join(", ");
    let conf = postfix.dir().join("conf");
    run_ok(
        Command::new(tool("postconf"))
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(format!("smtpd_milters = {list}"))
            .arg(format!("non_smtpd_milters = {list}")),
    );
    run_ok(
        Command::new(tool("postfix"))
            .arg("-c")
            .arg(&conf)
            .arg("reload"),
    );
    thread::sleep(RELOAD_SETTLE);
}

/// Sends `mails` copies of `message` over `sessions` parallel sessions and waits for the end.
fn smtp_source(
    postfix: &Postfix,
    message: &Path,
    mails: usize,
    sessions: usize,
) -> Result<(), String> {
    let output = Command::new(tool("smtp-source"))
        .args(["-4", "-s", &sessions.to_string(), "-m", &mails.to_string()])
        .args(["-f", FROM, "-t", TO, "-M", HELO, "-F"])
        .arg(message)
        .arg(postfix.smtp_addr())
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("run smtp-source: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "smtp-source failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Checks that the newest mail in the sink carries `case.marks`.
fn check_marks(sink: &Path, case: &Case) -> Result<(), String> {
    let newest = fs::read_dir(sink)
        .map_err(|err| format!("read {}: {err}", sink.display()))?
        .filter_map(Result::ok)
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .max()
        .map(|(_, path)| path)
        .ok_or("the sink has no mail")?;
    let mail = fs::read_to_string(&newest).map_err(|err| format!("read a mail: {err}"))?;
    for mark in case.marks {
        if header_values(&mail, mark).is_empty() {
            return Err(format!(
                "{}: a delivered mail has no {mark} header:\n{mail}",
                case.name
            ));
        }
    }
    Ok(())
}

fn per_second(mails: usize, took: Duration) -> f64 {
    // Mail counts are far below 2^52: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let mails = mails as f64;
    mails / took.as_secs_f64().max(f64::EPSILON)
}

/// Prints each case's median rates and its ratios to "no milter" and "no-op milter".
fn print_table(cases: &[Case]) {
    let base = |name: &str| {
        cases
            .iter()
            .find(|case| case.name == name)
            .map(|case| case.median().0)
    };
    let (none, noop) = (base("no milter"), base("no-op milter"));
    let ratio = |rate: f64, to: Option<f64>| {
        to.filter(|to| *to > 0.0)
            .map_or_else(|| "-".to_owned(), |to| format!("{:.2}", rate / to))
    };
    println!(
        "\n{:<22} {:>11} {:>12} {:>13} {:>9}",
        "case", "accepted/s", "delivered/s", "vs no milter", "vs no-op"
    );
    for case in cases {
        let (accepted, delivered) = case.median();
        println!(
            "{:<22} {accepted:>11.1} {delivered:>12.1} {:>13} {:>9}",
            case.name,
            ratio(accepted, none),
            ratio(accepted, noop)
        );
    }
    println!("(ratios of accepted/s: the milters run while smtpd holds the SMTP session)");
}

/// Postfix's maillog, read as it grows: counts `status=sent` and stops at a bounce or deferral.
struct Maillog {
    path: PathBuf,
    offset: u64,
    sent: usize,
}

impl Maillog {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            offset: 0,
            sent: 0,
        }
    }

    /// Reads what was logged since the last call; returns how many mails were sent in it.
    fn sent_since_last(&mut self) -> Result<usize, String> {
        let mut file = match fs::File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(format!("open the maillog: {err}")),
        };
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|err| format!("seek the maillog: {err}"))?;
        let mut new = Vec::new();
        file.read_to_end(&mut new)
            .map_err(|err| format!("read the maillog: {err}"))?;
        // Only whole lines: the last one may still be under way.
        let whole = new.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(&new[..whole]);
        if let Some(line) = text
            .lines()
            .find(|line| line.contains("status=bounced") || line.contains("status=deferred"))
        {
            return Err(format!("Postfix did not relay a mail: {line}"));
        }
        let sent = text.matches("status=sent").count();
        self.offset += u64::try_from(whole).unwrap_or(0);
        self.sent += sent;
        Ok(sent)
    }

    /// Waits until `count` more mails than before have been sent.
    fn wait_sent(&mut self, count: usize) -> Result<(), String> {
        let target = self.sent + count;
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.sent < target {
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {count} mails reached the sink within {DRAIN_TIMEOUT:?}",
                    count + self.sent - target
                ));
            }
            thread::sleep(Duration::from_millis(50));
            self.sent_since_last()?;
        }
        Ok(())
    }
}
