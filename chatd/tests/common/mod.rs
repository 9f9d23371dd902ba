//! The WebSocket test harness: chatd started in-process on 127.0.0.1:0 over an SQLite file in a
//! temporary directory (so it can be stopped and started again on the same data), one room from
//! alice@a.example to bob@b.example with carol@c.example and dave@d.example on Cc, a mailer that
//! records every mail, and a WebSocket client whose reader task answers pings and queues frames.
#![allow(dead_code)] // each test file uses its own subset

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use chatd::{
    mail::{MailError, MailSender, OutgoingMail},
    server::{start_with_state, start_with_store},
    AppState, Running,
};
use chmail::{
    store::{Participant, Role, Store, Submission},
    Config,
};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest as _, http::HeaderValue, Message};

/// The public origin of the test config.
pub const ORIGIN: &str = "http://chat.test";
/// The sender's login and From address.
pub const ALICE: &str = "alice@a.example";
/// The To recipient.
pub const BOB: &str = "bob@b.example";
/// The first Cc recipient.
pub const CAROL: &str = "carol@c.example";
/// The second Cc recipient.
pub const DAVE: &str = "dave@d.example";
/// The room id of the test mail.
pub const ROOM: &str = "r0OmOfAl1ce-Quarterly1";
/// The subject of the test mail.
pub const SUBJECT: &str = "Quarterly numbers";

/// How long a test waits for an expected frame or mail. In paused-time tests this is virtual
/// time, so it must exceed the intervals being waited for.
pub const WAIT: Duration = Duration::from_secs(300);

/// Records every mail; can be told to fail temporarily.
#[derive(Default)]
pub struct RecordingMailer {
    mails: Mutex<Vec<OutgoingMail>>,
    sent: Notify,
    failures: Mutex<u32>,
}

impl RecordingMailer {
    /// The mails so far.
    pub fn mails(&self) -> Vec<OutgoingMail> {
        self.mails
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes the next `n` sends fail temporarily.
    pub fn fail_next(&self, n: u32) {
        *self.failures.lock().unwrap_or_else(PoisonError::into_inner) = n;
    }

    /// Waits until at least `n` mails were sent (up to [`WAIT`]); returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<OutgoingMail> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.sent.notified();
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("expected {n} mails, got {}: {mails:#?}", mails.len());
            }
        }
    }
}

#[async_trait]
impl MailSender for RecordingMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        {
            let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            if *failures > 0 {
                *failures -= 1;
                return Err(MailError::Temporary("421 try later (test)".into()));
            }
        }
        self.mails
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(mail.clone());
        self.sent.notify_waiters();
        Ok(())
    }
}

/// A chatd under test.
pub struct Harness {
    running: Option<Running>,
    /// The data directory (holds the SQLite file across restarts).
    pub dir: TempDir,
    /// The config chatd runs with.
    pub config: Config,
    /// The recorder of outgoing mail (kept across restarts).
    pub mailer: Arc<RecordingMailer>,
    /// The room's port.
    pub port: u16,
}

/// The test config: public URL [`ORIGIN`], listening (HTTP and replies) on 127.0.0.1:0.
pub fn config() -> Config {
    let mut config = Config::default();
    config.chat.public_url = ORIGIN.into();
    config.chat.listen = "127.0.0.1:0".into();
    // Its own port per chatd: tests run in parallel, and the default 2525 is one port.
    config.reply.listen = "127.0.0.1:0".into();
    // No metrics endpoint: the default port is one per machine (tests/metrics.rs turns it on).
    config.chat.metrics_listen = String::new();
    config.signing.domain = "a.example".into();
    config
}

