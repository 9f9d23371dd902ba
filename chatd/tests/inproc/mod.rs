//! An in-process chatd for paused-time tests of the mail loop (codes, notifications): the state
//! over an SQLite file in a temporary directory (which also holds `code.secret`), the room of
//! `common` (alice@a.example to bob@b.example, carol@c.example on Cc), the background workers
//! (notifications and the outbox's delivery to a recording mailer), and WebSocket sessions
//! driven frame by frame through [`chatd::ws::session::Session`] with the hub's queues standing
//! in for sockets (sockets and paused time do not mix: see `timing.rs`).
#![allow(dead_code)] // each test file uses its own subset

use std::{sync::Arc, time::Duration};

use chatd::{
    hub::{Inbox, Outbox, Outgoing},
    mail::OutgoingMail,
    notify, outbox,
    ws::session::{Peer, Session},
    AppState,
};
use chmail::{
    store::{open_store, Participant, Role, Room},
    Config,
};
use serde_json::{json, Value};
use tokio::{sync::watch, task::JoinHandle};

use crate::common::{self, RecordingMailer, ALICE, BOB, CAROL, ROOM, SUBJECT};

/// The room's port.
pub const PORT: u16 = 20_000;

/// One chatd's state, its mailer and its workers.
pub struct World {
    /// The shared state.
    pub state: AppState,
    /// Every mail the outbox delivered.
    pub mailer: Arc<RecordingMailer>,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl World {
    /// A chatd with the test config changed by `tweak`, its workers running.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = common::config();
        config.data_dir = dir.path().to_owned();
        tweak(&mut config);
        let store = open_store(&config.store_url(), 2).await.expect("store");
        store.migrate().await.expect("migrate");
        let room = Room {
            id: ROOM.into(),
            port: PORT,
            login: ALICE.into(),
            message_id: Some("<q3@a.example>".into()),
            subject: Some(SUBJECT.into()),
            created: 1_700_000_000,
            participants: vec![
                participant(ALICE, Role::From),
                participant(BOB, Role::To),
                participant(CAROL, Role::Cc),
            ],
            opening: None,
        };
        store.create_room(&room).await.expect("room");
        let mailer = Arc::new(RecordingMailer::default());
        let state = AppState::new(config, store, mailer.clone()).expect("state");
        let (stop, stopped) = watch::channel(false);
        let workers = vec![
            tokio::spawn(notify::run_worker(state.clone(), stopped.clone())),
            tokio::spawn(outbox::run_delivery(state.clone(), stopped)),
        ];
        Self {
            state,
            mailer,
            stop,
            workers,
            _dir: dir,
        }
    }

