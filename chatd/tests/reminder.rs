//! Reminder mails that read right, through the reminder worker, the outbox and a REAL SMTP
//! server (mailin-embedded on 127.0.0.1:0): someone waiting, a chat that continued, a mall
//! member's question that the shop answered, and the newest messages quoted when there are more
//! than a mail holds.

mod support;

use std::sync::Arc;

use chatd::{mail::SmtpSender, reminder, AppState};
use chmail::store::{mall::NewInquiry, Participant, Role, Submission};
use mail_parser::MessageParser;
use support::*;
use tokio::sync::watch;

const ALICE: &str = "alice@a.example";
const BOB: &str = "bob@b.example";
/// The shop's host: the To of a member's question.
const HOST: &str = "hana@shop.example";
/// The member who asked.
const MEMBER: &str = "ana@example.com";

/// A state that sends through the real SMTP server at `addr`, with its outbox delivering and
/// its reminder worker running for the rest of the test.
async fn smtp_state(addr: std::net::SocketAddr) -> AppState {
    let mut config = config();
    config.smtp.relay = addr.to_string();
    config.smtp.timeout_ms = 5_000;
    let mailer = Arc::new(SmtpSender::new(&config));
    let state = AppState::new(config, memory_store().await, mailer).expect("valid config");
    start_delivery(&state);
    let (stop, stopped) = watch::channel(false);
    let worker = state.clone();
    tokio::spawn(async move {
        // Holding the sender keeps the worker running.
        let _stop = stop;
        reminder::run_worker(worker, stopped).await;
    });
    state
}

/// A reminder for `room` by `caller`, due at once.
async fn remind(state: &AppState, room: &str, caller: &str) {
    state
        .store
        .schedule_reminder(room, caller, 0)
        .await
        .expect("scheduled");
}

/// The next mail at the SMTP server: its recipients, subject, text and HTML.
async fn next_reminder(inbox: &mut Inbox) -> (Vec<String>, String, String, String) {
    let received = inbox.next().await.expect("the relay got the reminder");
    let msg = MessageParser::default()
        .parse(&received.data)
        .expect("the mail parses");
    let subject = msg.subject().unwrap_or_default().to_owned();
    let text = msg.body_text(0).expect("a text part").replace("\r\n", "\n");
    let html = msg.body_html(0).expect("an HTML part").into_owned();
    (received.to.clone(), subject, text, html)
}

/// The part of `text` above the signature line.
fn above_signature(text: &str) -> &str {
    text.split_once("\n-- \n").map_or(text, |(body, _)| body)
}

#[tokio::test]
async fn someone_waiting_is_told_with_their_messages() {
    let (addr, mut inbox) = start_smtp();
    let state = smtp_state(addr).await;
    let seeded = alice_room(&*state.store).await;
    add_message(&*state.store, &seeded.room, BOB, "Are you there?", 1_000).await;
    add_message(&*state.store, &seeded.room, BOB, "It is about Q3.", 2_000).await;
    remind(&state, &seeded.room, BOB).await;

    let (to, subject, text, html) = next_reminder(&mut inbox).await;
    assert_eq!(to, [ALICE]);
    assert_eq!(
        subject,
        format!("{ALICE}: {BOB} wants to chat about \"Quarterly numbers\"")
    );
    let body = above_signature(&text);
    for needle in [
        "opened the chat link of your mail",
        "Messages so far:",
        "Are you there?",
        "It is about Q3.",
        "/auth/",
        &format!("/c/{}/{}", seeded.port, seeded.room),
    ] {
        assert!(body.contains(needle), "text lacks {needle:?}: {text}");
    }
    assert!(text.contains("a mail you sent"), "{text}");
    assert!(!text.contains("earlier"), "nothing left out: {text}");
    assert!(html.contains("It is about Q3."), "{html}");
}

#[tokio::test]
async fn a_chat_that_continued_quotes_what_is_new_and_leaves_out_the_senders_own() {
    let (addr, mut inbox) = start_smtp();
    let state = smtp_state(addr).await;
    let seeded = alice_room(&*state.store).await;
    let store = &*state.store;
    add_message(store, &seeded.room, BOB, "Read this first.", 1_000).await;
    // Alice was in the chat: she joined, read Bob's message and answered.
    store
        .join_room(&seeded.room, ALICE, 1_500)
        .await
        .expect("joined");
    let read = store
        .messages(&seeded.room, None, 10)
        .await
        .expect("messages");
    store
        .mark_read(&seeded.room, ALICE, read[0].id)
        .await
        .expect("read");
    add_message(store, &seeded.room, ALICE, "Numbers come Friday.", 2_000).await;
    add_message(store, &seeded.room, BOB, "Friday works, thanks!", 3_000).await;
    remind(&state, &seeded.room, BOB).await;

    let (to, subject, text, html) = next_reminder(&mut inbox).await;
    assert_eq!(to, [ALICE]);
    assert_eq!(
        subject,
        format!("{ALICE}: New messages from {BOB} about \"Quarterly numbers\"")
    );
    assert!(!subject.contains("tried"), "{subject}");
    let body = above_signature(&text);
    assert!(body.contains("wrote again"), "{text}");
    assert!(body.contains("Friday works, thanks!"), "{text}");
    // Writing marks the room read for the writer: the sender's own answer, like what she read
    // before it, is not quoted back to her.
    assert!(
        !body.contains("Numbers come Friday."),
        "the sender's own message is left out: {text}"
    );
    assert!(
        !body.contains("Read this first."),
        "what the sender read is not quoted again: {text}"
    );
    assert!(html.contains("Friday works, thanks!"), "{html}");
}

