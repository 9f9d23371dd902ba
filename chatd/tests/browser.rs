//! The chat pages in a real headless Chromium: starts chatd in-process (its public URL is the
//! address it listens on, so the browser's Origin matches), creates the room, and runs
//! `node tests/browser/chat.mjs` (playwright-core driving /usr/bin/chromium): the sender signs in
//! by link (the page's button) onto /me; a recipient on a phone-sized page opens the link (the
//! sender's name in the head, the mail's text as the first item) and writes; the message rings
//! the sender, who accepts, and they chat (names, links, a picture, read marks, a notification and the
//! count in the title of a hidden tab, the newest message and the composer in view after 30
//! answers, older messages on scroll), with axe-core on every state. Screenshots at phone and
//! desktop size go to `$CARGO_TARGET_TMPDIR/screenshots` (printed).
//!
//! Needs node, Chromium (`CHROMIUM`, default /usr/bin/chromium) and `npm ci` in tests/browser.
//! When one is missing the test prints SKIPPED and passes, except under `CI=true`, where it
//! fails.

mod common;

use std::time::Duration;

use chmail::store::{Participant, Role, Submission};
use common::{browser, Harness, ALICE, BOB, CAROL};

/// Longest run of the browser script: launching Chromium is the slow part.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

/// The sender's name in the mail.
const ALICE_NAME: &str = "Alice Liddell";
/// The recipient's name in the mail.
const BOB_NAME: &str = "Bob Baker";
/// The start of the mail's text.
const OPENING: &str = "Here are the quarterly numbers. Can we talk them through today?";
/// The room of this test: a mail whose From and To carry display names.
const NAMED_ROOM: &str = "br0wserRoomOfAlice-0001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_writes_the_sender_is_rung_accepts_and_they_chat_in_chromium() {
    let Some(chromium) = browser::chromium_or_skip() else {
        return;
    };
    let port = browser::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let h = Harness::start(|c| {
        c.chat.listen = format!("127.0.0.1:{port}");
        c.chat.public_url = base.clone();
        // Pages of 20: the 36 messages of the script need scrolling up to see the first.
        c.chat.history_page = 20;
        // The script writes 30 messages in a row.
        c.chat.messages_per_minute = 100;
    })
    .await;
    let grant = h
        .store()
        .record_submission(&Submission {
            login: ALICE.into(),
            ip: None,
            hostname: None,
            now: 1_714_566_896,
            ports: h.state().config.chat.ports,
            reclaim_after: h.state().config.chat.reclaim_after(),
            room_id: NAMED_ROOM.into(),
            message_id: Some("<named@a.example>".into()),
            subject: Some("Quarterly numbers".into()),
            participants: vec![
                Participant::new(ALICE, Role::From).named(ALICE_NAME),
                Participant::new(BOB, Role::To).named(BOB_NAME),
                Participant::new(CAROL, Role::Cc),
            ],
            opening: Some(OPENING.into()),
        })
        .await
        .expect("room stored");
    let room_url = format!("{base}/c/{}/{NAMED_ROOM}", grant.port);
    let signin_url = chatd::auth::signin_url(h.state(), ALICE, None)
        .await
        .expect("sign-in link");
    let shots = browser::screenshot_dir();

    let mut command = browser::script("chat.mjs", &chromium, &shots);
    command
        .env("ROOM_URL", &room_url)
        .env("SIGNIN_URL", &signin_url)
        .env("RECIPIENT", BOB)
        .env("RECIPIENT_NAME", BOB_NAME)
        .env("SENDER", ALICE)
        .env("SENDER_NAME", ALICE_NAME)
        .env("OPENING", OPENING);
    let child = command.spawn().expect("node starts");
    let output = tokio::task::spawn_blocking(move || browser::finish(child, BROWSER_TIMEOUT))
        .await
        .expect("the browser run finishes");
    browser::assert_ok(&output);
    let stored = h
        .store()
        .messages(NAMED_ROOM, None, 500)
        .await
        .expect("messages read");
    assert_eq!(stored.len(), 36, "every message was stored once");
    assert_eq!(
        stored.iter().filter(|m| m.picture_id.is_some()).count(),
        1,
        "the picture was sent once"
    );
}
