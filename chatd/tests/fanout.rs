//! Fan-out across chatd nodes: two chatd started in-process, each with its own state, node id,
//! pool and listening connection, over ONE fresh PostgreSQL schema (from
//! `CHMAIL_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`), as two
//! processes behind a proxy would run. A recipient on node A and the sender on node B share a
//! room: messages, typing, unread counts, a ring and its answer, a message too big for one
//! NOTIFY, and a killed listening connection. Without PostgreSQL those tests say SKIPPED, except
//! under `CI=true`, where they fail. On SQLite one node runs without a fan-out and nothing
//! changes.

mod common;

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use chatd::{server::start_with_store, AppState, Running};
use chmail::{
    store::{Participant, Role, Submission},
    Config, Store,
};
use common::{Client, Harness, RecordingMailer, ALICE, BOB, ORIGIN, ROOM, SUBJECT};
use serde_json::json;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long a frame may take to cross nodes: a NOTIFY is milliseconds; this is slack for a busy
/// test machine.
const CROSS: Duration = Duration::from_secs(10);

// --- a fresh schema and two nodes over it ------------------------------------------------------

/// A fresh PostgreSQL schema, dropped at the end (best effort, even when the test panicked).
struct Schema {
    admin: String,
    name: String,
    url: String,
}

impl Schema {
    /// A fresh schema, or `None` (after a note) when PostgreSQL is unreachable and CI is not set.
    async fn create() -> Option<Self> {
        let admin = std::env::var("CHMAIL_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let client = match admin_client(&admin).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("PostgreSQL not reachable at {admin} (CI=true, so this fails): {e}");
                }
                eprintln!("SKIPPED: PostgreSQL not reachable at {admin}: {e}");
                return None;
            }
        };
        let name = unique_schema();
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .expect("CREATE SCHEMA");
        let sep = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{sep}options=-csearch_path%3D{name}");
        Some(Self { admin, name, url })
    }

    /// A store of its own over the schema: what one chatd process opens.
    async fn store(&self) -> Arc<dyn Store> {
        let store = chmail::open_store(&self.url, 4)
            .await
            .expect("PostgreSQL store opens");
        store.migrate().await.expect("migrations apply");
        store
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = admin_client(&admin).await.ok()?;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
                    .ok()
            })
        });
        let _ = done.join();
    }
}

async fn admin_client(url: &str) -> Result<tokio_postgres::Client, String> {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, conn) = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "no answer within 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn unique_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "fanout_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Two chatd nodes over one schema holding the test room (alice@a.example to bob@b.example).
struct Cluster {
    a: Option<Running>,
    b: Option<Running>,
    port: u16,
    // Last: dropped after the nodes.
    _schema: Schema,
}

