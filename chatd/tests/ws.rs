//! The chat WebSocket (`docs/protocol.md`) against a real chatd on 127.0.0.1:0: joining,
//! messages to everyone in the room, history, limits and malformed frames, the Origin check,
//! presence, ringing and reminders, and a restart in the middle of a conversation.
//!
//! Time: tests where intervals matter run with tokio's clock paused (`start_paused`); when every
//! task waits, tokio jumps to the next timer, so a 90 s ring time-out takes no real time. The
//! SQLite store runs its calls in `spawn_blocking`; on the current-thread runtime of these tests
//! tokio does NOT auto-advance while a blocking task runs (tokio's `BlockingSchedule` inhibits
//! auto-advance, see tokio `runtime/blocking/schedule.rs`), so a store call never appears to take
//! minutes and no store time-out fires spuriously. Loopback TCP delivers synchronously, so frames
//! in flight are seen before the clock moves.

mod common;

use std::time::Duration;

use common::{Client, Harness, ALICE, BOB, CAROL, DAVE, ORIGIN, ROOM, SUBJECT};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn three_recipients_and_the_sender_each_get_every_message() {
    let h = Harness::start(|_| {}).await;
    let mut bob = h.joined(BOB).await;
    let mut carol = h.joined(CAROL).await;
    let mut dave = h.joined(DAVE).await;
    let mut alice = h.sender_client().await;
    let joined = alice.join(h.port, None).await;
    assert_eq!(joined["is_sender"], true);
    assert_eq!(joined["you"], ALICE);
    assert_eq!(joined["subject"], SUBJECT);
    let roles: Vec<_> = joined["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| (m["address"].clone(), m["role"].clone()))
        .collect();
    assert_eq!(
        roles,
        [
            (json!(ALICE), json!("from")),
            (json!(BOB), json!("to")),
            (json!(CAROL), json!("cc")),
            (json!(DAVE), json!("cc"))
        ]
    );

    let mut clients = [
        (BOB, &mut bob),
        (CAROL, &mut carol),
        (DAVE, &mut dave),
        (ALICE, &mut alice),
    ];
    for i in 0..clients.len() {
        let author = clients[i].0;
        let text = format!("hello from {author}");
        let stored = clients[i].1.say(&text, &format!("m{i}")).await;
        assert_eq!(stored["author"], author);
        assert_eq!(stored["text"], text);
        for (j, (_, other)) in clients.iter_mut().enumerate() {
            if j == i {
                continue;
            }
            let got = other.skip_to("message").await;
            assert_eq!(
                got["message"], stored,
                "client {j} got the message of {author}"
            );
        }
    }
    assert_eq!(h.message_count().await, 4);
}

#[tokio::test]
async fn a_rejoining_participant_gets_the_history_in_pages() {
    let h = Harness::start(|c| c.chat.history_page = 3).await;
    let mut bob = h.joined(BOB).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let m = bob.say(&format!("line {i}"), &format!("b{i}")).await;
        ids.push(m["id"].as_i64().unwrap_or_default());
    }
    // A retry of an acknowledged message (same client id) is stored once.
    let again = bob.say("line 6", "b6").await;
    assert_eq!(again["id"].as_i64(), ids.last().copied());
    bob.close().await;

    let mut bob = h.client().await;
    bob.send(json!({"type": "join", "port": h.port, "room": ROOM, "as": BOB}))
        .await;
    bob.expect("joined").await;
    let page = bob.expect("history").await;
    let texts = |page: &serde_json::Value| -> Vec<String> {
        page["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(texts(&page), ["line 4", "line 5", "line 6"]);
    assert_eq!(page["more"], true);
    bob.send(json!({"type": "history", "before": ids[4]})).await;
    let older = bob.expect("history").await;
    assert_eq!(texts(&older), ["line 1", "line 2", "line 3"]);
    assert_eq!(older["more"], true);
    bob.send(json!({"type": "history", "before": ids[1]})).await;
    let oldest = bob.expect("history").await;
    assert_eq!(texts(&oldest), ["line 0"]);
    assert_eq!(oldest["more"], false);
    assert_eq!(h.message_count().await, 7);
}

#[tokio::test]
async fn malformed_frames_get_an_error_and_change_nothing() {
    let h = Harness::start(|_| {}).await;
    let mut c = h.client().await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("not json"), "bad_frame"),
        (Message::text("[1,2,3]"), "bad_frame"),
        (Message::text(r#"{"type":"launch"}"#), "bad_frame"),
        (Message::text(r#"{"type":"join","room":"x"}"#), "bad_frame"),
        (Message::text(r#"{"type":"message","text":7}"#), "bad_frame"),
        (Message::binary(vec![1u8, 2, 3]), "bad_frame"),
        (
            Message::text(r#"{"type":"message","text":"hi"}"#),
            "not_joined",
        ),
        (Message::text(r#"{"type":"history"}"#), "not_joined"),
        (Message::text(r#"{"type":"ring"}"#), "not_joined"),
        (Message::text(r#"{"type":"watch"}"#), "forbidden"),
        (
            Message::text(r#"{"type":"accept","ring":1,"room":"r0OmOfAl1ce-Quarterly1"}"#),
            "forbidden",
        ),
    ];
    for (frame, code) in cases {
        c.send_raw(frame).await;
        c.expect_error(code).await;
    }
    // Unknown room and wrong port: the same answer.
    c.send(json!({"type": "join", "port": h.port, "room": "no-such-room"}))
        .await;
    let unknown = c.expect_error("not_found").await;
    c.send(json!({"type": "join", "port": h.port.wrapping_add(1), "room": ROOM, "as": BOB}))
        .await;
    let wrong_port = c.expect_error("not_found").await;
    assert_eq!(unknown["message"], wrong_port["message"]);
    // Not a recipient; the sender's address without the sender's session; no address at all.
    for who in [Some("mallory@m.example"), Some(ALICE), None] {
        let mut frame = json!({"type": "join", "port": h.port, "room": ROOM});
        if let Some(who) = who {
            frame["as"] = json!(who);
        }
        c.send(frame).await;
        c.expect_error("forbidden").await;
    }
    c.send(json!({"type": "join", "port": h.port, "room": ROOM, "as": BOB, "v": 2}))
        .await;
    c.expect_error("unsupported_version").await;

    // Still the same connection, and it can join and talk now.
    c.assert_alive().await;
    c.join(h.port, Some(BOB)).await;
    c.send(json!({"type": "message", "text": "   "})).await;
    c.expect_error("bad_frame").await;
    c.send(json!({"type": "message", "text": "x", "id": "i".repeat(65)}))
        .await;
    c.expect_error("bad_frame").await;
    c.send(json!({"type": "join", "port": h.port, "room": ROOM, "as": CAROL}))
        .await;
    c.expect_error("already_joined").await;
    assert_eq!(h.message_count().await, 0);
    c.say("finally", "ok").await;
    assert_eq!(h.message_count().await, 1);
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_refused_and_nothing_else_changes() {
    let h = Harness::start(|c| c.chat.max_message_bytes = 100).await;
    let mut bob = h.joined(BOB).await;
    let mut carol = h.joined(CAROL).await;
    bob.send(json!({"type": "message", "text": "x".repeat(101), "id": "big"}))
        .await;
    bob.expect_error("too_large").await;
    bob.say(&"y".repeat(100), "fits").await;
    let got = carol.skip_to("message").await;
    assert_eq!(got["message"]["text"], "y".repeat(100));
    assert_eq!(h.message_count().await, 1);
}

#[tokio::test]
async fn a_frame_over_the_frame_limit_gets_too_large_and_a_close() {
    let h = Harness::start(|c| c.chat.max_frame_bytes = 2048).await;
    let mut bob = h.joined(BOB).await;
    bob.say("before", "b1").await;
    let huge = json!({"type": "message", "text": "z".repeat(4000)}).to_string();
    bob.send_raw(Message::text(huge)).await;
    bob.expect_error("too_large").await;
    let closed = bob.expect("_closed").await;
    assert_eq!(closed["code"], 1009);
    // The store and the room are intact: a new connection joins and sees the history.
    let mut again = h.client().await;
    again
        .send(json!({"type": "join", "port": h.port, "room": ROOM, "as": BOB}))
        .await;
    again.expect("joined").await;
    let history = again.expect("history").await;
    assert_eq!(history["messages"][0]["text"], "before");
    assert_eq!(h.message_count().await, 1);
}

#[tokio::test]
async fn messages_per_minute_are_limited_per_identity_over_all_its_connections() {
    // The window itself is unit-tested (limit); here: one budget per identity, shared by all of
    // its connections, and another identity has its own.
    let h = Harness::start(|c| c.chat.messages_per_minute = 3).await;
    let mut bob = h.joined(BOB).await;
    let mut bob2 = h.joined(BOB).await;
    let mut carol = h.joined(CAROL).await;
    for i in 0..2 {
        bob.say(&format!("m{i}"), &format!("m{i}")).await;
    }
    bob2.say("m2", "m2").await;
    bob2.send(json!({"type": "message", "text": "one too many", "id": "m3"}))
        .await;
    bob2.expect_error("rate_limited").await;
    bob.send(json!({"type": "message", "text": "one too many", "id": "m4"}))
        .await;
    // bob's first connection saw bob2's message first.
    assert_eq!(bob.skip_to("error").await["code"], "rate_limited");
    bob.assert_alive().await;
    // A fresh connection of the same address does not get a fresh budget.
    let mut bob3 = h.joined(BOB).await;
    bob3.send(json!({"type": "message", "text": "again", "id": "m5"}))
        .await;
    bob3.expect_error("rate_limited").await;
    carol.say("carol speaks", "c0").await;
    assert_eq!(h.message_count().await, 4);
}

#[tokio::test]
async fn frames_per_connection_are_limited_by_the_config() {
    // The window itself is unit-tested (session); here: `[chat] frames_per_minute` is the one
    // in force, per connection.
    let h = Harness::start(|c| c.chat.frames_per_minute = 3).await;
    let mut c = h.client().await;
    for _ in 0..3 {
        c.send_raw(Message::text("not json")).await;
        c.expect_error("bad_frame").await;
    }
    c.send(json!({"type": "ping"})).await;
    c.expect_error("rate_limited").await;
    // Another connection has its own budget.
    h.client().await.assert_alive().await;
}

#[tokio::test]
async fn a_caller_cannot_ring_again_at_once_after_a_ring_ended() {
    let h = Harness::start(ringing).await;
    let mut bob = h.joined(BOB).await;
    // The sender is offline: the ring ends at once (a reminder is due).
    bob.send(json!({"type": "ring"})).await;
    let call = bob.skip_to("call").await;
    assert_ne!(call["state"], "ringing", "{call}");
    bob.send(json!({"type": "ring"})).await;
    bob.expect_error("rate_limited").await;
    // Not on another connection either.
    let mut bob2 = h.joined(BOB).await;
    bob2.send(json!({"type": "ring"})).await;
    bob2.expect_error("rate_limited").await;
    bob.assert_alive().await;
}

#[tokio::test]
async fn read_past_the_rooms_newest_message_is_clamped_to_it() {
    let h = Harness::start(|_| {}).await;
    let mut bob = h.joined(BOB).await;
    let m = bob.say("hello", "m0").await;
    let newest = m["id"].as_i64().expect("message id");
    bob.send(json!({"type": "read", "up_to": newest + 1_000}))
        .await;
    bob.assert_alive().await;
    let members = h.store().members(ROOM).await.expect("members");
    let last_read = members
        .iter()
        .find(|m| m.address == BOB)
        .and_then(|m| m.last_read);
    assert_eq!(last_read, Some(newest));
}

#[tokio::test]
async fn connections_beyond_the_caps_get_503_before_the_upgrade() {
    use chatd::ws::capacity::Capacity;
    use tokio_tungstenite::tungstenite::Error;
    let h = Harness::start_with(
        |_| {},
        |state| state.capacity = std::sync::Arc::new(Capacity::new(2, 1)),
    )
    .await;
    let first = h.client().await;
    let status = |r: Result<Client, Error>| match r {
        Err(Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("not an HTTP refusal: {e}"),
        Ok(_) => 101,
    };
    // One per client network: 127.0.0.1 has its one.
    let over = Client::try_connect(&h.ws_url(), Some(ORIGIN), None).await;
    assert_eq!(status(over), 503);
    // Another network (through the local proxy's header) has its own, up to the total of 2.
    let forwarded = |ip: &'static str| [("Origin", ORIGIN), ("X-Forwarded-For", ip)];
    let second = Client::try_connect_with(&h.ws_url(), &forwarded("192.0.2.7")).await;
    assert_eq!(status(second), 101);
    let third = Client::try_connect_with(&h.ws_url(), &forwarded("192.0.2.8")).await;
    assert_eq!(status(third), 503, "over the process's total");
    // A closed connection frees its place.
    first.close().await;
    let mut again = None;
    for _ in 0..50 {
        match Client::try_connect(&h.ws_url(), Some(ORIGIN), None).await {
            Ok(c) => {
                again = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(again.is_some(), "the place came back");
}

#[tokio::test]
async fn a_room_has_a_connection_limit() {
    let h = Harness::start(|c| c.chat.max_room_connections = 2).await;
    let _bob = h.joined(BOB).await;
    let carol = h.joined(CAROL).await;
    let mut dave = h.client().await;
    dave.send(json!({"type": "join", "port": h.port, "room": ROOM, "as": DAVE}))
        .await;
    dave.expect_error("room_full").await;
    dave.assert_alive().await;
    carol.close().await;
    // Carol's place frees up once her connection is gone.
    let mut joined = false;
    for _ in 0..50 {
        dave.send(json!({"type": "join", "port": h.port, "room": ROOM, "as": DAVE}))
            .await;
        let frame = dave.next().await;
        if frame["type"] == "joined" {
            joined = true;
            break;
        }
        assert_eq!(frame["code"], "room_full");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(joined, "the freed place can be taken");
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_ours_accepted() {
    let h = Harness::start(|_| {}).await;
    let refused = Client::try_connect(&h.ws_url(), Some("https://evil.example"), None).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
        }
        Err(other) => panic!("expected HTTP 403, got {other}"),
        Ok(_) => panic!("a foreign origin was accepted"),
    }
    let mut ok = Client::connect(&h.ws_url(), Some(ORIGIN), None).await;
    ok.assert_alive().await;
}

#[tokio::test]
async fn typing_is_relayed_and_never_stored() {
    let h = Harness::start(|_| {}).await;
    let mut bob = h.joined(BOB).await;
    let mut carol = h.joined(CAROL).await;
    bob.skip_to("presence").await; // carol came
    bob.send(json!({"type": "typing"})).await;
    let typing = carol.expect("typing").await;
    assert_eq!(typing["from"], BOB);
    bob.assert_alive().await;
    assert_eq!(h.message_count().await, 0);
}

#[tokio::test]
async fn the_sender_is_online_while_a_page_is_open_and_a_reload_does_not_flap() {
    let h = Harness::start(|c| c.chat.presence_grace_secs = 2).await;
    let mut bob = h.joined(BOB).await;
    let me = h.watching().await;
    let online = bob.expect("presence").await;
    assert_eq!(online["address"], ALICE);
    assert_eq!(online["online"], true);
    assert!(h
        .store()
        .online(ALICE, h.state().clock.now_ms())
        .await
        .unwrap_or(false));
    // The first table records where the login connected from.
    let seen = h.store().login(ALICE).await.ok().flatten();
    assert_eq!(
        seen.and_then(|r| r.ip).as_deref(),
        Some("127.0.0.1"),
        "record_login on connect"
    );

    // A reload: closed and back within the grace period; no presence news.
    me.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let me = h.watching().await;
    let news = bob.drain(Duration::from_secs(3)).await;
    assert!(
        news.iter().all(|f| f["type"] != "presence"),
        "no flap: {news:?}"
    );
    me.close().await;
    let offline = bob.expect("presence").await;
    assert_eq!(offline["online"], false);
    assert_eq!(offline["address"], ALICE);
}

#[tokio::test]
async fn a_sender_behind_a_local_proxy_is_recorded_at_the_forwarded_address() {
    let h = Harness::start(|_| {}).await;
    let cookie = h.sender_cookie().await;
    // The test connects from 127.0.0.1, as a reverse proxy on the same host does; the proxy
    // appended the last entry.
    let mut me = Client::try_connect_with(
        &h.ws_url(),
        &[
            ("Origin", ORIGIN),
            ("Cookie", &cookie),
            ("X-Forwarded-For", "198.51.100.1, 203.0.113.7"),
        ],
    )
    .await
    .expect("WebSocket connects");
    me.send(json!({"type": "watch"})).await;
    me.expect("watching").await;
    let seen = h.store().login(ALICE).await.ok().flatten();
    assert_eq!(seen.and_then(|r| r.ip).as_deref(), Some("203.0.113.7"));
}

/// The unread count of the room as `/me` renders it (the store's figure).
async fn unread_on_me(h: &Harness) -> i64 {
    h.store()
        .rooms_of_login(ALICE, 200)
        .await
        .expect("rooms read")
        .iter()
        .find(|r| r.room_id == ROOM)
        .map(|r| r.unread)
        .expect("the room is listed")
}

/// The next `unread` frame of `c`: asserts it is for the room and returns its count.
async fn next_unread(c: &mut Client) -> i64 {
    let frame = c.skip_to("unread").await;
    assert_eq!(frame["room"], ROOM, "{frame}");
    frame["count"].as_i64().expect("a count")
}

#[tokio::test]
async fn the_senders_pages_get_the_unread_count_as_messages_arrive_and_as_the_sender_reads() {
    let h = Harness::start(|_| {}).await;
    let mut me = h.watching().await;
    let mut bob = h.joined(BOB).await;
    let mut carol = h.joined(CAROL).await;

    let first = bob.say("one", "b-1").await;
    assert_eq!(next_unread(&mut me).await, 1);
    bob.say("two", "b-2").await;
    assert_eq!(next_unread(&mut me).await, 2);
    carol.say("three", "c-1").await;
    assert_eq!(next_unread(&mut me).await, 3);
    assert_eq!(unread_on_me(&h).await, 3, "the page would render the same");

    // A recipient reading changes nothing for the sender: no frame.
    assert_eq!(bob.skip_to("message").await["message"]["text"], "three");
    bob.send(json!({"type": "read", "up_to": first["id"]}))
        .await;
    bob.assert_alive().await;
    me.assert_alive().await;

    // The sender reads in another tab: the count falls on /me, and on that tab too.
    let mut tab = h.sender_client().await;
    tab.join(h.port, None).await;
    tab.send(json!({"type": "read", "up_to": first["id"]}))
        .await;
    assert_eq!(next_unread(&mut me).await, 2);
    assert_eq!(next_unread(&mut tab).await, 2);
    assert_eq!(unread_on_me(&h).await, 2);

    // The sender's own message is not unread, and it marks the room read for them.
    tab.say("all read", "a-1").await;
    assert_eq!(next_unread(&mut me).await, 0);
    assert_eq!(unread_on_me(&h).await, 0);

    // Recipients' pages never get the frame.
    for c in [&mut bob, &mut carol] {
        let frames = c.drain(Duration::from_millis(200)).await;
        assert!(frames.iter().all(|f| f["type"] != "unread"), "{frames:?}");
    }
}

// Ringing and reminders. These run in real time with intervals of one second: with tokio's
// clock paused, real sockets fall behind it (auto-advance jumps to the next timer on every idle
// turn, even while a frame is on its way between client and server), so a connection idle in
// virtual time hits the 60 s heartbeat time-out and an answer can arrive "after" a time-out.
// Pausing time stays for what has no sockets (the rate window, the clock).

/// The ring tests' config: ring every second; reminders after a second.
fn ringing(c: &mut chmail::Config) {
    c.chat.ring_interval_secs = 1;
    c.chat.ring_timeout_secs = 30;
    c.chat.reminder_delay_secs = 1;
    c.chat.presence_grace_secs = 1;
}

#[tokio::test]
async fn ringing_an_online_sender_repeats_until_one_session_accepts_and_the_others_stop() {
    let h = Harness::start(ringing).await;
    let mut me1 = h.watching().await;
    let mut me2 = h.watching().await;
    let mut bob = h.joined(BOB).await;
    bob.send(json!({"type": "ring"})).await;

    for me in [&mut me1, &mut me2] {
        let ring = me.skip_to("ring").await;
        assert_eq!(ring["attempt"], 1);
        assert_eq!(ring["caller"], BOB);
        assert_eq!(ring["room"], ROOM);
        assert_eq!(ring["port"], h.port);
        assert_eq!(ring["subject"], SUBJECT);
    }
    let call = bob.skip_to("call").await;
    assert_eq!(call["state"], "ringing");
    assert_eq!(call["text"], format!("ringing {ALICE}"));
    let again = me1.skip_to("ring").await;
    assert_eq!(again["attempt"], 2);
    let call = bob.skip_to("call").await;
    assert_eq!(call["text"], format!("ringing {ALICE} (2nd try)"));

    let ring_id = again["ring"].clone();
    me1.send(json!({"type": "accept", "ring": ring_id, "room": ROOM}))
        .await;
    for me in [&mut me1, &mut me2] {
        let over = me.skip_to("ring_over").await;
        assert_eq!(over["state"], "accepted");
    }
    let call = bob.skip_to("call").await;
    assert_eq!(call["state"], "accepted");
    // The second session's answer comes too late.
    me2.send(json!({"type": "accept", "ring": ring_id, "room": ROOM}))
        .await;
    me2.skip_to("error").await;
    let later = me2.drain(Duration::from_millis(2500)).await;
    assert!(later.iter().all(|f| f["type"] != "ring"), "{later:?}");
    assert!(h.store().active_ring(ROOM).await.ok().flatten().is_none());
    assert!(h.mailer.mails().is_empty());

    // Accepting opens the room page, which joins as the sender: the room sees alice come.
    let mut alice = h.sender_client().await;
    alice.join(h.port, None).await;
    let came = bob.skip_to("presence").await;
    assert_eq!(came["address"], ALICE);
    assert_eq!(came["in_room"], true);
}

#[tokio::test]
async fn a_declined_ring_stops_everywhere_and_sends_no_reminder() {
    let h = Harness::start(|c| {
        ringing(c);
        c.chat.reminder_delay_secs = 0;
    })
    .await;
    let mut me = h.watching().await;
    let mut bob = h.joined(BOB).await;
    bob.send(json!({"type": "ring"})).await;
    let ring = me.skip_to("ring").await;
    me.send(json!({"type": "decline", "ring": ring["ring"], "room": ROOM}))
        .await;
    let over = me.skip_to("ring_over").await;
    assert_eq!(over["state"], "declined");
    loop {
        let call = bob.skip_to("call").await;
        if call["state"] == "declined" {
            assert_eq!(call["text"], format!("{ALICE} cannot chat right now"));
            break;
        }
        assert_eq!(call["state"], "ringing");
    }
    let later = me.drain(Duration::from_millis(2500)).await;
    assert!(later.iter().all(|f| f["type"] != "ring"), "{later:?}");
    assert!(h.mailer.mails().is_empty());
}

#[tokio::test]
async fn an_unanswered_ring_times_out_and_the_sender_gets_a_reminder() {
    let h = Harness::start(|c| {
        ringing(c);
        c.chat.ring_timeout_secs = 3;
    })
    .await;
    let mut me = h.watching().await;
    let mut bob = h.joined(BOB).await;
    bob.send(json!({"type": "ring"})).await;
    bob.say("are you there?", "q1").await;
    let mut attempts = Vec::new();
    loop {
        let frame = me.next().await;
        match frame["type"].as_str() {
            Some("ring") => attempts.push(frame["attempt"].as_u64().unwrap_or_default()),
            Some("ring_over") => {
                assert_eq!(frame["state"], "timed_out");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(attempts, [1, 2, 3], "a ring a second for three seconds");
    let timed_out = loop {
        let call = bob.skip_to("call").await;
        if call["state"] != "ringing" {
            break call;
        }
    };
    assert_eq!(timed_out["state"], "timed_out");
    assert!(timed_out["text"]
        .as_str()
        .unwrap_or_default()
        .starts_with(&format!("{ALICE} did not answer")));

    let mails = h.mailer.wait_for(1).await;
    let mail = &mails[0];
    assert_eq!(mail.to, ALICE);
    assert!(mail.subject.contains(BOB), "{}", mail.subject);
    assert!(mail.subject.contains(SUBJECT), "{}", mail.subject);
    assert!(mail.text.contains("are you there?"), "{}", mail.text);
    assert!(
        mail.text.contains("http://chat.test/auth/"),
        "{}",
        mail.text
    );
    let reminded = bob.skip_to("call").await;
    assert_eq!(reminded["state"], "reminded");
    assert_eq!(
        reminded["text"],
        format!("{ALICE} is away: we e-mailed a reminder")
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.mailer.mails().len(), 1, "one reminder");
}

#[tokio::test]
async fn an_offline_sender_gets_one_reminder_per_interval_with_the_messages_left() {
    let h = Harness::start(|c| {
        ringing(c);
        c.chat.reminder_interval_secs = 3;
    })
    .await;
    let mut bob = h.joined(BOB).await;
    bob.send(json!({"type": "ring"})).await;
    let call = bob.skip_to("call").await;
    assert_eq!(call["state"], "offline");
    assert!(call["text"]
        .as_str()
        .unwrap_or_default()
        .starts_with(&format!("{ALICE} is away")));
    bob.say("first question", "a").await;
    bob.say("second question", "b").await;

    let mails = h.mailer.wait_for(1).await;
    assert!(mails[0].text.contains("first question"));
    assert!(mails[0].text.contains("second question"));
    assert_eq!(mails[0].to, ALICE);

    // Later messages wait for the next reminder, an interval after the first.
    bob.say("third question", "c").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(h.mailer.mails().len(), 1, "rate-limited per room");
    let mails = h.mailer.wait_for(2).await;
    assert!(mails[1].text.contains("third question"));
    assert!(
        !mails[1].text.contains("first question"),
        "{}",
        mails[1].text
    );
    let schedule = h.store().reminder(ROOM).await.ok().flatten();
    assert_eq!(schedule.map(|r| r.sent_count), Some(2));
}

#[tokio::test]
async fn a_temporary_mail_failure_is_retried_from_the_outbox_and_mailed_once() {
    let h = Harness::start(|c| {
        ringing(c);
        c.chat.reminder_delay_secs = 0;
        c.smtp.retry_initial_secs = 1;
    })
    .await;
    h.mailer.fail_next(1);
    let mut bob = h.joined(BOB).await;
    bob.send(json!({"type": "ring"})).await;
    bob.skip_to("call").await;
    // The reminder is queued (and done as far as the schedule goes); the outbox retries its mail.
    let mails = h.mailer.wait_for(1).await;
    assert_eq!(mails[0].to, ALICE);
    let record = h
        .store()
        .outgoing_by_message_id(&mails[0].message_id)
        .await
        .ok()
        .flatten()
        .expect("the mail is in the outbox");
    assert_eq!(record.attempts, 1, "one failed attempt before: {record:?}");
    let schedule = h.store().reminder(ROOM).await.ok().flatten();
    assert_eq!(schedule.map(|r| (r.sent_count, r.due_ms)), Some((1, None)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.mailer.mails().len(), 1, "mailed once");
}

#[tokio::test]
async fn a_restart_mid_conversation_loses_no_message_and_no_reminder_and_repeats_none() {
    let mut h = Harness::start(|c| {
        ringing(c);
        c.chat.reminder_delay_secs = 2;
    })
    .await;
    let mut bob = h.joined(BOB).await;
    let mut acked = Vec::new();
    for i in 0..3 {
        let m = bob
            .say(&format!("before restart {i}"), &format!("r{i}"))
            .await;
        acked.push(m["id"].as_i64().unwrap_or_default());
    }
    // The sender is away: a reminder is due in 2 s. chatd stops before that.
    h.stop().await;
    let closed = bob.skip_to("_closed").await;
    assert_eq!(closed["code"], 1001);
    assert!(h.mailer.mails().is_empty());
    h.start_again().await;

    let mut bob = h.client().await;
    bob.send(json!({"type": "join", "port": h.port, "room": ROOM, "as": BOB}))
        .await;
    bob.expect("joined").await;
    let history = bob.expect("history").await;
    let ids: Vec<i64> = history["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_i64())
        .collect();
    assert_eq!(ids, acked, "every acknowledged message survived");

    let mails = h.mailer.wait_for(1).await;
    for i in 0..3 {
        assert!(mails[0].text.contains(&format!("before restart {i}")));
    }
    // Stopped and started again after the reminder: it is not sent twice.
    h.stop().await;
    h.start_again().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(h.mailer.mails().len(), 1, "no reminder sent twice");
    let schedule = h.store().reminder(ROOM).await.ok().flatten();
    assert_eq!(schedule.map(|r| (r.sent_count, r.due_ms)), Some((1, None)));
}

#[tokio::test]
async fn a_join_whose_store_call_fails_leaves_the_connection_free_to_join_again() {
    let h = Harness::start(|_| {}).await;
    let mut bob = h.client().await;
    // Storing the join (after the room was read and the hub's room entered) fails.
    let db = rusqlite::Connection::open(h.dir.path().join("chmail.db")).expect("a connection");
    db.execute_batch(
        "CREATE TRIGGER no_join BEFORE UPDATE OF joined_at ON room_participants
         BEGIN SELECT RAISE(ABORT, 'joins fail in this test'); END;",
    )
    .expect("trigger created");
    let join = json!({"type": "join", "port": h.port, "room": ROOM, "as": BOB});
    bob.send(join.clone()).await;
    bob.expect_error("server_error").await;
    assert!(
        !h.state().hub.addresses_in_room(ROOM).contains(BOB),
        "out of the hub's room"
    );
    db.execute_batch("DROP TRIGGER no_join")
        .expect("trigger dropped");
    bob.send(join).await;
    let joined = bob.expect("joined").await;
    assert_eq!(joined["you"], BOB);
}
