//! The inquiry loop end to end (S207-S219), over real sockets: chatd runs in-process on
//! 127.0.0.1 with its real `SmtpSender` relaying to a real SMTP server (mailin-embedded on
//! 127.0.0.1) and a signing key of its own. A visitor joins the mall (the confirm mail comes
//! through the SMTP server) and asks about a product; the question reaches the server as a mail
//! to the ad's host with a `CHmail` header that verifies against the key and a `CHmail-Link`; a
//! WebSocket client acting as the host opens that link's room and presses Chat; the member's
//! connection (the inquiry page's WebSocket, with the member's session cookie) rings; the member
//! accepts and they chat both ways; then, with the member gone, the host writes again and the
//! reminder mail to the member arrives at the SMTP server.
//!
//! Ringing runs in real time with one-second intervals, as in `ws.rs` (sockets and paused time do
//! not mix).

mod common;
mod support;

use std::{sync::Arc, time::Duration};

use axum::http::StatusCode;
use chatd::mail::SmtpSender;
use chmail::header::{aligned, ChmailHeader, Signer};
use chmail_milter::SigningTable;
use common::{Client, Harness};
use mail_parser::MessageParser;
use serde_json::{json, Value};
use support::{link_path, Browser, Inbox, Received};

/// The shop's host: the To of the question.
const HOST: &str = "hana@shop.example";
/// The member.
const MEMBER: &str = "ana@example.com";
/// The member's password.
const PASSWORD: &str = "correct horse battery";
/// The product.
const TITLE: &str = "Cast iron tea pot";
/// The question.
const QUESTION: &str = "Does it hold a whole litre?\nAnd is the lid iron too?";

/// The next mail at the SMTP server, parsed: its raw form and its text part.
async fn next_mail(inbox: &mut Inbox) -> (Received, String) {
    let received = inbox.next().await.expect("a mail reaches the SMTP server");
    let text = MessageParser::default()
        .parse(&received.data)
        .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
        .expect("the mail parses and has a text part");
    (received, text)
}

