//! The chat as the people in it see it, over the WebSocket protocol (in-process, paused time:
//! see `inproc`): names and the opening in `joined`, a signed-in recipient joined as themselves
//! and proven without a code (so a follow-up reaches them by mail after they leave), the
//! writer told when a message reaches someone by no way at all, read receipts, and a
//! recipient's message ringing the sender who is online elsewhere.

mod common;
mod inproc;

use chmail::store::{Participant, Role, Room};
use common::{ALICE, BOB, CAROL, ROOM};
use inproc::{pass, World, PORT};
use serde_json::{json, Value};

/// The member of `joined` with `address`.
fn member<'a>(joined: &'a Value, address: &str) -> &'a Value {
    joined["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["address"] == address))
        .unwrap_or_else(|| panic!("{address} in {joined}"))
}

#[tokio::test(start_paused = true)]
async fn joined_names_people_marks_shops_and_carries_the_opening() {
    let w = World::start(|_| {}).await;
    let store = w.state.store.clone();
    let company = store.add_company("Tea House", 1).await.expect("company").0;
    store
        .add_host(company.id, CAROL, "Carol", 1)
        .await
        .expect("host");
    // A second room of the same sender, written with display names and a text.
    let named = "n4medRoomOfAlice-0123";
    store
        .create_room(&Room {
            id: named.into(),
            port: PORT,
            login: ALICE.into(),
            message_id: None,
            subject: Some("Teapots".into()),
            created: 1_700_000_000,
            participants: vec![
                Participant::new(ALICE, Role::From).named("Alice Liddell"),
                Participant::new(BOB, Role::To).named("Bob Baker"),
                Participant::new(CAROL, Role::Cc),
            ],
            opening: Some("Do you still have the red teapot?".into()),
        })
        .await
        .expect("room");
    // Join the named room by hand (the helpers join ROOM).
    let (outbox, mut inbox) = chatd::hub::Outbox::new(64);
    let mut session = chatd::ws::session::Session::new(
        w.state.clone(),
        chatd::ws::session::Peer {
            ip: None,
            login: None,
        },
        outbox,
    );
    session
        .on_text(&json!({"type": "join", "port": PORT, "room": named, "as": BOB}).to_string())
        .await;
    let mut joined = Value::Null;
    while let Ok(item) = inbox.rx.try_recv() {
        if let chatd::hub::Outgoing::Frame(text) = item {
            let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
            if frame["type"] == "joined" {
                joined = frame;
            }
        }
    }
    assert_eq!(joined["opening"], "Do you still have the red teapot?");
    assert_eq!(joined["started"], 1_700_000_000_000_i64);
    assert_eq!(member(&joined, ALICE)["name"], "Alice Liddell");
    assert_eq!(member(&joined, BOB)["name"], "Bob Baker");
    // The mall names its shop's host and marks it; the mail gave carol no name.
    assert_eq!(member(&joined, CAROL)["name"], "Carol from Tea House");
    assert_eq!(member(&joined, CAROL)["badge"], "shop");
    assert!(member(&joined, BOB).get("badge").is_none());
    session.close().await;

    // The room without names or opening says so by leaving them out.
    let plain = w.join(BOB).await;
    assert!(plain.joined.get("opening").is_none(), "{}", plain.joined);
    assert!(member(&plain.joined, BOB).get("name").is_none());
    assert_eq!(member(&plain.joined, CAROL)["badge"], "shop");
}

#[tokio::test(start_paused = true)]
async fn a_signed_in_recipient_joins_as_themselves_proven_and_gets_follow_ups_by_mail() {
    let w = World::start(|_| {}).await;
    let mut alice = w.join(ALICE).await;
    let bob = w.join_signed_in(BOB).await;
    assert_eq!(bob.joined["you"], BOB);
    assert_eq!(bob.joined["is_sender"], false);
    assert_eq!(member(&bob.joined, BOB)["verified"], true, "{}", bob.joined);
    // The others see the address proven at once.
    let seen = alice.frames();
    assert!(
        seen.iter()
            .any(|f| f["type"] == "verified" && f["address"] == BOB),
        "{seen:?}"
    );
    bob.close().await;

    // Bob left; alice follows up: no code step, and the follow-up reaches him by mail.
    alice.say("Is it waterproof? Yes, it is.").await;
    pass(125).await;
    let mails = w.notifications();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0].to, BOB);
    assert!(
        mails[0].text.contains("Is it waterproof?"),
        "{}",
        mails[0].text
    );

    // Signed in as someone who is not a recipient: nothing to join as.
    let (outbox, mut inbox) = chatd::hub::Outbox::new(64);
    let mut eve = chatd::ws::session::Session::new(
        w.state.clone(),
        chatd::ws::session::Peer {
            ip: None,
            login: Some("eve@e.example".into()),
        },
        outbox,
    );
    eve.on_text(&json!({"type": "join", "port": PORT, "room": ROOM}).to_string())
        .await;
    let mut codes = Vec::new();
    while let Ok(chatd::hub::Outgoing::Frame(text)) = inbox.rx.try_recv() {
        let f: Value = serde_json::from_str(text.as_str()).expect("JSON");
        codes.push(f["code"].clone());
    }
    assert_eq!(codes, [json!("forbidden")]);
}

/// Sends `text` with client id `id` from `client` and returns the `ack` frame.
async fn ack_of(client: &mut inproc::Client, text: &str, id: &str) -> Value {
    client
        .send(json!({"type": "message", "text": text, "id": id}))
        .await;
    let frames = client.frames();
    frames
        .into_iter()
        .find(|f| f["type"] == "ack")
        .expect("ack")
}

