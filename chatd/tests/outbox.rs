//! The outbox against a REAL SMTP server (mailin-embedded on 127.0.0.1:0) that answers 451 to
//! the first mail and 250 after, or 550 to every mail: chatd runs in-process over an SQLite file
//! (so it can be stopped and started again on the same data) and sends reminders through
//! `SmtpSender`. Every count is of what reached the server: mails accepted with 250 and mails
//! refused, each with its Message-ID.

mod support;

use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use chatd::{
    admin::show_room,
    mail::{MailSender, OutgoingMail, SmtpSender},
    reminder,
    server::start_with_store,
    Running,
};
use chmail::{
    store::{kind, MailScope, NewOutgoing, OutgoingState, Store},
    Config,
};
use mail_parser::MessageParser;
use support::{room_id, seed_room, send, Seeded};
use tempfile::TempDir;

/// How the sink answers at the end of DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 451 to the first mail it ever gets, 250 to every later one.
    TempFailFirst,
    /// 550 to every mail.
    Refuse,
    /// 250 to every mail.
    Accept,
}

/// What reached the sink: the raw mails it accepted and the Message-IDs of those it refused.
#[derive(Debug, Default)]
struct Log {
    accepted: Vec<Vec<u8>>,
    refused: Vec<String>,
}

/// The mailin-embedded handler; each connection gets a clone sharing the log.
#[derive(Clone)]
struct Sink {
    mode: Mode,
    log: Arc<Mutex<Log>>,
    data: Vec<u8>,
}

impl mailin_embedded::Handler for Sink {
    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> mailin_embedded::Response {
        self.data.clear();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let data = std::mem::take(&mut self.data);
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let refuse = match self.mode {
            Mode::TempFailFirst if log.refused.is_empty() && log.accepted.is_empty() => Some(
                mailin_embedded::Response::custom(451, "4.3.0 try again later (test)".into()),
            ),
            Mode::Refuse => Some(mailin_embedded::Response::custom(
                550,
                "5.7.1 not accepted here (test)".into(),
            )),
            _ => None,
        };
        match refuse {
            Some(mut answer) => {
                log.refused.push(message_id(&data));
                // mailin keeps the DATA state after an error at its end (the client's next
                // command would be read as message text): close, as a busy server may.
                answer.action = mailin_embedded::Action::Close;
                answer
            }
            None => {
                log.accepted.push(data);
                mailin_embedded::response::OK
            }
        }
    }
}

/// The Message-ID of a raw mail (empty when it has none).
fn message_id(data: &[u8]) -> String {
    MessageParser::default()
        .parse(data)
        .and_then(|m| m.message_id().map(str::to_owned))
        .unwrap_or_default()
}

/// A running sink: its address and what it got.
struct SmtpServer {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
}

