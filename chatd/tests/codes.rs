//! Proven addresses on paused time, in-process (see `inproc`): a recipient asks for a code
//! (`prove`), gets it by mail and enters it (`code`); the room sees the verified mark. Wrong
//! codes count down to a lock, codes expire, the sends per hour are limited, and with
//! `[chat] require_verified` an unproven recipient cannot speak.

mod common;
mod inproc;

use chmail::store::kind;
use common::{ALICE, BOB, CAROL, ROOM};
use inproc::{code_in, errors, pass, World};
use serde_json::{json, Value};

fn of_type<'a>(frames: &'a [Value], kind: &str) -> Vec<&'a Value> {
    frames.iter().filter(|f| f["type"] == kind).collect()
}

/// A six-digit code other than `code`.
fn other_than(code: &str) -> String {
    let n: u32 = code.parse().expect("digits");
    format!("{:06}", (n + 1) % 1_000_000)
}

#[tokio::test(start_paused = true)]
async fn a_mailed_code_proves_the_address_and_the_room_sees_the_mark() {
    let w = World::start(|_| {}).await;
    let mut carol = w.join(CAROL).await;
    let mut bob = w.join(BOB).await;
    let me = &bob.joined["members"];
    let bob_member = me
        .as_array()
        .and_then(|m| m.iter().find(|m| m["address"] == BOB))
        .expect("bob listed");
    assert_eq!(bob_member["verified"], false);
    carol.frames();

    bob.send(json!({"type": "prove"})).await;
    let frames = bob.frames();
    let sent = of_type(&frames, "proof_sent");
    assert_eq!(sent.len(), 1, "{frames:?}");
    assert_eq!(sent[0]["address"], BOB);
    assert_eq!(sent[0]["ttl_minutes"], 15);
    let mails = w.mailer.wait_for(1).await;
    assert_eq!(mails[0].to, BOB);
    let code = code_in(&mails[0]);
    let queued = w
        .state
        .store
        .outgoing_by_message_id(&mails[0].message_id)
        .await
        .expect("store")
        .expect("queued in the outbox");
    assert_eq!(queued.mail.kind, kind::CODE);
    assert_eq!(queued.mail.room_id.as_deref(), Some(ROOM));
    assert!(
        !w.state.store.is_verified(ROOM, BOB).await.expect("store"),
        "not before the code"
    );

    bob.send(json!({"type": "code", "code": format!(" {} {} ", &code[..3], &code[3..])}))
        .await;
    let frames = bob.frames();
    assert_eq!(
        of_type(&frames, "verified")
            .first()
            .map(|f| f["address"].clone()),
        Some(json!(BOB)),
        "{frames:?}"
    );
    let seen = carol.frames();
    assert_eq!(
        of_type(&seen, "verified")
            .first()
            .map(|f| f["address"].clone()),
        Some(json!(BOB)),
        "everyone in the room sees it: {seen:?}"
    );
    assert!(w.state.store.is_verified(ROOM, BOB).await.expect("store"));

    // Whoever joins later sees the mark, on the page and in `joined`.
    let dave = w.join(ALICE).await;
    let verified = dave.joined["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["address"] == BOB))
        .map(|m| m["verified"].clone());
    assert_eq!(verified, Some(json!(true)));
    let page = page(&w).await;
    assert!(
        page.contains(&format!(
            "data-address=\"{BOB}\" data-role=\"to\" data-presence=\"offline\""
        )),
        "{page}"
    );
    let bob_item = page
        .split("<li")
        .find(|li| li.contains(&format!("data-address=\"{BOB}\"")))
        .unwrap_or_default();
    assert!(bob_item.contains("class=\"verified\""), "{bob_item}");
    let carol_item = page
        .split("<li")
        .find(|li| li.contains(&format!("data-address=\"{CAROL}\"")))
        .unwrap_or_default();
    assert!(carol_item.contains("class=\"unverified\""), "{carol_item}");

    // Asking again once proven mails nothing.
    bob.send(json!({"type": "prove"})).await;
    assert_eq!(of_type(&bob.frames(), "verified").len(), 1);
    pass(5).await;
    assert_eq!(w.mailer.mails().len(), 1);
    for c in [bob, carol, dave] {
        c.close().await;
    }
    w.stop().await;
}

async fn page(w: &World) -> String {
    use axum::body::{to_bytes, Body};
    use tower::ServiceExt as _;
    let req = axum::http::Request::get(format!("/c/{}/{ROOM}", inproc::PORT))
        .body(Body::empty())
        .expect("request");
    let response = chatd::app(w.state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let bytes = to_bytes(response.into_body(), 1 << 20).await.expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test(start_paused = true)]
async fn wrong_codes_count_down_then_lock_until_a_new_code() {
    let w = World::start(|_| {}).await;
    let mut bob = w.join(BOB).await;
    bob.send(json!({"type": "code", "code": "123456"})).await;
    let frames = bob.frames();
    assert_eq!(errors(&frames)[0]["code"], "no_code", "{frames:?}");

    bob.send(json!({"type": "prove"})).await;
    let code = code_in(&w.mailer.wait_for(1).await[0]);
    let wrong = other_than(&code);
    for left in (0..5).rev() {
        bob.send(json!({"type": "code", "code": wrong})).await;
        let frames = bob.frames();
        let e = errors(&frames);
        assert_eq!(e.len(), 1, "{frames:?}");
        assert_eq!(e[0]["code"], "wrong_code");
        assert_eq!(e[0]["attempts_left"], left, "{frames:?}");
    }
    // Locked: even the right code no longer counts.
    bob.send(json!({"type": "code", "code": code})).await;
    let frames = bob.frames();
    assert_eq!(errors(&frames)[0]["code"], "locked", "{frames:?}");
    assert!(!w.state.store.is_verified(ROOM, BOB).await.expect("store"));

    // Not a code at all: refused without costing a guess.
    bob.send(json!({"type": "code", "code": "12ab"})).await;
    assert_eq!(errors(&bob.frames())[0]["code"], "bad_frame");

    // A new code starts afresh.
    bob.send(json!({"type": "prove"})).await;
    let code = code_in(&w.mailer.wait_for(2).await[1]);
    bob.send(json!({"type": "code", "code": code})).await;
    assert_eq!(of_type(&bob.frames(), "verified").len(), 1);
    bob.close().await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_code_expires_after_its_ttl() {
    let w = World::start(|_| {}).await;
    let mut bob = w.join(BOB).await;
    bob.send(json!({"type": "prove"})).await;
    let code = code_in(&w.mailer.wait_for(1).await[0]);
    pass(15 * 60 + 1).await;
    bob.send(json!({"type": "code", "code": code})).await;
    let frames = bob.frames();
    assert_eq!(errors(&frames)[0]["code"], "expired", "{frames:?}");
    assert!(!w.state.store.is_verified(ROOM, BOB).await.expect("store"));
    bob.close().await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn at_most_three_codes_an_hour_are_mailed() {
    let w = World::start(|_| {}).await;
    let mut bob = w.join(BOB).await;
    for n in 1..=3 {
        bob.send(json!({"type": "prove"})).await;
        assert_eq!(of_type(&bob.frames(), "proof_sent").len(), 1);
        w.mailer.wait_for(n).await;
        pass(60).await;
    }
    bob.send(json!({"type": "prove"})).await;
    let frames = bob.frames();
    assert_eq!(errors(&frames)[0]["code"], "rate_limited", "{frames:?}");
    pass(30).await;
    assert_eq!(w.mailer.mails().len(), 3, "no fourth mail");

    // An hour after the first, one more is allowed.
    pass(60 * 60 - 3 * 60).await;
    bob.send(json!({"type": "prove"})).await;
    let frames = bob.frames();
    assert_eq!(of_type(&frames, "proof_sent").len(), 1, "{frames:?}");
    w.mailer.wait_for(4).await;
    bob.close().await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_sender_counts_as_proven_and_cannot_ask_for_a_code() {
    let w = World::start(|c| c.chat.require_verified = true).await;
    let mut alice = w.join(ALICE).await;
    let verified = alice.joined["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["address"] == ALICE))
        .map(|m| m["verified"].clone());
    assert_eq!(verified, Some(json!(true)));
    alice.say("the sender speaks without a code").await;
    alice.send(json!({"type": "prove"})).await;
    assert_eq!(errors(&alice.frames())[0]["code"], "forbidden");
    pass(5).await;
    assert!(w.mailer.mails().is_empty());
    alice.close().await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn require_verified_blocks_messages_until_the_address_is_proven() {
    let w = World::start(|c| c.chat.require_verified = true).await;
    let mut alice = w.join(ALICE).await;
    let mut bob = w.join(BOB).await;
    alice.frames();

    bob.send(json!({"type": "message", "text": "let me in", "id": "m1"}))
        .await;
    let frames = bob.frames();
    assert_eq!(errors(&frames)[0]["code"], "not_verified", "{frames:?}");
    assert!(of_type(&frames, "ack").is_empty());
    assert!(
        of_type(&alice.frames(), "message").is_empty(),
        "nothing reached the room"
    );
    let stored = w.state.store.messages(ROOM, None, 10).await.expect("store");
    assert!(stored.is_empty(), "{stored:?}");

    bob.send(json!({"type": "prove"})).await;
    let code = code_in(&w.mailer.wait_for(1).await[0]);
    bob.send(json!({"type": "code", "code": code})).await;
    bob.frames();
    bob.say("proven now").await;
    let seen = alice.frames();
    assert_eq!(of_type(&seen, "message").len(), 1, "{seen:?}");
    for c in [alice, bob] {
        c.close().await;
    }
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_code_requests_do_not_pass_codes_per_hour() {
    let w = World::start(|_| {}).await;
    let limit = w.state.config.chat.codes_per_hour as usize;
    let requests = (0..limit + 5).map(|_| chatd::codes::request(&w.state, ROOM, None, BOB));
    let results = futures_util::future::join_all(requests).await;
    let sent = results
        .iter()
        .filter(|r| matches!(r, Ok(chatd::codes::Requested::Sent { .. })))
        .count();
    let too_many = results
        .iter()
        .filter(|r| matches!(r, Ok(chatd::codes::Requested::TooMany)))
        .count();
    assert_eq!((sent, too_many), (limit, 5), "{results:?}");
    w.stop().await;
}
