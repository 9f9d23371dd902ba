//! Outgoing mail through a REAL SMTP server (mailin-embedded on 127.0.0.1:0): sign-in and
//! reminder mails are checked for recipient, subject, content, headers and a link that works
//! against the app; SMTP failures map to temporary or permanent.

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use chatd::{
    app, auth,
    mail::{MailError, MailSender, OutgoingMail, SmtpSender},
    quote::Quoted,
    reminder::compose::{reminder_mail, Occasion, Origin, Reminder},
    AppState,
};
use chmail::{store::Message, Config};

/// The reminder of `room` number `sequence` by `caller`, a sender waiting, quoting `messages`.
fn waiting_reminder(
    config: &Config,
    room: &chmail::store::Room,
    sequence: u32,
    caller: &str,
    messages: &[Message],
    signin_url: &str,
) -> OutgoingMail {
    let quoted = Quoted {
        messages: messages.to_vec(),
        ..Quoted::default()
    };
    let reminder = Reminder {
        caller,
        origin: Origin::Mail,
        occasion: Occasion::Waiting,
        quoted: &quoted,
        signin_url,
    };
    reminder_mail(config, room, sequence, &reminder)
}
use mail_parser::MessageParser;
use support::*;

/// A config whose relay is `addr`.
fn smtp_config(addr: std::net::SocketAddr) -> Config {
    let mut config = config();
    config.smtp.relay = addr.to_string();
    config.smtp.timeout_ms = 5_000;
    config
}

/// A state that sends through the real SMTP server at `addr`.
async fn smtp_state(addr: std::net::SocketAddr) -> AppState {
    let config = smtp_config(addr);
    let mailer = Arc::new(SmtpSender::new(&config));
    let state = AppState::new(config, memory_store().await, mailer).expect("valid config");
    start_delivery(&state);
    state
}

/// The parsed mail, with the checks every chatd mail must pass.
fn parse_checked(received: &Received) -> mail_parser::Message<'_> {
    let msg = MessageParser::default()
        .parse(&received.data)
        .expect("the mail parses");
    assert_eq!(received.from, "chmail@a.example");
    assert!(msg.date().is_some(), "a Date header");
    assert!(msg.message_id().is_some(), "a Message-ID");
    let auto = msg
        .header_raw("Auto-Submitted")
        .map(str::trim)
        .unwrap_or_default();
    assert_eq!(auto, "auto-generated");
    assert!(msg.body_text(0).is_some(), "a text part");
    assert!(msg.body_html(0).is_some(), "an HTML part");
    msg
}

#[tokio::test]
async fn a_signin_mail_goes_by_smtp_and_its_link_signs_in() {
    let (addr, mut inbox) = start_smtp();
    let state = smtp_state(addr).await;
    alice_room(&*state.store).await;
    let router = app(state);

    let form = send(&router, get("/signin", "")).await;
    let cookie = form.cookie_pair("chmail_csrf").unwrap_or_default();
    let token = form.csrf_field().unwrap_or_default();
    let answer = send(
        &router,
        post_form(
            "/signin",
            &cookie,
            &format!("address=alice%40a.example&csrf={token}"),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);

    let received = inbox.next().await.expect("the relay got a mail");
    assert_eq!(received.to, vec!["alice@a.example".to_owned()]);
    let msg = parse_checked(&received);
    assert_eq!(msg.subject(), Some("Your CHmail sign-in link"));
    let to = msg
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_owned);
    assert_eq!(to.as_deref(), Some("alice@a.example"));
    let text = msg.body_text(0).unwrap_or_default().into_owned();
    let html = msg.body_html(0).unwrap_or_default().into_owned();
    let link = auth_path(&text).expect("a link in the text");
    assert!(text.contains(&format!("{ORIGIN}{link}")));
    assert!(html.contains(&format!("href=\"{ORIGIN}{link}\"")));

    let followed = follow_link(&router, &link).await;
    assert_eq!(followed.status, StatusCode::SEE_OTHER);
    assert_eq!(followed.location(), Some("/me"));
    let cookie = followed.cookie_pair("chmail_session").unwrap_or_default();
    let me = send(&router, get("/me", &cookie)).await;
    assert_eq!(me.status, StatusCode::OK);
}

