//! The store conformance suite: one set of behaviours, run against SQLite and a real PostgreSQL.
//!
//! PostgreSQL comes from `CHMAIL_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! each test works in its own fresh schema, dropped at the end. When PostgreSQL is unreachable the
//! PostgreSQL half is skipped with a note on stderr, except under `CI=true`, where it fails.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    path::PathBuf,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use chmail::{
    config::PortRange,
    open_store,
    store::{Participant, PortGrant, Role, Room, StoreError, Submission},
    Store,
};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// One test's database: an SQLite file in a temporary directory, or a PostgreSQL schema.
struct Harness {
    /// The URL a store is opened with.
    url: String,
    /// SQLite: the directory holding the file, removed on drop.
    dir: Option<tempfile::TempDir>,
    /// PostgreSQL: the admin URL and the test's schema, dropped on drop.
    postgres: Option<(String, String)>,
}

impl Harness {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("chmail.db").display());
        Self {
            url,
            dir: Some(dir),
            postgres: None,
        }
    }

    /// A fresh schema, or `None` (after a note on stderr) when PostgreSQL is not reachable.
    async fn postgres() -> Option<Self> {
        let admin = std::env::var("CHMAIL_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let client = match admin_client(&admin).await {
            Ok(client) => client,
            Err(err) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("PostgreSQL not reachable at {admin} (CI=true, so this fails): {err}");
                }
                eprintln!("SKIPPED: PostgreSQL not reachable at {admin}: {err}");
                return None;
            }
        };
        let schema = unique_schema();
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("CREATE SCHEMA");
        let sep = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{sep}options=-csearch_path%3D{schema}");
        Some(Self {
            url,
            dir: None,
            postgres: Some((admin, schema)),
        })
    }

    /// A new store instance: its own pool or its own SQLite connection ("another process").
    async fn open(&self) -> Arc<dyn Store> {
        open_store(&self.url, 4).await.expect("open_store")
    }

    /// A new, migrated store instance.
    async fn fresh(&self) -> Arc<dyn Store> {
        let store = self.open().await;
        store.migrate().await.expect("migrate");
        store
    }

    /// How many rows `schema_migrations` holds, read behind the store's back.
    async fn migrations_recorded(&self) -> i64 {
        if let Some((admin, schema)) = &self.postgres {
            let client = admin_client(admin).await.expect("admin connection");
            let row = client
                .query_one(
                    &format!("SELECT count(*) FROM {schema}.schema_migrations"),
                    &[],
                )
                .await
                .expect("count schema_migrations");
            row.get(0)
        } else {
            let conn = rusqlite::Connection::open(self.sqlite_path()).expect("open the file");
            conn.query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
                .expect("count schema_migrations")
        }
    }

    fn sqlite_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .expect("an SQLite harness")
            .path()
            .join("chmail.db")
    }
}

impl Drop for Harness {
    /// Drops the PostgreSQL schema, best effort, even when the test panicked.
    fn drop(&mut self) {
        let Some((admin, schema)) = self.postgres.take() else {
            return;
        };
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = admin_client(&admin).await.ok()?;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .ok()
            })
        });
        let _ = done.join();
    }
}

/// A plain connection for setting up and inspecting, within 5 s.
async fn admin_client(url: &str) -> Result<tokio_postgres::Client, String> {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, conn) = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "no answer within 5 s".to_owned())?
        .map_err(|e| {
            format!(
                "{e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            )
        })?;
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
        "t_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn range(first: u16, last: u16) -> PortRange {
    PortRange { first, last }
}

fn part(address: &str, role: Role) -> Participant {
    Participant {
        address: address.to_owned(),
        role,
    }
}

const DAY: Duration = Duration::from_secs(86_400);

/// The behaviours every backend must show.
mod behaviour {
    use super::*;

