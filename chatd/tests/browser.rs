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

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Harness, ALICE, BOB, ROOM};

/// Longest run of the browser script: launching Chromium is the slow part.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// What is missing to run the browser test, if anything.
fn missing(chromium: &Path) -> Option<String> {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("node is not installed".into());
    }
    if !chromium.exists() {
        return Some(format!(
            "{} does not exist (apt-get install chromium)",
            chromium.display()
        ));
    }
    let module = workspace().join("tests/browser/node_modules/playwright-core");
    if !module.exists() {
        return Some("playwright-core is not installed (npm ci in tests/browser)".into());
    }
    None
}

/// A port free right now on 127.0.0.1 (chatd binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_rings_the_sender_who_accepts_and_they_chat_in_chromium() {
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    if let Some(why) = missing(&chromium) {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("browser test cannot run under CI: {why}");
        }
        println!("SKIPPED: {why}");
        return;
    }
    let port = free_port();
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
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    println!("screenshots: {}", shots.display());

    let mut command = Command::new("node");
    command
        .arg("tests/browser/chat.mjs")
        .current_dir(workspace())
        .env("ROOM_URL", &room_url)
        .env("SIGNIN_URL", &signin_url)
        .env("RECIPIENT", BOB)
        .env("SENDER", ALICE)
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("node starts");
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if started.elapsed() > BROWSER_TIMEOUT => {
                    let _ = child.kill();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("waiting for node: {e}"),
            }
        }
        child.wait_with_output().expect("node output")
    })
    .await
    .expect("the browser run finishes");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "browser script failed: {stderr}");
    assert_eq!(stdout.lines().last(), Some("OK"), "the script's last line");
    assert_eq!(h.message_count().await, 3, "all three messages were stored");
}
