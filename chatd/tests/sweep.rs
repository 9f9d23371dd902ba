//! Rings orphaned by a node that died: a ring left `ringing` in the store (started long ago by a
//! process that is gone) is ended as `timed_out` by the sweep, the room hears it once and the
//! sender gets exactly one reminder, with two chatd nodes sweeping the same store, on SQLite and
//! on PostgreSQL. Real time with a one-second reminder delay: the sweeps race for real.

mod support;

use std::{sync::Arc, time::Duration};

use chatd::{
    hub::{Inbox, Outbox, Outgoing, RoomKey},
    reminder, ringer, AppState,
};
use chmail::store::Store;
use serde_json::Value;
use support::*;
use tokio::sync::watch;

const ALICE: &str = "alice@a.example";
const BOB: &str = "bob@b.example";

/// How long ago the dead node started the ring: far past the time-out and the sweep's margin.
const LONG_AGO_MS: i64 = 10 * 60 * 1_000;

/// A chatd node over `store`: its mails captured, its ring sweeper and reminder worker running
/// until the returned sender is dropped.
fn node(store: Arc<dyn Store>) -> (AppState, Mails, watch::Sender<bool>) {
    let mut config = config();
    config.chat.reminder_delay_secs = 1;
    let (state, mails) = state_over(config, store);
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(ringer::run_sweeper(state.clone(), stopped.clone()));
    tokio::spawn(reminder::run_worker(state.clone(), stopped));
    (state, mails, stop)
}

/// A recipient's room page on `state`'s node.
fn recipient_page(state: &AppState, room: &str) -> Inbox {
    let (outbox, inbox) = Outbox::new(64);
    let key = RoomKey {
        id: room,
        login: ALICE,
        sender: ALICE,
    };
    state
        .hub
        .join_room(&key, state.hub.next_id(), BOB, false, outbox)
        .expect("join");
    inbox
}

/// The `call` frames queued so far.
fn calls(inbox: &mut Inbox) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(item) = inbox.rx.try_recv() {
        if let Outgoing::Frame(text) = item {
            let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
            if frame["type"] == "call" {
                out.push(frame);
            }
        }
    }
    out
}

/// The recipients of the mails both nodes send within `wait`.
async fn mails_within(a: &mut Mails, b: &mut Mails, wait: Duration) -> Vec<String> {
    let step = Duration::from_millis(100);
    let mut to = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        for mails in [&mut *a, &mut *b] {
            if let Ok(Some(mail)) = tokio::time::timeout(step, mails.next()).await {
                to.push(mail.to);
            }
        }
    }
    to
}

/// A ring that a dead node left in the usual room, swept by two nodes over `first` and `second`
/// (one store opened twice, or shared).
async fn an_orphaned_ring_is_swept_once(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    let seeded = alice_room(&*first).await;
    let now = chatd::clock::Clock::new().now_ms();
    let orphan = first
        .start_ring(&seeded.room, BOB, now - LONG_AGO_MS)
        .await
        .expect("ring stored");
    let (a, mut mails_a, _stop_a) = node(first.clone());
    let (b, mut mails_b, _stop_b) = node(second);
    let mut page_a = recipient_page(&a, &seeded.room);
    let mut page_b = recipient_page(&b, &seeded.room);

    let mails = mails_within(&mut mails_a, &mut mails_b, Duration::from_secs(6)).await;
    assert_eq!(mails, [ALICE], "exactly one reminder, to the sender");
    assert_eq!(
        first.active_ring(&seeded.room).await.expect("store"),
        None,
        "the orphan no longer rings"
    );
    let mut told = calls(&mut page_a);
    told.extend(calls(&mut page_b));
    let ended: Vec<_> = told.iter().filter(|f| f["state"] == "timed_out").collect();
    assert_eq!(ended.len(), 1, "the room hears the end once: {told:?}");
    assert_eq!(ended[0]["ring"], orphan.id);
    let reminded = told.iter().filter(|f| f["state"] == "reminded").count();
    assert_eq!(reminded, 1, "and the reminder once: {told:?}");
    let reminder = first
        .reminder(&seeded.room)
        .await
        .expect("store")
        .expect("a reminder row");
    assert!(reminder.last_sent_ms.is_some(), "the reminder went out");
    assert_eq!(reminder.due_ms, None, "and none is pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphaned_ring_is_swept_once_by_two_nodes_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("chmail.db").display());
    let first = chmail::open_store(&url, 2).await.expect("SQLite opens");
    first.migrate().await.expect("migrations apply");
    let second = chmail::open_store(&url, 2)
        .await
        .expect("SQLite opens again");
    an_orphaned_ring_is_swept_once(first, second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphaned_ring_is_swept_once_by_two_nodes_on_postgres() {
    let Some(db) = Db::postgres("sweep").await else {
        return;
    };
    an_orphaned_ring_is_swept_once(db.store.clone(), db.store.clone()).await;
}

#[tokio::test]
async fn a_ring_within_its_time_out_is_left_to_its_node() {
    let (state, _mails) = state().await;
    let seeded = alice_room(&*state.store).await;
    let now = state.clock.now_ms();
    // Started by another node just past its time-out, but within the sweep's margin.
    let started = now - chatd::clock::ms(state.config.chat.ring_timeout()) - 1_000;
    let ring = state
        .store
        .start_ring(&seeded.room, BOB, started)
        .await
        .expect("ring stored");
    assert_eq!(ringer::sweep(&state).await.expect("sweep"), 0);
    assert_eq!(
        state.store.active_ring(&seeded.room).await.expect("store"),
        Some(ring),
        "still ringing: its node may yet end it"
    );
}
