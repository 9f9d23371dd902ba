//! `bench milter`: the milter alone, without an MTA. The bench is the MTA: it speaks the milter
//! protocol (indymilter's message types, over sockets with `TCP_NODELAY`) over `--connections` parallel connections, each sending
//! mail after mail as Postfix does for authenticated submissions (the connect macros, then per
//! mail `{auth_authen}` of one of `--logins` logins, MAIL FROM, RCPT TO, the header block and
//! end-of-message), to the CHmail milter over SQLite and over PostgreSQL, and to the no-op
//! milter (`noop`) that adds the same two fields with no work. The figures: mails per second, the
//! end-of-message round trip (where CHmail does its work: the store, the signature) at the 50th
//! and 99th percentile, and each case's ratio to the no-op milter at the same connections.
//!
//! Every login sends a mail before the measurement, so the measured mails are the common case: a
//! login that holds its port already. Every measured mail must come back with the two fields
//! added, or the run fails.

use std::{
    collections::HashMap,
    ffi::CString,
    net::{IpAddr, Ipv4Addr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use chmail_tests::{Milter, MilterOptions, PgSchema, TestDns, SIGNING_DOMAIN};
use indymilter::{
    message::{
        self,
        command::{
            Command, ConnInfoPayload, EnvAddrPayload, HeaderPayload, MacroPayload, OptNegPayload,
        },
        reply::Reply,
        PROTOCOL_VERSION,
    },
    Actions, MacroStage, ProtoOpts, SocketInfo,
};
use tokio::{
    io::{AsyncWriteExt as _, BufStream},
    net::TcpStream,
    runtime::Runtime,
};

use crate::{noop, unknown, value};

/// The recipient of every mail.
const TO: &str = "bob@remote.test";
/// The client the MTA reports in the connect stage: known by name, so CHmail looks nothing up.
const CLIENT_NAME: &str = "client.example.test";
/// The client's address.
const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 25);
/// The MTA's host name (macro `j`).
const MTA_HOST: &str = "mx.example.test";
/// Body bytes of each mail (sent only to a milter that asks for bodies; CHmail without the
/// footer and the no-op milter do not).
const BODY: usize = 2_048;
/// Mails after the logins' first ones and before the measurement: connections and the store warm.
const WARMUP_MAILS: usize = 500;
/// Longest wait for one reply of the milter.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Threads of the no-op milter's runtime: as many as the CHmail milter's (tokio's default, one
/// per core, on the bench machine two).
const NOOP_THREADS: usize = 2;

/// The options of `bench milter`.
#[derive(Debug)]
pub struct Options {
    /// Measured mails per case, connection count and round.
    mails: usize,
    /// The connection counts, each measured in turn.
    connections: Vec<usize>,
    /// Distinct logins the mails are sent as, in turn.
    logins: usize,
    /// Rounds over all cases; each figure is the median of the rounds.
    rounds: usize,
    /// Leave out PostgreSQL even when it answers.
    no_postgres: bool,
}

impl Options {
    /// Parses the arguments after `milter`.
    ///
    /// # Errors
    ///
    /// An unknown argument or a bad number.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            mails: 10_000,
            connections: vec![10, 100],
            logins: 50,
            rounds: 1,
            no_postgres: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--mails" => options.mails = value(arg, args.next())?,
                "--connections" => {
                    let list = args.next().ok_or("--connections needs a value")?;
                    options.connections = list
                        .split(',')
                        .map(|n| n.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| format!("--connections {list:?} is not a list of numbers"))?;
                }
                "--logins" => options.logins = value(arg, args.next())?,
                "--rounds" => options.rounds = value(arg, args.next())?,
                "--no-postgres" => options.no_postgres = true,
                other => return Err(unknown(other)),
            }
        }
        if options.mails == 0
            || options.logins == 0
            || options.rounds == 0
            || options.connections.is_empty()
            || options.connections.contains(&0)
        {
            return Err(
                "--mails, --logins, --rounds and each of --connections must be at least 1".into(),
            );
        }
        Ok(options)
    }
}

/// One milter under load.
struct Case {
    name: &'static str,
    port: u16,
    /// Per connection count: mails/s of each round, and every measured end-of-message time.
    runs: HashMap<usize, (Vec<f64>, Vec<Duration>)>,
}

impl Case {
    fn new(name: &'static str, port: u16) -> Self {
        Self {
            name,
            port,
            runs: HashMap::new(),
        }
    }

    /// The median mails/s over the rounds at `connections`.
    fn rate(&self, connections: usize) -> f64 {
        let Some((rates, _)) = self.runs.get(&connections) else {
            return 0.0;
        };
        let mut rates = rates.clone();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied().unwrap_or(0.0)
    }

