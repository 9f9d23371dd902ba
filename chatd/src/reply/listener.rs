//! chatd's SMTP listener for replies by mail (`[reply] listen`). The MTA routes the reply domain
//! here (`contrib/postfix/`); a reply to `<token>@<reply domain>` from the token's participant is
//! posted into the token's room as that participant ([`crate::post`]).
//!
//! # Policy
//!
//! Decided as early in the SMTP dialogue as the information allows, so that the sending MTA, not
//! chatd, tells a person what went wrong; chatd itself never sends a mail about a reply.
//!
//! | when | what | answer |
//! |---|---|---|
//! | RCPT | not at the reply domain | `550 5.1.1` not a CHmail reply address |
//! | RCPT | a second reply address in one mail | `452 4.5.3` (the MTA sends it separately) |
//! | RCPT | unknown or expired token | `550 5.1.1` unknown or expired, reply in the chat: `<public_url>` |
//! | RCPT | `[reply] per_token_per_hour` replies posted in the last hour | `450 4.7.1` (temporary: the MTA delivers it later, nothing is lost) |
//! | end of DATA | empty envelope sender (a bounce) | `250`, dropped |
//! | end of DATA | automatic ([`super::is_automatic`]: auto-replies, lists, reports) | `250`, dropped |
//! | end of DATA | more than `[reply] max_bytes` | `552 5.3.4` |
//! | end of DATA | From is not the token's participant | `550 5.7.1` belongs to another sender |
//! | end of DATA | no text body, not a mail | `550 5.6.0` |
//! | end of DATA | nothing new once quotes and signature are cut ([`super::ReplyError::Empty`]), or only sign-in links ([`super::links`]) | `250`, dropped |
//! | end of DATA | new text longer than `[chat] max_message_bytes` | `552 5.3.4` |
//! | end of DATA | otherwise | `250`, posted (once per Message-ID) |
//! | any | the store fails or times out | `451 4.3.0` (the MTA retries) |
//!
//! Bounces and automatic mail are accepted, not refused: a refusal makes the MTA write a bounce
//! of its own, and mail must never answer mail that no person wrote. A bounce is accepted for any
//! recipient at the reply domain, for the same reason. Each decision is logged once, with the
//! token's room and never the token (the token is the secret that lets a mail into the room).
//!
//! # Bounds
//!
//! [`MAX_CONNECTIONS`] connections at once, [`MAX_CONNECTIONS_PER_ADDRESS`] from one client
//! network (one more gets `421` at once); each read and write within [`IDLE_TIMEOUT`] (RFC
//! 5321's server time-out), and the whole connection within [`SESSION_TIMEOUT`], so that a
//! client sending a byte now and then cannot hold a place for ever ([`ReplyLimits`]).
//!
//! # Machinery
//!
//! The SMTP protocol is `mailin`'s [`mailin::Session`] (the core of `mailin-embedded`), with its
//! synchronous [`Handler`]. The accept loop is ours rather than `mailin-embedded`'s `Server`,
//! which can neither be stopped nor bounded: it runs on tokio and stops on chatd's shutdown;
//! each connection runs on a blocking thread, where the handler waits for the store with
//! [`Handle::block_on`] (every store call under `[store] timeout_ms`). The loop also works around
//! three gaps of mailin 0.6: it cannot parse the null reverse-path `MAIL FROM:<>` of bounces (the
//! loop hands it a placeholder and tells the handler), it stays in the DATA state after an error
//! at the end of DATA (the loop starts a fresh session, greeted as before), and it reads lines
//! of any length (the loop caps them at [`MAX_LINE`]).
//!
//! # STARTTLS
//!
//! With `[reply] tls_cert` set, EHLO offers STARTTLS (RFC 3207) and the listener takes mail
//! with or without it: opportunistic, as MTAs deliver. After `220` the connection's thread makes
//! the TLS handshake with rustls' blocking API (each read under [`HANDSHAKE_TIMEOUT`]), forgets
//! the greeting and any commands the client sent ahead in the clear, and goes on with the same
//! dialogue over TLS, where the client greets again. STARTTLS is offered once per connection.

