//! The mall's inquiry loop in a real headless Chromium: starts chatd in-process with the demo
//! data and a signing key (its public URL is the address it listens on, so the browser's Origin
//! matches) and runs `node tests/browser/mall.mjs` (playwright-core driving /usr/bin/chromium): a
//! visitor joins from a product page, confirming by the mailed link; asks about the product; the
//! ad's host, signed in by a sign-in link in a second browser context, opens the mailed
//! CHmail-Link (in the chat as themselves at once) and rings; the visitor, browsing on to the
//! mall's home page, is rung there, accepts and they exchange messages; back on the mall, the
//! bar's badge counts the host's next message and leads to the visitor's chats; after the host
//! left, the visitor's follow-up must reach the host by mail. The test reads the mails from the
//! recording mailer and hands their links to the script on its standard input. Screenshots
//! (home page, product page, the ringing mall page,
//! both chat pages) go to `$CARGO_TARGET_TMPDIR/screenshots` (printed), beside those of
//! `browser.rs`.
//!
//! Needs node, Chromium (`CHROMIUM`, default /usr/bin/chromium) and `npm ci` in tests/browser.
//! When one is missing the test prints SKIPPED and passes, except under `CI=true`, where it
//! fails.

mod common;

use std::{
    io::Write as _,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use chatd::mail::OutgoingMail;
use chmail::header::Signer;
use chmail_milter::SigningTable;
use common::{browser, Harness, RecordingMailer};

/// Longest run of the browser script: launching Chromium is the slow part.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest wait for a mail the script's next step needs.
const MAIL_TIMEOUT: Duration = Duration::from_secs(60);
/// The screenshots the script saves.
const SCREENSHOTS: [&str; 5] = [
    "mall-home.png",
    "mall-product.png",
    "mall-member-ringing.png",
    "mall-member-chat.png",
    "mall-host-chat.png",
];
/// The visitor who joins.
const MEMBER: &str = "ana.lima@example.com";

/// Waits for the first mail that `wanted` picks (up to [`MAIL_TIMEOUT`]); `None` when none
/// came (the script has failed meanwhile, and says why).
async fn mail_where(
    mailer: &RecordingMailer,
    wanted: impl Fn(&OutgoingMail) -> bool,
) -> Option<OutgoingMail> {
    let deadline = Instant::now() + MAIL_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(mail) = mailer.mails().into_iter().find(|m| wanted(m)) {
            return Some(mail);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_joins_asks_and_the_hosts_chat_rings_them_in_chromium() {
    let Some(chromium) = browser::chromium_or_skip() else {
        return;
    };
    let port = browser::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let h = Harness::start_with(
        |c| {
            c.chat.listen = format!("127.0.0.1:{port}");
            c.chat.public_url = base.clone();
            // The follow-up mail to the host goes out a second after it is written.
            c.chat.notify_delay_secs = 1;
        },
        |state| {
            let signer = Signer::generate("a.example", "mall1");
            state.signing = Arc::new(SigningTable::single(signer));
        },
    )
    .await;
    let state = h.state().clone();
    let store = h.store();
    let now = state.clock.now_ms();
    chatd::mall::demo::load(&*store, state.config.mall.max_picture_bytes, now)
        .await
        .expect("demo data loads");
    let host = chatd::mall::demo::DEMO_HOST;
    let company = store
        .host(host)
        .await
        .expect("store")
        .expect("the demo host")
        .company_id;
    let ad = store
        .ads_of(company)
        .await
        .expect("ads")
        .into_iter()
        .find(|ad| ad.fields.host_login == host && !ad.pictures.is_empty())
        .expect("an ad of the demo host with pictures");
    let host_signin = chatd::auth::signin_url(&state, host, None)
        .await
        .expect("sign-in link");
    let shots = browser::screenshot_dir();
    for name in SCREENSHOTS {
        // Last run's pictures must not pass for this run's.
        let _ = std::fs::remove_file(shots.join(name));
    }

    let mut command = browser::script("mall.mjs", &chromium, &shots);
    command
        .env("BASE_URL", &base)
        .env("PRODUCT_PATH", format!("/mall/ad/{}", ad.id))
        .env("HOST_SIGNIN_URL", &host_signin)
        .env("MEMBER", MEMBER)
        .env("HOST", host)
        .stdin(Stdio::piped());
    let mut child = command.spawn().expect("node starts");
    let mut stdin = child.stdin.take().expect("a pipe to the script");
    let waiter = tokio::task::spawn_blocking(move || browser::finish(child, BROWSER_TIMEOUT));

    // The links the script waits for, as the mails carry them.
    let confirm = mail_where(&h.mailer, |m| {
        m.to == MEMBER && m.subject.starts_with("Confirm your address")
    })
    .await;
    if let Some(mail) = &confirm {
        let start = mail.text.find("http").expect("the confirm link");
        let link = mail.text[start..]
            .split_whitespace()
            .next()
            .unwrap_or_default();
        let _ = writeln!(stdin, "{link}");
    }
    let inquiry = mail_where(&h.mailer, |m| {
        m.to == host && m.subject.starts_with("Question about")
    })
    .await;
    if let Some(mail) = &inquiry {
        let link = mail
            .headers
            .iter()
            .find(|(name, _)| name == "CHmail-Link")
            .map(|(_, v)| v.trim_matches(['<', '>']).to_owned())
            .expect("a CHmail-Link");
        let _ = writeln!(stdin, "{link}");
    }
    drop(stdin);

    let output = waiter.await.expect("the browser run finishes");
    browser::assert_ok(&output);
    assert!(
        confirm.is_some() && inquiry.is_some(),
        "both mails were sent"
    );

    let member = store
        .member_by_address(MEMBER)
        .await
        .expect("store")
        .expect("the visitor is a member");
    assert!(member.confirmed_ms.is_some());
    let inquiries = store
        .inquiries_of_member(member.id, 10)
        .await
        .expect("inquiries");
    assert_eq!(inquiries.len(), 1);
    assert!(inquiries[0].answered, "the host answered in the chat");
    let messages = store
        .messages(&inquiries[0].room_id, None, 100)
        .await
        .expect("messages");
    assert_eq!(messages.len(), 4, "the four messages were stored");
    // The follow-up written after the host left reached the host by mail: no code step, the
    // host's sign-in proved the address.
    let follow_up = mail_where(&h.mailer, |m| {
        m.to == host && m.text.contains("Is it waterproof?")
    })
    .await;
    assert!(follow_up.is_some(), "the host got the follow-up by mail");
    for name in SCREENSHOTS {
        assert!(shots.join(name).exists(), "{name} was saved");
    }
}
