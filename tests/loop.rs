//! The whole loop through a real Postfix with Dovecot SASL, the milter and chatd on one
//! PostgreSQL store: alice submits a mail with AUTH to a To and a Cc recipient; Postfix passes it
//! through the milter and delivers it, signed, to the sink; the Cc recipient follows its
//! CHmail-Link over chatd's WebSocket and presses Chat; alice is offline, so chatd's reminder goes
//! chatd -> Postfix -> sink with a Reply-To at the reply domain; alice's reply to it, submitted
//! to Postfix, is routed by the transport map of contrib/postfix to chatd's reply listener and
//! appears in the room, new text only.
//!
//! Needs root, postfix, postmap, dovecot, smtp-sink, swaks and PostgreSQL: without one the test
//! says SKIPPED, except under `CI=true`, where it fails.

use std::{sync::Arc, time::Duration};

use chmail::{
    header::{ChmailHeader, Verdict, LINK_HEADER_NAME},
    Config,
};
use chmail_tests::{
    free_port, has_subject, header_values, or_skip, require, single_header, wait_until, with_auth,
    Milter, MilterOptions, PgSchema, Postfix, ReplyRoute, TestDns, PUBLIC_URL, SIGNING_DOMAIN,
};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest as _, http::HeaderValue, Message};

/// The SASL account of the sender.
const ALICE: (&str, &str) = ("alice", "secret");
/// The sender's address (the login `alice` gets `@<signing domain>`).
const ALICE_ADDR: &str = "alice@example.test";
/// The To recipient.
const BOB: &str = "bob@x.test";
/// The Cc recipient, who joins the chat.
const CAROL: &str = "carol@y.test";
/// The reply domain: Postfix routes it to chatd's reply listener.
const REPLY_DOMAIN: &str = "reply.example.test";
/// The subject of alice's mail.
const SUBJECT: &str = "Budget for the loop";
/// What alice answers above the quoted reminder.
const ANSWER: &str = "Sorry, I was out. Yes, the numbers are final.";