impl Harness {
    /// Starts chatd with the test config changed by `tweak`, over a fresh store holding the room.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_with(tweak, |_| {}).await
    }

    /// As [`Harness::start`], with the state changed by `adjust` before chatd starts.
    pub async fn start_with(
        tweak: impl FnOnce(&mut Config),
        adjust: impl FnOnce(&mut AppState),
    ) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = config();
        tweak(&mut config);
        let store = open(&dir).await;
        let grant = store
            .record_submission(&Submission {
                login: ALICE.into(),
                ip: Some("192.0.2.10".into()),
                hostname: Some("client.a.example".into()),
                now: 1_714_566_896,
                ports: config.chat.ports,
                reclaim_after: config.chat.reclaim_after(),
                room_id: ROOM.into(),
                message_id: Some("<q3@a.example>".into()),
                subject: Some(SUBJECT.into()),
                participants: vec![
                    participant(ALICE, Role::From),
                    participant(BOB, Role::To),
                    participant(CAROL, Role::Cc),
                    participant(DAVE, Role::Cc),
                ],
                opening: None,
            })
            .await
            .expect("room stored");
        let mailer = Arc::new(RecordingMailer::default());
        let mut state =
            AppState::new(config.clone(), store, mailer.clone()).expect("the config is usable");
        adjust(&mut state);
        let running = start_with_state(state).await.expect("chatd starts");
        Self {
            running: Some(running),
            dir,
            config,
            mailer,
            port: grant.port,
        }
    }

    /// The running chatd.
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("chatd is running")
    }

    /// Its shared state.
    pub fn state(&self) -> &AppState {
        self.running().state()
    }

    /// Its store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.state().store.clone()
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.running().addr())
    }

    /// Stops chatd (connections close).
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// Starts chatd again over the same SQLite file and mailer (a new process would).
    pub async fn start_again(&mut self) {
        assert!(self.running.is_none(), "stop first");
        let store = open(&self.dir).await;
        let running = start_with_store(self.config.clone(), store, self.mailer.clone())
            .await
            .expect("chatd starts again");
        self.running = Some(running);
    }

    /// A client with our Origin and no cookie (a recipient).
    pub async fn client(&self) -> Client {
        Client::connect(&self.ws_url(), Some(ORIGIN), None).await
    }

    /// A client signed in as the sender (a session cookie from `auth::start_session`).
    pub async fn sender_client(&self) -> Client {
        let cookie = self.sender_cookie().await;
        Client::connect(&self.ws_url(), Some(ORIGIN), Some(&cookie)).await
    }

    /// A `Cookie` header value (`name=value`) of a fresh session of the sender.
    pub async fn sender_cookie(&self) -> String {
        let set_cookie = chatd::auth::start_session(self.state(), ALICE)
            .await
            .expect("session starts");
        set_cookie.split(';').next().unwrap_or_default().to_owned()
    }

    /// A recipient joined as `address`; the `joined` frame and the first history page are read.
    pub async fn joined(&self, address: &str) -> Client {
        let mut c = self.client().await;
        c.join(self.port, Some(address)).await;
        c
    }

    /// The sender's `/me` connection, watching.
    pub async fn watching(&self) -> Client {
        let mut c = self.sender_client().await;
        c.send(json!({"type": "watch"})).await;
        c.expect("watching").await;
        c
    }

    /// How many messages the room holds.
    pub async fn message_count(&self) -> usize {
        self.store()
            .messages(ROOM, None, 500)
            .await
            .expect("messages read")
            .len()
    }
}

fn participant(address: &str, role: Role) -> Participant {
    Participant {
        address: address.into(),
        role,
        name: None,
    }
}

async fn open(dir: &TempDir) -> Arc<dyn Store> {
    let url = format!("sqlite://{}", dir.path().join("chmail.db").display());
    let store = chmail::open_store(&url, 1).await.expect("store opens");
    store.migrate().await.expect("store migrates");
    store
}

/// A WebSocket client whose reader task keeps reading (so pings are answered) and queues every
/// frame as JSON; a close becomes `{"type":"_closed","code":..}`.
pub struct Client {
    sink: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        Message,
    >,
    frames: mpsc::UnboundedReceiver<Value>,
}

impl Client {
    /// Connects to `url` with an `Origin` and a `Cookie` header.
    pub async fn connect(url: &str, origin: Option<&str>, cookie: Option<&str>) -> Client {
        Self::try_connect(url, origin, cookie)
            .await
            .expect("WebSocket connects")
    }