    pub async fn migrate_is_idempotent_and_safe_concurrently(h: &Harness) {
        // Two "processes" migrate a brand-new database at once.
        let (a, b) = (h.open().await, h.open().await);
        let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
        ra.expect("first concurrent migrate");
        rb.expect("second concurrent migrate");
        a.migrate().await.expect("migrate again");
        a.migrate().await.expect("and again");
        let expected = match a.backend() {
            "postgres" => chmail::store::POSTGRES_MIGRATIONS.len(),
            _ => chmail::store::SQLITE_MIGRATIONS.len(),
        };
        assert_eq!(h.migrations_recorded().await, expected as i64);
        a.ping().await.expect("ping");
        b.record_login("alice", None, None, 1)
            .await
            .expect("tables exist");
    }

    pub async fn record_login_keeps_the_latest_record_entirely(h: &Harness) {
        let s = h.fresh().await;
        assert_eq!(s.login("alice").await.expect("login"), None);
        s.record_login("alice", Some("192.0.2.1"), Some("a.example"), 100)
            .await
            .expect("record");
        let r = s.login("alice").await.expect("login").expect("a record");
        assert_eq!(
            (
                r.login.as_str(),
                r.ip.as_deref(),
                r.hostname.as_deref(),
                r.last_seen
            ),
            ("alice", Some("192.0.2.1"), Some("a.example"), 100)
        );
        // The latest wins entirely: a missing hostname is stored as missing.
        s.record_login("alice", Some("2001:db8::1"), None, 200)
            .await
            .expect("record");
        let r = s.login("alice").await.expect("login").expect("a record");
        assert_eq!(
            (r.ip.as_deref(), r.hostname.as_deref(), r.last_seen),
            (Some("2001:db8::1"), None, 200)
        );
        // An older record (a milter with a lagging clock) does not overwrite a newer one.
        s.record_login("alice", Some("198.51.100.9"), Some("old.example"), 150)
            .await
            .expect("record");
        let r = s.login("alice").await.expect("login").expect("a record");
        assert_eq!((r.ip.as_deref(), r.last_seen), (Some("2001:db8::1"), 200));
        assert_eq!(s.login("bob").await.expect("login"), None);
    }

    pub async fn grant_port_is_sticky_and_updates_last_used(h: &Harness) {
        let s = h.fresh().await;
        let ports = range(20_000, 20_009);
        let first = s.grant_port("alice", ports, DAY, 100).await.expect("grant");
        assert_eq!(
            first,
            PortGrant {
                port: 20_000,
                login: "alice".into(),
                granted_at: 100,
                last_used: 100,
                fresh: true,
                reclaimed_from: None
            }
        );
        let again = s.grant_port("alice", ports, DAY, 250).await.expect("grant");
        assert_eq!((again.port, again.fresh), (20_000, false));
        assert_eq!((again.granted_at, again.last_used), (100, 250));
        let stored = s.port_of("alice").await.expect("port_of").expect("a port");
        assert_eq!((stored.port, stored.last_used), (20_000, 250));
        let owner = s
            .port_owner(20_000)
            .await
            .expect("port_owner")
            .expect("an owner");
        assert_eq!(owner, stored);
        assert_eq!(owner.reclaimed_from, None);
        assert!(!owner.fresh);
        assert_eq!(s.port_owner(20_001).await.expect("port_owner"), None);
        assert_eq!(s.port_of("nobody").await.expect("port_of"), None);
    }

    pub async fn grant_port_gives_distinct_logins_the_lowest_free_ports(h: &Harness) {
        let s = h.fresh().await;
        let ports = range(100, 109);
        for (login, port) in [("a", 100), ("b", 101), ("c", 102)] {
            let g = s.grant_port(login, ports, DAY, 10).await.expect("grant");
            assert_eq!((g.port, g.fresh), (port, true), "{login}");
        }
        // b moves to another range, leaving a hole at 101: the next login fills the hole.
        let moved = s
            .grant_port("b", range(200, 209), DAY, 20)
            .await
            .expect("grant");
        assert_eq!(
            (moved.port, moved.fresh, moved.reclaimed_from),
            (200, true, None)
        );
        assert_eq!(s.port_owner(101).await.expect("owner"), None);
        assert_eq!(
            s.grant_port("d", ports, DAY, 30).await.expect("grant").port,
            101
        );
        assert_eq!(
            s.grant_port("e", ports, DAY, 30).await.expect("grant").port,
            103
        );
    }

