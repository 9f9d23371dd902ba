//! The one path that stores a message and sends it to the room ([`chatd::post`]): what it does
//! with a retry, decided by the store rather than by looking at the stored row.

mod support;

use chatd::{
    hub::{Inbox, Outbox, Outgoing, RoomKey},
    post::{post, Post},
};
use chmail::store::Via;
use serde_json::Value;

fn frames(inbox: &mut Inbox) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(item) = inbox.rx.try_recv() {
        if let Outgoing::Frame(text) = item {
            out.push(serde_json::from_str(text.as_str()).expect("JSON frame"));
        }
    }
    out
}

/// A retry that arrives in the same millisecond with the same text (a double click, a page
/// resending on reconnect) is still a retry: stored once, published once.
#[tokio::test(start_paused = true)]
async fn a_retry_in_the_same_millisecond_is_neither_stored_nor_published_again() {
    let (state, _mails) = support::state().await;
    let seeded = support::alice_room(&*state.store).await;
    let room = state
        .store
        .room(&seeded.room)
        .await
        .expect("room read")
        .expect("room exists");
    let (outbox, mut inbox) = Outbox::new(16);
    let key = RoomKey {
        id: &room.id,
        login: &room.login,
        sender: "alice@a.example",
    };
    let conn = state.hub.next_id();
    state
        .hub
        .join_room(&key, conn, "carol@c.example", false, outbox)
        .expect("join");
    let send = || Post {
        room: &room,
        author: "bob@b.example",
        text: "hello".into(),
        via: Via::Web,
        client_id: Some("c1".into()),
        except: None,
        picture: None,
    };
    let first = post(&state, send()).await.expect("first post");
    let again = post(&state, send()).await.expect("retry");
    assert!(first.new, "the first post is new");
    assert!(!again.new, "the retry is not new");
    assert_eq!(again.message, first.message);
    let published: Vec<Value> = frames(&mut inbox)
        .into_iter()
        .filter(|f| f["type"] == "message")
        .collect();
    assert_eq!(published.len(), 1, "{published:#?}");
    let stored = state
        .store
        .messages(&room.id, None, 10)
        .await
        .expect("history");
    assert_eq!(stored.len(), 1);
}