    /// Connects, or returns the handshake error.
    pub async fn try_connect(
        url: &str,
        origin: Option<&str>,
        cookie: Option<&str>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let headers: Vec<(&str, &str)> = [("Origin", origin), ("Cookie", cookie)]
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
            .collect();
        Self::try_connect_with(url, &headers).await
    }

    /// Connects with these request headers, or returns the handshake error.
    pub async fn try_connect_with(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().append(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        let (sink, mut stream) = ws.split();
        let (tx, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(message) = stream.next().await {
                match message {
                    Ok(Message::Text(text)) => {
                        let value = serde_json::from_str(text.as_str()).unwrap_or_else(
                            |_| json!({"type": "_not_json", "text": text.as_str()}),
                        );
                        let _ = tx.send(value);
                    }
                    Ok(Message::Close(frame)) => {
                        let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                        let _ = tx.send(json!({"type": "_closed", "code": code}));
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(json!({"type": "_closed", "code": 1006}));
        });
        let mut client = Client { sink, frames };
        let hello = client.expect("hello").await;
        assert_eq!(hello["v"], 1);
        Ok(client)
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.send_raw(Message::text(frame.to_string())).await;
    }

    /// Sends any WebSocket message.
    pub async fn send_raw(&mut self, message: Message) {
        self.sink.send(message).await.expect("frame sent");
    }

    /// The next frame (up to [`WAIT`]).
    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.frames.recv())
            .await
            .expect("a frame arrives in time")
            .expect("the reader runs")
    }

    /// The next frame of type `kind`, skipping presence and typing news; panics on any other.
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
            let t = frame["type"].as_str().unwrap_or_default();
            if kind != "presence" && kind != "typing" && (t == "presence" || t == "typing") {
                continue;
            }
            panic!("expected a {kind} frame, got {frame}");
        }
    }

    /// The next frame of type `kind`, skipping every other frame.
    pub async fn skip_to(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
            assert_ne!(frame["type"], "_closed", "closed while waiting for {kind}");
        }
    }

    /// The next error frame; asserts its code.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let frame = self.expect("error").await;
        assert_eq!(frame["code"], code, "{frame}");
        frame
    }

    /// The frames that arrive within `wait` (virtual time in paused tests).
    pub async fn drain(&mut self, wait: Duration) -> Vec<Value> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, self.frames.recv()).await {
            got.push(frame);
        }
        got
    }

    /// Asserts the connection is alive and has nothing pending: a ping gets the next frame, a
    /// pong.
    pub async fn assert_alive(&mut self) {
        self.send(json!({"type": "ping"})).await;
        let frame = self.expect("pong").await;
        assert_eq!(frame["type"], "pong");
    }

    /// Joins the room (as `address`, or as the sender without one); returns `joined` after
    /// reading it and the first history page.
    pub async fn join(&mut self, port: u16, address: Option<&str>) -> Value {
        let mut frame = json!({"type": "join", "port": port, "room": ROOM, "v": 1});
        if let Some(a) = address {
            frame["as"] = json!(a);
        }
        self.send(frame).await;
        let joined = self.expect("joined").await;
        self.expect("history").await;
        joined
    }

    /// Sends a message and returns the ack's stored message.
    pub async fn say(&mut self, text: &str, id: &str) -> Value {
        self.send(json!({"type": "message", "text": text, "id": id}))
            .await;
        let ack = self.skip_to("ack").await;
        assert_eq!(ack["id"], id);
        ack["message"].clone()
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        let _ = self.sink.send(Message::Close(None)).await;
        let _ = self.sink.close().await;
    }
}

/// What the Chromium tests (`browser.rs`, `mall_browser.rs`) share: finding node, Chromium and
/// playwright-core, a port for chatd to listen on, and running a script of `tests/browser`.
pub mod browser {
    use std::{
        net::TcpListener,
        path::{Path, PathBuf},
        process::{Child, Command, Output, Stdio},
        time::{Duration, Instant},
    };