use crate::room_tag::room_tag;
use std::{
    cell::RefCell,
    collections::HashMap,
    io::{self, BufRead, BufReader, Read, Write},
    net::{IpAddr, Shutdown, TcpStream},
    rc::Rc,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use chmail::store::{ReplyToken, StoreError, Via};
use mail_parser::MessageParser;
use mailin::{Action, Handler, Response, Session, SessionBuilder};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use sha2::{Digest, Sha256};
use tokio::{
    io::AsyncWriteExt as _, net::TcpListener, runtime::Handle, sync::watch, task::JoinSet,
};
use tracing::{debug, info, warn};

use super::{is_automatic, links, new_text, ReplyError};
use crate::{error::AppError, post, state::AppState, tls::Tls, ws::capacity::Capacity};

/// Most SMTP connections served at once; one more gets `421` at once. The MTA delivers replies
/// over a handful of connections; this only bounds the threads a flood can take.
pub const MAX_CONNECTIONS: usize = 32;

/// Most SMTP connections at once from one client network; one more gets `421` at once, so that
/// one address cannot take every place. Postfix opens 5 connections to a destination at first
/// and backs off on `421`, delivering the rest a little later.
pub const MAX_CONNECTIONS_PER_ADDRESS: u32 = 16;

/// Longest SMTP connection, however busy: a reply is one small mail, and Postfix gives a whole
/// delivery 10 minutes (`smtp_data_done_timeout`); a client that sends a byte now and then,
/// each inside [`IDLE_TIMEOUT`], is cut off here.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Longest line read at once, in bytes: RFC 5321 allows 1000 per line; a longer command is
/// refused, a longer data line is taken in pieces.
pub const MAX_LINE: u64 = 64 * 1024;

/// How long a connection may stay silent: RFC 5321's server time-out (section 4.5.3.2.7).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Longest wait for each read and write of a STARTTLS handshake: an MTA answers at once, and a
/// client that stalls holds one of the [`MAX_CONNECTIONS`].
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most token-shaped words of one reply looked up as sign-in tokens: a reply holds one or two
/// links; beyond these, every token-shaped word is cut unlooked, so a long list of them costs
/// no more store calls.
pub const MAX_TOKEN_CANDIDATES: usize = 16;

/// The bounds of `[reply] listen`. A field of the state, so that a test can shrink them.
#[derive(Debug, Clone)]
pub struct ReplyLimits {
    /// [`IDLE_TIMEOUT`]: the longest wait for each read and write.
    pub idle_timeout: Duration,
    /// [`SESSION_TIMEOUT`].
    pub session_timeout: Duration,
    /// The open connections: [`MAX_CONNECTIONS`], [`MAX_CONNECTIONS_PER_ADDRESS`].
    pub connections: Arc<Capacity>,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        Self {
            idle_timeout: IDLE_TIMEOUT,
            session_timeout: SESSION_TIMEOUT,
            connections: Arc::new(Capacity::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS)),
        }
    }
}

/// The window of `[reply] per_token_per_hour`, in ms.
const HOUR_MS: i64 = 60 * 60 * 1000;

/// What mailin gets in place of the null reverse-path it cannot parse; the handler knows.
const NULL_PLACEHOLDER: &str = "null-sender@invalid";

/// The longest client id kept of a Message-ID's hash: `mail:` and 40 hex digits.
const CLIENT_ID_HEX: usize = 40;

