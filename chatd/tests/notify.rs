//! Notification mails on paused time, with the default delay (2 min) and back-off (doubling up to
//! a day, reset after a quiet day): batching, read suppression, back-off, mute, and the one-click
//! unsubscribe link of RFC 8058. In-process (see `inproc`): bob proves his address, leaves, and
//! alice (the signed-in sender) writes.

mod common;
mod inproc;

use axum::{
    body::{to_bytes, Body},
    http::{header, Request, StatusCode},
};
use chmail::store::kind;
use common::{ALICE, BOB, CAROL, ROOM};
use inproc::{pass, World};
use serde_json::json;
use tower::ServiceExt as _;

/// `name`'s value in the mail's extra headers.
fn header<'a>(mail: &'a chatd::mail::OutgoingMail, name: &str) -> Option<&'a str> {
    mail.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The path `/u/<token>` of the mail's List-Unsubscribe URL.
fn unsubscribe_path(mail: &chatd::mail::OutgoingMail) -> String {
    let value = header(mail, "List-Unsubscribe").expect("List-Unsubscribe");
    let url = value.trim_start_matches('<').trim_end_matches('>');
    let path = url
        .strip_prefix(common::ORIGIN)
        .unwrap_or_else(|| panic!("{url} on our origin"));
    assert!(path.starts_with("/u/"), "{path}");
    path.to_owned()
}