#[tokio::test]
async fn a_members_question_answered_by_the_shop_reads_as_an_answer_not_a_mail() {
    let (addr, mut inbox) = start_smtp();
    let state = smtp_state(addr).await;
    let store = &*state.store;
    let company = shop(store, "Hana's Kitchen", HOST, "Hana", 1_000).await;
    let ad = store
        .create_ad(company, &ad_fields(HOST, "Cast iron tea pot"), 1_000)
        .await
        .expect("ad");
    let member = add_member(store, MEMBER, "Ana", false, true, 1_000).await;
    // The room of the question as the mall opens it: the member is the sender, the host the To,
    // and the Message-ID is the mall's inquiry id of the room.
    let room = room_id("questionroom");
    let message_id = chatd::mail::message_id(&state.config, "inquiry", &[&room]);
    let grant = store
        .record_submission(&Submission {
            login: MEMBER.into(),
            ip: None,
            hostname: None,
            now: 1,
            ports: state.config.chat.ports,
            reclaim_after: state.config.chat.reclaim_after(),
            room_id: room.clone(),
            message_id: Some(format!("<{message_id}>")),
            subject: Some("Question about Cast iron tea pot".into()),
            participants: vec![
                Participant {
                    address: MEMBER.into(),
                    role: Role::From,
                    name: None,
                },
                Participant {
                    address: HOST.into(),
                    role: Role::To,
                    name: None,
                },
            ],
            opening: None,
        })
        .await
        .expect("room");
    store
        .add_inquiry(&NewInquiry {
            member_id: member,
            ad_id: ad,
            room_id: room.clone(),
            question: "Does it hold a whole litre?".into(),
            created_ms: 1_000,
        })
        .await
        .expect("inquiry");
    add_message(
        store,
        &room,
        HOST,
        "Yes, a whole litre, lid included.",
        2_000,
    )
    .await;
    remind(&state, &room, HOST).await;

    let (to, subject, text, html) = next_reminder(&mut inbox).await;
    assert_eq!(to, [MEMBER]);
    assert_eq!(
        subject,
        format!("{HOST} answered your question about \"Cast iron tea pot\"")
    );
    let body = above_signature(&text);
    let mall = &state.config.mall.name;
    for needle in [
        &format!("the question you asked in the {mall}"),
        "Your question:\n  > Does it hold a whole litre?",
        "Their answer:",
        "Yes, a whole litre, lid included.",
        &format!("/c/{}/{room}", grant.port),
    ] {
        assert!(body.contains(needle), "text lacks {needle:?}: {text}");
    }
    for wrong in ["mail you sent", "chat link of your mail"] {
        assert!(!text.contains(wrong), "text says {wrong:?}: {text}");
        assert!(!html.contains(wrong), "HTML says {wrong:?}: {html}");
    }
    assert!(
        text.contains(&format!("you asked a question in the {mall}")),
        "{text}"
    );
}

#[tokio::test]
async fn the_newest_messages_are_quoted_when_there_are_more_than_a_reminder_holds() {
    let (addr, mut inbox) = start_smtp();
    let state = smtp_state(addr).await;
    let seeded = alice_room(&*state.store).await;
    let total = reminder::MESSAGES_PER_REMINDER + 5;
    for n in 1..=total {
        let body = format!("message number {n}.");
        add_message(
            &*state.store,
            &seeded.room,
            BOB,
            &body,
            i64::from(n) * 1_000,
        )
        .await;
    }
    remind(&state, &seeded.room, BOB).await;

    let (_, _, text, html) = next_reminder(&mut inbox).await;
    let body = above_signature(&text);
    assert!(
        body.contains(&format!("message number {total}.")),
        "the newest is quoted: {text}"
    );
    assert!(body.contains("message number 6."), "{text}");
    assert!(
        !body.contains("message number 5."),
        "the oldest are left out: {text}"
    );
    assert!(body.contains("(5 earlier messages not shown.)"), "{text}");
    assert!(html.contains("5 earlier messages not shown."), "{html}");
    // Oldest first among those quoted, so the mail reads as the chat did.
    let first = body.find("message number 6.").unwrap_or(usize::MAX);
    let last = body.find(&format!("message number {total}.")).unwrap_or(0);
    assert!(first < last, "{text}");
}