    /// The `q` quantile (0..=1) of the end-of-message times at `connections`, in milliseconds.
    fn eom_ms(&self, connections: usize, q: f64) -> f64 {
        let Some((_, times)) = self.runs.get(&connections) else {
            return 0.0;
        };
        let mut times = times.clone();
        times.sort_unstable();
        // Rounding a quantile to an index of a list far below 2^52 entries.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let index = ((times.len().saturating_sub(1)) as f64 * q).round() as usize;
        times.get(index).map_or(0.0, |t| t.as_secs_f64() * 1_000.0)
    }
}

/// Runs `bench milter` and prints its table.
///
/// # Errors
///
/// When a milter cannot be started, a connection fails, or a mail comes back without the two
/// fields.
pub fn run(options: &Options) -> Result<(), String> {
    let load = Runtime::new().map_err(|err| format!("runtime: {err}"))?;
    let noop_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(NOOP_THREADS)
        .enable_all()
        .build()
        .map_err(|err| format!("runtime: {err}"))?;
    let noop_port = noop_runtime
        .block_on(noop::start(noop::CHMAIL_FIELDS))
        .map_err(|err| format!("no-op milter: {err}"))?;
    let dns = TestDns::start(Vec::<(String, String)>::new());
    let chmail_options = MilterOptions {
        log: Some("info".into()),
        ..Default::default()
    };
    let (sqlite, _) = Milter::start_with_dns(&dns, chmail_options.clone());
    let schema = if options.no_postgres {
        None
    } else {
        match load.block_on(PgSchema::create()) {
            Ok(schema) => Some(schema),
            Err(why) => {
                println!("PostgreSQL left out: {why}");
                None
            }
        }
    };
    let postgres = schema.as_ref().map(|schema| {
        let options = MilterOptions {
            store_url: Some(schema.url()),
            ..chmail_options
        };
        Milter::start_with_dns(&dns, options).0
    });

    let mut cases = vec![
        Case::new("no-op milter", noop_port),
        Case::new("CHmail (SQLite)", sqlite.port()),
    ];
    if let Some(milter) = &postgres {
        cases.push(Case::new("CHmail (PostgreSQL)", milter.port()));
    }
    println!(
        "bench milter: {} mails per case, {} logins, connections {:?}, {} round(s)",
        options.mails, options.logins, options.connections, options.rounds
    );
    let sent = AtomicUsize::new(0);
    for round in 1..=options.rounds {
        for &connections in &options.connections {
            for case in &mut cases {
                let warm = Load {
                    port: case.port,
                    connections,
                    mails: options.logins + WARMUP_MAILS,
                    logins: options.logins,
                };
                load.block_on(warm.run(&sent))?;
                let measured = Load {
                    mails: options.mails,
                    ..warm
                };
                let start = Instant::now();
                let times = load.block_on(measured.run(&sent))?;
                let rate = per_second(options.mails, start.elapsed());
                println!(
                    "round {round}: {:<20} {connections:>4} connections {rate:>9.1} mails/s",
                    case.name
                );
                let run = case.runs.entry(connections).or_default();
                run.0.push(rate);
                run.1.extend(times);
            }
        }
    }
    print_table(&cases, &options.connections);
    drop(postgres);
    drop(schema);
    Ok(())
}

/// Mails to send over parallel connections to one milter.
#[derive(Clone, Copy)]
struct Load {
    port: u16,
    connections: usize,
    mails: usize,
    logins: usize,
}

impl Load {
    /// Sends the mails; returns each one's end-of-message time. `sent` numbers the mails across
    /// runs, so that each has its own queue id and Message-ID.
    async fn run(self, sent: &AtomicUsize) -> Result<Vec<Duration>, String> {
        let next = Arc::new(AtomicUsize::new(0));
        let first = sent.fetch_add(self.mails, Ordering::Relaxed);
        let mut tasks = Vec::new();
        for _ in 0..self.connections {
            let next = next.clone();
            tasks.push(tokio::spawn(async move {
                let mut connection = Connection::open(self.port).await?;
                let mut times = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= self.mails {
                        break;
                    }
                    let login = format!("user{:02}", n % self.logins);
                    times.push(connection.mail(&login, first + n).await?);
                }
                connection.close().await?;
                Ok::<_, String>(times)
            }));
        }
        let mut times = Vec::with_capacity(self.mails);
        for task in tasks {
            times.extend(
                task.await
                    .map_err(|err| format!("a connection failed: {err}"))??,
            );
        }
        Ok(times)
    }
}