#[tokio::test]
async fn a_reminder_names_caller_subject_and_messages_and_its_link_opens_the_room() {
    let (addr, mut inbox) = start_smtp();
    let state = smtp_state(addr).await;
    let subject = "Grüße & <b>Zahlen</b> 📈";
    let seeded = seed_room(
        &*state.store,
        "alice",
        "alice@a.example",
        &room_id("reminderroom"),
        subject,
        &["bob@b.example"],
        &[],
    )
    .await;
    add_message(
        &*state.store,
        &seeded.room,
        "bob@b.example",
        "Are you there?",
        1_714_566_896_000,
    )
    .await;
    add_message(
        &*state.store,
        &seeded.room,
        "bob@b.example",
        "<i>urgent</i> & more",
        1_714_566_956_000,
    )
    .await;
    let messages: Vec<Message> = state
        .store
        .messages(&seeded.room, None, 50)
        .await
        .expect("messages");
    let room = state
        .store
        .room(&seeded.room)
        .await
        .ok()
        .flatten()
        .expect("room");
    let url = auth::signin_url(&state, &room.login, Some((room.port, room.id.as_str())))
        .await
        .expect("link");
    let mail = waiting_reminder(&state.config, &room, 0, "bob@b.example", &messages, &url);
    assert_eq!(mail.to, "alice@a.example");
    state.mailer.send(&mail).await.expect("sent");

    let received = inbox.next().await.expect("the relay got the reminder");
    assert_eq!(received.to, vec!["alice@a.example".to_owned()]);
    let msg = parse_checked(&received);
    assert_eq!(
        msg.subject(),
        Some(format!("alice: bob@b.example wants to chat about \"{subject}\"").as_str())
    );
    assert_eq!(msg.message_id(), Some(mail.message_id.as_str()));
    let text = msg.body_text(0).unwrap_or_default().into_owned();
    let html = msg.body_html(0).unwrap_or_default().into_owned();
    for needle in [
        "bob@b.example",
        "Are you there?",
        "<i>urgent</i> & more",
        "2024-05-01 12:34 UTC",
        "2024-05-01 12:35 UTC",
        url.as_str(),
    ] {
        assert!(text.contains(needle), "text lacks {needle}: {text}");
    }
    assert!(
        html.contains("&lt;i&gt;urgent&lt;/i&gt; &amp; more"),
        "{html}"
    );
    assert!(!html.contains("<i>urgent"));
    assert!(
        html.contains("Gr\u{fc}\u{df}e &amp; &lt;b&gt;Zahlen&lt;/b&gt;"),
        "{html}"
    );

    let router = app(state);
    let link = auth_path(&text).expect("a link");
    let followed = follow_link(&router, &link).await;
    let room_path = format!("/c/{}/{}", seeded.port, seeded.room);
    assert_eq!(followed.status, StatusCode::SEE_OTHER);
    assert_eq!(followed.location(), Some(room_path.as_str()));
    let cookie = followed.cookie_pair("chmail_session").unwrap_or_default();
    let page = send(&router, get(&room_path, &cookie)).await;
    assert!(page.body.contains("data-is-sender=\"true\""));
}

#[tokio::test]
async fn a_reminders_message_id_depends_on_its_room_and_sequence_only() {
    let (state, _) = state().await;
    let seeded = alice_room(&*state.store).await;
    add_message(&*state.store, &seeded.room, "bob@b.example", "one", 1_000).await;
    let room = state
        .store
        .room(&seeded.room)
        .await
        .ok()
        .flatten()
        .expect("room");
    let first = state
        .store
        .messages(&room.id, None, 50)
        .await
        .expect("messages");
    let compose = |seq: u32, caller: &str, messages: &[Message], link: &str| {
        waiting_reminder(&state.config, &room, seq, caller, messages, link)
    };
    let a = compose(0, "bob@b.example", &first, "http://x/auth/a");
    assert!(a.message_id.ends_with("@a.example"));
    // Composed again after a crash: another link, more messages, another caller: the same id,
    // so the outbox queues it once.
    add_message(&*state.store, &seeded.room, "bob@b.example", "two", 2_000).await;
    let more = state
        .store
        .messages(&room.id, None, 50)
        .await
        .expect("messages");
    for again in [
        compose(0, "bob@b.example", &first, "http://x/auth/b"),
        compose(0, "bob@b.example", &more, "http://x/auth/c"),
        compose(0, "carol@c.example", &first, "http://x/auth/d"),
    ] {
        assert_eq!(again.message_id, a.message_id);
    }
    // The next reminder of the room is another mail.
    assert_ne!(
        compose(1, "bob@b.example", &first, "http://x/auth/a").message_id,
        a.message_id
    );
    let none = compose(0, "bob@b.example", &[], "http://x/auth/e");
    assert!(none.text.contains("No messages yet"));
}

/// A plain mail to `to`.
fn mail_to(to: &str) -> OutgoingMail {
    OutgoingMail {
        to: to.into(),
        subject: "test".into(),
        text: "hello".into(),
        html: None,
        message_id: "test.1@a.example".into(),
        headers: Vec::new(),
    }
}

#[tokio::test]
async fn smtp_failures_say_whether_a_retry_may_help() {
    let (addr, mut inbox) = start_smtp();
    let sender = SmtpSender::new(&smtp_config(addr));
    assert_eq!(sender.send(&mail_to("ok@x.example")).await, Ok(()));
    assert!(inbox.next().await.is_some());
    assert!(matches!(
        sender.send(&mail_to("perm-fail@x.example")).await,
        Err(MailError::Permanent(_))
    ));
    assert!(matches!(
        sender.send(&mail_to("temp-fail@x.example")).await,
        Err(MailError::Temporary(_))
    ));
    assert!(matches!(
        sender.send(&mail_to("not an address")).await,
        Err(MailError::Permanent(_))
    ));

    // Nobody listens on a port we just closed: refused is temporary.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let refused = SmtpSender::new(&smtp_config(closed));
    assert!(matches!(
        refused.send(&mail_to("ok@x.example")).await,
        Err(MailError::Temporary(_))
    ));
}