    pub async fn grant_port_moves_a_login_whose_port_left_the_range(h: &Harness) {
        let s = h.fresh().await;
        let old = s
            .grant_port("alice", range(100, 109), DAY, 10)
            .await
            .expect("grant");
        assert_eq!(old.port, 100);
        let new = s
            .grant_port("alice", range(300, 309), DAY, 20)
            .await
            .expect("grant");
        assert_eq!((new.port, new.fresh, new.granted_at), (300, true, 20));
        assert_eq!(s.port_owner(100).await.expect("owner"), None);
        assert_eq!(
            s.port_of("alice").await.expect("port_of").map(|g| g.port),
            Some(300)
        );
    }

    pub async fn full_range_reclaims_the_longest_unused_port_only_when_old_enough(h: &Harness) {
        let s = h.fresh().await;
        let ports = range(100, 102);
        let after = Duration::from_secs(1_000);
        s.grant_port("a", ports, after, 0).await.expect("grant a");
        s.grant_port("b", ports, after, 10).await.expect("grant b");
        s.grant_port("c", ports, after, 20).await.expect("grant c");
        s.grant_port("b", ports, after, 30)
            .await
            .expect("b uses its port");

        // Nothing is old enough yet: the oldest (a, 0) is newer than 500 - 1000.
        match s.grant_port("d", ports, after, 500).await {
            Err(StoreError::PortsExhausted { range }) => assert_eq!(range, ports),
            other => panic!("expected PortsExhausted, got {other:?}"),
        }
        assert_eq!(s.port_of("d").await.expect("port_of"), None);

        // At 1005, a (last used at 0) is old enough; c (20) is not the oldest.
        let g = s
            .grant_port("d", ports, after, 1_005)
            .await
            .expect("reclaim");
        assert_eq!(
            (g.port, g.fresh, g.reclaimed_from.as_deref(), g.granted_at),
            (100, true, Some("a"), 1_005)
        );
        assert_eq!(s.port_of("a").await.expect("port_of"), None);
        assert_eq!(
            s.port_owner(100).await.expect("owner").map(|g| g.login),
            Some("d".to_owned())
        );

        // Next oldest is c at 20: not at 1015 (cutoff 15), but exactly at 1020 (cutoff 20).
        assert!(matches!(
            s.grant_port("e", ports, after, 1_015).await,
            Err(StoreError::PortsExhausted { .. })
        ));
        let g = s
            .grant_port("e", ports, after, 1_020)
            .await
            .expect("reclaim");
        assert_eq!((g.port, g.reclaimed_from.as_deref()), (102, Some("c")));
        // b kept its port throughout.
        assert_eq!(
            s.port_of("b").await.expect("port_of").map(|g| g.port),
            Some(101)
        );
    }

