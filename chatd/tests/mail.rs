//! Outgoing mail through a REAL SMTP server (mailin-embedded on 127.0.0.1:0): sign-in and
//! reminder mails are checked for recipient, subject, content, headers and a link that works
//! against the app; SMTP failures map to temporary or permanent.

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use chatd::{
    app, auth,
    mail::{reminder_mail, MailError, MailSender, OutgoingMail, SmtpSender},
    AppState,
};
use chmail::{store::Message, Config};
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
    AppState::new(config, memory_store().await, mailer).expect("valid config")
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
    let mail = reminder_mail(&state.config, &room, "bob@b.example", &messages, &url);
    assert_eq!(mail.to, "alice@a.example");
    state.mailer.send(&mail).await.expect("sent");

    let received = inbox.next().await.expect("the relay got the reminder");
    assert_eq!(received.to, vec!["alice@a.example".to_owned()]);
    let msg = parse_checked(&received);
    assert_eq!(
        msg.subject(),
        Some(format!("alice: bob@b.example tried to chat about \"{subject}\"").as_str())
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
async fn a_reminder_keeps_its_message_id_until_something_new_happens() {
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
    let a = reminder_mail(
        &state.config,
        &room,
        "bob@b.example",
        &first,
        "http://x/auth/a",
    );
    let b = reminder_mail(
        &state.config,
        &room,
        "bob@b.example",
        &first,
        "http://x/auth/b",
    );
    assert_eq!(a.message_id, b.message_id);
    assert!(a.message_id.ends_with("@a.example"));
    add_message(&*state.store, &seeded.room, "bob@b.example", "two", 2_000).await;
    let more = state
        .store
        .messages(&room.id, None, 50)
        .await
        .expect("messages");
    let c = reminder_mail(
        &state.config,
        &room,
        "bob@b.example",
        &more,
        "http://x/auth/c",
    );
    assert_ne!(a.message_id, c.message_id);
    let d = reminder_mail(
        &state.config,
        &room,
        "carol@c.example",
        &first,
        "http://x/auth/d",
    );
    assert_ne!(a.message_id, d.message_id);
    let none = reminder_mail(
        &state.config,
        &room,
        "bob@b.example",
        &[],
        "http://x/auth/e",
    );
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