impl SmtpServer {
    /// Starts a sink in `mode` on 127.0.0.1:0 (in its own thread, for the rest of the test
    /// process).
    fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        let log = Arc::new(Mutex::new(Log::default()));
        let sink = Sink {
            mode,
            log: log.clone(),
            data: Vec::new(),
        };
        let mut server = mailin_embedded::Server::new(sink);
        server
            .with_name("sink.test")
            .with_ssl(mailin_embedded::SslConfig::None)
            .expect("no TLS")
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            // The result is not Send; a server that stops only ends this thread.
            let _ = server.serve();
        });
        Self { addr, log }
    }

    /// The Message-IDs of the accepted mails.
    fn accepted(&self) -> Vec<String> {
        self.lock().accepted.iter().map(|m| message_id(m)).collect()
    }

    /// The raw accepted mails.
    fn accepted_raw(&self) -> Vec<Vec<u8>> {
        self.lock().accepted.clone()
    }

    /// The Message-IDs of the refused mails.
    fn refused(&self) -> Vec<String> {
        self.lock().refused.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sender, as the milter recorded them.
const ALICE: &str = "alice@a.example";
/// A recipient who pressed Chat.
const BOB: &str = "bob@b.example";
/// The room's subject: not ASCII, so the reminder's subject needs encoded words.
const SUBJECT: &str = "Grüße zum Quartal 📈";

/// A chatd over an SQLite file in a temporary directory, sending through a sink.
struct Chatd {
    dir: TempDir,
    config: Config,
    running: Option<Running>,
    room: Seeded,
}

impl Chatd {
    /// Seeds a room from [`ALICE`] to [`BOB`] and starts chatd with its relay at `relay`,
    /// reminders due at once and retries a second after a temporary failure.
    async fn start(relay: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = support::config();
        config.data_dir = dir.path().to_owned();
        config.chat.listen = "127.0.0.1:0".into();
        config.chat.reminder_delay_secs = 0;
        config.smtp.relay = relay.to_string();
        config.smtp.timeout_ms = 5_000;
        config.smtp.retry_initial_secs = 1;
        // Replies by mail stay on (reminders carry a Reply-To), on a port of their own per test.
        config.reply.listen = "127.0.0.1:0".into();
        let store = open(dir.path()).await;
        let room = seed_room(
            &*store,
            ALICE,
            ALICE,
            &room_id("outboxroom"),
            SUBJECT,
            &[BOB],
            &[],
        )
        .await;
        let mut chatd = Self {
            dir,
            config,
            running: None,
            room,
        };
        chatd.start_again_with(store).await;
        chatd
    }

    /// Starts chatd (again) over `store`, with a fresh SMTP sender, as a new process would.
    async fn start_again_with(&mut self, store: Arc<dyn Store>) {
        assert!(self.running.is_none(), "stop first");
        let mailer = Arc::new(SmtpSender::new(&self.config));
        let running = start_with_store(self.config.clone(), store, mailer)
            .await
            .expect("chatd starts");
        self.running = Some(running);
    }

    /// Starts chatd again over the same SQLite file.
    async fn start_again(&mut self) {
        let store = open(self.dir.path()).await;
        self.start_again_with(store).await;
    }

    /// Stops chatd.
    async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    fn state(&self) -> &chatd::AppState {
        self.running.as_ref().expect("chatd is running").state()
    }

    fn store(&self) -> Arc<dyn Store> {
        self.state().store.clone()
    }

    /// Bob presses Chat while the sender is away: a reminder is due at once.
    async fn remind(&self) {
        reminder::schedule(self.state(), &self.room.room, BOB)
            .await
            .expect("reminder scheduled");
    }

    /// The outgoing mail with this Message-ID (as the sink saw it, in angle brackets or not).
    async fn outgoing(&self, message_id: &str) -> chmail::store::OutgoingRecord {
        let id = message_id.trim_matches(['<', '>']);
        self.store()
            .outgoing_by_message_id(id)
            .await
            .expect("store reads")
            .unwrap_or_else(|| panic!("no outgoing mail {id}"))
    }
}

async fn open(dir: &Path) -> Arc<dyn Store> {
    let url = format!("sqlite://{}", dir.join("chmail.db").display());
    let store = chmail::open_store(&url, 2).await.expect("store opens");
    store.migrate().await.expect("store migrates");
    store
}

/// Waits (up to 20 s) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[tokio::test]
async fn a_reminder_answered_451_is_retried_and_delivered_exactly_once() {
    let sink = SmtpServer::start(Mode::TempFailFirst);
    let mut chatd = Chatd::start(sink.addr).await;
    chatd.remind().await;

    until("a mail accepted", || !sink.accepted().is_empty()).await;
    // Time for any further (wrong) attempt: retries come a second apart.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let accepted = sink.accepted();
    let refused = sink.refused();
    assert_eq!(accepted.len(), 1, "delivered once: {accepted:?}");
    assert_eq!(refused.len(), 1, "refused once: {refused:?}");
    assert_eq!(accepted[0], refused[0], "the retry keeps the Message-ID");

    let record = chatd.outgoing(&accepted[0]).await;
    assert_eq!(record.state, OutgoingState::Sent);
    assert_eq!(record.attempts, 1, "one failed attempt recorded");
    assert_eq!(record.mail.kind, kind::REMINDER);
    assert_eq!(
        record.mail.room_id.as_deref(),
        Some(chatd.room.room.as_str())
    );
    assert!(
        record
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("451")),
        "{record:?}"
    );
    let schedule = chatd
        .store()
        .reminder(&chatd.room.room)
        .await
        .ok()
        .flatten();
    assert_eq!(schedule.map(|r| (r.sent_count, r.due_ms)), Some((1, None)));

    // What arrived is a well-formed reminder with the room's reply address in Reply-To.
    let raw = sink.accepted_raw().remove(0);
    let msg = MessageParser::default()
        .parse(&raw)
        .expect("the mail parses");
    assert_eq!(
        msg.subject(),
        Some(format!("alice@a.example: {BOB} wants to chat about \"{SUBJECT}\"").as_str())
    );
    let reply_to = msg
        .reply_to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_owned();
    assert!(reply_to.ends_with("@reply.a.example"), "{reply_to:?}");
    let token = reply_to.split('@').next().unwrap_or_default();
    let known = chatd
        .store()
        .lookup_reply_token(token, now_ms())
        .await
        .ok()
        .flatten()
        .expect("the Reply-To token is the sender's");
    assert_eq!(known.address, ALICE);
    assert_eq!(known.room_id, chatd.room.room);
    chatd.stop().await;
}