    pub async fn concurrent_grants_from_two_stores_give_each_login_one_unshared_port(h: &Harness) {
        let stores = [h.fresh().await, h.open().await];
        let ports = range(30_000, 30_099);
        let logins: Vec<String> = (0..25).map(|i| format!("user{i:02}")).collect();
        let mut tasks = Vec::new();
        for round in 0..2 {
            for (i, login) in logins.iter().enumerate() {
                let store = Arc::clone(&stores[(i + round) % 2]);
                let login = login.clone();
                tasks.push(tokio::spawn(async move {
                    let g = store.grant_port(&login, ports, DAY, 1_000).await;
                    (login, g)
                }));
            }
        }
        let mut granted: HashMap<String, BTreeSet<u16>> = HashMap::new();
        let mut fresh = 0;
        for task in tasks {
            let (login, g) = task.await.expect("task");
            let g = g.unwrap_or_else(|e| panic!("grant for {login} failed: {e}"));
            assert_eq!(g.login, login);
            fresh += usize::from(g.fresh);
            granted.entry(login).or_default().insert(g.port);
        }
        assert_eq!(fresh, 25, "each login granted fresh exactly once");
        let mut seen = HashSet::new();
        for login in &logins {
            let answers = &granted[login];
            assert_eq!(answers.len(), 1, "{login} was told two ports: {answers:?}");
            let stored = stores[1]
                .port_of(login)
                .await
                .expect("port_of")
                .expect("a port");
            assert!(
                answers.contains(&stored.port),
                "{login}: told {answers:?}, stored {}",
                stored.port
            );
            assert!(seen.insert(stored.port), "port {} shared", stored.port);
        }
        // Lowest-free under concurrency: exactly the first 25 ports.
        assert_eq!(seen, (30_000..30_025).collect::<HashSet<u16>>());
    }

    pub async fn concurrent_reclaims_on_a_tiny_range_never_share_a_port(h: &Harness) {
        let stores = [h.fresh().await, h.open().await];
        let ports = range(100, 101);
        let after = Duration::from_secs(100);
        stores[0]
            .grant_port("old1", ports, after, 0)
            .await
            .expect("grant");
        stores[1]
            .grant_port("old2", ports, after, 0)
            .await
            .expect("grant");

        let mut tasks = Vec::new();
        for round in 0..2 {
            for (i, login) in ["x", "y", "z"].into_iter().enumerate() {
                let store = Arc::clone(&stores[(i + round) % 2]);
                tasks.push(tokio::spawn(async move {
                    (login, store.grant_port(login, ports, after, 1_000).await)
                }));
            }
        }
        let mut reclaimed_from = Vec::new();
        let mut exhausted = HashSet::new();
        let mut winners: HashMap<&str, u16> = HashMap::new();
        for task in tasks {
            match task.await.expect("task") {
                (login, Ok(g)) => {
                    if let Some(prev) = winners.insert(login, g.port) {
                        assert_eq!(prev, g.port, "{login} got two ports");
                    }
                    reclaimed_from.extend(g.reclaimed_from);
                }
                (login, Err(StoreError::PortsExhausted { .. })) => {
                    exhausted.insert(login);
                }
                (login, Err(e)) => panic!("{login}: unexpected error {e}"),
            }
        }
        // Two ports: two of x, y, z reclaim one each (from old1 and old2); the third finds both
        // ports just used and gets PortsExhausted, both times.
        assert_eq!(winners.len(), 2, "winners {winners:?}");
        assert_eq!(exhausted.len(), 1, "exhausted {exhausted:?}");
        assert!(winners.keys().all(|w| !exhausted.contains(w)));
        reclaimed_from.sort();
        assert_eq!(reclaimed_from, ["old1", "old2"]);
        let owned: HashSet<u16> = winners.values().copied().collect();
        assert_eq!(owned, HashSet::from([100, 101]));
        for (login, port) in &winners {
            let owner = stores[0]
                .port_owner(*port)
                .await
                .expect("owner")
                .expect("owned");
            assert_eq!(&owner.login, login);
        }
        for old in ["old1", "old2"] {
            assert_eq!(stores[0].port_of(old).await.expect("port_of"), None);
        }
    }

