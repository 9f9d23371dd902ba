//! Shared helpers of the page, mail and admin tests: a state over an in-memory store, a seeded
//! room, a mailer that captures mails, a real SMTP server (mailin-embedded) on 127.0.0.1:0, and
//! request builders for `app(state).oneshot(..)`.
#![allow(dead_code)] // each test file uses its own subset

use std::{
    net::{SocketAddr, TcpListener},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use axum::{
    body::{to_bytes, Body},
    extract::ConnectInfo,
    http::{header, HeaderMap, Request, Response, StatusCode},
    Router,
};
use chatd::{
    mail::{MailError, MailSender, OutgoingMail},
    AppState,
};
use chmail::{
    store::{NewMessage, Participant, Role, Store, Submission, Via},
    Config,
};
use tokio::sync::mpsc;
use tower::ServiceExt as _;

/// The public origin of the test configs.
pub const ORIGIN: &str = "http://chat.test";

/// A config for tests: public URL [`ORIGIN`], everything else default.
pub fn config() -> Config {
    let mut config = Config::default();
    config.chat.public_url = ORIGIN.into();
    config.signing.domain = "a.example".into();
    config
}

/// Captures every mail "sent".
pub struct CaptureMailer {
    tx: mpsc::UnboundedSender<OutgoingMail>,
}

#[async_trait]
impl MailSender for CaptureMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let _ = self.tx.send(mail.clone());
        Ok(())
    }
}

/// The mails a [`CaptureMailer`] got.
pub struct Mails(mpsc::UnboundedReceiver<OutgoingMail>);

impl Mails {
    /// The next mail, waiting up to 5 s.
    pub async fn next(&mut self) -> Option<OutgoingMail> {
        tokio::time::timeout(Duration::from_secs(5), self.0.recv())
            .await
            .ok()
            .flatten()
    }

    /// Whether another mail arrives within `wait`.
    pub async fn none_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.0.recv()).await.is_err()
    }
}

/// An in-memory, migrated store.
pub async fn memory_store() -> Arc<dyn Store> {
    let store = chmail::open_store("sqlite::memory:", 1)
        .await
        .expect("in-memory store opens");
    store.migrate().await.expect("migrations apply");
    store
}

/// A state over a fresh in-memory store, its mails captured once the outbox's delivery worker
/// (running for the rest of the test) sends them.
pub async fn state_with(config: Config) -> (AppState, Mails) {
    state_over(config, memory_store().await)
}

/// A state over `store` (migrated), its mails captured as [`state_with`] does.
pub fn state_over(config: Config, store: Arc<dyn Store>) -> (AppState, Mails) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state =
        AppState::new(config, store, Arc::new(CaptureMailer { tx })).expect("test config is valid");
    start_delivery(&state);
    (state, Mails(rx))
}

/// Runs the outbox's delivery worker of `state` for the rest of the test (as a running chatd
/// does), so that queued mail reaches its mailer.
pub fn start_delivery(state: &AppState) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let state = state.clone();
    tokio::spawn(async move {
        // Holding the sender keeps the worker running: a dropped one would read as shutdown.
        let _stop = stop;
        chatd::outbox::run_delivery(state, stopped).await;
    });
}

/// A state with [`config`].
pub async fn state() -> (AppState, Mails) {
    state_with(config()).await
}

/// A seeded room.
pub struct Seeded {
    /// The sender's login.
    pub login: String,
    /// Its port.
    pub port: u16,
    /// The room id.
    pub room: String,
}

/// A 22-character room id made from `tag`.
pub fn room_id(tag: &str) -> String {
    format!("{tag:_<22}").chars().take(22).collect()
}

/// Seeds a mail from `login` (From `from`) to `to` and `cc` with `subject`, as the milter would.
pub async fn seed_room(
    store: &dyn Store,
    login: &str,
    from: &str,
    room: &str,
    subject: &str,
    to: &[&str],
    cc: &[&str],
) -> Seeded {
    let mut participants = vec![Participant {
        address: from.into(),
        role: Role::From,
    }];
    participants.extend(to.iter().map(|a| Participant {
        address: (*a).into(),
        role: Role::To,
    }));
    participants.extend(cc.iter().map(|a| Participant {
        address: (*a).into(),
        role: Role::Cc,
    }));
    let config = config();
    let grant = store
        .record_submission(&Submission {
            login: login.into(),
            ip: Some("192.0.2.10".into()),
            hostname: Some("client.a.example".into()),
            now: 1_714_566_896,
            ports: config.chat.ports,
            reclaim_after: config.chat.reclaim_after(),
            room_id: room.into(),
            message_id: Some(format!("<{room}@a.example>")),
            subject: Some(subject.into()),
            participants,
        })
        .await
        .expect("submission stored");
    Seeded {
        login: login.into(),
        port: grant.port,
        room: room.into(),
    }
}

/// The usual room: alice@a.example to bob@b.example, cc carol@c.example.
pub async fn alice_room(store: &dyn Store) -> Seeded {
    seed_room(
        store,
        "alice@a.example",
        "alice@a.example",
        &room_id("alicesroom"),
        "Quarterly numbers",
        &["bob@b.example"],
        &["carol@c.example"],
    )
    .await
}