#[tokio::test(start_paused = true)]
async fn the_ack_names_who_a_message_will_not_reach() {
    let w = World::start(|_| {}).await;
    // Carol came once, without proving her address, and left; bob never came.
    let carol = w.join(CAROL).await;
    carol.close().await;
    let mut alice = w.join(ALICE).await;
    let ack = ack_of(&mut alice, "Anyone?", "m1").await;
    assert_eq!(
        ack["unreached"],
        json!([
            {"address": BOB, "why": "never_joined"},
            {"address": CAROL, "why": "not_proven"},
        ]),
        "{ack}"
    );

    // Once bob is proven and carol is here, the message reaches everyone: no list.
    w.prove(BOB).await;
    let _carol = w.join(CAROL).await;
    let ack = ack_of(&mut alice, "Now?", "m2").await;
    assert!(ack.get("unreached").is_none(), "{ack}");
}

#[tokio::test(start_paused = true)]
async fn the_others_see_when_a_message_was_read() {
    let w = World::start(|_| {}).await;
    let mut alice = w.join(ALICE).await;
    let mut bob = w.join(BOB).await;
    let id = alice.say("Did you see the numbers?").await;
    bob.frames();
    bob.send(json!({"type": "read", "up_to": id})).await;
    let frames = alice.frames();
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "read" && f["address"] == BOB && f["up_to"] == id),
        "{frames:?}"
    );
    // A later join shows where each one has read to.
    let again = w.join(ALICE).await;
    assert_eq!(member(&again.joined, BOB)["last_read"], id);
}

#[tokio::test(start_paused = true)]
async fn a_recipients_message_rings_the_sender_who_is_online_elsewhere() {
    let w = World::start(|_| {}).await;
    let mut me_page = w.watch().await;
    let mut bob = w.join(BOB).await;
    bob.say("Hello, are you there?").await;
    pass(1).await;
    let frames = me_page.frames();
    let ring = frames
        .iter()
        .find(|f| f["type"] == "ring")
        .unwrap_or_else(|| panic!("a ring in {frames:?}"));
    assert_eq!(ring["caller"], BOB);
    assert_eq!(ring["room"], ROOM);
    let call = bob
        .frames()
        .into_iter()
        .find(|f| f["type"] == "call")
        .expect("the room hears the call");
    assert_eq!(call["state"], "ringing");

    // A second message while it rings does not ring again.
    bob.say("Still there?").await;
    pass(1).await;
    let rings = me_page
        .frames()
        .into_iter()
        .filter(|f| f["type"] == "ring" && f["attempt"] == 1)
        .count();
    assert_eq!(rings, 0, "no second ring of its own");
}

#[tokio::test(start_paused = true)]
async fn a_picture_of_the_room_goes_to_everyone_and_another_rooms_is_refused() {
    let w = World::start(|_| {}).await;
    let store = w.state.store.clone();
    let png = b"\x89PNG\r\n\x1a\n-bytes".to_vec();
    let id = store
        .add_chat_picture(ROOM, "image/png", &png, 1)
        .await
        .expect("picture");
    let mut alice = w.join(ALICE).await;
    let mut bob = w.join(BOB).await;
    bob.send(json!({"type": "message", "text": "", "id": "p1", "picture": id}))
        .await;
    let ack = bob
        .frames()
        .into_iter()
        .find(|f| f["type"] == "ack")
        .expect("ack");
    assert_eq!(ack["message"]["picture"], id, "{ack}");
    let got = alice
        .frames()
        .into_iter()
        .find(|f| f["type"] == "message")
        .expect("alice gets it");
    assert_eq!(got["message"]["picture"], id);
    assert_eq!(got["message"]["text"], "");

    // A picture id that is not this room's is refused; an empty message without one too.
    store
        .create_room(&Room {
            id: "elsewhere-room-0001".into(),
            port: PORT,
            login: ALICE.into(),
            message_id: None,
            subject: None,
            created: 1,
            participants: vec![Participant::new(ALICE, Role::From)],
            opening: None,
        })
        .await
        .expect("room");
    let foreign = store
        .add_chat_picture("elsewhere-room-0001", "image/png", &png, 1)
        .await
        .expect("picture");
    for frame in [
        json!({"type": "message", "text": "look", "picture": foreign}),
        json!({"type": "message", "text": " "}),
    ] {
        bob.send(frame).await;
        let codes: Vec<Value> = bob
            .frames()
            .into_iter()
            .filter(|f| f["type"] == "error")
            .map(|f| f["code"].clone())
            .collect();
        assert_eq!(codes, [json!("bad_frame")]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_signed_in_recipient_sees_the_unread_count_of_their_chat_rise_and_fall() {
    let w = World::start(|_| {}).await;
    let mut bobs_mall_page = w.watch_as(BOB).await;
    let mut alice = w.join(ALICE).await;
    alice.say("Your order shipped").await;
    let unread: Vec<Value> = bobs_mall_page
        .frames()
        .into_iter()
        .filter(|f| f["type"] == "unread")
        .collect();
    assert_eq!(
        unread,
        [json!({"type": "unread", "room": ROOM, "count": 1})]
    );
    // Bob reads it in the chat: his other pages hear the count fall.
    let mut bob = w.join_signed_in(BOB).await;
    let id = alice.say("Tracking number follows").await;
    bob.send(json!({"type": "read", "up_to": id})).await;
    let counts: Vec<Value> = bobs_mall_page
        .frames()
        .into_iter()
        .filter(|f| f["type"] == "unread")
        .map(|f| f["count"].clone())
        .collect();
    assert_eq!(counts.last(), Some(&json!(0)), "{counts:?}");
}
