//! Ringing and reminders with the default intervals (10 s between rings, 90 s to time out, 60 s
//! to the reminder, 30 min between reminders) on paused time.
//!
//! These drive the ringer, the reminder worker and the outbox's delivery worker in-process, with
//! the hub's connection queues standing in for sockets: with paused time tokio jumps to the next
//! timer whenever the runtime is idle, which a frame in flight on a real socket does not prevent (the socket tests in `ws.rs`
//! therefore run on real time with short intervals).

mod common;

use std::{sync::Arc, time::Duration};

use chatd::{
    hub::{Inbox, Outbox, Outgoing, RoomKey},
    outbox, presence, reminder, ringer, AppState,
};
use chmail::store::{open_store, Participant, Role, Room};
use common::{RecordingMailer, ALICE, BOB, CAROL, ROOM, SUBJECT};
use serde_json::Value;
use tokio::sync::watch;

struct World {
    state: AppState,
    room: Room,
    mailer: Arc<RecordingMailer>,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config();
    config.data_dir = dir.path().to_owned();
    let store = open_store(&config.store_url(), 2).await.expect("store");
    store.migrate().await.expect("migrate");
    let room = Room {
        id: ROOM.into(),
        port: 20_000,
        login: ALICE.into(),
        message_id: None,
        subject: Some(SUBJECT.into()),
        created: 1_700_000_000,
        participants: vec![
            Participant {
                address: ALICE.into(),
                role: Role::From,
                name: None,
            },
            Participant {
                address: BOB.into(),
                role: Role::To,
                name: None,
            },
            Participant {
                address: CAROL.into(),
                role: Role::Cc,
                name: None,
            },
        ],
        opening: None,
    };
    store.create_room(&room).await.expect("room");
    let mailer = Arc::new(RecordingMailer::default());
    let state = AppState::new(config, store, mailer.clone()).expect("state");
    World {
        state,
        room,
        mailer,
        _dir: dir,
    }
}

impl World {
    /// A /me page of the sender: online, receiving rings.
    async fn sender_page(&self) -> Inbox {
        let (outbox, inbox) = Outbox::new(64);
        let conn = self.state.hub.next_id();
        self.state.hub.add_login(ALICE, conn, outbox);
        presence::connect(&self.state, ALICE).await;
        inbox
    }

    /// A recipient's room page.
    fn recipient_page(&self, address: &str) -> Inbox {
        let (outbox, inbox) = Outbox::new(64);
        let conn = self.state.hub.next_id();
        let key = RoomKey {
            id: ROOM,
            login: ALICE,
            sender: ALICE,
        };
        self.state
            .hub
            .join_room(&key, conn, address, false, outbox)
            .expect("join");
        inbox
    }
}

/// The frames queued so far.
fn frames(inbox: &mut Inbox) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(item) = inbox.rx.try_recv() {
        if let Outgoing::Frame(text) = item {
            out.push(serde_json::from_str(text.as_str()).expect("JSON frame"));
        }
    }
    out
}

fn of_type<'a>(frames: &'a [Value], kind: &str) -> Vec<&'a Value> {
    frames.iter().filter(|f| f["type"] == kind).collect()
}

/// Runs the reminder worker and the outbox's delivery worker (which hands the reminders to the
/// mailer) until `stopped` turns true.
fn workers(state: &AppState, stopped: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let reminders = tokio::spawn(reminder::run_worker(state.clone(), stopped.clone()));
    let delivery = tokio::spawn(outbox::run_delivery(state.clone(), stopped));
    tokio::spawn(async move {
        let (a, b) = tokio::join!(reminders, delivery);
        a.expect("reminder worker");
        b.expect("delivery worker");
    })
}

/// Lets spawned tasks run, then moves time on by `secs`.
async fn pass(secs: u64) {
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Let the store calls started in the last second finish.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_ring_repeats_every_ten_seconds_then_times_out_into_a_reminder() {
    let w = world().await;
    let mut sender = w.sender_page().await;
    let mut bob = w.recipient_page(BOB);
    let (stop, stopped) = watch::channel(false);
    let worker = workers(&w.state, stopped);

    ringer::ring(&w.state, &w.room, BOB, ALICE)
        .await
        .expect("ring");
    // Checks fall mid-interval (5 s, 15 s, ...) so that scheduling jitter cannot move a ring
    // across them.
    pass(5).await;
    let rings = frames(&mut sender);
    assert_eq!(of_type(&rings, "ring").len(), 1, "rung at once: {rings:?}");
    pass(10).await;
    assert_eq!(
        of_type(&frames(&mut sender), "ring").len(),
        1,
        "2nd ring at 10 s"
    );
    let calls = frames(&mut bob);
    let texts: Vec<&str> = of_type(&calls, "call")
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect();
    assert!(texts.iter().any(|t| t.contains("2nd try")), "{texts:?}");

    // Rings at 20, 30 ... 80 s; at 90 s it times out.
    pass(70).await;
    assert_eq!(of_type(&frames(&mut sender), "ring").len(), 7);
    pass(10).await;
    let end = frames(&mut sender);
    assert_eq!(
        of_type(&end, "ring").len(),
        0,
        "no ring after the time-out: {end:?}"
    );
    assert_eq!(of_type(&end, "ring_over")[0]["state"], "timed_out");
    let away = frames(&mut bob);
    assert!(
        of_type(&away, "call")
            .iter()
            .any(|c| c["state"] == "timed_out"),
        "{away:?}"
    );

    // The reminder goes out 60 s after the time-out (at 150 s), not before.
    pass(50).await;
    assert!(
        w.mailer.mails().is_empty(),
        "no reminder before the 60 s delay"
    );
    pass(10).await;
    let mails = w.mailer.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0].to, ALICE);
    assert!(mails[0].text.contains(BOB), "{}", mails[0].text);
    assert!(mails[0].subject.contains(SUBJECT), "{}", mails[0].subject);

    let _ = stop.send(true);
    worker.await.expect("worker");
}