impl Cluster {
    async fn start(tweak: impl Fn(&mut Config)) -> Option<Self> {
        let schema = Schema::create().await?;
        let mut config = common::config();
        tweak(&mut config);
        let store_a = schema.store().await;
        let grant = store_a
            .record_submission(&Submission {
                login: ALICE.into(),
                ip: Some("192.0.2.10".into()),
                hostname: None,
                now: 1_714_566_896,
                ports: config.chat.ports,
                reclaim_after: config.chat.reclaim_after(),
                room_id: ROOM.into(),
                message_id: Some("<q3@a.example>".into()),
                subject: Some(SUBJECT.into()),
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
                ],
                opening: None,
            })
            .await
            .expect("room stored");
        let mailer = Arc::new(RecordingMailer::default());
        let a = start_with_store(config.clone(), store_a, mailer.clone())
            .await
            .expect("node A starts");
        let b = start_with_store(config, schema.store().await, mailer)
            .await
            .expect("node B starts");
        assert_ne!(a.state().node, b.state().node, "each node has its own id");
        for node in [&a, &b] {
            let outlet = node.state().hub.outlet().expect("PostgreSQL: a fan-out");
            assert!(outlet.is_listening(), "listening once started");
        }
        Some(Self {
            a: Some(a),
            b: Some(b),
            port: grant.port,
            _schema: schema,
        })
    }

    fn a(&self) -> &AppState {
        self.a.as_ref().expect("node A runs").state()
    }

    fn b(&self) -> &AppState {
        self.b.as_ref().expect("node B runs").state()
    }

    fn url(running: &Option<Running>) -> String {
        format!("ws://{}/ws", running.as_ref().expect("running").addr())
    }

    /// A recipient on node A, joined as `address`.
    async fn recipient_on_a(&self, address: &str) -> Client {
        let mut c = Client::connect(&Self::url(&self.a), Some(ORIGIN), None).await;
        c.join(self.port, Some(address)).await;
        c
    }

    /// The sender's connection on node B (not joined yet).
    async fn sender_on_b(&self) -> Client {
        let set_cookie = chatd::auth::start_session(self.b(), ALICE)
            .await
            .expect("session starts");
        let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
        Client::connect(&Self::url(&self.b), Some(ORIGIN), Some(&cookie)).await
    }

    /// The sender's `/me` connection on node B, watching.
    async fn watching_on_b(&self) -> Client {
        let mut c = self.sender_on_b().await;
        c.send(json!({"type": "watch"})).await;
        c.skip_to("watching").await;
        c
    }

    async fn stop(mut self) {
        for node in [self.a.take(), self.b.take()].into_iter().flatten() {
            node.stop().await;
        }
    }
}

/// The next frame of `kind` within [`CROSS`], skipping others.
async fn within(client: &mut Client, kind: &str) -> serde_json::Value {
    tokio::time::timeout(CROSS, client.skip_to(kind))
        .await
        .unwrap_or_else(|_| panic!("no {kind} frame crossed the nodes in time"))
}

