//! chatd's own TLS, with a self-signed certificate made by `openssl` for each test: HTTPS and
//! `wss://` on `[chat] listen` (pages, a WebSocket that joins and writes; plain HTTP to that port
//! fails and the server goes on), STARTTLS on the reply listener (offered only when configured,
//! a reply sent over it lands in the room, cleartext sent after STARTTLS is dropped; `swaks
//! --tls` too), reloading a certificate, and the start-up errors for a missing file, a file that
//! is not PEM or holds no certificate or key, and a key that is not the certificate's.
//!
//! `openssl` must be installed: without it these tests are SKIPPED, except under `CI=true`,
//! where a missing `openssl` fails them; the same for `swaks` in the one test that uses it.
//! That test also needs swaks' TLS support (Perl's Net::SSLeay, Debian's `libnet-ssleay-perl`,
//! which swaks only recommends): without it, it is SKIPPED, under `CI=true` too.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use chatd::{
    server::{start_with_store, StartError},
    tls::TlsError,
};
use chmail::{store::Via, Config};
use common::{Harness, RecordingMailer, BOB, CAROL, ROOM};
use futures_util::{SinkExt as _, StreamExt as _};
use rustls::{
    crypto::aws_lc_rs,
    pki_types::{pem::PemObject as _, CertificateDer, ServerName},
    ClientConfig, RootCertStore,
};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpStream,
};
use tokio_rustls::{client::TlsStream, TlsConnector};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest as _, http::HeaderValue, Message};

/// The public origin of chatd in these tests: HTTPS.
const ORIGIN: &str = "https://chat.test";

/// The reply domain of the test config (`reply.<[signing] domain>`).
const REPLY_DOMAIN: &str = "reply.a.example";

/// The longest wait for one answer of the server.
const ANSWER: Duration = Duration::from_secs(30);

/// Whether `tool` runs here; under `CI=true` its absence fails the test.
fn available(tool: &str, version_arg: &str) -> bool {
    let found = Command::new(tool)
        .arg(version_arg)
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is not installed, and CI=true requires it"
        );
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

/// A temporary directory for the test's certificates, or `None` (the test is SKIPPED) when
/// `openssl`, which makes them, is not installed.
fn cert_dir() -> Option<TempDir> {
    available("openssl", "version").then(|| TempDir::new().expect("temporary directory"))
}

/// A certificate chain file and its key file.
#[derive(Clone, Debug)]
struct Pair {
    cert: PathBuf,
    key: PathBuf,
}

impl Pair {
    /// `<name>.crt` and `<name>.key` in `dir`.
    fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        }
    }

    /// Copies both files over `to`'s, as a renewal does.
    fn copy_to(&self, to: &Self) {
        std::fs::copy(&self.cert, &to.cert).expect("certificate copied");
        std::fs::copy(&self.key, &to.key).expect("key copied");
    }
}