/// One milter connection, as an MTA holds it: indymilter's message types over a buffered
/// socket with `TCP_NODELAY`, each command written in one piece. (indymilter-test's client cannot
/// set `TCP_NODELAY`: a command the milter does not answer (macros, or a header under
/// `NOREPLY_HEADER`) followed by one it answers then waits for the milter's delayed ACK, about
/// 40 ms, which would be all the figures showed.)
struct Connection {
    stream: BufStream<TcpStream>,
    /// The protocol options the milter asked for.
    opts: ProtoOpts,
    /// The macro names the milter asked for, per stage.
    wanted: HashMap<MacroStage, Vec<String>>,
    body: Vec<u8>,
}

impl Connection {
    /// Connects, negotiates and sends the connect stage.
    async fn open(port: u16) -> Result<Self, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|err| format!("connect to the milter on port {port}: {err}"))?;
        stream
            .set_nodelay(true)
            .map_err(|err| format!("TCP_NODELAY: {err}"))?;
        let mut connection = Self {
            stream: BufStream::new(stream),
            opts: ProtoOpts::empty(),
            wanted: HashMap::new(),
            body: format!("{}\r\n", "x".repeat(70))
                .repeat(BODY / 72)
                .into_bytes(),
        };
        connection
            .send(Command::OptNeg(OptNegPayload {
                version: PROTOCOL_VERSION,
                actions: Actions::all(),
                opts: ProtoOpts::all(),
            }))
            .await?;
        let Reply::OptNeg { opts, macros, .. } = connection.reply().await? else {
            return Err("the milter did not answer the negotiation".into());
        };
        connection.opts = opts;
        connection.wanted = macros
            .iter()
            .map(|(stage, names)| {
                let names = String::from_utf8_lossy(names.as_bytes())
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                (*stage, names)
            })
            .collect();
        connection.macros(MacroStage::Connect, &[]).await?;
        if !connection.opts.contains(ProtoOpts::NO_CONNECT) {
            let info = ConnInfoPayload {
                hostname: c_string(CLIENT_NAME)?,
                socket_info: SocketInfo::Inet((IpAddr::V4(CLIENT_ADDR), 54_321).into()),
            };
            connection
                .stage(
                    "connect",
                    Command::ConnInfo(info),
                    ProtoOpts::NOREPLY_CONNECT,
                )
                .await?;
        }
        Ok(connection)
    }

    /// Writes one command in one piece.
    async fn send(&mut self, command: Command) -> Result<(), String> {
        message::write(&mut self.stream, command.into_message())
            .await
            .map_err(|err| format!("write to the milter: {err}"))
    }

    /// Reads one reply.
    async fn reply(&mut self) -> Result<Reply, String> {
        let msg = tokio::time::timeout(REPLY_TIMEOUT, message::read(&mut self.stream))
            .await
            .map_err(|_| format!("no reply within {REPLY_TIMEOUT:?}"))?
            .map_err(|err| format!("read from the milter: {err}"))?;
        Reply::parse_reply(msg).map_err(|err| format!("a reply that does not parse: {err}"))
    }

    /// Sends the command of a stage and, unless `noreply` was negotiated, waits for its reply,
    /// which must say go on.
    async fn stage(
        &mut self,
        what: &str,
        command: Command,
        noreply: ProtoOpts,
    ) -> Result<(), String> {
        self.send(command).await?;
        if self.opts.contains(noreply) {
            return Ok(());
        }
        match self.reply().await? {
            Reply::Continue | Reply::Accept => Ok(()),
            other => Err(format!("the milter answered {other:?} at {what}")),
        }
    }

    /// Sends the macros of `stage` that the milter asked for; `extra` adds values for this mail.
    async fn macros(&mut self, stage: MacroStage, extra: &[(&str, &str)]) -> Result<(), String> {
        let Some(names) = self.wanted.get(&stage) else {
            return Ok(());
        };
        let client_addr = CLIENT_ADDR.to_string();
        let mut macros = Vec::new();
        for name in names {
            let value = match name.as_str() {
                "{client_addr}" => client_addr.as_str(),
                "{client_name}" => CLIENT_NAME,
                "j" => MTA_HOST,
                "_" => "client.example.test [192.0.2.25]",
                other => match extra.iter().find(|(n, _)| *n == other) {
                    Some((_, value)) => value,
                    None => continue,
                },
            };
            macros.push(c_string(name)?);
            macros.push(c_string(value)?);
        }
        if macros.is_empty() {
            return Ok(());
        }
        self.send(Command::DefMacros(MacroPayload { stage, macros }))
            .await
    }

    /// Sends mail number `n` as `login`; returns its end-of-message time.
    async fn mail(&mut self, login: &str, n: usize) -> Result<Duration, String> {
        let queue_id = format!("B{n:09X}");
        let from = format!("{login}@{SIGNING_DOMAIN}");
        self.macros(
            MacroStage::Mail,
            &[("i", &queue_id), ("{auth_authen}", login)],
        )
        .await?;
        if !self.opts.contains(ProtoOpts::NO_MAIL) {
            let args = vec![c_string(&format!("<{from}>"))?];
            self.stage(
                "MAIL FROM",
                Command::Mail(EnvAddrPayload { args }),
                ProtoOpts::NOREPLY_MAIL,
            )
            .await?;
        }
        if !self.opts.contains(ProtoOpts::NO_RCPT) {
            let args = vec![c_string(&format!("<{TO}>"))?];
            self.stage(
                "RCPT TO",
                Command::Rcpt(EnvAddrPayload { args }),
                ProtoOpts::NOREPLY_RCPT,
            )
            .await?;
        }
        if !self.opts.contains(ProtoOpts::NO_DATA) {
            self.stage("DATA", Command::Data, ProtoOpts::NOREPLY_DATA)
                .await?;
        }
        if !self.opts.contains(ProtoOpts::NO_HEADER) {
            let headers = [
                ("From", format!("User <{from}>")),
                ("To", format!("Bob <{TO}>")),
                ("Subject", "CHmail benchmark".to_owned()),
                ("Message-ID", format!("<{n}.bench@{SIGNING_DOMAIN}>")),
                ("Date", "Mon, 7 Dec 2026 01:00:00 +0000".to_owned()),
                ("MIME-Version", "1.0".to_owned()),
                ("Content-Type", "text/plain; charset=us-ascii".to_owned()),
            ];
            for (name, value) in headers {
                let header = HeaderPayload {
                    name: c_string(name)?,
                    value: c_string(&value)?,
                };
                self.stage("header", Command::Header(header), ProtoOpts::NOREPLY_HEADER)
                    .await?;
            }
        }
        if !self.opts.contains(ProtoOpts::NO_EOH) {
            self.stage("end of headers", Command::Eoh, ProtoOpts::NOREPLY_EOH)
                .await?;
        }
        if !self.opts.contains(ProtoOpts::NO_BODY) {
            self.send(Command::BodyChunk(self.body.clone().into()))
                .await?;
            if !self.opts.contains(ProtoOpts::NOREPLY_BODY) {
                match self.reply().await? {
                    Reply::Continue | Reply::Accept | Reply::Skip => {}
                    other => return Err(format!("the milter answered {other:?} to the body")),
                }
            }
        }
        self.macros(MacroStage::Eom, &[("i", &queue_id)]).await?;
        let start = Instant::now();
        self.send(Command::BodyEnd(Default::default())).await?;
        let mut added = Vec::new();
        loop {
            match self.reply().await? {
                Reply::AddHeader { name, .. } => added.push(name),
                Reply::Continue | Reply::Accept => break,
                Reply::Progress => {}
                other => return Err(format!("the milter answered {other:?} at end of message")),
            }
        }
        let took = start.elapsed();
        for (name, _) in noop::CHMAIL_FIELDS {
            if !added.iter().any(|a| a.as_bytes() == name.as_bytes()) {
                return Err(format!(
                    "mail {queue_id} of {login} came back without a {name} field (added: {added:?})"
                ));
            }
        }
        Ok(took)
    }

    /// Ends the connection as an MTA does.
    async fn close(mut self) -> Result<(), String> {
        self.send(Command::Quit).await?;
        self.stream
            .shutdown()
            .await
            .map_err(|err| format!("close: {err}"))
    }
}