// --- the tests ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_typing_and_unread_counts_cross_between_two_nodes() {
    let Some(cluster) = Cluster::start(|_| {}).await else {
        return;
    };
    let mut bob = cluster.recipient_on_a(BOB).await;
    let mut me = cluster.watching_on_b().await;
    let mut alice = cluster.sender_on_b().await;
    let joined = alice.join(cluster.port, None).await;
    assert_eq!(joined["is_sender"], true);

    // A to B: the room page and the sender's /me page (its unread count) on the other node.
    let stored = bob.say("hello from node A", "m1").await;
    let got = within(&mut alice, "message").await;
    assert_eq!(got["message"], stored);
    let unread = within(&mut me, "unread").await;
    assert_eq!(unread["room"], ROOM);
    assert_eq!(unread["count"], 1);

    // B to A.
    let reply = alice.say("hello from node B", "m2").await;
    let got = within(&mut bob, "message").await;
    assert_eq!(got["message"], reply);
    assert_eq!(got["message"]["author"], ALICE);

    // Typing crosses too, and never comes back to the typist.
    bob.send(json!({"type": "typing"})).await;
    let typing = within(&mut alice, "typing").await;
    assert_eq!(typing["from"], BOB);
    let echoed = bob.drain(Duration::from_millis(300)).await;
    assert!(
        echoed.iter().all(|f| f["type"] != "typing"),
        "the typist got their own typing back: {echoed:?}"
    );

    let a = cluster.a().hub.outlet().expect("outlet");
    let b = cluster.b().hub.outlet().expect("outlet");
    assert!(a.stats.received.load(Ordering::Relaxed) >= 1);
    assert!(b.stats.received.load(Ordering::Relaxed) >= 2);
    assert_eq!(a.stats.publish_failed.load(Ordering::Relaxed), 0);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_from_node_a_rings_the_sender_on_node_b_and_the_accept_reaches_a() {
    let Some(cluster) = Cluster::start(|_| {}).await else {
        return;
    };
    let mut me = cluster.watching_on_b().await;
    let mut bob = cluster.recipient_on_a(BOB).await;
    bob.send(json!({"type": "ring"})).await;
    let call = within(&mut bob, "call").await;
    assert_eq!(
        call["state"], "ringing",
        "the sender on B counts as online: {call}"
    );

    let ring = within(&mut me, "ring").await;
    assert_eq!(ring["room"], ROOM);
    assert_eq!(ring["caller"], BOB);
    me.send(json!({"type": "accept", "ring": ring["ring"], "room": ROOM}))
        .await;
    let over = within(&mut me, "ring_over").await;
    assert_eq!(over["state"], "accepted");
    loop {
        let call = within(&mut bob, "call").await;
        if call["state"] == "accepted" {
            assert_eq!(call["ring"], ring["ring"]);
            break;
        }
        assert_eq!(call["state"], "ringing", "{call}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_big_for_one_notify_arrives_intact_on_the_other_node() {
    const MAX: usize = 20_000;
    let Some(cluster) = Cluster::start(|c| {
        c.chat.max_message_bytes = MAX;
        c.chat.max_frame_bytes = 2 * MAX;
    })
    .await
    else {
        return;
    };
    let mut bob = cluster.recipient_on_a(BOB).await;
    let mut alice = cluster.sender_on_b().await;
    alice.join(cluster.port, None).await;

    // Two-, three- and four-byte characters, quotes and newlines (escaped in JSON): as close to
    // the limit as whole pieces get.
    let piece = "ü€😀\"\n";
    let text = piece.repeat(MAX / piece.len());
    assert!(text.len() > MAX - piece.len() && text.len() <= MAX);
    let stored = bob.say(&text, "big").await;
    let got = within(&mut alice, "message").await;
    assert_eq!(got["message"]["text"].as_str(), Some(text.as_str()));
    assert_eq!(got["message"], stored);

    // And a small one after it keeps its place behind the big one.
    bob.say("small", "after").await;
    let next = within(&mut alice, "message").await;
    assert_eq!(next["message"]["text"], "small");

    let a = cluster.a().hub.outlet().expect("outlet");
    assert_eq!(a.stats.by_reference.load(Ordering::Relaxed), 1);
    assert_eq!(a.stats.too_big.load(Ordering::Relaxed), 0);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listening_connection_comes_back_and_fan_out_resumes() {
    let Some(cluster) = Cluster::start(|_| {}).await else {
        return;
    };
    let mut bob = cluster.recipient_on_a(BOB).await;
    let mut alice = cluster.sender_on_b().await;
    alice.join(cluster.port, None).await;
    bob.say("before", "m1").await;
    assert_eq!(
        within(&mut alice, "message").await["message"]["text"],
        "before"
    );

    let admin = admin_client(&cluster._schema.admin)
        .await
        .expect("admin connection");
    let name = chatd::fanout::listener_name(cluster.b());
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .await
        .expect("pg_terminate_backend");
    assert_eq!(killed.len(), 1, "node B has one listening connection");

    let outlet = cluster.b().hub.outlet().expect("outlet").clone();
    let deadline = tokio::time::Instant::now() + CROSS;
    while outlet.stats.reconnects.load(Ordering::Relaxed) == 0 || !outlet.is_listening() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node B did not listen again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let count = admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .await
        .expect("pg_stat_activity");
    assert_eq!(count.len(), 1, "one new listening connection");

    // Local delivery never stopped; and the other node hears again.
    bob.say("after", "m2").await;
    assert_eq!(
        within(&mut alice, "message").await["message"]["text"],
        "after"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn one_node_on_sqlite_runs_without_a_fan_out_and_delivers_locally() {
    let h = Harness::start(|_| {}).await;
    assert!(h.store().bus().is_none(), "SQLite has no bus");
    assert!(h.state().hub.outlet().is_none());
    assert!(!h.state().hub.is_shared());
    let mut bob = h.joined(BOB).await;
    let mut alice = h.sender_client().await;
    alice.join(h.port, None).await;
    let stored = bob.say("hello", "m1").await;
    assert_eq!(alice.skip_to("message").await["message"], stored);
    bob.send(json!({"type": "typing"})).await;
    assert_eq!(alice.skip_to("typing").await["from"], BOB);
}