async fn request(w: &World, method: &str, path: &str, body: &str) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(path);
    if method == "POST" {
        req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let req = req.body(Body::from(body.to_owned())).expect("request");
    let response = chatd::app(w.state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(start_paused = true)]
async fn three_messages_within_the_delay_make_one_mail_with_all_three() {
    let w = World::start(|_| {}).await;
    w.prove(BOB).await;
    let mut alice = w.join(ALICE).await;

    alice.say("first").await;
    pass(30).await;
    alice.say("second").await;
    pass(30).await;
    alice.say("third").await;
    pass(55).await;
    assert!(w.notifications().is_empty(), "nothing before 2 min");
    pass(10).await;
    let mails = w.notifications();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = &mails[0];
    assert_eq!(mail.to, BOB, "only the verified recipient; carol is not");
    for text in ["first", "second", "third"] {
        assert!(mail.text.contains(text), "{text} in {}", mail.text);
    }
    assert!(
        mail.subject.contains("3 new chat messages"),
        "{}",
        mail.subject
    );
    let room_link = format!("{}/c/{}/{ROOM}", common::ORIGIN, inproc::PORT);
    assert!(mail.text.contains(&room_link), "{}", mail.text);
    assert_eq!(
        header(mail, "List-Unsubscribe-Post"),
        Some("List-Unsubscribe=One-Click")
    );
    let reply_to = header(mail, "Reply-To").expect("a reply address");
    assert!(reply_to.ends_with("@reply.a.example"), "{reply_to}");
    assert_eq!(header(mail, "In-Reply-To"), Some("<q3@a.example>"));
    let queued = w
        .state
        .store
        .outgoing_by_message_id(&mail.message_id)
        .await
        .expect("store")
        .expect("in the outbox");
    assert_eq!(queued.mail.kind, kind::NOTIFICATION);
    assert!(!mail.headers.is_empty());

    // Nothing more: the three are told.
    pass(600).await;
    assert_eq!(w.notifications().len(), 1);
    alice.close().await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn more_messages_than_a_mail_holds_quote_the_newest_and_count_the_others() {
    let w = World::start(|c| c.chat.messages_per_minute = 1_000).await;
    w.prove(BOB).await;
    let mut alice = w.join(ALICE).await;
    let total = chatd::notify::MESSAGES_PER_MAIL + 3;
    for n in 1..=total {
        alice.say(&format!("number {n}.")).await;
    }
    pass(125).await;
    let mails = w.notifications();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let text = &mails[0].text;
    assert!(
        text.contains(&format!("number {total}.")),
        "the newest: {text}"
    );
    assert!(text.contains("number 4."), "{text}");
    assert!(
        !text.contains("number 3."),
        "the oldest are left out: {text}"
    );
    assert!(text.contains("(3 earlier messages not shown.)"), "{text}");
    assert!(
        mails[0]
            .subject
            .contains(&format!("{} new chat messages", total - 3)),
        "{}",
        mails[0].subject
    );

    // The ones left out are not mailed later: the mail told of them.
    pass(3_600).await;
    assert_eq!(w.notifications().len(), 1);
    alice.close().await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn messages_read_before_the_delay_are_not_mailed() {
    let w = World::start(|_| {}).await;
    w.prove(BOB).await;
    let mut alice = w.join(ALICE).await;

    let id = alice.say("are you there?").await;
    pass(60).await;
    // Bob opens the chat on his phone, reads, and leaves.
    let mut bob = w.join(BOB).await;
    bob.send(json!({"type": "read", "up_to": id})).await;
    bob.close().await;
    pass(300).await;
    assert!(w.notifications().is_empty(), "{:#?}", w.notifications());

    // A later unread message is mailed, alone.
    alice.say("one more thing").await;
    pass(125).await;
    let mails = w.notifications();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].text.contains("one more thing"));
    assert!(
        !mails[0].text.contains("are you there?"),
        "{}",
        mails[0].text
    );
    alice.close().await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_recipient_in_the_room_gets_no_mail_and_the_sender_none_either() {
    let w = World::start(|_| {}).await;
    w.prove(BOB).await;
    let mut bob = w.join(BOB).await;
    let mut alice = w.join(ALICE).await;
    alice.say("hello bob").await;
    pass(10).await;
    // Alice leaves; bob writes: the sender's mail is the reminder, not a notification.
    alice.close().await;
    bob.say("hi alice").await;
    pass(300).await;
    assert!(w.notifications().is_empty(), "{:#?}", w.notifications());
    bob.close().await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn repeat_notifications_back_off_and_reset_after_a_quiet_day() {
    let w = World::start(|_| {}).await;
    w.prove(BOB).await;
    let mut alice = w.join(ALICE).await;

    // 1st at 2 min; the back-off becomes 2 min.
    alice.say("one").await;
    pass(125).await;
    assert_eq!(w.notifications().len(), 1);
    // 2nd burst at 2:30: due at 4:30 (the delay is longer than the back-off); back-off 4 min.
    pass(25).await;
    alice.say("two").await;
    pass(125).await;
    assert_eq!(w.notifications().len(), 2);
    // 3rd burst at 4:40: the delay alone would mail at 6:40; the back-off waits until 8:30
    // (4 min after the 2nd mail).
    pass(5).await;
    alice.say("three").await;
    pass(150).await;
    assert_eq!(
        w.notifications().len(),
        2,
        "held back by the 4 min back-off"
    );
    pass(90).await;
    let mails = w.notifications();
    assert_eq!(mails.len(), 3, "sent when the back-off allows");
    assert!(mails[2].text.contains("three") && !mails[2].text.contains("two"));
    let state = w
        .state
        .store
        .notify_state(ROOM, BOB)
        .await
        .expect("store")
        .expect("a schedule");
    assert_eq!(state.backoff_ms, 8 * 60_000, "doubled twice from 2 min");

    // A quiet day later the back-off starts over: a mail 2 min after the message, and the next
    // one only 2 min after that (not 16).
    tokio::time::advance(std::time::Duration::from_secs(25 * 3600)).await;
    pass(1).await;
    alice.say("four").await;
    pass(125).await;
    assert_eq!(w.notifications().len(), 4);
    let state = w
        .state
        .store
        .notify_state(ROOM, BOB)
        .await
        .expect("store")
        .expect("a schedule");
    assert_eq!(state.backoff_ms, 2 * 60_000, "reset after a quiet day");
    alice.say("five").await;
    pass(125).await;
    let mails = w.notifications();
    assert_eq!(mails.len(), 5, "{mails:#?}");
    assert!(mails[4].text.contains("five"));
    alice.close().await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_muted_room_sends_no_mail_until_unmuted() {
    let w = World::start(|_| {}).await;
    w.prove(BOB).await;
    let mut bob = w.join(BOB).await;
    let muted = |frames: &[serde_json::Value], on: bool| {
        frames
            .iter()
            .any(|f| f["type"] == "muted" && f["muted"] == on)
    };
    assert!(
        !bob.join_frames.iter().any(|f| f["type"] == "muted"),
        "mails on: no muted frame {:?}",
        bob.join_frames
    );
    bob.send(json!({"type": "mute", "muted": true})).await;
    let frames = bob.frames();
    assert!(muted(&frames, true), "{frames:?}");
    bob.close().await;
    // Joining again shows the setting.
    let bob = w.join(BOB).await;
    assert!(muted(&bob.join_frames, true), "{:?}", bob.join_frames);
    bob.close().await;

    let mut alice = w.join(ALICE).await;
    alice.say("anyone?").await;
    pass(600).await;
    assert!(w.notifications().is_empty(), "{:#?}", w.notifications());

    let mut bob = w.join(BOB).await;
    bob.send(json!({"type": "mute", "muted": false})).await;
    bob.close().await;
    alice.say("now?").await;
    pass(125).await;
    let mails = w.notifications();
    assert_eq!(mails.len(), 1, "mails again once unmuted");
    assert!(mails[0].text.contains("now?"));
    alice.close().await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_one_click_unsubscribe_link_mutes_on_post_and_not_on_get() {
    let w = World::start(|_| {}).await;
    w.prove(BOB).await;
    w.prove(CAROL).await;
    let mut alice = w.join(ALICE).await;
    alice.say("news").await;
    pass(125).await;
    let mails = w.notifications();
    assert_eq!(mails.len(), 2, "bob and carol: {mails:#?}");
    let bobs = mails.iter().find(|m| m.to == BOB).expect("bob's mail");
    let path = unsubscribe_path(bobs);
    assert!(bobs.text.contains(&path), "the link is in the text too");

    // Opening the link (or a mail scanner fetching it) only shows the button.
    let (status, page) = request(&w, "GET", &path, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("method=\"post\""), "{page}");
    assert!(page.contains(BOB), "{page}");
    let muted = |w: &World| {
        let store = w.state.store.clone();
        async move {
            store
                .notify_state(ROOM, BOB)
                .await
                .expect("store")
                .is_some_and(|s| s.muted)
        }
    };
    assert!(!muted(&w).await, "GET does not mute");

    // The mail client's one-click POST: no cookie, no CSRF token.
    let (status, page) = request(&w, "POST", &path, "List-Unsubscribe=One-Click").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("no more mails"), "{page}");
    assert!(muted(&w).await);
    let (status, _) = request(&w, "POST", "/u/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    alice.say("more news").await;
    pass(900).await;
    let mails = w.notifications();
    assert_eq!(mails.len(), 3, "only carol's: {mails:#?}");
    assert_eq!(mails[2].to, CAROL);
    alice.close().await;
    w.stop().await;
}