/// `text` for the protocol, which cannot carry NUL bytes.
fn c_string(text: &str) -> Result<CString, String> {
    CString::new(text).map_err(|_| format!("{text:?} holds a NUL byte"))
}

fn per_second(mails: usize, took: Duration) -> f64 {
    // Mail counts are far below 2^52: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let mails = mails as f64;
    mails / took.as_secs_f64().max(f64::EPSILON)
}

/// Prints each case's figures per connection count, with its ratio to the no-op milter.
fn print_table(cases: &[Case], connections: &[usize]) {
    println!(
        "\n{:<20} {:>11} {:>9} {:>11} {:>11} {:>9}",
        "case", "connections", "mails/s", "eom p50 ms", "eom p99 ms", "vs no-op"
    );
    for &n in connections {
        let noop = cases
            .iter()
            .find(|case| case.name == "no-op milter")
            .map_or(0.0, |case| case.rate(n));
        for case in cases {
            let rate = case.rate(n);
            let ratio = if noop > 0.0 {
                format!("{:.2}", rate / noop)
            } else {
                "-".to_owned()
            };
            println!(
                "{:<20} {n:>11} {rate:>9.1} {:>11.2} {:>11.2} {ratio:>9}",
                case.name,
                case.eom_ms(n, 0.5),
                case.eom_ms(n, 0.99),
            );
        }
    }
}