    /// The workspace root, where the scripts run.
    pub fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// The Chromium to drive (`CHROMIUM`, default /usr/bin/chromium), or `None` when the test
    /// cannot run here: it prints SKIPPED then, and panics instead under `CI=true`.
    pub fn chromium_or_skip() -> Option<PathBuf> {
        let chromium =
            PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
        let Some(why) = missing(&chromium) else {
            return Some(chromium);
        };
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("browser test cannot run under CI: {why}");
        }
        println!("SKIPPED: {why}");
        None
    }

    /// What is missing to run the browser test, if anything.
    fn missing(chromium: &Path) -> Option<String> {
        let node = Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !node.is_ok_and(|s| s.success()) {
            return Some("node is not installed".into());
        }
        if !chromium.exists() {
            return Some(format!(
                "{} does not exist (apt-get install chromium)",
                chromium.display()
            ));
        }
        let module = workspace().join("tests/browser/node_modules/playwright-core");
        if !module.exists() {
            return Some("playwright-core is not installed (npm ci in tests/browser)".into());
        }
        None
    }

    /// A port free right now on 127.0.0.1 (chatd binds it a moment later).
    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    /// Where the scripts save their screenshots (printed, so a person can find them).
    pub fn screenshot_dir() -> PathBuf {
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        println!("screenshots: {}", shots.display());
        shots
    }

    /// `node tests/browser/<script>` in the workspace, with `CHROMIUM` and `SCREENSHOT_DIR` set
    /// and its output captured; the caller adds the script's own environment.
    pub fn script(name: &str, chromium: &Path, shots: &Path) -> Command {
        let mut command = Command::new("node");
        command
            .arg(format!("tests/browser/{name}"))
            .current_dir(workspace())
            .env("SCREENSHOT_DIR", shots)
            .env("CHROMIUM", chromium)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Waits for `child` to end, killing it after `timeout`, and reads its output (blocking).
    pub fn finish(mut child: Child, timeout: Duration) -> Output {
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if started.elapsed() > timeout => {
                    let _ = child.kill();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("waiting for node: {e}"),
            }
        }
        child.wait_with_output().expect("node output")
    }

    /// Prints what the script wrote and asserts that it succeeded, "OK" as its last line.
    pub fn assert_ok(output: &Output) {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        println!("{stdout}");
        eprintln!("{stderr}");
        assert!(output.status.success(), "browser script failed: {stderr}");
        assert_eq!(stdout.lines().last(), Some("OK"), "the script's last line");
    }
}

/// Whether chatd's end of the test's connection `client` has `TCP_NODELAY`. chatd runs in this
/// process: its end is found among the process's descriptors by its two addresses, each
/// descriptor copied through a pidfd of the process (`pidfd_getfd`, Linux 5.6; no unsafe code).
/// Call it once chatd has answered on `client`, so that it has accepted the connection.
///
/// # Panics
///
/// When no descriptor of this process is chatd's end of `client`.
pub fn accepted_nodelay(client: &tokio::net::TcpStream) -> bool {
    use rustix::process::{getpid, pidfd_getfd, pidfd_open, PidfdFlags, PidfdGetfdFlags};

    let ours = client.local_addr().expect("the client's address");
    let theirs = client.peer_addr().expect("the server's address");
    let me = pidfd_open(getpid(), PidfdFlags::empty()).expect("a pidfd of this process");
    let fds = std::fs::read_dir("/proc/self/fd").expect("this process's descriptors");
    for entry in fds.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // Gone meanwhile (the directory's own descriptor), or not copyable: not a socket of ours.
        let Ok(copy) = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let socket = std::net::TcpStream::from(copy);
        if socket.local_addr().ok() == Some(theirs) && socket.peer_addr().ok() == Some(ours) {
            return socket.nodelay().expect("TCP_NODELAY of chatd's end");
        }
    }
    panic!("no connection from {ours} to {theirs} accepted in this process");
}