/// Joins the room `room` of `port` as `address` (or as the sender without one).
async fn join(client: &mut Client, port: u16, room: &str, address: Option<&str>) -> Value {
    let mut frame = json!({"type": "join", "v": 1, "port": port, "room": room});
    if let Some(a) = address {
        frame["as"] = json!(a);
    }
    client.send(frame).await;
    let joined = client.expect("joined").await;
    client.expect("history").await;
    joined
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_question_reaches_the_host_signed_and_the_hosts_chat_rings_the_member() {
    let (relay, mut inbox) = support::start_smtp();
    let signer = Signer::generate("a.example", "mall1");
    let public_key = signer.public_key();
    let table = SigningTable::single(signer);
    let h = Harness::start_with(
        |c| {
            c.chat.ring_interval_secs = 1;
            c.chat.ring_timeout_secs = 30;
            c.chat.reminder_delay_secs = 1;
            c.chat.presence_grace_secs = 1;
            c.smtp.relay = relay.to_string();
            c.smtp.timeout_ms = 5_000;
            c.smtp.retry_initial_secs = 1;
        },
        |state| {
            state.mailer = Arc::new(SmtpSender::new(&state.config));
            state.signing = Arc::new(table);
        },
    )
    .await;
    let state = h.state().clone();
    let store = h.store();
    let now = state.clock.now_ms();
    let company = support::shop(&*store, "Tea House", HOST, "Hana", now).await;
    let ad = store
        .create_ad(company, &support::ad_fields(HOST, TITLE), now)
        .await
        .expect("ad");
    let mut web = Browser::new(chatd::app(state.clone()), [198, 51, 100, 7]);

    // A visitor joins; the confirm mail comes through SMTP and its link signs them in.
    let next = format!("/mall/ad/{ad}");
    let page = web
        .sign_up(MEMBER, "Ana Lima", PASSWORD, false, &next)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let (confirm, text) = next_mail(&mut inbox).await;
    assert_eq!(confirm.to, [MEMBER]);
    let done = web
        .confirm(&link_path(&text, "/mall/confirm/"), PASSWORD)
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), Some(next.as_str()));
    let session = web.session().expect("signed in");

    // The member asks.
    let product = web.get(&next).await;
    assert!(product.body.contains("id=\"ask-form\""), "{}", product.body);
    let asked = web
        .post(&format!("/mall/ad/{ad}/ask"), &[("question", QUESTION)])
        .await;
    assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.body);
    let inquiry_path = asked.location().expect("the inquiry page").to_owned();
    let inquiry_page = web.get(&inquiry_path).await;
    assert_eq!(inquiry_page.status, StatusCode::OK);
    for needle in [
        "data-page=\"me\"",
        "<script defer src=\"/static/me.js\"></script>",
        "id=\"ring\"",
        "id=\"accept\"",
        "Does it hold a whole litre?",
    ] {
        assert!(
            inquiry_page.body.contains(needle),
            "{needle}: {}",
            inquiry_page.body
        );
    }

    // The inquiry page's WebSocket (as me.js opens it): the member is online.
    let cookie = format!("chmail_session={session}");
    let mut member_page = Client::connect(&h.ws_url(), Some(common::ORIGIN), Some(&cookie)).await;
    member_page.send(json!({"type": "watch", "v": 1})).await;
    let watching = member_page.expect("watching").await;
    assert_eq!(watching["login"], MEMBER);

    // The question reaches the SMTP server, signed, with the chat link.
    let (mail, text) = next_mail(&mut inbox).await;
    assert_eq!(mail.to, [HOST]);
    let parsed = MessageParser::default().parse(&mail.data).expect("parses");
    assert_eq!(
        parsed.subject(),
        Some(format!("Question about {TITLE}").as_str())
    );
    let from = parsed.header_raw("From").expect("a From").trim().to_owned();
    assert!(from.contains("Ana Lima via CHmail Mall"), "{from}");
    assert!(from.contains("<mall@a.example>"), "{from}");
    let raw = parsed.header_raw("CHmail").expect("a CHmail header");
    let chmail = ChmailHeader::parse(raw.trim().as_bytes()).expect("the header parses");
    assert!(
        chmail.verify(&from, &public_key).is_pass(),
        "the signature verifies with the key's public half"
    );
    assert!(aligned(&chmail.domain, &from));
    assert_eq!(chmail.login, MEMBER, "the chat goes back to the member");
    assert_eq!(chmail.host, "chat.test");
    let link = parsed
        .header_raw("CHmail-Link")
        .expect("a CHmail-Link")
        .trim()
        .to_owned();
    let expected = format!(
        "<http://chat.test/c/{}/{}>",
        chmail.port,
        chmail.room.as_str()
    );
    assert_eq!(link, expected);
    assert!(text.contains("Does it hold a whole litre?"), "{text}");
    assert!(
        text.contains(&format!("http://chat.test/mall/ad/{ad}")),
        "{text}"
    );
    let text = text.replace("\r\n", "\n");
    let (above, signature) = text.split_once("\n-- \n").expect("a signature line");
    assert!(
        above.contains(&link[1..link.len() - 1]),
        "the chat link stands above the signature: {text}"
    );
    assert!(signature.contains("CHmail Mall"), "{text}");
    let (port, room) = (chmail.port, chmail.room.as_str().to_owned());

    // The host opens the link's room and presses Chat.
    let mut host = h.client().await;
    let joined = join(&mut host, port, &room, Some(HOST)).await;
    assert_eq!(joined["sender"], MEMBER);
    assert_eq!(joined["is_sender"], false);
    assert_eq!(joined["subject"], format!("Question about {TITLE}"));
    host.send(json!({"type": "ring"})).await;

    // The member's page rings; they accept.
    let ring = member_page.skip_to("ring").await;
    assert_eq!(ring["caller"], HOST);
    assert_eq!(ring["room"], room.as_str());
    assert_eq!(ring["port"], port);
    assert_eq!(ring["subject"], format!("Question about {TITLE}"));
    member_page
        .send(json!({"type": "accept", "ring": ring["ring"], "room": room}))
        .await;
    let over = member_page.skip_to("ring_over").await;
    assert_eq!(over["state"], "accepted");
    loop {
        let call = host.skip_to("call").await;
        if call["state"] == "accepted" {
            break;
        }
        assert_eq!(call["state"], "ringing", "{call}");
    }

    // Accepting opens the chat page, which joins as the sender; they chat both ways.
    let mut member_chat = Client::connect(&h.ws_url(), Some(common::ORIGIN), Some(&cookie)).await;
    let joined = join(&mut member_chat, port, &room, None).await;
    assert_eq!(joined["is_sender"], true);
    let answer = host.say("Yes, a whole litre, lid included.", "h1").await;
    let got = member_chat.skip_to("message").await;
    assert_eq!(got["message"]["text"], answer["text"]);
    assert_eq!(got["message"]["author"], HOST);
    member_chat.say("Great, I will take it!", "m1").await;
    let got = host.skip_to("message").await;
    assert_eq!(got["message"]["text"], "Great, I will take it!");
    assert_eq!(got["message"]["author"], MEMBER);
    let member = store
        .member_by_address(MEMBER)
        .await
        .expect("store")
        .expect("member");
    let inquiries = store
        .inquiries_of_member(member.id, 10)
        .await
        .expect("inquiries");
    assert_eq!(inquiries.len(), 1);
    assert_eq!(inquiries[0].room_id, room);
    assert!(inquiries[0].answered, "the host answered");

    // The member goes away; the host writes again; the reminder mail reaches the member.
    member_chat.close().await;
    member_page.close().await;
    loop {
        let presence = host.skip_to("presence").await;
        if presence["address"] == MEMBER && presence["online"] == false {
            break;
        }
    }
    // The room may hear "not online" as the chat closes, before the grace of the member's
    // other connection has run out: the reminder is only asked for once they are offline.
    while chatd::presence::is_online(h.state(), MEMBER).await {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    host.say("Shall I send it today?", "h2").await;
    let (reminder, text) = tokio::time::timeout(Duration::from_secs(20), next_mail(&mut inbox))
        .await
        .expect("the reminder comes in time");
    assert_eq!(reminder.to, [MEMBER]);
    let parsed = MessageParser::default()
        .parse(&reminder.data)
        .expect("parses");
    let subject = parsed.subject().unwrap_or_default().to_owned();
    assert!(subject.contains(HOST), "{subject}");
    assert!(subject.contains(TITLE), "{subject}");
    assert!(text.contains("Shall I send it today?"), "{text}");
    assert!(
        text.contains("http://chat.test/auth/"),
        "a link that signs in: {text}"
    );
}