/// Takes replies on `listener` until `shutdown` turns true, then ends the open connections and
/// returns when they are done. With `tls`, EHLO offers STARTTLS.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    tls: Option<Tls>,
    mut shutdown: watch::Receiver<bool>,
) {
    let context = Arc::new(Context {
        domain: state.config.reply_domain(),
        state,
        runtime: Handle::current(),
        tls: tls.map(|tls| tls.server_config()),
    });
    let limits = context.state.reply_limits.clone();
    // Each open connection with when it was accepted: to end it on shutdown or at
    // `session_timeout`.
    let open: Arc<Mutex<HashMap<u64, (Instant, TcpStream)>>> = Arc::default();
    let mut sweep = tokio::time::interval((limits.session_timeout / 4).min(Duration::from_secs(1)));
    let mut sessions = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
            _ = sweep.tick() => {
                end_expired(&open, limits.session_timeout);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (mut stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                warn!(cause = %e, "reply listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        crate::server::no_delay(&mut stream);
        let Some(place) = limits.connections.admit(Some(peer.ip())) else {
            let mut stream = stream;
            let _ = stream
                .write_all(b"421 4.3.2 Too many connections; try again later\r\n")
                .await;
            warn!(peer = %peer, "reply listener: too many connections");
            continue;
        };
        let stream = match blocking(stream, limits.idle_timeout) {
            Ok(stream) => stream,
            Err(e) => {
                debug!(peer = %peer, cause = %e, "reply connection not set up");
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        if let Ok(copy) = stream.try_clone() {
            open.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, (Instant::now(), copy));
        }
        let context = context.clone();
        let open = open.clone();
        sessions.spawn_blocking(move || {
            if let Err(e) = serve(stream, peer.ip(), &context) {
                debug!(peer = %peer, cause = %e, "reply connection ended");
            }
            open.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            drop(place);
        });
    }
    drop(listener);
    // Ends every session: its next read sees the end of the stream.
    for (_, stream) in open.lock().unwrap_or_else(PoisonError::into_inner).values() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    while sessions.join_next().await.is_some() {}
    info!("reply listener stopped");
}

/// Ends the connections open longer than `session_timeout`: their next read or write fails.
fn end_expired(open: &Mutex<HashMap<u64, (Instant, TcpStream)>>, session_timeout: Duration) {
    for (since, stream) in open.lock().unwrap_or_else(PoisonError::into_inner).values() {
        if since.elapsed() >= session_timeout {
            debug!("reply connection open too long; ended");
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// A tokio stream as a blocking std one with the idle time-out.
fn blocking(stream: tokio::net::TcpStream, idle_timeout: Duration) -> io::Result<TcpStream> {
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(idle_timeout))?;
    stream.set_write_timeout(Some(idle_timeout))?;
    Ok(stream)
}

/// What every connection shares.
struct Context {
    state: AppState,
    runtime: Handle,
    /// The reply domain, lowercase.
    domain: String,
    /// What STARTTLS upgrades with; `None`: STARTTLS is not offered.
    tls: Option<Arc<ServerConfig>>,
}

/// How a dialogue ended.
enum Ended {
    /// The client or the server closed the connection.
    Closed,
    /// STARTTLS was accepted (`220` sent): the TLS handshake comes next.
    StartTls,
}

/// Runs the SMTP dialogue of one connection (on a blocking thread): in the clear, then over TLS
/// if the client asks for STARTTLS.
fn serve(stream: TcpStream, ip: IpAddr, context: &Arc<Context>) -> io::Result<()> {
    let mut builder = SessionBuilder::new(context.domain.clone());
    if context.tls.is_some() {
        builder.enable_start_tls();
    }
    let conn = Rc::new(RefCell::new(Conn::new(context.clone(), ip)));
    let mut session = builder.build(ip, ReplyHandler(conn.clone()));
    let mut plain = BufReader::new(stream);
    reply(plain.get_mut(), &session.greeting())?;
    let ended = dialogue(&mut plain, &mut session, &builder, &conn, false)?;
    let (Ended::StartTls, Some(config)) = (ended, &context.tls) else {
        return Ok(());
    };
    if !plain.buffer().is_empty() {
        // Sent after STARTTLS before the handshake, so in the clear, where anyone on the path
        // may have put it (CVE-2011-0411): never taken as if it had come over TLS.
        let bytes = plain.buffer().len();
        debug!(peer = %ip, bytes, "reply connection: input after STARTTLS dropped");
    }
    let stream = starttls(
        plain.into_inner(),
        config.clone(),
        context.state.reply_limits.idle_timeout,
    )?;
    // RFC 3207 section 4.2: forget what the client said before; it greets again.
    conn.borrow_mut().forget();
    session.tls_active();
    debug!(peer = %ip, "reply connection: TLS started");
    let mut secure = BufReader::new(stream);
    dialogue(&mut secure, &mut session, &builder, &conn, true)?;
    Ok(())
}

/// The TLS handshake after `220` to STARTTLS, each read and write under [`HANDSHAKE_TIMEOUT`].
fn starttls(
    mut stream: TcpStream,
    config: Arc<ServerConfig>,
    idle_timeout: Duration,
) -> io::Result<StreamOwned<ServerConnection, TcpStream>> {
    let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    tls.complete_io(&mut stream)?;
    if tls.is_handshaking() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "TLS handshake not finished",
        ));
    }
    stream.set_read_timeout(Some(idle_timeout))?;
    stream.set_write_timeout(Some(idle_timeout))?;
    Ok(StreamOwned::new(tls, stream))
}

/// Reads commands and mail from `io` and answers them until the connection ends or, when not
/// yet `secure`, STARTTLS is accepted.
fn dialogue<S: Read + Write>(
    io: &mut BufReader<S>,
    session: &mut Session<ReplyHandler>,
    builder: &SessionBuilder,
    conn: &Rc<RefCell<Conn>>,
    secure: bool,
) -> io::Result<Ended> {
    let ip = conn.borrow().ip;
    let mut in_data = false;
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let read = (&mut *io).take(MAX_LINE).read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(Ended::Closed);
        }
        if !in_data && !line.ends_with(b"\n") {
            // A command line over the limit: drop the rest of it and refuse it.
            skip_line(io)?;
            reply(
                io.get_mut(),
                &Response::custom(500, "5.5.2 Line too long".into()),
            )?;
            continue;
        }
        let data_end = in_data && line == b".\r\n";
        let response = if !in_data && is_null_mail(&line) {
            conn.borrow_mut().null_sender_next = true;
            let response = session.process(&null_placeholder(&line));
            // Taken by the handler when the command was accepted; a refused one leaves it.
            conn.borrow_mut().null_sender_next = false;
            response
        } else {
            session.process(&line)
        };
        match response.action {
            Action::Reply => reply(io.get_mut(), &response)?,
            Action::Close => {
                reply(io.get_mut(), &response)?;
                return Ok(Ended::Closed);
            }
            Action::UpgradeTls if !secure => {
                reply(io.get_mut(), &response)?;
                return Ok(Ended::StartTls);
            }
            Action::UpgradeTls => {
                // mailin offers STARTTLS once, and a session over TLS is told so: not reached.
                let refusal = Response::custom(421, "4.7.0 TLS is already active".into());
                reply(io.get_mut(), &refusal)?;
                return Ok(Ended::Closed);
            }
            Action::NoReply => {}
        }
        if response.code == 354 {
            in_data = true;
        }
        if data_end {
            in_data = false;
            if response.is_error {
                // mailin stays in DATA after refusing a mail; a fresh session, greeted as the
                // client did, takes the next command.
                *session = builder.build(ip, ReplyHandler(conn.clone()));
                if secure {
                    session.tls_active();
                }
                let helo = format!("HELO {}\r\n", conn.borrow().helo);
                let _ = session.process(helo.as_bytes());
            }
        }
    }
}