#[tokio::test]
async fn a_mail_is_seven_bit_on_the_wire_with_encoded_words_and_qp_or_base64_bodies() {
    let (addr, mut inbox) = start_smtp();
    let sender = SmtpSender::new(&smtp_config(addr));
    let subject = "Grüße: 📈 Zahlen für das Quartal, bitte bis Freitag ansehen und kommentieren";
    let text = format!("Hallo,\n\nGrüße aus Köln 📈\n{}\n", "ä".repeat(400));
    let html = format!("<p>Grüße aus Köln 📈</p><p>{}</p>", "ö".repeat(400));
    let mail = OutgoingMail {
        to: "ok@x.example".into(),
        subject: subject.into(),
        text: text.clone(),
        html: Some(html.clone()),
        message_id: "enc.1@a.example".into(),
        headers: vec![
            (
                "Reply-To".into(),
                "abcdefghijklmnopqrstuvwxyz234567@reply.a.example".into(),
            ),
            (
                "List-Unsubscribe".into(),
                "<https://chat.test/unsubscribe/abcdefghijklmnopqrstuvwxyz234567>".into(),
            ),
            (
                "List-Unsubscribe-Post".into(),
                "List-Unsubscribe=One-Click".into(),
            ),
        ],
    };
    sender.send(&mail).await.expect("sent");
    let received = inbox.next().await.expect("the relay got it");

    // On the wire: ASCII only, no line over 998 octets, the subject in encoded words.
    assert!(received.data.is_ascii(), "8-bit data on the wire");
    let raw = String::from_utf8_lossy(&received.data).into_owned();
    assert!(raw.split("\r\n").all(|l| l.len() <= 998));
    let (head, _) = raw.split_once("\r\n\r\n").expect("a header and a body");
    let raw_subject = head
        .split("\r\n")
        .skip_while(|l| !l.starts_with("Subject:"))
        .take_while(|l| l.starts_with("Subject:") || l.starts_with([' ', '\t']))
        .collect::<Vec<_>>()
        .concat();
    assert!(raw_subject.contains("=?utf-8?"), "{raw_subject}");
    let encodings: Vec<String> = raw
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("Content-Transfer-Encoding: "))
        .map(str::to_ascii_lowercase)
        .collect();
    assert_eq!(encodings.len(), 2, "a text and an HTML part: {raw}");
    assert!(
        encodings
            .iter()
            .all(|e| e == "quoted-printable" || e == "base64"),
        "{encodings:?}"
    );

    // Decoded: the same texts and headers.
    let msg = parse_checked(&received);
    assert_eq!(msg.subject(), Some(subject));
    assert_eq!(msg.message_id(), Some("enc.1@a.example"));
    // Text travels with CRLF line ends (RFC 5322); the content is the same.
    let unix = |s: std::borrow::Cow<'_, str>| s.replace("\r\n", "\n");
    assert_eq!(msg.body_text(0).map(unix).as_deref(), Some(text.as_str()));
    assert_eq!(msg.body_html(0).map(unix).as_deref(), Some(html.as_str()));
    let reply_to = msg
        .reply_to()
        .and_then(|a| a.first())
        .and_then(|a| a.address());
    assert_eq!(
        reply_to,
        Some("abcdefghijklmnopqrstuvwxyz234567@reply.a.example")
    );
    assert_eq!(
        msg.header_raw("List-Unsubscribe").map(str::trim),
        Some("<https://chat.test/unsubscribe/abcdefghijklmnopqrstuvwxyz234567>")
    );
    assert_eq!(
        msg.header_raw("List-Unsubscribe-Post").map(str::trim),
        Some("List-Unsubscribe=One-Click")
    );
}

#[tokio::test]
async fn an_extra_header_that_could_add_headers_fails_the_mail_for_good() {
    let (addr, mut inbox) = start_smtp();
    let sender = SmtpSender::new(&smtp_config(addr));
    for (name, value) in [
        ("List-Unsubscribe", "<https://x>\r\nBcc: victim@x.example"),
        ("List-Unsubscribe", "<https://x>\nBcc: victim@x.example"),
        ("X-Test\r\nBcc", "victim@x.example"),
        ("Bad Name", "x"),
        ("Bcc", "victim@x.example"),
        ("Subject", "another subject"),
        ("Reply-To", "not an address"),
    ] {
        let mut mail = mail_to("ok@x.example");
        mail.headers = vec![(name.into(), value.into())];
        assert!(
            matches!(sender.send(&mail).await, Err(MailError::Permanent(_))),
            "{name:?}: {value:?}"
        );
    }
    // The relay got none of them; a clean mail still goes.
    assert_eq!(sender.send(&mail_to("ok@x.example")).await, Ok(()));
    let received = inbox.next().await.expect("the clean mail");
    assert!(!String::from_utf8_lossy(&received.data).contains("victim"));
}
