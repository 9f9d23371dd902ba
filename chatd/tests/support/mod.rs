//! Shared helpers of the page, mail and admin tests: a state over an in-memory store, a seeded
//! room, a mailer that captures mails, a real SMTP server (mailin-embedded) on 127.0.0.1:0,
//! request builders for `app(state).oneshot(..)`, a browser with a cookie jar, the mall's
//! shops, ads and members, and a fresh SQLite file or PostgreSQL schema per test.
#![allow(dead_code)] // each test file uses its own subset

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, TcpListener},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
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
    auth,
    mail::{MailError, MailSender, OutgoingMail},
    AppState,
};
use chmail::{
    store::{
        mall::{AdFields, NewMember, TokenPurpose},
        NewMessage, Participant, Role, Store, Submission, Via,
    },
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
    // No metrics endpoint: the default port is one per machine, and tests run in parallel.
    config.chat.metrics_listen = String::new();
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
        name: None,
    }];
    participants.extend(to.iter().map(|a| Participant {
        address: (*a).into(),
        role: Role::To,
        name: None,
    }));
    participants.extend(cc.iter().map(|a| Participant {
        address: (*a).into(),
        role: Role::Cc,
        name: None,
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
            opening: None,
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
            picture_id: None,
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
    /// The next mail, waiting up to 30 s: an upper bound for a loaded machine (two cores
    /// running the whole suite), not a speed check.
    pub async fn next(&mut self) -> Option<Received> {
        tokio::time::timeout(Duration::from_secs(30), self.0.recv())
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

/// A `Cookie` header value of a fresh session of `login`.
pub async fn session_cookie(state: &AppState, login: &str) -> String {
    let set = auth::start_session(state, login)
        .await
        .expect("session starts");
    set.split(';').next().unwrap_or_default().to_owned()
}

/// The value of the hidden field `name` of a page (as written, `&amp;` read back as `&`).
pub fn hidden(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find('"')?;
    Some(body[start..start + end].replace("&amp;", "&"))
}

/// The path of the first link in `text` that starts with `prefix` (up to the next blank).
pub fn link_path(text: &str, prefix: &str) -> String {
    let start = text.find(prefix).expect("the mail holds the link");
    text[start..]
        .split(char::is_whitespace)
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `fields` as a form body.
pub fn encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

// --- a browser ---------------------------------------------------------------------------------

/// A browser: a cookie jar and a client address, talking to the router.
pub struct Browser {
    /// The app it talks to.
    pub router: Router,
    /// Its cookies, by name.
    pub cookies: BTreeMap<String, String>,
    /// The address it connects from.
    pub ip: IpAddr,
}

impl Browser {
    /// A browser without cookies connecting from `ip`.
    pub fn new(router: Router, ip: [u8; 4]) -> Self {
        Self {
            router,
            cookies: BTreeMap::new(),
            ip: IpAddr::from(ip),
        }
    }

    /// Its `Cookie` header value.
    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Its session cookie's value.
    pub fn session(&self) -> Option<String> {
        self.cookies.get("chmail_session").cloned()
    }

    /// Keeps the cookies `page` sets and forgets those it clears.
    fn absorb(&mut self, page: &Page) {
        for c in page.set_cookies() {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.into(), value.into());
                }
            }
        }
    }

    /// Sends `builder` with the cookies, from the browser's address, and keeps what it sets.
    async fn request(&mut self, builder: axum::http::request::Builder, body: Body) -> Page {
        let mut builder = builder;
        let cookies = self.cookie_header();
        if !cookies.is_empty() {
            builder = builder.header(header::COOKIE, cookies);
        }
        let mut req = builder.body(body).expect("request builds");
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(self.ip, 40000)));
        let page = send(&self.router, req).await;
        self.absorb(&page);
        page
    }

    /// A GET of `path`.
    pub async fn get(&mut self, path: &str) -> Page {
        self.request(Request::get(path), Body::empty()).await
    }

    /// A same-origin form post of `body` as is (no token added).
    pub async fn post_raw(&mut self, path: &str, body: String) -> Page {
        let builder = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .header(header::ORIGIN, "null");
        self.request(builder, Body::from(body)).await
    }

    /// A form post with the page's CSRF token, as our pages send it.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        if !self.cookies.contains_key("chmail_csrf") {
            self.get("/mall/signin").await;
        }
        let token = self.cookies.get("chmail_csrf").cloned().unwrap_or_default();
        let mut body = encode(fields);
        if !body.is_empty() {
            body.push('&');
        }
        body.push_str(&format!("csrf={token}"));
        self.post_raw(path, body).await
    }

    /// Posts the sign-up form.
    pub async fn sign_up(
        &mut self,
        address: &str,
        name: &str,
        password: &str,
        promotions: bool,
        next: &str,
    ) -> Page {
        let mut fields = vec![
            ("address", address),
            ("name", name),
            ("password", password),
            ("next", next),
        ];
        if promotions {
            fields.push(("promotions", "yes"));
        }
        self.post("/mall/signup", &fields).await
    }

    /// Posts the sign-in form.
    pub async fn sign_in(&mut self, address: &str, password: &str, next: &str) -> Page {
        self.post(
            "/mall/signin",
            &[("address", address), ("password", password), ("next", next)],
        )
        .await
    }

    /// Follows a confirm link (`/mall/confirm/TOKEN?next=...`) as a person: the page, where
    /// they type `password` (the one chosen at sign-up) and press the button, which posts it
    /// with the hidden fields.
    pub async fn confirm(&mut self, link: &str, password: &str) -> Page {
        let page = self.get(link).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("id=\"confirm\""), "{}", page.body);
        assert!(page.body.contains("name=\"password\""), "{}", page.body);
        let path = link.split('?').next().unwrap_or_default().to_owned();
        let next = hidden(&page.body, "next").unwrap_or_default();
        self.post(&path, &[("password", password), ("next", &next)])
            .await
    }
}