#[tokio::test(start_paused = true)]
async fn a_second_reminder_waits_for_the_thirty_minute_interval() {
    let w = world().await;
    let (stop, stopped) = watch::channel(false);
    let worker = workers(&w.state, stopped);

    // The sender is offline: pressing Chat schedules the reminder at once.
    ringer::ring(&w.state, &w.room, BOB, ALICE)
        .await
        .expect("ring");
    pass(61).await;
    assert_eq!(w.mailer.mails().len(), 1);

    // Carol presses Chat two minutes later: it waits for the interval.
    pass(120).await;
    ringer::ring(&w.state, &w.room, CAROL, ALICE)
        .await
        .expect("ring");
    pass(25 * 60).await;
    assert_eq!(
        w.mailer.mails().len(),
        1,
        "no second reminder within 30 min"
    );
    pass(5 * 60).await;
    let mails = w.mailer.mails();
    assert_eq!(mails.len(), 2, "the second reminder after the interval");
    assert!(mails[1].text.contains(CAROL), "{}", mails[1].text);

    let _ = stop.send(true);
    worker.await.expect("worker");
}

#[tokio::test(start_paused = true)]
async fn the_first_accept_stops_every_session_ringing_and_no_reminder_follows() {
    let w = world().await;
    let mut phone = w.sender_page().await;
    let mut desk = w.sender_page().await;
    let mut bob = w.recipient_page(BOB);
    let (stop, stopped) = watch::channel(false);
    let worker = workers(&w.state, stopped);

    ringer::ring(&w.state, &w.room, BOB, ALICE)
        .await
        .expect("ring");
    pass(1).await;
    let ring = of_type(&frames(&mut phone), "ring")[0].clone();
    assert_eq!(
        of_type(&frames(&mut desk), "ring").len(),
        1,
        "every session rings"
    );
    let id = ring["ring"].as_i64().expect("ring id");

    pass(5).await;
    assert!(ringer::answer(&w.state, &w.room, ALICE, id, true)
        .await
        .expect("answer"));
    assert!(!ringer::answer(&w.state, &w.room, ALICE, id, false)
        .await
        .expect("late"));
    pass(1).await;
    for session in [&mut phone, &mut desk] {
        let got = frames(session);
        assert_eq!(
            of_type(&got, "ring_over")[0]["state"],
            "accepted",
            "{got:?}"
        );
    }
    let calls = frames(&mut bob);
    assert!(
        of_type(&calls, "call")
            .iter()
            .any(|c| c["state"] == "accepted"),
        "{calls:?}"
    );

    // Nothing rings or mails afterwards.
    pass(200).await;
    assert!(of_type(&frames(&mut phone), "ring").is_empty());
    assert!(w.mailer.mails().is_empty());

    let _ = stop.send(true);
    worker.await.expect("worker");
}

#[tokio::test(start_paused = true)]
async fn a_ring_whose_node_died_is_swept_after_its_time_out_and_reminded_once() {
    let w = world().await;
    let mut bob = w.recipient_page(BOB);
    // Stored as the dying node left it: ringing, with no task here to repeat or end it.
    let orphan = w
        .state
        .store
        .start_ring(ROOM, BOB, w.state.clock.now_ms())
        .await
        .expect("ring");
    let (stop, stopped) = watch::channel(false);
    let worker = workers(&w.state, stopped.clone());
    let sweeper = tokio::spawn(ringer::run_sweeper(w.state.clone(), stopped));

    // Time-out 90 s plus the sweep's margin of 30 s: its node could still end it until then.
    pass(115).await;
    assert_eq!(
        w.state.store.active_ring(ROOM).await.expect("store"),
        Some(orphan.clone()),
        "still ringing within the margin"
    );
    assert!(of_type(&frames(&mut bob), "call").is_empty());
    // The sweep runs every 15 s: by 135 s it is over.
    pass(20).await;
    assert_eq!(w.state.store.active_ring(ROOM).await.expect("store"), None);
    let calls = frames(&mut bob);
    let ended = of_type(&calls, "call");
    assert_eq!(ended.len(), 1, "{calls:?}");
    assert_eq!(
        (&ended[0]["state"], &ended[0]["ring"]),
        (&Value::from("timed_out"), &Value::from(orphan.id))
    );

    // The reminder follows 60 s later, once, however long the sweeps go on.
    pass(65).await;
    let mails = w.mailer.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0].to, ALICE);
    assert!(mails[0].text.contains(BOB), "{}", mails[0].text);
    pass(300).await;
    assert_eq!(w.mailer.mails().len(), 1);

    let _ = stop.send(true);
    worker.await.expect("worker");
    sweeper.await.expect("sweeper");
}