/// Writes `response` at once (one TLS record, one segment).
fn reply(writer: &mut impl Write, response: &Response) -> io::Result<()> {
    let mut buf = Vec::with_capacity(128);
    response.write_to(&mut buf)?;
    writer.write_all(&buf)?;
    writer.flush()
}

/// Reads to the end of an over-long line, [`MAX_LINE`] bytes at a time.
fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    let mut rest = Vec::new();
    loop {
        rest.clear();
        let read = reader.take(MAX_LINE).read_until(b'\n', &mut rest)?;
        if read == 0 || rest.ends_with(b"\n") {
            return Ok(());
        }
    }
}

/// `MAIL FROM:<>` with any parameters, the null reverse-path of bounces.
fn is_null_mail(line: &[u8]) -> bool {
    const PREFIX: &[u8] = b"mail from:";
    line.len() > PREFIX.len()
        && line[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
        && line[PREFIX.len()..].trim_ascii_start().starts_with(b"<>")
}

/// The `MAIL` line with [`NULL_PLACEHOLDER`] as its reverse-path, parameters kept.
fn null_placeholder(line: &[u8]) -> Vec<u8> {
    let rest = line[10..].trim_ascii_start();
    let mut out = format!("MAIL FROM:<{NULL_PLACEHOLDER}>").into_bytes();
    out.extend_from_slice(&rest[2..]);
    out
}

/// One connection: the greeting and the transaction under way.
struct Conn {
    context: Arc<Context>,
    ip: IpAddr,
    /// The client's HELO/EHLO name.
    helo: String,
    /// Set by the line loop when the next `MAIL` has the null reverse-path.
    null_sender_next: bool,
    txn: Transaction,
}

/// One mail: from MAIL to the end of DATA.
#[derive(Default)]
struct Transaction {
    /// The reverse-path; empty for a bounce.
    envelope_sender: String,
    /// The token of the recipient, once one was accepted.
    token: Option<ReplyToken>,
    /// A bounce to an address that is no token: accepted to be dropped.
    unknown_bounce: bool,
    /// The mail, up to `[reply] max_bytes`.
    data: Vec<u8>,
    /// Whether more came than `[reply] max_bytes`.
    oversized: bool,
}

impl Conn {
    fn new(context: Arc<Context>, ip: IpAddr) -> Self {
        Self {
            context,
            ip,
            helo: String::new(),
            null_sender_next: false,
            txn: Transaction::default(),
        }
    }

    fn state(&self) -> &AppState {
        &self.context.state
    }

    /// Forgets the greeting and the mail under way (at STARTTLS).
    fn forget(&mut self) {
        self.helo.clear();
        self.null_sender_next = false;
        self.txn = Transaction::default();
    }

    /// Runs a store call to its end (under `[store] timeout_ms`) from this blocking thread.
    fn wait<T>(
        &self,
        call: impl std::future::Future<Output = chmail::store::Result<T>>,
    ) -> Result<T, AppError> {
        let state = self.state();
        self.context.runtime.block_on(state.store_call(call))
    }

    /// `text` without chatd's sign-in links ([`links`]): the words that are or wrap a link into
    /// `/auth/`, and every token-shaped word that is a live sign-in token of this chatd, which
    /// is spent on the way (at most [`MAX_TOKEN_CANDIDATES`] are looked up; beyond them every
    /// token-shaped word goes, unlooked).
    ///
    /// # Errors
    /// When the store fails.
    fn cut_signin_links(&self, room_id: &str, text: &str) -> Result<String, AppError> {
        let state = self.state();
        // Candidates from the whole text, links included: a link's token is spent too.
        let candidates = links::token_candidates(text);
        let mut live = Vec::new();
        for (n, candidate) in candidates.into_iter().enumerate() {
            let spent = n >= MAX_TOKEN_CANDIDATES || {
                let (hash, now) = (crate::auth::hash_token(&candidate), state.clock.now_ms());
                self.wait(state.store.consume_signin_token(&hash, now))?
                    .is_some()
            };
            if spent {
                live.push(candidate);
            }
        }
        let (text, links) = links::strip_signin_links(text, state.base_url());
        let (text, tokens) = links::remove_tokens(&text, &live);
        if links + tokens > 0 {
            info!(room = %room_tag(room_id), links, tokens, "sign-in links cut from a reply");
        }
        Ok(text)
    }

    /// Logs the decision about the current mail once and returns its answer.
    fn decide(&self, room: Option<&str>, code: u16, text: String, why: &str) -> Response {
        self.state().metrics.reply(code);
        if code < 400 {
            info!(room = ?room.map(room_tag), peer = %self.ip, code, why, "reply accepted");
        } else {
            info!(room = ?room.map(room_tag), peer = %self.ip, code, why, "reply refused");
        }
        Response::custom(code, text)
    }

    fn temporary_failure(&self, room: Option<&str>, e: &AppError) -> Response {
        warn!(room = ?room.map(room_tag), peer = %self.ip, cause = %e, "reply deferred: the store failed");
        self.state().metrics.reply(451);
        Response::custom(
            451,
            "4.3.0 The chat server has a problem right now; try again later".into(),
        )
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let not_ours = "5.1.1 Not a CHmail reply address";
        let Some((local, domain)) = to.rsplit_once('@') else {
            return self.decide(None, 550, not_ours.into(), "no domain");
        };
        if !domain.eq_ignore_ascii_case(&self.context.domain) {
            return self.decide(None, 550, not_ours.into(), "other domain");
        }
        if self.txn.token.is_some() || self.txn.unknown_bounce {
            return self.decide(
                None,
                452,
                "4.5.3 One reply address per mail; send the others separately".into(),
                "second recipient",
            );
        }
        let bounce = self.txn.envelope_sender.is_empty();
        let now = self.state().clock.now_ms();
        let token = match self.wait(self.state().store.lookup_reply_token(local, now)) {
            Ok(Some(token)) => token,
            Ok(None) if bounce => {
                // Never answer a bounce, not even with a refusal; dropped at the end of DATA.
                self.txn.unknown_bounce = true;
                return accepted_recipient();
            }
            Ok(None) => {
                return self.decide(
                    None,
                    550,
                    self.unknown_address(),
                    "unknown or expired token",
                )
            }
            Err(e) => return self.temporary_failure(None, &e),
        };
        if !bounce {
            let since = now.saturating_sub(HOUR_MS);
            let count =
                self.state()
                    .store
                    .count_messages(&token.room_id, &token.address, Via::Mail, since);
            match self.wait(count) {
                Ok(n) if n >= self.state().config.reply.per_token_per_hour => {
                    return self.decide(
                        Some(&token.room_id),
                        450,
                        "4.7.1 Too many replies to this address in the last hour; try again later"
                            .into(),
                        "rate limit",
                    );
                }
                Ok(_) => {}
                Err(e) => return self.temporary_failure(Some(&token.room_id), &e),
            }
        }
        self.txn.token = Some(token);
        accepted_recipient()
    }

    /// The refusal of an address that is no (longer a) token.
    fn unknown_address(&self) -> String {
        format!(
            "5.1.1 This reply address is unknown or has expired; reply in the chat instead: {}",
            self.state().base_url()
        )
    }

    fn data(&mut self, buf: &[u8]) {
        let max = self.state().config.reply.max_bytes;
        let left = max.saturating_sub(self.txn.data.len());
        if buf.len() > left {
            self.txn.oversized = true;
        }
        // The head is kept even past the limit: it tells whether the mail is automatic.
        self.txn.data.extend_from_slice(&buf[..buf.len().min(left)]);
    }

    fn data_end(&mut self) -> Response {
        let response = self.judge();
        self.txn = Transaction::default();
        response
    }

    /// The answer to the end of DATA, posting the reply when it is one.
    fn judge(&self) -> Response {
        let txn = &self.txn;
        let accept = || "2.0.0 OK".to_owned();
        let room = txn.token.as_ref().map(|t| t.room_id.as_str());
        if txn.envelope_sender.is_empty() {
            return self.decide(room, 250, accept(), "bounce dropped");
        }
        let Some(token) = &txn.token else {
            // mailin asks for DATA only after an accepted recipient.
            return self.decide(None, 503, "5.5.1 No valid recipient".into(), "no recipient");
        };
        let room = Some(token.room_id.as_str());
        if let Some(sign) = is_automatic(&txn.data, Some(&txn.envelope_sender)) {
            return self.decide(room, 250, accept(), &format!("automatic ({sign}), dropped"));
        }
        let config = &self.state().config;
        if txn.oversized {
            return self.decide(
                room,
                552,
                format!(
                    "5.3.4 A reply may have at most {} bytes",
                    config.reply.max_bytes
                ),
                "too large",
            );
        }
        let Some(headers) = MessageParser::new().parse_headers(&txn.data) else {
            return self.decide(room, 550, "5.6.0 This is not a mail".into(), "not a mail");
        };
        let from: Vec<String> = headers
            .from()
            .into_iter()
            .flat_map(|a| a.iter())
            .filter_map(|a| a.address())
            .map(|a| a.trim().to_lowercase())
            .collect();
        if from != [token.address.as_str()] {
            return self.decide(
                room,
                550,
                "5.7.1 This reply address belongs to another sender".into(),
                "From is not the participant",
            );
        }
        let text = match new_text(&txn.data) {
            Ok(text) => text,
            Err(ReplyError::Empty) => {
                return self.decide(room, 250, accept(), "nothing new to post");
            }
            Err(e @ (ReplyError::NoText | ReplyError::NotAMail)) => {
                debug!(room = %room_tag(&token.room_id), cause = %e, "reply without text");
                return self.decide(
                room,
                    550,
                    format!(
                        "5.6.0 This reply has no text to post; write your answer in the text of the mail, or in the chat: {}",
                        self.state().base_url()
                    ),
                    "no text",
                );
            }
        };
        let body = match self.cut_signin_links(&token.room_id, &text.text) {
            Ok(body) => body,
            Err(e) => return self.temporary_failure(room, &e),
        };
        if body.replace(links::REMOVED, "").trim().is_empty() {
            return self.decide(room, 250, accept(), "nothing new to post");
        }
        let max = config.chat.max_message_bytes;
        if body.len() > max {
            return self.decide(
                room,
                552,
                format!(
                    "5.3.4 The new text of this reply has more than the {max} bytes a chat message may have; shorten it"
                ),
                "text too long",
            );
        }
        match self.post(token, body, client_id(&headers, &txn.data)) {
            Ok(true) => self.decide(room, 250, accept(), "posted"),
            Ok(false) => self.decide(room, 250, accept(), "already posted"),
            Err(AppError::NotFound) => self.decide(room, 550, self.unknown_address(), "room gone"),
            Err(AppError::Store(StoreError::Invalid(why))) => {
                debug!(room = %room_tag(&token.room_id), cause = %why, "reply refused by the store");
                self.decide(
                    room,
                    550,
                    "5.6.0 This reply cannot be posted".into(),
                    "invalid",
                )
            }
            Err(e) => self.temporary_failure(room, &e),
        }
    }

    /// Posts `text` into the token's room as its participant; `false` when this client id was
    /// posted before.
    fn post(&self, token: &ReplyToken, text: String, client_id: String) -> Result<bool, AppError> {
        let state = self.state().clone();
        self.context.runtime.block_on(async move {
            let room = state
                .store_call(state.store.room(&token.room_id))
                .await?
                .ok_or(AppError::NotFound)?;
            let posted = post::post(
                &state,
                post::Post {
                    room: &room,
                    author: &token.address,
                    text,
                    via: Via::Mail,
                    client_id: Some(client_id),
                    except: None,
                    picture: None,
                },
            )
            .await?;
            Ok(posted.new)
        })
    }
}

/// The reply's client id: a hash of its Message-ID (of the whole mail when it has none), so a
/// mail delivered twice is posted once, and the Message-ID itself is shown to no one.
fn client_id(headers: &mail_parser::Message<'_>, raw: &[u8]) -> String {
    let digest = match headers.message_id() {
        Some(id) => Sha256::digest(id.trim().as_bytes()),
        None => Sha256::digest(raw),
    };
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("mail:{}", &hex[..CLIENT_ID_HEX])
}

/// mailin's handler: every call goes to the connection's [`Conn`].
struct ReplyHandler(Rc<RefCell<Conn>>);

impl Handler for ReplyHandler {
    fn helo(&mut self, _ip: IpAddr, domain: &str) -> Response {
        domain.clone_into(&mut self.0.borrow_mut().helo);
        mailin::response::OK
    }

    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        let mut conn = self.0.borrow_mut();
        let null = std::mem::take(&mut conn.null_sender_next);
        conn.txn = Transaction {
            envelope_sender: if null { String::new() } else { from.to_owned() },
            ..Transaction::default()
        };
        Response::custom(250, "2.1.0 OK".into())
    }

    fn rcpt(&mut self, to: &str) -> Response {
        self.0.borrow_mut().rcpt(to)
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.borrow_mut().data(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.0.borrow_mut().data_end()
    }
}

/// The answer to an accepted recipient.
fn accepted_recipient() -> Response {
    Response::custom(250, "2.1.5 OK".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_null_reverse_path_is_recognised_and_replaced() {
        for line in [
            &b"MAIL FROM:<>\r\n"[..],
            b"mail from:<> BODY=8BITMIME\r\n",
            b"MAIL FROM: <>\r\n",
        ] {
            assert!(is_null_mail(line), "{}", String::from_utf8_lossy(line));
        }
        for line in [
            &b"MAIL FROM:<a@b>\r\n"[..],
            b"MAIL FROM:\r\n",
            b"RCPT TO:<>\r\n",
        ] {
            assert!(!is_null_mail(line), "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(
            null_placeholder(b"mail from:<> BODY=8BITMIME\r\n"),
            b"MAIL FROM:<null-sender@invalid> BODY=8BITMIME\r\n"
        );
    }

    #[test]
    fn client_ids_hash_the_message_id_and_fit() {
        let a = MessageParser::new()
            .parse_headers(&b"Message-ID: <x@y>\r\n\r\nhi"[..])
            .expect("headers");
        let b = MessageParser::new()
            .parse_headers(&b"Message-ID: <x@y>\r\nSubject: other\r\n\r\nho"[..])
            .expect("headers");
        let id = client_id(&a, b"one");
        assert_eq!(id, client_id(&b, b"two"));
        assert!(id.starts_with("mail:") && !id.contains("x@y"));
        assert!(id.len() <= chmail::store::MAX_CLIENT_ID_LEN);
    }
}