/// The longest wait for any one step (a mail to arrive, a frame, chatd to start).
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_mail_becomes_a_chat_whose_reminder_is_answered_by_mail_through_postfix() {
    require!(
        "root",
        "postfix",
        "postmap",
        "dovecot",
        "smtp-sink",
        "swaks"
    );
    let started = std::time::Instant::now();
    let schema = or_skip!(PgSchema::create().await);
    let dns = TestDns::start::<String, String>([]);
    let (milter, record) = Milter::start_with_dns(
        &dns,
        MilterOptions {
            store_url: Some(schema.url()),
            ..Default::default()
        },
    );
    let reply_port = free_port();
    let postfix = Postfix::start_with_replies(
        milter.port(),
        &[ALICE],
        &ReplyRoute {
            domain: REPLY_DOMAIN.into(),
            port: reply_port,
        },
    );
    let data = tempfile::tempdir().expect("tempdir for chatd");
    let chatd = start_chatd(&schema, &postfix, reply_port, data.path()).await;

    // 1. alice submits with AUTH; Postfix runs the milter and relays to the sink.
    postfix.swaks(&with_auth(
        ALICE,
        &[
            "--from",
            ALICE_ADDR,
            "--to",
            &format!("{BOB},{CAROL}"),
            "--header",
            &format!("To: {BOB}"),
            "--header",
            &format!("Cc: {CAROL}"),
            "--header",
            &format!("Subject: {SUBJECT}"),
        ],
    ));
    let signed = postfix.wait_for_mail("signed mail of alice", WAIT, |mail| {
        has_subject(mail, SUBJECT)
    });
    let link = single_header(&signed, LINK_HEADER_NAME);
    let (port, room) = parse_link(&link);
    let key = record.public_key();
    let header = ChmailHeader::parse(single_header(&signed, "CHmail").as_bytes())
        .expect("the CHmail header parses");
    assert_eq!(
        header.verify(&single_header(&signed, "From"), &key),
        Verdict::Pass,
        "the milter signed alice's mail:\n{signed}"
    );
    assert_eq!((header.port, header.room.as_str()), (port, room.as_str()));

    // 2. carol follows the link (the page's WebSocket, with the page's Origin) and presses Chat.
    let mut carol = Client::connect(&format!("ws://{}/ws", chatd.addr())).await;
    carol
        .send(json!({"type": "join", "v": 1, "port": port, "room": room, "as": CAROL}))
        .await;
    let joined = carol.wait_for("joined", |f| f["type"] == "joined").await;
    assert_eq!(joined["sender"], ALICE_ADDR, "{joined}");
    assert_eq!(joined["you"], CAROL, "{joined}");
    assert_eq!(joined["subject"], SUBJECT, "{joined}");
    let members: Vec<&str> = joined["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["address"].as_str()).collect())
        .unwrap_or_default();
    for address in [ALICE_ADDR, BOB, CAROL] {
        assert!(members.contains(&address), "{address} not in {joined}");
    }
    carol.wait_for("history", |f| f["type"] == "history").await;
    carol.send(json!({"type": "ring"})).await;
    let call = carol.wait_for("call", |f| f["type"] == "call").await;
    assert_eq!(call["state"], "offline", "alice has no page open: {call}");

    // 3. The reminder goes chatd -> Postfix (milter) -> sink, with alice's reply address.
    let reminder = postfix.wait_for_mail("reminder mail to alice", WAIT, |mail| {
        header_values(mail, "To")
            .iter()
            .any(|to| to.contains(ALICE_ADDR))
            && header_values(mail, "Reply-To")
                .iter()
                .any(|r| r.contains(&format!("@{REPLY_DOMAIN}")))
    });
    let reply_to = address_in(&single_header(&reminder, "Reply-To"));
    assert!(
        reply_to.ends_with(&format!("@{REPLY_DOMAIN}")),
        "{reply_to}"
    );
    assert!(
        header_values(&reminder, "CHmail").is_empty(),
        "chatd's own mail is unauthenticated: the milter must not sign it:\n{reminder}"
    );
    let reminder_text = text_part(&reminder);
    assert!(
        reminder_text.contains(&format!("{PUBLIC_URL}/c/{port}/{room}")),
        "the reminder links the room:\n{reminder_text}"
    );
    assert!(
        reminder_text.contains(&format!("{PUBLIC_URL}/auth/")),
        "the reminder has a sign-in link:\n{reminder_text}"
    );
    let reminder_id = single_header(&reminder, "Message-ID");
    let reminder_subject = single_header(&reminder, "Subject");
    carol
        .wait_for("call reminded", |f| {
            f["type"] == "call" && f["state"] == "reminded"
        })
        .await;

    // 4. alice answers the reminder from her mail client: submitted with AUTH to Postfix, whose
    //    transport map sends the reply domain to chatd's reply listener.
    let eml = data.path().join("reply.eml");
    std::fs::write(
        &eml,
        gmail_reply(&reply_to, &reminder_id, &reminder_subject, &reminder_text),
    )
    .expect("write the reply");
    postfix.swaks(&with_auth(
        ALICE,
        &[
            "--from",
            ALICE_ADDR,
            "--to",
            &reply_to,
            "--data",
            &eml.display().to_string(),
        ],
    ));
    let message = carol
        .wait_for("the reply as a message", |f| f["type"] == "message")
        .await;
    assert_eq!(message["message"]["author"], ALICE_ADDR, "{message}");
    assert_eq!(message["message"]["via"], "mail", "{message}");
    assert_eq!(
        message["message"]["text"], ANSWER,
        "only the new text, without the quoted reminder and its sign-in link: {message}"
    );
    // chatd posts before it answers 250: Postfix logs the delivery a moment later.
    let through_transport = format!("relay=127.0.0.1[127.0.0.1]:{reply_port}");
    assert!(
        wait_until(WAIT, || postfix.maillog().lines().any(|line| line
            .contains(&through_transport)
            && line.contains("status=sent"))),
        "Postfix did not log the reply's delivery to chatd ({through_transport}):\n{}",
        postfix.maillog()
    );

    chatd.stop().await;
    eprintln!("the whole loop took {:?}", started.elapsed());
}

/// chatd in-process on `schema` (the milter's store), sending through `postfix` and taking
/// replies on 127.0.0.1:`reply_port`; reminders go out at once.
async fn start_chatd(
    schema: &PgSchema,
    postfix: &Postfix,
    reply_port: u16,
    data: &std::path::Path,
) -> chatd::Running {
    let mut config = Config {
        data_dir: data.to_path_buf(),
        ..Config::default()
    };
    config.store.url = schema.url();
    config.signing.domain = SIGNING_DOMAIN.into();
    config.chat.public_url = PUBLIC_URL.into();
    config.chat.listen = "127.0.0.1:0".into();
    config.chat.metrics_listen = "127.0.0.1:0".into();
    config.chat.reminder_delay_secs = 0;
    config.smtp.relay = postfix.smtp_addr();
    config.smtp.retry_initial_secs = 1;
    config.reply.listen = format!("127.0.0.1:{reply_port}");
    config.reply.domain = REPLY_DOMAIN.into();
    let mailer = Arc::new(chatd::mail::SmtpSender::new(&config));
    tokio::time::timeout(WAIT, chatd::start(config, mailer))
        .await
        .expect("chatd starts in time")
        .expect("chatd starts")
}

/// `(port, room)` of a CHmail-Link `<https://chat.example.test/c/PORT/ROOM>`.
fn parse_link(link: &str) -> (u16, String) {
    let url = link.trim().trim_start_matches('<').trim_end_matches('>');
    let path = url
        .strip_prefix(&format!("{PUBLIC_URL}/c/"))
        .unwrap_or_else(|| panic!("the link {link:?} is not under {PUBLIC_URL}/c/"));
    let (port, room) = path
        .split_once('/')
        .unwrap_or_else(|| panic!("no /PORT/ROOM in {link:?}"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("bad port in {link:?}"));
    (port, room.to_owned())
}

/// The address of a header value `Name <addr>` or `addr`.
fn address_in(value: &str) -> String {
    match (value.find('<'), value.rfind('>')) {
        (Some(start), Some(end)) if start < end => value[start + 1..end].trim().to_owned(),
        _ => value.trim().to_owned(),
    }
}

/// The text/plain part of a mail as smtp-sink dumped it, quoted-printable decoded.
fn text_part(mail: &str) -> String {
    let mail = mail.replace("\r\n", "\n");
    let start = mail
        .find("Content-Type: text/plain")
        .unwrap_or_else(|| panic!("no text/plain part in:\n{mail}"));
    let part = &mail[start..];
    let body = part.find("\n\n").map_or("", |end| &part[end + 2..]);
    let content_type = header_values(&mail, "Content-Type").concat();
    let boundary = content_type
        .split_once("boundary=")
        .map(|(_, b)| b.trim_matches(|c: char| c == '"' || c.is_whitespace()))
        .unwrap_or_else(|| panic!("no boundary in {content_type:?}"));
    let body = body
        .find(&format!("\n--{boundary}"))
        .map_or(body, |end| &body[..end]);
    decode_quoted_printable(body)
}

/// Quoted-printable (RFC 2045 section 6.7) to text: soft line breaks joined, `=XX` decoded.
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// alice's answer as Gmail writes it: the new text on top, then the whole reminder text quoted
/// (with its sign-in link, which must not reach the room).
fn gmail_reply(to: &str, in_reply_to: &str, subject: &str, reminder_text: &str) -> String {
    let quoted: String = reminder_text
        .trim_end()
        .lines()
        .map(|line| {
            if line.is_empty() {
                ">\r\n".to_owned()
            } else {
                format!("> {line}\r\n")
            }
        })
        .collect();
    format!(
        "From: Alice <{ALICE_ADDR}>\r\n\
         To: {to}\r\n\
         Subject: Re: {subject}\r\n\
         Date: Sat, 28 Nov 2026 17:02:03 +0000\r\n\
         Message-ID: <CAF-loop-reply@mail.example.test>\r\n\
         In-Reply-To: {in_reply_to}\r\n\
         References: {in_reply_to}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=UTF-8\r\n\
         \r\n\
         {ANSWER}\r\n\
         \r\n\
         On Sat, Nov 28, 2026 at 5:01 PM CHmail <chmail@{SIGNING_DOMAIN}> wrote:\r\n\
         \r\n\
         {quoted}"
    )
}

/// A WebSocket client whose reader task keeps reading (so pings are answered) and queues every
/// text frame as JSON.
struct Client {
    sink: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        Message,
    >,
    frames: mpsc::UnboundedReceiver<Value>,
    /// Every frame read so far, for failure messages.
    seen: Vec<Value>,
}

impl Client {
    /// Connects with the chat page's Origin (`[chat] public_url`) and reads `hello`.
    async fn connect(url: &str) -> Self {
        let mut request = url.into_client_request().expect("a WebSocket URL");
        request.headers_mut().insert(
            "Origin",
            HeaderValue::from_str(PUBLIC_URL).expect("an Origin"),
        );
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("the WebSocket connects in time")
            .expect("the WebSocket connects");
        let (sink, mut stream) = ws.split();
        let (tx, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Text(text) => {
                        let value = serde_json::from_str(text.as_str()).unwrap_or_else(
                            |_| json!({"type": "_not_json", "text": text.as_str()}),
                        );
                        let _ = tx.send(value);
                    }
                    Message::Close(frame) => {
                        let _ = tx.send(json!({"type": "_closed", "frame": format!("{frame:?}")}));
                        return;
                    }
                    _ => {}
                }
            }
            let _ = tx.send(json!({"type": "_closed"}));
        });
        let mut client = Self {
            sink,
            frames,
            seen: Vec::new(),
        };
        let hello = client.wait_for("hello", |f| f["type"] == "hello").await;
        assert_eq!(hello["v"], 1, "{hello}");
        client
    }

    /// Sends a JSON frame.
    async fn send(&mut self, frame: Value) {
        self.sink
            .send(Message::text(frame.to_string()))
            .await
            .expect("a frame is sent");
    }

    /// The next frame that `matches`, skipping others, within [`WAIT`]; an `error` frame or a
    /// close fails the test.
    async fn wait_for(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Ok(Some(frame)) => frame,
                Ok(None) => panic!(
                    "the reader stopped while waiting for {what}: {:?}",
                    self.seen
                ),
                Err(_) => panic!(
                    "no {what} frame within {WAIT:?}; frames so far: {:?}",
                    self.seen
                ),
            };
            self.seen.push(frame.clone());
            if matches(&frame) {
                return frame;
            }
            assert!(
                frame["type"] != "error" && frame["type"] != "_closed",
                "got {frame} while waiting for {what}"
            );
        }
    }
}