#[tokio::test]
async fn a_reminder_answered_550_is_recorded_as_failed_not_retried_and_shown() {
    let sink = SmtpServer::start(Mode::Refuse);
    let mut chatd = Chatd::start(sink.addr).await;
    chatd.remind().await;

    until("a mail refused", || !sink.refused().is_empty()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused = sink.refused();
    assert_eq!(refused.len(), 1, "not retried: {refused:?}");
    assert!(sink.accepted().is_empty());

    let record = chatd.outgoing(&refused[0]).await;
    assert_eq!(record.state, OutgoingState::Failed);
    assert_eq!(record.attempts, 1);
    let failed = chatd
        .store()
        .failed_mail(MailScope::Room(&chatd.room.room), 10)
        .await
        .expect("failed mail listed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, record.id);
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("550")),
        "{failed:?}"
    );

    // Shown to the admin ...
    let out = show_room(&*chatd.store(), &chatd.room.room, now_ms())
        .await
        .expect("room shown");
    assert!(out.contains("failed mail: 1"), "{out}");
    assert!(out.contains(&record.mail.message_id), "{out}");
    assert!(out.contains("550"), "{out}");

    // ... and to the sender, on their page.
    let cookie = chatd::auth::start_session(chatd.state(), ALICE)
        .await
        .expect("session");
    let cookie = cookie.split(';').next().unwrap_or_default().to_owned();
    let router = chatd::app(chatd.state().clone());
    let me = send(&router, support::get("/me", &cookie)).await;
    assert!(
        me.body
            .contains("A reminder mail to you could not be delivered"),
        "{}",
        me.body
    );
    chatd.stop().await;
}

#[tokio::test]
async fn chatd_stopped_after_a_451_and_started_again_delivers_exactly_once() {
    let sink = SmtpServer::start(Mode::TempFailFirst);
    let mut chatd = Chatd::start(sink.addr).await;
    chatd.remind().await;

    until("a mail refused", || !sink.refused().is_empty()).await;
    let id = sink.refused()[0].clone();
    // Stopped once the failed attempt is recorded (a stop mid-record would leave the lease to run
    // out first: also delivered once, but later).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while chatd.outgoing(&id).await.attempts == 0 {
        assert!(tokio::time::Instant::now() < deadline, "attempt recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    chatd.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(sink.accepted().is_empty(), "nothing sent while stopped");

    chatd.start_again().await;
    until("a mail accepted", || !sink.accepted().is_empty()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sink.accepted(), vec![id.clone()], "delivered once");
    assert_eq!(sink.refused(), vec![id.clone()]);
    assert_eq!(chatd.outgoing(&id).await.state, OutgoingState::Sent);

    // Started once more: nothing is sent again, and the reminder is not queued again.
    chatd.stop().await;
    chatd.start_again().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.accepted().len(), 1);
    let schedule = chatd
        .store()
        .reminder(&chatd.room.room)
        .await
        .ok()
        .flatten();
    assert_eq!(schedule.map(|r| r.sent_count), Some(1));
    chatd.stop().await;
}

#[tokio::test]
async fn a_mail_claimed_by_a_process_that_died_is_sent_after_the_lease_with_the_same_message_id() {
    let sink = SmtpServer::start(Mode::Accept);
    let mut chatd = Chatd::start(sink.addr).await;
    chatd.stop().await;

    // Another process queues a mail, claims it with a 3 s lease, sends it, and dies before
    // recording that it did.
    let store = open(chatd.dir.path()).await;
    let now = now_ms();
    let mail = NewOutgoing {
        message_id: "signin.crash-test@a.example".into(),
        kind: kind::SIGNIN.into(),
        to: ALICE.into(),
        subject: "Your CHmail sign-in link".into(),
        text: "https://chat.test/auth/x".into(),
        html: None,
        headers: Vec::new(),
        room_id: None,
        created_ms: now,
    };
    let (id, fresh) = store.enqueue_mail(&mail).await.expect("queued");
    assert!(fresh);
    let claimed = store
        .claim_mail("dead-process", now, 3_000, 5)
        .await
        .expect("claimed");
    assert_eq!(claimed.len(), 1);
    let dead_sender = SmtpSender::new(&chatd.config);
    dead_sender
        .send(&OutgoingMail {
            to: mail.to.clone(),
            subject: mail.subject.clone(),
            text: mail.text.clone(),
            html: None,
            message_id: mail.message_id.clone(),
            headers: Vec::new(),
        })
        .await
        .expect("the dead process's attempt went through");
    assert_eq!(sink.accepted().len(), 1);

    // chatd starts: the mail is not touched while the lease holds ...
    chatd.start_again_with(store).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.accepted().len(), 1, "sent again within the lease");
    // ... and sent once more after it, with the same Message-ID, then recorded.
    until("the mail sent again", || sink.accepted().len() >= 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let expected = mail.message_id.clone();
    assert_eq!(sink.accepted(), vec![expected.clone(), expected]);
    let record = chatd.outgoing(&mail.message_id).await;
    assert_eq!(record.id, id);
    assert_eq!(record.state, OutgoingState::Sent);
    assert_eq!(record.lease_owner, None);
    chatd.stop().await;
}