/// Makes a self-signed certificate for `localhost` and 127.0.0.1 (an end-entity certificate,
/// which a client can trust directly) and its P-256 key, as `<name>.crt` and `<name>.key`.
fn self_signed(dir: &Path, name: &str) -> Pair {
    let pair = Pair::in_dir(dir, name);
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .arg("-keyout")
        .arg(&pair.key)
        .arg("-out")
        .arg(&pair.cert)
        .args(["-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "keyUsage=digitalSignature"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pair
}

/// A client that trusts only the certificate in `cert`.
fn trusting(cert: &Path) -> TlsConnector {
    trusting_with_alpn(cert, &[])
}

/// A client that trusts only the certificate in `cert` and offers the protocols `alpn`.
fn trusting_with_alpn(cert: &Path, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(cert).expect("certificate file") {
        roots.add(der.expect("certificate")).expect("trusted");
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a DNS name")
}

/// The TLS handshake with `addr`.
async fn connect(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    handshake(connector, TcpStream::connect(addr).await?).await
}

/// The TLS handshake over the connection `tcp`, as the client `connector`.
async fn handshake(
    connector: &TlsConnector,
    tcp: TcpStream,
) -> std::io::Result<TlsStream<TcpStream>> {
    tokio::time::timeout(ANSWER, connector.connect(localhost(), tcp))
        .await
        .expect("the handshake ends in time")
}

/// Sends `GET path` over `stream` with `Connection: close` and returns the whole response.
async fn get(mut stream: impl AsyncRead + AsyncWrite + Unpin, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: chat.test\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut response = Vec::new();
    // A server may close without TLS's close_notify; what arrived counts.
    let _ = tokio::time::timeout(ANSWER, stream.read_to_end(&mut response))
        .await
        .expect("the response ends in time");
    String::from_utf8_lossy(&response).into_owned()
}

/// chatd with `[chat] tls_cert`/`tls_key` set to `pair` and an `https://` public URL.
async fn https_chatd(pair: &Pair) -> Harness {
    let pair = pair.clone();
    Harness::start(move |c| {
        c.chat.public_url = ORIGIN.into();
        c.chat.tls_cert = pair.cert;
        c.chat.tls_key = pair.key;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_served_over_https_and_plain_http_to_that_port_fails() {
    let Some(dir) = cert_dir() else {
        return;
    };
    let pair = self_signed(dir.path(), "chat");
    let h = https_chatd(&pair).await;
    assert!(h.running().https());
    let addr = h.running().addr();
    let client = trusting(&pair.cert);

    let browser = trusting_with_alpn(&pair.cert, &[b"h2", b"http/1.1"]);
    let stream = connect(&browser, addr).await.expect("TLS handshake");
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "ALPN picks HTTP/1.1"
    );
    let page = get(stream, &format!("/c/{}/{ROOM}", h.port)).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains(common::SUBJECT), "{page}");

    // Plain HTTP to the TLS port: no HTTP answer, and the server goes on.
    let plain = TcpStream::connect(addr).await.expect("TCP connects");
    let answer = get(plain, "/").await;
    assert!(!answer.contains("HTTP/1"), "{answer:?}");
    // A client that does not trust this certificate refuses it.
    let other = self_signed(dir.path(), "other");
    let refused = connect(&trusting(&other.cert), addr).await;
    assert!(refused.is_err(), "a foreign certificate was accepted");

    let stream = connect(&client, addr).await.expect("TLS handshake");
    let page = get(stream, "/signin").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let mut h = h;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_connections_have_tcp_nodelay() {
    let Some(dir) = cert_dir() else {
        return;
    };
    let pair = self_signed(dir.path(), "chat");
    let h = https_chatd(&pair).await;
    let stream = connect(&trusting(&pair.cert), h.running().addr())
        .await
        .expect("TLS handshake");
    // The handshake is over: chatd accepted the connection.
    assert!(common::accepted_nodelay(stream.get_ref().0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_from_one_address_do_not_delay_https_for_another() {
    let Some(dir) = cert_dir() else {
        return;
    };
    let pair = self_signed(dir.path(), "chat");
    let tls = pair.clone();
    let mut h = Harness::start_with(
        move |c| {
            c.chat.public_url = ORIGIN.into();
            c.chat.tls_cert = tls.cert;
            c.chat.tls_key = tls.key;
        },
        // The clients are all on loopback, which chatd otherwise counts as a local proxy.
        |state| state.http_limits.loopback_in_all_only = false,
    )
    .await;
    let addr = h.running().addr();
    // More silent connections than handshakes may run in all: each waits for a ClientHello
    // that never comes.
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(TcpStream::connect(addr).await.expect("TCP connects"));
    }
    // Those past one address's share are closed at once, not after the handshake time-out.
    let mut last = silent.pop().expect("a connection");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), last.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a connection past the cap stayed open");

    let started = std::time::Instant::now();
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(([127, 0, 0, 2], 0).into())
        .expect("bind a second loopback address");
    let tcp = socket.connect(addr).await.expect("TCP connects");
    let stream = handshake(&trusting(&pair.cert), tcp)
        .await
        .expect("TLS handshake");
    let page = get(stream, "/signin").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a real request waited {:?} behind the silent connections",
        started.elapsed()
    );
    assert!(
        page.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "chatd's own TLS sends HSTS: {page}"
    );
    drop(silent);
    h.stop().await;
}

/// The next JSON text frame.
async fn next_frame<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let message = tokio::time::timeout(ANSWER, ws.next())
            .await
            .expect("a frame in time")
            .expect("the WebSocket is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).expect("JSON");
        }
    }
}

/// The next frame of type `kind`, skipping others.
async fn skip_to<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, kind: &str) -> Value
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let frame = next_frame(ws).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_wss_joins_and_writes() {
    let Some(dir) = cert_dir() else {
        return;
    };
    let pair = self_signed(dir.path(), "chat");
    let mut h = https_chatd(&pair).await;
    let addr = h.running().addr();
    let stream = connect(&trusting(&pair.cert), addr)
        .await
        .expect("TLS handshake");
    let mut request = format!("wss://localhost:{}/ws", addr.port())
        .into_client_request()
        .expect("a WebSocket request");
    request
        .headers_mut()
        .insert("Origin", HeaderValue::from_static(ORIGIN));
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the WebSocket opens over TLS");
    assert_eq!(response.status(), 101);

    assert_eq!(next_frame(&mut ws).await["type"], "hello");
    let join = json!({"type": "join", "port": h.port, "room": ROOM, "v": 1, "as": CAROL});
    ws.send(Message::text(join.to_string()))
        .await
        .expect("join sent");
    let joined = skip_to(&mut ws, "joined").await;
    assert_eq!(joined["room"], ROOM, "{joined}");
    assert_eq!(joined["you"], CAROL, "{joined}");
    let say = json!({"type": "message", "text": "over wss", "id": "w1"});
    ws.send(Message::text(say.to_string()))
        .await
        .expect("message sent");
    let ack = skip_to(&mut ws, "ack").await;
    assert_eq!(ack["message"]["text"], "over wss", "{ack}");
    assert_eq!(ack["message"]["author"], CAROL, "{ack}");
    let _ = ws.close(None).await;
    h.stop().await;
}

/// One SMTP client connection: reads multi-line answers.
struct Smtp<S> {
    io: tokio::io::BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Smtp<S> {
    fn new(stream: S) -> Self {
        Self {
            io: tokio::io::BufReader::new(stream),
        }
    }

    /// The next answer, all its lines.
    async fn answer(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(ANSWER, self.io.read_line(&mut line))
                .await
                .expect("an answer in time")
                .expect("the connection reads");
            assert!(read > 0, "the server closed after: {all:?}");
            all.push_str(&line);
            // `250-...` goes on, `250 ...` ends the answer.
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    /// Sends `line` and returns the answer.
    async fn send(&mut self, line: &str) -> String {
        self.write(&format!("{line}\r\n")).await;
        self.answer().await
    }

    async fn write(&mut self, text: &str) {
        let io = self.io.get_mut();
        io.write_all(text.as_bytes()).await.expect("sent");
        io.flush().await.expect("flushed");
    }
}

impl Smtp<TcpStream> {
    /// Connects to `addr` in the clear and reads the 220 greeting.
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let mut smtp = Self::new(TcpStream::connect(addr).await.expect("TCP connects"));
        let greeting = smtp.answer().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        smtp
    }

    /// After the server's 220 to STARTTLS: the TLS handshake on the same connection, as the
    /// client `connector`, and the session over TLS. Nothing the server sent may be left unread.
    async fn start_tls(self, connector: &TlsConnector) -> Smtp<TlsStream<TcpStream>> {
        assert!(
            self.io.buffer().is_empty(),
            "the server sent more after its 220: {:?}",
            String::from_utf8_lossy(self.io.buffer())
        );
        let tls = handshake(connector, self.io.into_inner())
            .await
            .expect("TLS handshake");
        Smtp::new(tls)
    }
}

/// chatd with `[reply] tls_cert`/`tls_key` set to `pair` (and plain HTTP).
async fn starttls_chatd(pair: &Pair) -> Harness {
    let pair = pair.clone();
    Harness::start(move |c| {
        c.reply.tls_cert = pair.cert;
        c.reply.tls_key = pair.key;
    })
    .await
}

/// A reply of Bob's to `to`.
fn reply_mail(to: &str, message_id: &str, text: &str) -> String {
    format!(
        "From: Bob <{BOB}>\r\n\
         To: {to}\r\n\
         Subject: Re: Quarterly numbers\r\n\
         Date: Wed, 1 May 2024 16:20:45 +0200\r\n\
         Message-ID: <{message_id}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=UTF-8\r\n\
         \r\n\
         {text}\r\n"
    )
}

async fn mail_messages(h: &Harness) -> Vec<chmail::store::Message> {
    h.store()
        .messages(ROOM, None, 500)
        .await
        .expect("messages read")
        .into_iter()
        .filter(|m| m.via == Via::Mail)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_sent_after_starttls_lands_in_the_room() {
    let Some(dir) = cert_dir() else {
        return;
    };
    let pair = self_signed(dir.path(), "mx");
    let mut h = starttls_chatd(&pair).await;
    assert!(!h.running().https(), "[chat] stays plain HTTP");
    let mut carol = h.joined(CAROL).await;
    let to = chatd::reply::address(h.state(), ROOM, BOB)
        .await
        .expect("reply address");
    assert!(to.ends_with(&format!("@{REPLY_DOMAIN}")), "{to}");
    let addr = h.running().reply_addr().expect("the reply listener runs");

    let mut plain = Smtp::connect(addr).await;
    let ehlo = plain.send("EHLO mx.b.example").await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    let ready = plain.send("STARTTLS").await;
    assert!(ready.starts_with("220 "), "{ready}");

    let mut smtp = plain.start_tls(&trusting(&pair.cert)).await;
    // RFC 3207: the greeting is forgotten; mail before a new EHLO is out of sequence.
    let early = smtp.send(&format!("MAIL FROM:<{BOB}>")).await;
    assert!(early.starts_with("503"), "{early}");
    let ehlo = smtp.send("EHLO mx.b.example").await;
    assert!(ehlo.starts_with("250"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "offered twice: {ehlo}");
    let again = smtp.send("STARTTLS").await;
    assert!(again.starts_with('5'), "{again}");
    assert!(smtp
        .send(&format!("MAIL FROM:<{BOB}>"))
        .await
        .starts_with("250"));
    let rcpt = smtp.send(&format!("RCPT TO:<{to}>")).await;
    assert!(rcpt.starts_with("250"), "{rcpt}");
    assert!(smtp.send("DATA").await.starts_with("354"));
    smtp.write(&reply_mail(&to, "tls.1@b.example", "Sent over TLS."))
        .await;
    let done = smtp.send(".").await;
    assert!(done.starts_with("250"), "{done}");
    assert!(smtp.send("QUIT").await.starts_with("221"));

    let frame = carol.skip_to("message").await;
    assert_eq!(frame["message"]["text"], "Sent over TLS.", "{frame}");
    assert_eq!(frame["message"]["via"], "mail", "{frame}");
    let stored = mail_messages(&h).await;
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(stored[0].author, BOB);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_sent_after_starttls_is_dropped() {
    let Some(dir) = cert_dir() else {
        return;
    };
    let pair = self_signed(dir.path(), "mx");
    let mut h = starttls_chatd(&pair).await;
    let addr = h.running().reply_addr().expect("the reply listener runs");
    let mut plain = Smtp::connect(addr).await;
    plain.send("EHLO mx.b.example").await;
    // A command pipelined behind STARTTLS, in the clear (CVE-2011-0411).
    plain
        .write(&format!("STARTTLS\r\nMAIL FROM:<{BOB}>\r\n"))
        .await;
    let ready = plain.answer().await;
    assert!(ready.starts_with("220 "), "{ready}");
    let mut smtp = plain.start_tls(&trusting(&pair.cert)).await;
    // Had the injected MAIL been taken, the first answer over TLS would be its 250 (or a 503).
    let ehlo = smtp.send("EHLO mx.b.example").await;
    assert!(
        ehlo.starts_with("250-") || ehlo.starts_with("250 "),
        "{ehlo}"
    );
    assert!(ehlo.contains("8BITMIME"), "not the EHLO answer: {ehlo}");
    let rcpt = smtp.send("RCPT TO:<someone@reply.a.example>").await;
    assert!(rcpt.starts_with("503"), "a MAIL got through: {rcpt}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_offered_only_when_configured() {
    let mut h = Harness::start(|_| {}).await;
    let addr = h.running().reply_addr().expect("the reply listener runs");
    let mut smtp = Smtp::connect(addr).await;
    let ehlo = smtp.send("EHLO mx.b.example").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    let refused = smtp.send("STARTTLS").await;
    assert!(refused.starts_with('5'), "{refused}");
    // The session goes on in the clear.
    assert!(smtp
        .send(&format!("MAIL FROM:<{BOB}>"))
        .await
        .starts_with("250"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_delivers_a_reply_with_starttls() {
    let Some(dir) = cert_dir() else {
        return;
    };
    if !available("swaks", "--version") {
        return;
    }
    let support = Command::new("swaks")
        .arg("--support")
        .output()
        .expect("swaks runs");
    if !String::from_utf8_lossy(&support.stdout).contains("=== TLS supported") {
        eprintln!("SKIPPED: swaks has no TLS support (Net::SSLeay: libnet-ssleay-perl)");
        return;
    }
    let pair = self_signed(dir.path(), "mx");
    let mut h = starttls_chatd(&pair).await;
    let to = chatd::reply::address(h.state(), ROOM, BOB)
        .await
        .expect("reply address");
    let addr = h.running().reply_addr().expect("the reply listener runs");
    let mail = dir.path().join("reply.eml");
    std::fs::write(
        &mail,
        reply_mail(&to, "swaks.1@b.example", "Sent by swaks."),
    )
    .expect("mail");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("swaks")
            .args(["--server", &addr.ip().to_string()])
            .args(["--port", &addr.port().to_string()])
            .args(["--helo", "mx.b.example", "--tls"])
            .args(["--from", BOB, "--to", &to])
            .args(["--timeout", "30"])
            .arg("--data")
            .arg(format!("@{}", mail.display()))
            .output()
            .expect("swaks runs")
    })
    .await
    .expect("swaks finished");
    let transcript = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{transcript}");
    assert!(transcript.contains("TLS started"), "{transcript}");
    let stored = mail_messages(&h).await;
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(stored[0].body, "Sent by swaks.");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_after_a_reload() {
    let Some(dir) = cert_dir() else {
        return;
    };
    let first = self_signed(dir.path(), "first");
    let live = Pair::in_dir(dir.path(), "live");
    first.copy_to(&live);
    let mut h = https_chatd(&live).await;
    let addr = h.running().addr();

    // Renewed on disk: still the first until the reload.
    let second = self_signed(dir.path(), "second");
    second.copy_to(&live);
    connect(&trusting(&first.cert), addr)
        .await
        .expect("the first certificate is served before the reload");
    h.running().reload_tls().expect("reloaded");
    connect(&trusting(&second.cert), addr)
        .await
        .expect("the second certificate is served after the reload");

    // A broken renewal is refused and the certificate in use stays.
    std::fs::write(&live.key, "not a key").expect("written");
    let e = h
        .running()
        .reload_tls()
        .expect_err("a broken key is refused");
    assert!(matches!(e, TlsError::NoKey { .. }), "{e}");
    connect(&trusting(&second.cert), addr)
        .await
        .expect("the second certificate is still served");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_chatd_ends_open_tls_connections() {
    let Some(dir) = cert_dir() else {
        return;
    };
    let pair = self_signed(dir.path(), "both");
    let both = pair.clone();
    let mut h = Harness::start(move |c| {
        c.chat.public_url = ORIGIN.into();
        c.chat.tls_cert = both.cert.clone();
        c.chat.tls_key = both.key.clone();
        c.reply.tls_cert = both.cert;
        c.reply.tls_key = both.key;
    })
    .await;
    let client = trusting(&pair.cert);
    // A handshake that never starts, an idle keep-alive connection, an SMTP session over TLS.
    let _silent = TcpStream::connect(h.running().addr())
        .await
        .expect("TCP connects");
    let mut idle = connect(&client, h.running().addr())
        .await
        .expect("TLS handshake");
    idle.write_all(b"GET /signin HTTP/1.1\r\nHost: chat.test\r\n\r\n")
        .await
        .expect("request sent");
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.expect("an answer");
    assert_eq!(&head, b"HTTP/1.1 200");
    let addr = h.running().reply_addr().expect("the reply listener runs");
    let mut plain = Smtp::connect(addr).await;
    plain.send("EHLO mx.b.example").await;
    assert!(plain.send("STARTTLS").await.starts_with("220"));
    let mut smtp = plain.start_tls(&client).await;
    assert!(smtp.send("EHLO mx.b.example").await.starts_with("250"));

    // Well inside the handshake time-out: the silent connection is ended, not waited out.
    tokio::time::timeout(Duration::from_secs(5), h.stop())
        .await
        .expect("chatd stops with TLS connections open");
}

/// The `chatd` binary, run with a config file; its log lines arrive on a channel.
struct Process {
    child: std::process::Child,
    log: std::sync::mpsc::Receiver<String>,
}

impl Process {
    fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatd"))
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("RUST_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("chatd runs");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        Self { child, log }
    }

    /// The first log line that contains `text` (up to [`ANSWER`]).
    fn wait_for(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + ANSWER;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no {text:?} in the log:\n{}", seen.join("\n")),
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_makes_the_running_binary_reload_its_certificate() {
    let Some(dir) = cert_dir() else {
        return;
    };
    let first = self_signed(dir.path(), "first");
    let second = self_signed(dir.path(), "second");
    let live = Pair::in_dir(dir.path(), "live");
    first.copy_to(&live);
    let config = dir.path().join("chmail.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n\
             [signing]\ndomain = \"a.example\"\n\
             [chat]\npublic_url = \"{ORIGIN}\"\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"\"\n\
             tls_cert = {cert:?}\ntls_key = {key:?}\n\
             [reply]\nlisten = \"\"\n",
            data = dir.path().join("data").display().to_string(),
            cert = live.cert.display().to_string(),
            key = live.key.display().to_string(),
        ),
    )
    .expect("config written");
    let mut chatd = Process::start(&config);
    let line = chatd.wait_for("chatd listening");
    let addr: std::net::SocketAddr = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("addr="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    connect(&trusting(&first.cert), addr)
        .await
        .expect("the first certificate is served");

    second.copy_to(&live);
    chatd.signal("HUP");
    chatd.wait_for("TLS certificate reloaded");
    connect(&trusting(&second.cert), addr)
        .await
        .expect("the second certificate is served after SIGHUP");

    chatd.signal("TERM");
    let status = tokio::task::spawn_blocking(move || chatd.child.wait())
        .await
        .expect("waited")
        .expect("chatd exits");
    assert!(status.success(), "{status}");
}

/// What starting chatd with `tweak` says.
async fn start_error(tweak: impl FnOnce(&mut Config)) -> String {
    let dir = TempDir::new().expect("temporary directory");
    let mut config = common::config();
    tweak(&mut config);
    let url = format!("sqlite://{}", dir.path().join("chmail.db").display());
    let store = chmail::open_store(&url, 1).await.expect("store opens");
    store.migrate().await.expect("store migrates");
    match start_with_store(config, store, Arc::new(RecordingMailer::default())).await {
        Ok(running) => {
            running.stop().await;
            panic!("chatd started");
        }
        Err(e @ StartError::Tls(_)) => e.to_string(),
        Err(e) => panic!("not a TLS error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_certificates_and_keys_stop_the_start_with_a_clear_error() {
    let Some(dir) = cert_dir() else {
        return;
    };
    let good = self_signed(dir.path(), "good");
    let other = self_signed(dir.path(), "other");
    let missing = dir.path().join("missing.crt");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is no PEM\n").expect("written");
    let cut = dir.path().join("cut.crt");
    let text = std::fs::read_to_string(&good.cert).expect("certificate");
    let end = text.find("-----END").expect("an END line");
    std::fs::write(&cut, &text[..end]).expect("written");

    let chat = |cert: &Path, key: &Path| {
        let (cert, key) = (cert.to_owned(), key.to_owned());
        move |c: &mut Config| {
            c.chat.tls_cert = cert;
            c.chat.tls_key = key;
        }
    };
    let e = start_error(chat(&missing, &good.key)).await;
    assert!(
        e.contains("[chat] tls_cert") && e.contains("missing.crt"),
        "{e}"
    );
    assert!(e.contains("cannot read"), "{e}");

    let e = start_error(chat(&garbage, &good.key)).await;
    assert!(
        e.contains("[chat] tls_cert") && e.contains("no certificate"),
        "{e}"
    );

    let e = start_error(chat(&cut, &good.key)).await;
    assert!(e.contains("not a valid PEM file"), "{e}");

    let e = start_error(chat(&good.cert, &good.cert)).await;
    assert!(
        e.contains("[chat] tls_key") && e.contains("no private key"),
        "{e}"
    );

    let e = start_error(chat(&good.cert, &other.key)).await;
    assert!(
        e.contains("[chat] tls_key") && e.contains("is not the private key of tls_cert"),
        "{e}"
    );
    assert!(e.contains("other.key") && e.contains("good.crt"), "{e}");

    let (cert, key) = (good.cert.clone(), dir.path().join("gone.key"));
    let e = start_error(move |c| {
        c.reply.tls_cert = cert;
        c.reply.tls_key = key;
    })
    .await;
    assert!(
        e.contains("[reply] tls_key") && e.contains("gone.key"),
        "{e}"
    );
}