/// Stores a web message in `room` by `author`.
pub async fn add_message(store: &dyn Store, room: &str, author: &str, body: &str, at_ms: i64) {
    store
        .add_message(&NewMessage {
            room_id: room.into(),
            author: author.into(),
            body: body.into(),
            created_ms: at_ms,
            via: Via::Web,
            client_id: None,
        })
        .await
        .expect("message stored");
}

/// The client address the tests connect from.
pub fn client() -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 7], 40000))
}

/// A GET with `cookies` (a `Cookie` header value, may be empty), from [`client`].
pub fn get(path: &str, cookies: &str) -> Request<Body> {
    let mut b = Request::get(path);
    if !cookies.is_empty() {
        b = b.header(header::COOKIE, cookies);
    }
    let mut req = b.body(Body::empty()).expect("request builds");
    req.extensions_mut().insert(ConnectInfo(client()));
    req
}

/// A same-origin form POST (as a browser sends it from our page) with `cookies` and `form`.
pub fn post_form(path: &str, cookies: &str, form: &str) -> Request<Body> {
    let mut b = Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .header(header::ORIGIN, "null");
    if !cookies.is_empty() {
        b = b.header(header::COOKIE, cookies);
    }
    let mut req = b.body(Body::from(form.to_owned())).expect("request builds");
    req.extensions_mut().insert(ConnectInfo(client()));
    req
}

/// A response read to the end.
pub struct Page {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body as text.
    pub body: String,
}

impl Page {
    /// The `Set-Cookie` values.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// The `Set-Cookie` value of cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// `name=value` of cookie `name`, for a `Cookie` header.
    pub fn cookie_pair(&self, name: &str) -> Option<String> {
        self.set_cookie(name)
            .and_then(|c| c.split(';').next().map(str::to_owned))
    }

    /// The `Location` header.
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of the hidden `csrf` field of a page's form.
    pub fn csrf_field(&self) -> Option<String> {
        let start = self.body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        let end = self.body[start..].find('"')?;
        Some(self.body[start..start + end].to_owned())
    }
}

/// Sends `req` to `router` and reads the whole answer.
pub async fn send(router: &Router, req: Request<Body>) -> Page {
    let response: Response<Body> = router.clone().oneshot(req).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body reads");
    Page {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// `s` percent-encoded for a form body.
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The path (from `/auth/`) of the first sign-in link in `text`.
pub fn auth_path(text: &str) -> Option<String> {
    let start = text.find("/auth/")?;
    let token: String = text[start + "/auth/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    Some(format!("/auth/{token}"))
}

/// Follows a sign-in link as a person does: opens its page (`path` is `/auth/<token>`), which
/// must not use the link yet, and presses the Sign in button. Returns the answer to that post.
pub async fn follow_link(router: &Router, path: &str) -> Page {
    let confirm = send(router, get(path, "")).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    assert!(confirm.set_cookie("chmail_session").is_none());
    assert!(
        confirm
            .body
            .contains(&format!("<form method=\"post\" action=\"{path}\"")),
        "{}",
        confirm.body
    );
    let cookie = confirm.cookie_pair("chmail_csrf").expect("a CSRF cookie");
    let token = confirm.csrf_field().expect("a csrf field");
    send(router, post_form(path, &cookie, &format!("csrf={token}"))).await
}

/// One mail as a real SMTP server received it.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The envelope sender.
    pub from: String,
    /// The envelope recipients.
    pub to: Vec<String>,
    /// The message as transferred.
    pub data: Vec<u8>,
}

/// A real SMTP server (mailin-embedded) on 127.0.0.1, capturing what it receives. Recipients
/// starting with `perm-fail` get 550, with `temp-fail` 451.
#[derive(Clone)]
struct SmtpSink {
    tx: mpsc::UnboundedSender<Received>,
    /// The mail being received on this connection (each connection has its own clone).
    current: Received,
}

impl mailin_embedded::Handler for SmtpSink {
    fn rcpt(&mut self, to: &str) -> mailin_embedded::Response {
        if to.starts_with("perm-fail") {
            mailin_embedded::response::NO_MAILBOX
        } else if to.starts_with("temp-fail") {
            mailin_embedded::response::INTERNAL_ERROR
        } else {
            mailin_embedded::response::OK
        }
    }

    fn data_start(
        &mut self,
        _domain: &str,
        from: &str,
        _is8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        self.current = Received {
            from: from.into(),
            to: to.to_vec(),
            data: Vec::new(),
        };
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let _ = self.tx.send(std::mem::take(&mut self.current));
        mailin_embedded::response::OK
    }
}

/// The mails a [`start_smtp`] server received.
pub struct Inbox(mpsc::UnboundedReceiver<Received>);

impl Inbox {
    /// The next mail, waiting up to 10 s.
    pub async fn next(&mut self) -> Option<Received> {
        tokio::time::timeout(Duration::from_secs(10), self.0.recv())
            .await
            .ok()
            .flatten()
    }
}

/// Starts a real SMTP server on 127.0.0.1:0 (in its own thread, for the rest of the test
/// process) and returns its address.
pub fn start_smtp() -> (SocketAddr, Inbox) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    let (tx, rx) = mpsc::unbounded_channel();
    let sink = SmtpSink {
        tx,
        current: Received::default(),
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
    (addr, Inbox(rx))
}
