//! The chat pages in a real headless Chromium: starts chatd in-process (its public URL is the
//! address it listens on, so the browser's Origin matches), creates the room, and runs
//! `node tests/browser/chat.mjs` (playwright-core driving /usr/bin/chromium): the sender signs in
//! by link (the page's button) onto /me; a recipient opens the link, writes (the sender's list
//! shows it unread, live) and presses Chat; the sender sees the ring and accepts, and they
//! exchange messages. Screenshots go to `$CARGO_TARGET_TMPDIR/screenshots` (printed).
//!
//! Needs node, Chromium (`CHROMIUM`, default /usr/bin/chromium) and `npm ci` in tests/browser.
//! When one is missing the test prints SKIPPED and passes, except under `CI=true`, where it
//! fails.

mod common;

use std::time::Duration;

use common::{browser, Harness, ALICE, BOB, ROOM};

/// Longest run of the browser script: launching Chromium is the slow part.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_rings_the_sender_who_accepts_and_they_chat_in_chromium() {
    let Some(chromium) = browser::chromium_or_skip() else {
        return;
    };
    let port = browser::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let h = Harness::start(|c| {
        c.chat.listen = format!("127.0.0.1:{port}");
        c.chat.public_url = base.clone();
    })
    .await;
    let room_url = format!("{base}/c/{}/{ROOM}", h.port);
    let signin_url = chatd::auth::signin_url(h.state(), ALICE, None)
        .await
        .expect("sign-in link");
    let shots = browser::screenshot_dir();

    let mut command = browser::script("chat.mjs", &chromium, &shots);
    command
        .env("ROOM_URL", &room_url)
        .env("SIGNIN_URL", &signin_url)
        .env("RECIPIENT", BOB)
        .env("SENDER", ALICE);
    let child = command.spawn().expect("node starts");
    let output = tokio::task::spawn_blocking(move || browser::finish(child, BROWSER_TIMEOUT))
        .await
        .expect("the browser run finishes");
    browser::assert_ok(&output);
    assert_eq!(h.message_count().await, 3, "all three messages were stored");
}