    pub async fn rooms_round_trip_with_deduplicated_ordered_participants(h: &Harness) {
        let s = h.fresh().await;
        let room = Room {
            id: "r-1".into(),
            port: 20_001,
            login: "alice".into(),
            message_id: Some("<m1@example.com>".into()),
            subject: Some("Héllo".into()),
            created: 1_700_000_000,
            participants: vec![
                part("carol@y.example", Role::Cc),
                part("bob@x.example", Role::To),
                part("Alice@Example.com", Role::From),
                part("BOB@x.example", Role::To),
                part("dave@z.example", Role::To),
                part("alice@example.com", Role::From),
                part("bob@x.example", Role::Cc),
            ],
        };
        s.create_room(&room).await.expect("create_room");
        let back = s.room("r-1").await.expect("room").expect("the room");
        let expected = vec![
            part("alice@example.com", Role::From),
            part("bob@x.example", Role::To),
            part("dave@z.example", Role::To),
            part("carol@y.example", Role::Cc),
            part("bob@x.example", Role::Cc),
        ];
        assert_eq!(back.participants, expected);
        assert_eq!(
            back,
            Room {
                participants: expected.clone(),
                ..room.clone()
            }
        );
        assert_eq!(s.room("no-such-room").await.expect("room"), None);

        // A retried create is harmless; a new participant is added after the others.
        let mut retry = room.clone();
        retry.participants.push(part("erin@w.example", Role::To));
        s.create_room(&retry).await.expect("retry");
        let back = s.room("r-1").await.expect("room").expect("the room");
        assert_eq!(back.participants.len(), 6);
        assert_eq!(back.participants[3], part("erin@w.example", Role::To));

        // The id of another login's room cannot be taken over.
        let thief = Room {
            login: "mallory".into(),
            ..room.clone()
        };
        assert!(matches!(
            s.create_room(&thief).await,
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(
            s.room("r-1").await.expect("room").expect("room").login,
            "alice"
        );

        // A room with no optional fields and no participants.
        let bare = Room {
            id: "r-2".into(),
            port: 1,
            login: "bob".into(),
            message_id: None,
            subject: None,
            created: 5,
            participants: vec![],
        };
        s.create_room(&bare).await.expect("create bare");
        assert_eq!(s.room("r-2").await.expect("room"), Some(bare));
    }

    pub async fn rooms_cut_long_subjects_and_cap_participants(h: &Harness) {
        let s = h.fresh().await;
        let participants = (0..1_005)
            .map(|i| part(&format!("p{i}@example.com"), Role::To))
            .collect();
        let room = Room {
            id: "big".into(),
            port: 20_000,
            login: "alice".into(),
            message_id: None,
            subject: Some("é".repeat(600)),
            created: 1,
            participants,
        };
        s.create_room(&room).await.expect("create_room");
        let back = s.room("big").await.expect("room").expect("the room");
        let subject = back.subject.expect("a subject");
        assert_eq!(subject.len(), 998);
        assert!(subject.chars().all(|c| c == 'é'));
        assert_eq!(back.participants.len(), chmail::store::MAX_PARTICIPANTS);
        assert_eq!(back.participants[999].address, "p999@example.com");

        let long_id = Room {
            id: "long".into(),
            message_id: Some(format!("<{}@x>", "m".repeat(995))),
            ..room.clone()
        };
        assert!(matches!(
            s.create_room(&long_id).await,
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(s.room("long").await.expect("room"), None);
    }

    fn submission(login: &str, room_id: &str, ports: PortRange, now: i64) -> Submission {
        Submission {
            login: login.into(),
            ip: Some("192.0.2.7".into()),
            hostname: Some("laptop.example".into()),
            now,
            ports,
            reclaim_after: DAY,
            room_id: room_id.into(),
            message_id: Some(format!("<{room_id}@example.com>")),
            subject: Some("Lunch?".into()),
            participants: vec![
                part("alice@example.com", Role::From),
                part("bob@example.com", Role::To),
            ],
        }
    }

    pub async fn record_submission_writes_login_port_and_room_together(h: &Harness) {
        let s = h.fresh().await;
        let ports = range(20_000, 20_009);
        let g = s
            .record_submission(&submission("alice", "room-a", ports, 500))
            .await
            .expect("submission");
        assert_eq!((g.port, g.fresh, g.login.as_str()), (20_000, true, "alice"));
        let login = s.login("alice").await.expect("login").expect("recorded");
        assert_eq!(
            (
                login.ip.as_deref(),
                login.hostname.as_deref(),
                login.last_seen
            ),
            (Some("192.0.2.7"), Some("laptop.example"), 500)
        );
        assert_eq!(
            s.port_of("alice").await.expect("port_of"),
            Some(PortGrant {
                fresh: false,
                ..g.clone()
            })
        );
        let room = s.room("room-a").await.expect("room").expect("the room");
        assert_eq!(
            (room.port, room.login.as_str(), room.created),
            (20_000, "alice", 500)
        );
        assert_eq!(room.subject.as_deref(), Some("Lunch?"));
        assert_eq!(room.participants.len(), 2);

        let g2 = s
            .record_submission(&submission("alice", "room-b", ports, 600))
            .await
            .expect("second submission");
        assert_eq!((g2.port, g2.fresh, g2.last_used), (20_000, false, 600));
        let other = s
            .record_submission(&submission("bob", "room-c", ports, 600))
            .await
            .expect("bob's submission");
        assert_eq!(other.port, 20_001);
        assert_eq!(
            s.room("room-c").await.expect("room").expect("room").port,
            20_001
        );
    }

    pub async fn record_submission_writes_nothing_when_any_part_fails(h: &Harness) {
        let s = h.fresh().await;
        let tiny = range(100, 100);
        s.record_submission(&submission("alice", "room-a", tiny, 1_000))
            .await
            .expect("alice takes the only port");

        // No port for bob: no login row, no port, no room.
        match s
            .record_submission(&submission("bob", "room-b", tiny, 1_001))
            .await
        {
            Err(StoreError::PortsExhausted { range }) => assert_eq!(range, tiny),
            other => panic!("expected PortsExhausted, got {other:?}"),
        }
        assert_eq!(s.login("bob").await.expect("login"), None);
        assert_eq!(s.port_of("bob").await.expect("port_of"), None);
        assert_eq!(s.room("room-b").await.expect("room"), None);
        assert_eq!(
            s.port_owner(100).await.expect("owner").map(|g| g.login),
            Some("alice".to_owned())
        );

        // The room id is alice's: carol's grant and login are rolled back with it.
        let wide = range(200, 209);
        assert!(matches!(
            s.record_submission(&submission("carol", "room-a", wide, 1_002))
                .await,
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(s.login("carol").await.expect("login"), None);
        assert_eq!(s.port_of("carol").await.expect("port_of"), None);
        assert_eq!(s.port_owner(200).await.expect("owner"), None);
    }

    pub async fn invalid_input_is_rejected_before_writing(h: &Harness) {
        let s = h.fresh().await;
        let ports = range(100, 109);
        let invalid = |r: Result<(), StoreError>, what: &str| {
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{what}: {r:?}");
        };
        invalid(s.record_login("", None, None, 1).await, "empty login");
        invalid(
            s.record_login(&"x".repeat(321), None, None, 1).await,
            "long login",
        );
        invalid(s.record_login("a\0b", None, None, 1).await, "NUL in login");
        invalid(
            s.record_login("a", None, Some(&"h".repeat(256)), 1).await,
            "long hostname",
        );
        invalid(
            s.record_login("a", Some(&"1".repeat(65)), None, 1).await,
            "long ip",
        );
        invalid(
            s.grant_port("", ports, DAY, 1).await.map(drop),
            "grant empty login",
        );
        invalid(
            s.grant_port("a", range(0, 10), DAY, 1).await.map(drop),
            "range with port 0",
        );
        invalid(
            s.grant_port("a", range(10, 9), DAY, 1).await.map(drop),
            "backwards range",
        );
        let room = Room {
            id: String::new(),
            port: 100,
            login: "a".into(),
            message_id: None,
            subject: None,
            created: 1,
            participants: vec![],
        };
        invalid(s.create_room(&room).await, "empty room id");
        let mut sub = submission("", "r", ports, 1);
        invalid(
            s.record_submission(&sub).await.map(drop),
            "submission empty login",
        );
        sub.login = "a".into();
        sub.hostname = Some("h".repeat(256));
        invalid(
            s.record_submission(&sub).await.map(drop),
            "submission long hostname",
        );
        assert_eq!(s.login("a").await.expect("login"), None);
        assert_eq!(s.port_of("a").await.expect("port_of"), None);

        // The caps themselves are accepted.
        let longest = "x".repeat(320);
        s.record_login(&longest, Some("2001:db8::1"), Some(&"h".repeat(255)), 1)
            .await
            .expect("the longest login and hostname");
        assert!(s.login(&longest).await.expect("login").is_some());
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let h = super::Harness::sqlite();
                    super::behaviour::$name(&h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(h) = super::Harness::postgres().await else { return };
                    super::behaviour::$name(&h).await;
                }
            )*
        }
    };
}

conformance!(
    migrate_is_idempotent_and_safe_concurrently,
    record_login_keeps_the_latest_record_entirely,
    grant_port_is_sticky_and_updates_last_used,
    grant_port_gives_distinct_logins_the_lowest_free_ports,
    grant_port_moves_a_login_whose_port_left_the_range,
    full_range_reclaims_the_longest_unused_port_only_when_old_enough,
    concurrent_grants_from_two_stores_give_each_login_one_unshared_port,
    concurrent_reclaims_on_a_tiny_range_never_share_a_port,
    rooms_round_trip_with_deduplicated_ordered_participants,
    rooms_cut_long_subjects_and_cap_participants,
    record_submission_writes_login_port_and_room_together,
    record_submission_writes_nothing_when_any_part_fails,
    invalid_input_is_rejected_before_writing,
);

#[tokio::test]
async fn unknown_url_schemes_are_named_in_the_error() {
    for url in [
        "mysql://root@localhost/chmail",
        "data/chmail.db",
        "",
        "sqlite://",
    ] {
        match open_store(url, 1).await {
            Err(StoreError::Url(msg)) => {
                assert!(msg.contains("sqlite://"), "{url:?}: {msg}");
                if url != "sqlite://" {
                    assert!(msg.contains("postgres://"), "{url:?}: {msg}");
                }
                if url.starts_with("mysql") {
                    assert!(msg.contains("\"mysql\""), "{msg}");
                }
            }
            Err(e) => panic!("{url:?}: expected a Url error, got {e}"),
            Ok(_) => panic!("{url:?}: expected a Url error, got a store"),
        }
    }
}

#[tokio::test]
async fn a_malformed_postgres_url_is_a_url_error_without_the_password() {
    match open_store("postgres://u:s3cret@host:notaport/db", 1).await {
        Err(StoreError::Url(msg)) => assert!(!msg.contains("s3cret"), "{msg}"),
        Err(e) => panic!("expected a Url error, got {e}"),
        Ok(_) => panic!("expected a Url error, got a store"),
    }
}

#[tokio::test]
async fn a_dead_postgres_fails_within_a_bounded_time() {
    let started = Instant::now();
    let result = async {
        let store = open_store("postgres://postgres@127.0.0.1:1/test", 2).await?;
        store.ping().await?;
        store.migrate().await
    };
    let result = tokio::time::timeout(Duration::from_secs(20), result)
        .await
        .expect("the store gave up by itself, not after 20 s");
    assert!(
        matches!(result, Err(StoreError::Connect(_) | StoreError::Backend(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn sqlite_creates_the_parent_directory_and_uses_wal() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("deep/er/chmail.db");
    let store = open_store(&format!("sqlite://{}", path.display()), 1)
        .await
        .expect("open_store");
    assert_eq!(store.backend(), "sqlite");
    store.migrate().await.expect("migrate");
    assert!(path.is_file());
    let conn = rusqlite::Connection::open(&path).expect("open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn sqlite_in_memory_works_for_tests() {
    let store = open_store("sqlite::memory:", 1).await.expect("open_store");
    store.migrate().await.expect("migrate");
    let g = store
        .grant_port("alice", range(5, 6), DAY, 1)
        .await
        .expect("grant");
    assert_eq!(g.port, 5);
}