// --- the mall's shops and members ----------------------------------------------------------------

/// A password hash in the stored format, for members whose password no test types.
pub const SOME_PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$test$test";

/// A company `name` with its host `host` (shown as `host_name`); returns the company's id.
pub async fn shop(store: &dyn Store, name: &str, host: &str, host_name: &str, now: i64) -> i64 {
    let (company, _) = store.add_company(name, now).await.expect("company");
    store
        .add_host(company.id, host, host_name, now)
        .await
        .expect("host");
    company.id
}

/// An active ad of `host` titled `title`, at EUR 25.00 in "Kitchen", always on.
pub fn ad_fields(host: &str, title: &str) -> AdFields {
    AdFields {
        host_login: host.into(),
        title: title.into(),
        description: "Holds a litre.".into(),
        price_minor: 2_500,
        currency: "EUR".into(),
        category: "Kitchen".into(),
        starts_ms: None,
        ends_ms: None,
        paused: false,
    }
}

/// A member `address` named `name`, opted in to promotions or not; `confirmed` members have
/// proven their address by the confirm link. Returns the member's id.
pub async fn add_member(
    store: &dyn Store,
    address: &str,
    name: &str,
    promotions: bool,
    confirmed: bool,
    now: i64,
) -> i64 {
    let m = store
        .create_member(&NewMember {
            address: address.into(),
            name: name.into(),
            password_hash: SOME_PASSWORD_HASH.into(),
            promotions,
            created_ms: now,
        })
        .await
        .expect("store")
        .expect("a new member");
    if confirmed {
        let hash = auth::hash_token(&auth::new_token().expect("token"));
        store
            .create_member_token(&hash, m.id, TokenPurpose::Confirm, now, now + 60_000)
            .await
            .expect("token stored");
        store
            .use_member_token(&hash, TokenPurpose::Confirm, now)
            .await
            .expect("store")
            .expect("confirmed");
    }
    m.id
}

// --- the two backends ----------------------------------------------------------------------------

/// The PostgreSQL server of the tests when `CHMAIL_TEST_POSTGRES_URL` does not name one.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// One test's store: an SQLite file, or a fresh PostgreSQL schema dropped at the end.
pub struct Db {
    /// The migrated store.
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl Db {
    /// A migrated SQLite file in a temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("chmail.db").display());
        let store = chmail::open_store(&url, 2).await.expect("SQLite opens");
        store.migrate().await.expect("migrations apply");
        Self {
            store,
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// A fresh, migrated schema named after `prefix` on the server of
    /// `CHMAIL_TEST_POSTGRES_URL` (default [`DEFAULT_POSTGRES_URL`]), or `None` (after a note)
    /// when PostgreSQL is unreachable and CI is not set.
    pub async fn postgres(prefix: &str) -> Option<Self> {
        let admin = std::env::var("CHMAIL_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let client = match admin_client(&admin).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("PostgreSQL not reachable at {admin} (CI=true, so this fails): {e}");
                }
                eprintln!("SKIPPED: PostgreSQL not reachable at {admin}: {e}");
                return None;
            }
        };
        let schema = unique_schema(prefix);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("CREATE SCHEMA");
        let sep = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{sep}options=-csearch_path%3D{schema}");
        let store = chmail::open_store(&url, 4)
            .await
            .expect("PostgreSQL store opens");
        store.migrate().await.expect("migrations apply");
        Some(Self {
            store,
            _dir: None,
            postgres: Some((admin, schema)),
        })
    }
}

impl Drop for Db {
    /// Drops the PostgreSQL schema, best effort, even when the test panicked.
    fn drop(&mut self) {
        let Some((admin, schema)) = self.postgres.take() else {
            return;
        };
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = admin_client(&admin).await.ok()?;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .ok()
            })
        });
        let _ = done.join();
    }
}

/// A client of the PostgreSQL server at `url`, connected within 5 s.
async fn admin_client(url: &str) -> Result<tokio_postgres::Client, String> {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, conn) = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "no answer within 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A schema name no other test run uses: `prefix`, the process and a counter.
fn unique_schema(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