    /// Stops the workers.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for w in self.workers {
            w.await.expect("worker ends cleanly");
        }
    }

    /// A connection that joined the room: as `address` (a recipient), or as the signed-in
    /// sender when `address` is [`ALICE`]. Its `hello`, `joined` and `history` frames are read.
    pub async fn join(&self, address: &str) -> Client {
        let sender = address == ALICE;
        self.join_with(sender.then_some(ALICE), (!sender).then_some(address))
            .await
    }

    /// A connection signed in as `login` that joins without saying who it is (as the sender,
    /// or as the recipient the session is signed in as).
    pub async fn join_signed_in(&self, login: &str) -> Client {
        self.join_with(Some(login), None).await
    }

    /// The sender's `/me` page: signed in as [`ALICE`], watching (online, not in the room).
    pub async fn watch(&self) -> Client {
        self.watch_as(ALICE).await
    }

    /// The `/me` page (or a mall page) of `login`, watching.
    pub async fn watch_as(&self, login: &str) -> Client {
        let (outbox, inbox) = Outbox::new(256);
        let peer = Peer {
            ip: None,
            login: Some(login.to_owned()),
        };
        let mut client = Client {
            session: Session::new(self.state.clone(), peer, outbox),
            inbox,
            joined: Value::Null,
            join_frames: Vec::new(),
        };
        client.send(json!({"type": "watch"})).await;
        client.join_frames = client.frames();
        client
    }

    /// A connection of session `login` (none: not signed in) that joins the room, claiming
    /// `claim` when given. Its `hello`, `joined` and `history` frames are read.
    pub async fn join_with(&self, login: Option<&str>, claim: Option<&str>) -> Client {
        let address = claim.or(login).unwrap_or_default().to_owned();
        let (outbox, inbox) = Outbox::new(256);
        let peer = Peer {
            ip: None,
            login: login.map(str::to_owned),
        };
        let mut client = Client {
            session: Session::new(self.state.clone(), peer, outbox),
            inbox,
            joined: Value::Null,
            join_frames: Vec::new(),
        };
        client.session.hello();
        let mut join = json!({"type": "join", "port": PORT, "room": ROOM});
        if let Some(claim) = claim {
            join["as"] = json!(claim);
        }
        client.send(join).await;
        let frames = client.frames();
        client.joined = frames
            .iter()
            .find(|f| f["type"] == "joined")
            .cloned()
            .unwrap_or_else(|| panic!("{address} joined: {frames:?}"));
        client.join_frames = frames;
        client
    }

    /// Proves `address` as a person does: joins, asks for a code, enters the mailed one, leaves.
    pub async fn prove(&self, address: &str) {
        let mut client = self.join(address).await;
        let before = self.mailer.mails().len();
        client.send(json!({"type": "prove"})).await;
        let mails = self.mailer.wait_for(before + 1).await;
        let code = code_in(&mails[before]);
        client.send(json!({"type": "code", "code": code})).await;
        let frames = client.frames();
        assert!(
            frames
                .iter()
                .any(|f| f["type"] == "verified" && f["address"] == address),
            "{frames:?}"
        );
        client.close().await;
    }

    /// The notification mails delivered so far (not the codes).
    pub fn notifications(&self) -> Vec<OutgoingMail> {
        self.mailer
            .mails()
            .into_iter()
            .filter(|m| m.headers.iter().any(|(n, _)| n == "List-Unsubscribe"))
            .collect()
    }
}

fn participant(address: &str, role: Role) -> Participant {
    Participant {
        address: address.into(),
        role,
        name: None,
    }
}

/// One WebSocket connection, in-process.
pub struct Client {
    /// The connection's session.
    pub session: Session,
    inbox: Inbox,
    /// Its `joined` frame.
    pub joined: Value,
    /// Every frame up to and including the answer to `join`.
    pub join_frames: Vec<Value>,
}

impl Client {
    /// Sends one frame and lets it be handled.
    pub async fn send(&mut self, frame: Value) {
        self.session.on_text(&frame.to_string()).await;
    }

    /// The frames queued for this connection so far.
    pub fn frames(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(item) = self.inbox.rx.try_recv() {
            if let Outgoing::Frame(text) = item {
                out.push(serde_json::from_str(text.as_str()).expect("JSON frame"));
            }
        }
        out
    }

    /// Posts `text` and returns the stored message's id.
    pub async fn say(&mut self, text: &str) -> i64 {
        self.send(json!({"type": "message", "text": text})).await;
        let frames = self.frames();
        frames
            .iter()
            .find(|f| f["type"] == "ack")
            .and_then(|f| f["message"]["id"].as_i64())
            .unwrap_or_else(|| panic!("{text:?} acknowledged: {frames:?}"))
    }

    /// The connection closes (the page went away).
    pub async fn close(mut self) {
        self.session.close().await;
    }
}

/// The six-digit code of a code mail (from its subject).
pub fn code_in(mail: &OutgoingMail) -> String {
    let code: String = mail.subject.chars().filter(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "a code in {:?}", mail.subject);
    assert!(mail.text.contains(&code), "{}", mail.text);
    code
}

/// The error frames among `frames`.
pub fn errors(frames: &[Value]) -> Vec<&Value> {
    frames.iter().filter(|f| f["type"] == "error").collect()
}

/// Lets spawned tasks run, then moves time on by `secs`, a second at a time (the workers tick
/// every second).
pub async fn pass(secs: u64) {
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    settle().await;
}

/// Lets the store calls and workers started just now finish, without moving time much.
pub async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}
