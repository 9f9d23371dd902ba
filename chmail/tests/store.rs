//! The store conformance suite: one set of behaviours, run against SQLite and a real PostgreSQL
//! (see [`common`] for where PostgreSQL comes from and when its half is skipped).

#[macro_use]
mod common;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use chmail::{
    config::PortRange,
    open_store,
    store::{
        kind, CodeCheck, MailScope, Member, NewMessage, NewOutgoing, NotifyJob, NotifyState,
        OutgoingRecord, OutgoingState, Participant, PortGrant, ReplyToken, RingState, Role, Room,
        Session, SigninToken, StoreError, Submission, Via, CODE_SEND_KEEP_MS, MAX_BODY_LEN,
        MAX_CLIENT_ID_LEN, MAX_MAIL_BODY_LEN, MAX_MAIL_ERROR_LEN, MAX_PAGE, MAX_PRESENCE_BATCH,
        SIGNIN_TOKEN_KEEP_MS,
    },
    Store,
};
use common::Harness;

fn range(first: u16, last: u16) -> PortRange {
    PortRange { first, last }
}

fn part(address: &str, role: Role) -> Participant {
    Participant {
        address: address.to_owned(),
        role,
        name: None,
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

    pub async fn rooms_keep_display_names_and_the_opening_cleaned(h: &Harness) {
        let s = h.fresh().await;
        let mut sub = submission("alice", "named", range(20_000, 20_009), 1);
        sub.participants = vec![
            part("alice@example.com", Role::From).named("  Alice\u{0} Liddell\t"),
            part("bob@x.example", Role::To).named(&"B".repeat(300)),
            part("carol@y.example", Role::Cc),
        ];
        sub.opening = Some(format!("Line one\r\nline two\u{7}\n{}", "é".repeat(1500)));
        s.record_submission(&sub).await.expect("stored");
        let back = s.room("named").await.expect("room").expect("the room");
        let names: Vec<Option<String>> = back.participants.iter().map(|p| p.name.clone()).collect();
        assert_eq!(
            names,
            vec![
                Some("Alice Liddell".to_owned()),
                Some("B".repeat(chmail::store::MAX_NAME_LEN)),
                None
            ]
        );
        let opening = back.opening.expect("the opening");
        assert!(opening.starts_with("Line one\nline two\n"), "{opening:?}");
        assert!(opening.len() <= chmail::store::MAX_OPENING_LEN);
        assert!(opening.is_char_boundary(opening.len()));
        // The login holds its port now: its next mail takes the held-port path, which keeps
        // them as well.
        let mut again = submission("alice", "named-again", range(20_000, 20_009), 2);
        again.participants = vec![
            part("alice@example.com", Role::From).named("Alice"),
            part("bob@x.example", Role::To).named("Bob"),
        ];
        again.opening = Some("Second mail".into());
        s.record_submission(&again).await.expect("stored");
        let back = s
            .room("named-again")
            .await
            .expect("room")
            .expect("the room");
        assert_eq!(back.opening.as_deref(), Some("Second mail"));
        let names: Vec<Option<&str>> = back
            .participants
            .iter()
            .map(|p| p.name.as_deref())
            .collect();
        assert_eq!(names, vec![Some("Alice"), Some("Bob")]);
        // Without them, nothing is made up.
        let mut plain = submission("alice", "plain", range(20_000, 20_009), 2);
        plain.opening = Some("  \n ".into());
        s.record_submission(&plain).await.expect("stored");
        let back = s.room("plain").await.expect("room").expect("the room");
        assert_eq!(back.opening, None);
        assert!(back.participants.iter().all(|p| p.name.is_none()));
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
            opening: None,
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
            opening: None,
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
            opening: None,
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
            opening: None,
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

    pub async fn concurrent_submissions_of_port_holders_keep_their_ports(h: &Harness) {
        // The common case: logins that hold a port, many mails at once through two stores
        // ("two milters"). None waits for a grant, none fails, each mail its own room on its
        // login's port, and the ports stay where they were.
        let stores = [h.fresh().await, h.open().await];
        let ports = range(40_000, 40_099);
        let logins: Vec<String> = (0..20).map(|i| format!("holder{i:02}")).collect();
        let mut held = HashMap::new();
        for login in &logins {
            let g = stores[0]
                .grant_port(login, ports, DAY, 1_000)
                .await
                .expect("grant");
            held.insert(login.clone(), g.port);
        }
        let mut tasks = Vec::new();
        for round in 0..5_i64 {
            for (i, login) in logins.iter().enumerate() {
                let store = Arc::clone(&stores[(i + round as usize) % 2]);
                let sub = submission(login, &format!("room-{i}-{round}"), ports, 2_000 + round);
                tasks.push(tokio::spawn(async move {
                    let g = store.record_submission(&sub).await;
                    (sub, g)
                }));
            }
        }
        let mut rooms = HashSet::new();
        for task in tasks {
            let (sub, g) = task.await.expect("task");
            let g = g.unwrap_or_else(|e| panic!("{}'s mail failed: {e}", sub.login));
            let port = held[&sub.login];
            assert_eq!((g.port, g.fresh, g.granted_at), (port, false, 1_000));
            assert!(g.last_used >= sub.now, "{g:?}");
            let room = stores[1]
                .room(&sub.room_id)
                .await
                .expect("room")
                .expect("the mail's room");
            assert_eq!((room.port, room.login.as_str()), (port, sub.login.as_str()));
            assert_eq!(room.participants.len(), 2);
            assert!(rooms.insert(sub.room_id));
        }
        assert_eq!(rooms.len(), 100);
        for login in &logins {
            let g = stores[1]
                .port_of(login)
                .await
                .expect("port_of")
                .expect("a port");
            assert_eq!(
                (g.port, g.granted_at, g.last_used),
                (held[login], 1_000, 2_004)
            );
            let seen = stores[0].login(login).await.expect("login").expect("seen");
            assert_eq!(seen.last_seen, 2_004);
        }
    }

    pub async fn a_holders_mail_racing_a_reclaim_of_its_port_never_loses_it(h: &Harness) {
        // Two ports held by two logins unused long enough to be reclaimed; at once, both send a
        // mail and a third login asks for a port. Whatever the order, the two that get a port
        // hold it afterwards (a mail is never signed with a port that went to another login),
        // and the one that came last finds both ports just used.
        let stores = [h.fresh().await, h.open().await];
        let after = Duration::from_secs(100);
        for k in 0..10_u16 {
            let ports = range(100 + 2 * k, 101 + 2 * k);
            let (a, b, newcomer) = (format!("a{k}"), format!("b{k}"), format!("n{k}"));
            for login in [&a, &b] {
                stores[0]
                    .grant_port(login, ports, after, 0)
                    .await
                    .expect("grant");
            }
            let mails = [(&a, &stores[0]), (&b, &stores[1])].map(|(login, store)| {
                let store = Arc::clone(store);
                let sub = Submission {
                    reclaim_after: after,
                    ..submission(login, &format!("room-{login}"), ports, 1_000)
                };
                tokio::spawn(
                    async move { (sub.login.clone(), store.record_submission(&sub).await) },
                )
            });
            let store = Arc::clone(&stores[usize::from(k % 2)]);
            let ask = newcomer.clone();
            let grant = tokio::spawn(async move {
                (
                    ask.clone(),
                    store.grant_port(&ask, ports, after, 1_000).await,
                )
            });
            let mut told = HashMap::new();
            let mut exhausted = Vec::new();
            for task in mails.into_iter().chain([grant]) {
                match task.await.expect("task") {
                    (login, Ok(g)) => {
                        told.insert(login, g.port);
                    }
                    (login, Err(StoreError::PortsExhausted { .. })) => exhausted.push(login),
                    (login, Err(e)) => panic!("{login}: unexpected error {e}"),
                }
            }
            assert_eq!(
                (told.len(), exhausted.len()),
                (2, 1),
                "{told:?} {exhausted:?}"
            );
            for (login, port) in &told {
                let owner = stores[1].port_owner(*port).await.expect("owner");
                assert_eq!(
                    owner.map(|g| g.login).as_deref(),
                    Some(login.as_str()),
                    "{login} was told port {port}"
                );
                if login != &newcomer {
                    let room = stores[1]
                        .room(&format!("room-{login}"))
                        .await
                        .expect("room")
                        .expect("the mail's room");
                    assert_eq!(room.port, *port);
                }
            }
            let lost = &exhausted[0];
            if lost != &newcomer {
                assert_eq!(
                    stores[0].room(&format!("room-{lost}")).await.expect("room"),
                    None
                );
            }
        }
    }

    pub async fn concurrent_submissions_fail_or_succeed_each_on_its_own(h: &Harness) {
        // Mails written at once (SQLite commits them in groups) fail alone: a mail without a port
        // or with another login's room id writes nothing, and the others are all there.
        let s = h.fresh().await;
        let tiny = range(100, 100);
        s.record_submission(&submission("alice", "room-a", tiny, 1_000))
            .await
            .expect("alice takes the only port");
        let mut tasks = Vec::new();
        for i in 0..30 {
            let (login, room, ports) = match i % 3 {
                0 => ("alice".to_owned(), format!("alice-{i}"), tiny),
                // No port left for bob.
                1 => (format!("bob{i}"), format!("bob-{i}"), tiny),
                // A port for carol, but alice's room id.
                _ => (format!("carol{i}"), "room-a".to_owned(), range(200, 209)),
            };
            let store = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                let sub = submission(&login, &room, ports, 2_000);
                let g = store.record_submission(&sub).await;
                (sub, g)
            }));
        }
        for task in tasks {
            let (sub, g) = task.await.expect("task");
            let stored = s.room(&sub.room_id).await.expect("room");
            match (sub.login.as_str(), g) {
                ("alice", Ok(g)) => {
                    assert_eq!(g.port, 100);
                    assert_eq!(stored.map(|r| r.port), Some(100));
                }
                (login, Err(StoreError::PortsExhausted { .. })) if login.starts_with("bob") => {
                    assert_eq!(stored, None);
                }
                (login, Err(StoreError::Invalid(_))) if login.starts_with("carol") => {
                    assert_eq!(stored.map(|r| r.login).as_deref(), Some("alice"));
                }
                (login, other) => panic!("{login}: unexpected {other:?}"),
            }
            if sub.login != "alice" {
                assert_eq!(s.login(&sub.login).await.expect("login"), None);
                assert_eq!(s.port_of(&sub.login).await.expect("port_of"), None);
            }
        }
        let alice = s.room("room-a").await.expect("room").expect("alice's room");
        assert_eq!(alice.participants.len(), 2);
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
            opening: None,
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

    /// A room of `login`'s: alice (From), bob (To and Cc), dave (To), carol (Cc).
    async fn chat_room(s: &Arc<dyn Store>, id: &str, login: &str, created: i64) {
        s.create_room(&Room {
            id: id.into(),
            port: 20_000,
            login: login.into(),
            message_id: None,
            subject: Some(format!("about {id}")),
            created,
            participants: vec![
                part("Alice@Example.com", Role::From),
                part("bob@x.example", Role::To),
                part("dave@z.example", Role::To),
                part("carol@y.example", Role::Cc),
                part("bob@x.example", Role::Cc),
            ],
            opening: None,
        })
        .await
        .expect("create_room");
    }

    fn msg(room: &str, author: &str, body: &str, client_id: Option<&str>) -> NewMessage {
        NewMessage {
            room_id: room.into(),
            author: author.into(),
            body: body.into(),
            created_ms: 1_000,
            via: Via::Web,
            client_id: client_id.map(str::to_owned),
            picture_id: None,
        }
    }

    pub async fn join_room_admits_only_participants_and_keeps_the_first_join(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        let bob = s
            .join_room("r", " BOB@x.example", 100)
            .await
            .expect("join")
            .expect("bob is a participant");
        // Under two roles: the first in room order (To before Cc).
        assert_eq!(
            bob,
            Member {
                room_id: "r".into(),
                address: "bob@x.example".into(),
                role: Role::To,
                joined_at: Some(100),
                last_read: None,
                verified: false,
            }
        );
        let again = s.join_room("r", "bob@x.example", 200).await.expect("join");
        assert_eq!(again.and_then(|m| m.joined_at), Some(100));
        let carol = s
            .join_room("r", "carol@y.example", 300)
            .await
            .expect("join");
        assert_eq!(
            carol.map(|m| (m.role, m.joined_at)),
            Some((Role::Cc, Some(300)))
        );
        assert_eq!(
            s.join_room("r", "mallory@evil.example", 1)
                .await
                .expect("join"),
            None
        );
        assert_eq!(
            s.join_room("nope", "bob@x.example", 1).await.expect("join"),
            None
        );
        assert_eq!(s.join_room("r", "", 1).await.expect("join"), None);

        s.mark_read("r", "Bob@X.example", 5)
            .await
            .expect("mark_read");
        s.mark_read("r", "bob@x.example", 3)
            .await
            .expect("never backwards");
        s.mark_read("r", "mallory@evil.example", 9)
            .await
            .expect("a stranger changes nothing");
        let members = s.members("r").await.expect("members");
        let summary: Vec<_> = members
            .iter()
            .map(|m| (m.address.as_str(), m.role, m.joined_at, m.last_read))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("alice@example.com", Role::From, None, None),
                ("bob@x.example", Role::To, Some(100), Some(5)),
                ("dave@z.example", Role::To, None, None),
                ("carol@y.example", Role::Cc, Some(300), None),
                ("bob@x.example", Role::Cc, Some(100), Some(5)),
            ]
        );
        assert!(members.iter().all(|m| !m.verified && m.room_id == "r"));
        assert_eq!(s.members("nope").await.expect("members"), vec![]);
    }

    pub async fn add_message_is_idempotent_per_author_and_client_id(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        let added = s
            .add_message(&msg("r", "Bob@X.example", "hello", Some("c1")))
            .await
            .expect("add");
        assert!(added.inserted, "the first call stores the message");
        let first = added.message;
        assert_eq!(
            (
                first.author.as_str(),
                first.body.as_str(),
                first.via,
                first.client_id.as_deref()
            ),
            ("bob@x.example", "hello", Via::Web, Some("c1"))
        );
        // The retry (even with another body) returns the first message unchanged.
        let retry = s
            .add_message(&msg("r", "bob@x.example", "hello again", Some("c1")))
            .await
            .expect("retry");
        assert!(!retry.inserted, "a retry stores nothing and says so");
        assert_eq!(retry.message, first);
        // The same body in the same millisecond is still a retry, not a new message.
        let same = s
            .add_message(&msg("r", "bob@x.example", "hello", Some("c1")))
            .await
            .expect("retry");
        assert_eq!((same.inserted, same.message), (false, first.clone()));
        // The same client id from another author, or without one, is a new message.
        let carol = s
            .add_message(&msg("r", "carol@y.example", "hi", Some("c1")))
            .await
            .expect("add");
        assert!(carol.inserted);
        let carol = carol.message;
        let plain1 = s
            .add_message(&msg("r", "bob@x.example", "x", None))
            .await
            .expect("add");
        let plain2 = s
            .add_message(&msg("r", "bob@x.example", "x", None))
            .await
            .expect("add");
        assert!(
            plain1.inserted && plain2.inserted,
            "no client id: always new"
        );
        let (plain1, plain2) = (plain1.message, plain2.message);
        let system = s
            .add_message(&NewMessage {
                via: Via::System,
                ..msg("r", "", "", None)
            })
            .await
            .expect("a system message may be empty")
            .message;
        let ids = [first.id, carol.id, plain1.id, plain2.id, system.id];
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let all = s.messages("r", None, 100).await.expect("messages");
        assert_eq!(all.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
        assert_eq!(all[0], first);
        assert_eq!((all[4].via, all[4].author.as_str()), (Via::System, ""));

        // Retries racing from two nodes store one message.
        let stores = [Arc::clone(&s), h.open().await];
        let mut tasks = Vec::new();
        for i in 0..10 {
            let store = Arc::clone(&stores[i % 2]);
            tasks.push(tokio::spawn(async move {
                store
                    .add_message(&msg("r", "dave@z.example", "once", Some("race")))
                    .await
            }));
        }
        let mut race_ids = HashSet::new();
        let mut inserted = 0;
        for task in tasks {
            let added = task.await.expect("task").expect("add");
            inserted += usize::from(added.inserted);
            race_ids.insert(added.message.id);
        }
        assert_eq!(race_ids.len(), 1, "{race_ids:?}");
        assert_eq!(
            inserted, 1,
            "exactly one of the racing calls says it stored"
        );
        assert_eq!(s.messages("r", None, 100).await.expect("messages").len(), 6);
    }

    pub async fn add_message_marks_the_room_read_for_its_author_in_the_same_write(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        let first = s
            .add_message(&msg("r", "bob@x.example", "one", Some("a")))
            .await
            .expect("add")
            .message;
        let read = |members: Vec<Member>, address: &str| {
            members
                .into_iter()
                .find(|m| m.address == address)
                .and_then(|m| m.last_read)
        };
        let members = s.members("r").await.expect("members");
        assert_eq!(read(members, "bob@x.example"), Some(first.id));
        // Others' marks are theirs; a retry moves nothing; chatd's notes mark nobody.
        let second = s
            .add_message(&msg("r", "carol@y.example", "two", None))
            .await
            .expect("add")
            .message;
        s.add_message(&msg("r", "bob@x.example", "one", Some("a")))
            .await
            .expect("retry");
        let mut note = msg("r", "", "note", None);
        note.via = Via::System;
        s.add_message(&note).await.expect("note");
        let members = s.members("r").await.expect("members");
        assert_eq!(read(members.clone(), "bob@x.example"), Some(first.id));
        assert_eq!(read(members, "carol@y.example"), Some(second.id));
    }

    pub async fn add_message_rejects_bad_input_and_unknown_rooms(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        let invalid = |r: Result<chmail::store::Added, StoreError>, what: &str| match r {
            Err(StoreError::Invalid(msg)) => msg,
            other => panic!("{what}: expected Invalid, got {other:?}"),
        };
        let msg_text = invalid(
            s.add_message(&msg("no-such-room", "bob@x.example", "hi", None))
                .await,
            "unknown room",
        );
        assert!(msg_text.contains("unknown room"), "{msg_text}");
        invalid(
            s.add_message(&msg(
                "r",
                "bob@x.example",
                &"x".repeat(MAX_BODY_LEN + 1),
                None,
            ))
            .await,
            "oversized body",
        );
        invalid(
            s.add_message(&msg("r", "bob@x.example", " \n\t", None))
                .await,
            "blank body",
        );
        invalid(s.add_message(&msg("r", "", "hi", None)).await, "no author");
        invalid(
            s.add_message(&msg(
                "r",
                "bob@x.example",
                "hi",
                Some(&"c".repeat(MAX_CLIENT_ID_LEN + 1)),
            ))
            .await,
            "long client id",
        );
        invalid(
            s.add_message(&msg("r", "bob@x.example", "a\0b", None))
                .await,
            "NUL",
        );
        assert_eq!(s.messages("r", None, 10).await.expect("messages"), vec![]);
        // The caps themselves are accepted.
        let big = s
            .add_message(&msg(
                "r",
                "bob@x.example",
                &"x".repeat(MAX_BODY_LEN),
                Some(&"c".repeat(MAX_CLIENT_ID_LEN)),
            ))
            .await
            .expect("the largest message");
        assert_eq!(big.message.body.len(), MAX_BODY_LEN);
    }

    pub async fn pictures_belong_to_their_room_and_messages_show_only_their_rooms(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        chat_room(&s, "other", "alice", 2).await;
        let png = b"\x89PNG\r\n\x1a\n-picture-bytes".to_vec();
        let id = s
            .add_chat_picture("r", "image/png", &png, 5)
            .await
            .expect("picture stored");
        let back = s.chat_picture("r", id).await.expect("read").expect("found");
        assert_eq!(back.content_type, "image/png");
        assert_eq!(back.bytes, png);
        // Another room's id, or an unknown one, finds nothing.
        assert_eq!(s.chat_picture("other", id).await.expect("read"), None);
        assert_eq!(s.chat_picture("r", id + 1000).await.expect("read"), None);
        // A message shows it, with or without text; a picture of another room is refused.
        let mut with = msg("r", "bob@x.example", "", Some("p1"));
        with.picture_id = Some(id);
        let added = s.add_message(&with).await.expect("picture message");
        assert_eq!(added.message.picture_id, Some(id));
        assert_eq!(added.message.body, "");
        let listed = s.messages("r", None, 10).await.expect("messages");
        assert_eq!(listed.last().and_then(|m| m.picture_id), Some(id));
        let mut elsewhere = msg("other", "bob@x.example", "look", None);
        elsewhere.picture_id = Some(id);
        match s.add_message(&elsewhere).await {
            Err(StoreError::Invalid(why)) => assert!(why.contains("picture"), "{why}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        // Bad pictures are refused before writing.
        for (kind, bytes) in [
            ("image/svg+xml", png.clone()),
            ("image/png", Vec::new()),
            ("image/png", vec![0u8; chmail::store::MAX_PICTURE_LEN + 1]),
        ] {
            match s.add_chat_picture("r", kind, &bytes, 6).await {
                Err(StoreError::Invalid(_)) => {}
                other => panic!("{kind} of {} bytes: got {other:?}", bytes.len()),
            }
        }
        match s
            .add_chat_picture("no-such-room", "image/png", &png, 6)
            .await
        {
            Err(StoreError::Invalid(_)) => {}
            other => panic!("unknown room: got {other:?}"),
        }
    }

    pub async fn messages_page_backwards_and_forwards_oldest_first(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        chat_room(&s, "other", "alice", 2).await;
        let mut ids = Vec::new();
        for i in 0..7 {
            let m = s
                .add_message(&msg("r", "bob@x.example", &format!("m{i}"), None))
                .await
                .expect("add");
            ids.push(m.message.id);
            // Interleaved messages of another room never show up in this one.
            s.add_message(&msg("other", "bob@x.example", "elsewhere", None))
                .await
                .expect("add");
        }
        let page_ids =
            |v: Vec<chmail::store::Message>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        let newest = s.messages("r", None, 3).await.expect("page");
        assert_eq!(
            newest.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            ["m4", "m5", "m6"]
        );
        assert_eq!(page_ids(newest), ids[4..7]);
        assert_eq!(
            page_ids(s.messages("r", Some(ids[4]), 3).await.expect("page")),
            ids[1..4]
        );
        assert_eq!(
            page_ids(s.messages("r", Some(ids[1]), 3).await.expect("page")),
            ids[0..1]
        );
        assert_eq!(
            page_ids(s.messages("r", Some(ids[0]), 3).await.expect("page")),
            []
        );
        assert_eq!(page_ids(s.messages("r", None, 0).await.expect("page")), []);
        assert_eq!(
            page_ids(s.messages_after("r", ids[2], 2).await.expect("after")),
            ids[3..5]
        );
        assert_eq!(
            page_ids(s.messages_after("r", 0, 100).await.expect("after")),
            ids
        );
        assert_eq!(
            page_ids(s.messages_after("r", ids[6], 100).await.expect("after")),
            []
        );
        assert_eq!(
            page_ids(s.messages("nope", None, 10).await.expect("page")),
            []
        );
    }

    pub async fn pages_are_capped(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        for i in 0..=MAX_PAGE {
            s.add_message(&msg("r", "bob@x.example", &format!("m{i}"), None))
                .await
                .expect("add");
        }
        let newest = s.messages("r", None, u32::MAX).await.expect("page");
        assert_eq!(newest.len(), MAX_PAGE as usize);
        assert_eq!(
            newest.last().map(|m| m.body.as_str()),
            Some(format!("m{MAX_PAGE}").as_str())
        );
        let after = s.messages_after("r", 0, MAX_PAGE + 1).await.expect("after");
        assert_eq!(after.len(), MAX_PAGE as usize);
        assert_eq!(after[0].body, "m0");
    }

    pub async fn rooms_of_recipient_list_their_chats_with_their_unread_count(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "old", "alice", 100).await;
        chat_room(&s, "new", "alice", 200).await;
        // A room of carol's own mail: not among her chats as a recipient.
        s.create_room(&Room {
            id: "carols".into(),
            port: 20_001,
            login: "carol".into(),
            message_id: None,
            subject: None,
            created: 300,
            participants: vec![
                part("carol@y.example", Role::From),
                part("bob@x.example", Role::To),
            ],
            opening: None,
        })
        .await
        .expect("room");
        for (author, via) in [
            ("alice@example.com", Via::Web),
            ("bob@x.example", Via::Web),
            ("carol@y.example", Via::Web),
            ("", Via::System),
            ("alice@example.com", Via::Mail),
        ] {
            let mut m = msg("old", author, "text", None);
            m.via = via;
            s.add_message(&m).await.expect("add");
        }
        let summary = |rooms: Vec<chmail::store::RoomSummary>| -> Vec<(String, i64)> {
            rooms.into_iter().map(|r| (r.room_id, r.unread)).collect()
        };
        // Bob is To and Cc of both of alice's rooms and To of carol's: listed once each, newest
        // first. Writing marked what came before as read; his own message and chatd's note do
        // not count: carol's and alice's later one do.
        let bob = s
            .rooms_of_recipient("Bob@X.example", 10)
            .await
            .expect("rooms");
        assert_eq!(
            summary(bob),
            vec![
                ("carols".to_owned(), 0),
                ("new".to_owned(), 0),
                ("old".to_owned(), 2),
            ]
        );
        let carol = s
            .rooms_of_recipient("carol@y.example", 10)
            .await
            .expect("rooms");
        assert_eq!(
            summary(carol),
            vec![("new".to_owned(), 0), ("old".to_owned(), 1)]
        );
        let newest = s.messages("old", None, 10).await.expect("messages");
        let last = newest.last().expect("a message").id;
        s.mark_read("old", "bob@x.example", last)
            .await
            .expect("read");
        let bob = s
            .rooms_of_recipient("bob@x.example", 2)
            .await
            .expect("rooms");
        assert_eq!(
            summary(bob),
            vec![("carols".to_owned(), 0), ("new".to_owned(), 0)]
        );
        assert_eq!(
            s.rooms_of_recipient("bob@x.example", 10)
                .await
                .expect("rooms")[2]
                .unread,
            0
        );
        assert!(s
            .rooms_of_recipient("nobody@x.example", 10)
            .await
            .expect("rooms")
            .is_empty());
        assert!(s
            .rooms_of_recipient("not an address", 10)
            .await
            .expect("rooms")
            .is_empty());
    }

    pub async fn rooms_of_login_list_newest_first_with_the_senders_unread_count(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "old", "alice", 100).await;
        chat_room(&s, "new", "alice", 200).await;
        chat_room(&s, "bobs", "bob", 300).await;
        let add = |room: &'static str, author: &'static str, at: i64, via: Via| {
            let s = Arc::clone(&s);
            async move {
                s.add_message(&NewMessage {
                    created_ms: at,
                    via,
                    ..msg(room, author, "text", None)
                })
                .await
                .expect("add")
                .message
            }
        };
        add("old", "alice@example.com", 10, Via::Web).await; // the sender's own
        let b1 = add("old", "bob@x.example", 20, Via::Web).await;
        add("old", "alice", 25, Via::Web).await; // the sender, as the login
        add("old", "bob@x.example", 30, Via::Mail).await;
        add("old", "carol@y.example", 40, Via::Web).await;
        add("old", "", 50, Via::System).await;
        add("bobs", "carol@y.example", 60, Via::Web).await;

        let rooms = s.rooms_of_login("alice", 10).await.expect("rooms");
        let summary: Vec<_> = rooms
            .iter()
            .map(|r| (r.room_id.as_str(), r.unread, r.last_message_ms))
            .collect();
        assert_eq!(summary, vec![("new", 0, None), ("old", 4, Some(50))]);
        assert_eq!(
            (rooms[1].port, rooms[1].subject.as_deref(), rooms[1].created),
            (20_000, Some("about old"), 100)
        );

        // Read up to bob's first message: what came after it stays unread.
        s.mark_read("old", "alice@example.com", b1.id)
            .await
            .expect("mark_read");
        let rooms = s.rooms_of_login("alice", 10).await.expect("rooms");
        assert_eq!(rooms[1].unread, 3);
        // A recipient's reading does not change the sender's count.
        s.mark_read("old", "bob@x.example", i64::MAX)
            .await
            .expect("mark_read");
        assert_eq!(
            s.rooms_of_login("alice", 10).await.expect("rooms")[1].unread,
            3
        );

        let first = s.rooms_of_login("alice", 1).await.expect("rooms");
        assert_eq!(
            first.iter().map(|r| r.room_id.as_str()).collect::<Vec<_>>(),
            ["new"]
        );
        assert_eq!(s.rooms_of_login("nobody", 10).await.expect("rooms"), vec![]);
    }

    pub async fn ring_answers_are_compare_and_set(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        assert_eq!(s.active_ring("r").await.expect("active"), None);
        let ring = s
            .start_ring("r", "Bob@X.example", 1_000)
            .await
            .expect("start");
        assert_eq!(
            (
                ring.room_id.as_str(),
                ring.caller.as_str(),
                ring.state,
                ring.attempts
            ),
            ("r", "bob@x.example", RingState::Ringing, 0)
        );
        assert_eq!((ring.started_ms, ring.updated_ms), (1_000, 1_000));
        // A second press while it rings joins the same ring.
        let same = s
            .start_ring("r", "carol@y.example", 1_500)
            .await
            .expect("start");
        assert_eq!(same, ring);
        assert_eq!(
            s.active_ring("r").await.expect("active"),
            Some(ring.clone())
        );

        let rung = s
            .update_ring(ring.id, RingState::Ringing, 2, 2_000)
            .await
            .expect("update")
            .expect("still ringing");
        assert_eq!(
            (rung.state, rung.attempts, rung.updated_ms),
            (RingState::Ringing, 2, 2_000)
        );
        let accepted = s
            .update_ring(ring.id, RingState::Accepted, 2, 2_500)
            .await
            .expect("update")
            .expect("the first answer wins");
        assert_eq!(
            (accepted.state, accepted.updated_ms),
            (RingState::Accepted, 2_500)
        );
        assert_eq!(
            s.update_ring(ring.id, RingState::Declined, 3, 3_000)
                .await
                .expect("update"),
            None
        );
        assert_eq!(
            s.update_ring(ring.id, RingState::Accepted, 3, 3_000)
                .await
                .expect("update"),
            None
        );
        assert_eq!(
            s.update_ring(9_999_999, RingState::Declined, 0, 1)
                .await
                .expect("update"),
            None
        );
        assert_eq!(s.active_ring("r").await.expect("active"), None);

        // Once over, a new press starts a new ring.
        let next = s
            .start_ring("r", "carol@y.example", 4_000)
            .await
            .expect("start");
        assert_ne!(next.id, ring.id);
        assert_eq!(
            (next.state, next.caller.as_str()),
            (RingState::Ringing, "carol@y.example")
        );
        let timed_out = s
            .update_ring(next.id, RingState::TimedOut, 5, 5_000)
            .await
            .expect("update")
            .expect("ringing");
        assert_eq!(
            (timed_out.state, timed_out.attempts),
            (RingState::TimedOut, 5)
        );

        assert!(matches!(
            s.start_ring("no-such-room", "bob@x.example", 1).await,
            Err(StoreError::Invalid(_))
        ));
    }

    pub async fn concurrent_start_ring_converges_on_one_ringing_ring(h: &Harness) {
        let stores = [h.fresh().await, h.open().await];
        chat_room(&stores[0], "r", "alice", 1).await;
        let mut tasks = Vec::new();
        for i in 0..12 {
            let store = Arc::clone(&stores[i % 2]);
            tasks.push(tokio::spawn(async move {
                store
                    .start_ring("r", "bob@x.example", 1_000 + i as i64)
                    .await
            }));
        }
        let mut ids = HashSet::new();
        for task in tasks {
            ids.insert(task.await.expect("task").expect("start").id);
        }
        assert_eq!(ids.len(), 1, "{ids:?}");
        let active = stores[1]
            .active_ring("r")
            .await
            .expect("active")
            .expect("ringing");
        assert!(ids.contains(&active.id));
    }

    pub async fn orphaned_rings_are_old_ringing_rings_ended_once(h: &Harness) {
        let stores = [h.fresh().await, h.open().await];
        let s = &stores[0];
        chat_room(s, "old", "alice", 1).await;
        chat_room(s, "new", "alice", 1).await;
        chat_room(s, "over", "alice", 1).await;
        let old = s
            .start_ring("old", "bob@x.example", 1_000)
            .await
            .expect("start");
        s.start_ring("new", "bob@x.example", 9_000)
            .await
            .expect("start");
        let over = s
            .start_ring("over", "bob@x.example", 500)
            .await
            .expect("start");
        s.update_ring(over.id, RingState::Accepted, 1, 600)
            .await
            .expect("update")
            .expect("ringing");

        // Only rings still ringing that started at or before the bound, oldest first.
        assert_eq!(s.orphaned_rings(999, 10).await.expect("list"), vec![]);
        assert_eq!(
            s.orphaned_rings(1_000, 10).await.expect("list"),
            vec![old.clone()]
        );
        let both = s.orphaned_rings(10_000, 10).await.expect("list");
        assert_eq!(
            both.iter().map(|r| r.room_id.as_str()).collect::<Vec<_>>(),
            ["old", "new"]
        );
        assert_eq!(s.orphaned_rings(10_000, 1).await.expect("list").len(), 1);

        // Two stores ending the same orphan: one wins the compare-and-set.
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = Arc::clone(&stores[i % 2]);
            let id = old.id;
            tasks.push(tokio::spawn(async move {
                store.update_ring(id, RingState::TimedOut, 0, 20_000).await
            }));
        }
        let mut won = 0;
        for task in tasks {
            won += usize::from(task.await.expect("task").expect("update").is_some());
        }
        assert_eq!(won, 1);
        assert_eq!(
            stores[1]
                .orphaned_rings(10_000, 10)
                .await
                .expect("list")
                .iter()
                .map(|r| r.room_id.as_str())
                .collect::<Vec<_>>(),
            ["new"]
        );
    }

    pub async fn reminder_schedule_keeps_the_earlier_due_and_its_caller(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        assert_eq!(s.reminder("r").await.expect("reminder"), None);
        s.schedule_reminder("r", "Bob@X.example", 500)
            .await
            .expect("schedule");
        s.schedule_reminder("r", "carol@y.example", 300)
            .await
            .expect("earlier");
        s.schedule_reminder("r", "dave@z.example", 900)
            .await
            .expect("later");
        let r = s.reminder("r").await.expect("reminder").expect("scheduled");
        assert_eq!(
            (
                r.due_ms,
                r.caller.as_deref(),
                r.sent_count,
                r.last_sent_ms,
                r.last_message_id
            ),
            (Some(300), Some("bob@x.example"), 0, None, None)
        );

        assert_eq!(
            s.claim_reminders("n1", 299, 60, 10).await.expect("claim"),
            vec![]
        );
        let jobs = s.claim_reminders("n1", 300, 60, 10).await.expect("claim");
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            (jobs[0].owner.as_str(), jobs[0].lease_until_ms),
            ("n1", 360)
        );
        assert_eq!(jobs[0].reminder, r);
        assert_eq!(
            s.claim_reminders("n2", 310, 60, 10).await.expect("claim"),
            vec![]
        );

        // Only the owner finishes it.
        assert!(!s
            .finish_reminder("r", "n2", 320, Some(7))
            .await
            .expect("finish"));
        assert_eq!(s.reminder("r").await.expect("reminder"), Some(r.clone()));
        assert!(s
            .finish_reminder("r", "n1", 330, Some(7))
            .await
            .expect("finish"));
        let sent = s.reminder("r").await.expect("reminder").expect("kept");
        assert_eq!(
            (
                sent.due_ms,
                sent.sent_count,
                sent.last_sent_ms,
                sent.last_message_id
            ),
            (None, 1, Some(330), Some(7))
        );
        assert!(!s
            .finish_reminder("r", "n1", 340, Some(8))
            .await
            .expect("finish twice"));
        assert_eq!(
            s.claim_reminders("n1", 10_000, 60, 10)
                .await
                .expect("claim"),
            vec![]
        );

        // With nothing pending, the next request sets both due time and caller.
        s.schedule_reminder("r", "dave@z.example", 2_000)
            .await
            .expect("schedule");
        let next = s.reminder("r").await.expect("reminder").expect("kept");
        assert_eq!(
            (next.due_ms, next.caller.as_deref()),
            (Some(2_000), Some("dave@z.example"))
        );
        let jobs = s.claim_reminders("n2", 2_000, 60, 10).await.expect("claim");
        assert_eq!(jobs.len(), 1);
        // No message id given: the last one stays.
        assert!(s
            .finish_reminder("r", "n2", 2_010, None)
            .await
            .expect("finish"));
        let sent = s.reminder("r").await.expect("reminder").expect("kept");
        assert_eq!((sent.sent_count, sent.last_message_id), (2, Some(7)));

        assert!(matches!(
            s.schedule_reminder("no-such-room", "bob@x.example", 1)
                .await,
            Err(StoreError::Invalid(_))
        ));
    }

    pub async fn an_expired_lease_makes_a_reminder_claimable_again(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        s.schedule_reminder("r", "bob@x.example", 100)
            .await
            .expect("schedule");
        let jobs = s.claim_reminders("n1", 100, 50, 10).await.expect("claim");
        assert_eq!(
            jobs.iter().map(|j| j.lease_until_ms).collect::<Vec<_>>(),
            [150]
        );
        assert_eq!(
            s.claim_reminders("n2", 150, 50, 10).await.expect("claim"),
            vec![]
        );
        let jobs = s.claim_reminders("n2", 151, 50, 10).await.expect("claim");
        assert_eq!(
            jobs.iter().map(|j| j.owner.as_str()).collect::<Vec<_>>(),
            ["n2"]
        );
        // n1 woke up too late: its claim is gone.
        assert!(!s
            .finish_reminder("r", "n1", 160, Some(1))
            .await
            .expect("finish"));
        assert!(s
            .finish_reminder("r", "n2", 170, Some(1))
            .await
            .expect("finish"));
        assert_eq!(
            s.reminder("r")
                .await
                .expect("reminder")
                .map(|r| r.sent_count),
            Some(1)
        );
    }

    pub async fn concurrent_claims_take_each_due_reminder_exactly_once(h: &Harness) {
        let stores = [h.fresh().await, h.open().await];
        for i in 0..21 {
            let room = format!("r{i:02}");
            chat_room(&stores[0], &room, "alice", 1).await;
            // r20 is not due yet.
            let due = if i == 20 { 1_000_000 } else { 100 + i };
            stores[0]
                .schedule_reminder(&room, "bob@x.example", due)
                .await
                .expect("schedule");
        }
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = Arc::clone(&stores[t % 2]);
            tasks.push(tokio::spawn(async move {
                let owner = format!("node{t}");
                let mut claimed = Vec::new();
                loop {
                    let jobs = store
                        .claim_reminders(&owner, 500, 60_000, 3)
                        .await
                        .expect("claim");
                    if jobs.is_empty() {
                        return claimed;
                    }
                    for job in jobs {
                        assert_eq!(job.owner, owner);
                        claimed.push(job.reminder.room_id);
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("task"));
        }
        all.sort();
        let expected: Vec<String> = (0..20).map(|i| format!("r{i:02}")).collect();
        assert_eq!(all, expected, "each due reminder claimed exactly once");
    }

    fn token(login: &str, created_ms: i64, expires_ms: i64) -> SigninToken {
        SigninToken {
            login: login.into(),
            room_id: Some("r".into()),
            created_ms,
            expires_ms,
        }
    }

    pub async fn signin_tokens_are_single_use_expire_and_still_count(h: &Harness) {
        let s = h.fresh().await;
        let t1 = token("alice", 1_000, 2_000);
        s.create_signin_token("h1", &t1).await.expect("create");
        s.create_signin_token("h2", &token("alice", 1_100, 2_000))
            .await
            .expect("create");
        s.create_signin_token("h3", &token("bob", 1_100, 2_000))
            .await
            .expect("create");
        assert_eq!(s.count_signin_tokens("alice", 0).await.expect("count"), 2);
        assert_eq!(
            s.count_signin_tokens("alice", 1_001).await.expect("count"),
            1
        );

        assert_eq!(
            s.consume_signin_token("h1", 1_500).await.expect("consume"),
            Some(t1)
        );
        assert_eq!(
            s.consume_signin_token("h1", 1_500).await.expect("consume"),
            None
        );
        // Expired at its expiry time.
        assert_eq!(
            s.consume_signin_token("h2", 2_000).await.expect("consume"),
            None
        );
        assert_eq!(
            s.consume_signin_token("nope", 1_500)
                .await
                .expect("consume"),
            None
        );
        assert_eq!(
            s.consume_signin_token("", 1_500).await.expect("consume"),
            None
        );
        // Used and expired tokens still count for the rate limit.
        assert_eq!(s.count_signin_tokens("alice", 0).await.expect("count"), 2);

        // A day after they expired, a new token prunes them.
        let later = 2_000 + SIGNIN_TOKEN_KEEP_MS + 1;
        s.create_signin_token("h4", &token("alice", later, later + 1_000))
            .await
            .expect("create");
        assert_eq!(s.count_signin_tokens("alice", 0).await.expect("count"), 1);
        assert_eq!(s.count_signin_tokens("bob", 0).await.expect("count"), 0);

        let invalid = |r: Result<(), StoreError>, what: &str| {
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{what}: {r:?}");
        };
        invalid(
            s.create_signin_token("", &token("alice", 1, 2)).await,
            "empty hash",
        );
        invalid(
            s.create_signin_token(&"h".repeat(129), &token("alice", 1, 2))
                .await,
            "long hash",
        );
        invalid(
            s.create_signin_token("h5", &token("", 1, 2)).await,
            "empty login",
        );
    }

    pub async fn concurrent_consumes_use_a_token_once(h: &Harness) {
        let stores = [h.fresh().await, h.open().await];
        stores[0]
            .create_signin_token("once", &token("alice", 1_000, 60_000))
            .await
            .expect("create");
        let mut tasks = Vec::new();
        for i in 0..12 {
            let store = Arc::clone(&stores[i % 2]);
            tasks.push(tokio::spawn(async move {
                store.consume_signin_token("once", 2_000).await
            }));
        }
        let mut used = 0;
        for task in tasks {
            used += usize::from(task.await.expect("task").expect("consume").is_some());
        }
        assert_eq!(used, 1);
    }

    pub async fn sessions_expire_and_end(h: &Harness) {
        let s = h.fresh().await;
        let session = Session {
            login: "alice".into(),
            created_ms: 100,
            expires_ms: 200,
        };
        s.create_session("s1", &session).await.expect("create");
        assert_eq!(
            s.session("s1", 199).await.expect("session"),
            Some(session.clone())
        );
        assert_eq!(s.session("s1", 200).await.expect("session"), None);
        assert_eq!(s.session("nope", 150).await.expect("session"), None);

        let s2 = Session {
            login: "bob".into(),
            created_ms: 150,
            expires_ms: 10_000,
        };
        s.create_session("s2", &s2).await.expect("create");
        assert_eq!(
            s.session("s2", 150).await.expect("session"),
            Some(s2.clone())
        );
        s.delete_session("s2").await.expect("delete");
        assert_eq!(s.session("s2", 150).await.expect("session"), None);
        s.delete_session("s2")
            .await
            .expect("deleting twice is harmless");

        // Creating a session prunes the expired ones.
        s.create_session(
            "s3",
            &Session {
                created_ms: 300,
                ..s2
            },
        )
        .await
        .expect("create");
        assert_eq!(s.session("s1", 150).await.expect("session"), None);
        assert!(s.session("s3", 300).await.expect("session").is_some());
        assert!(matches!(
            s.create_session("", &session).await,
            Err(StoreError::Invalid(_))
        ));
    }

    pub async fn presence_is_online_until_every_nodes_row_expires_or_clears(h: &Harness) {
        let s = h.fresh().await;
        // Another process sees what one writes.
        let other = h.open().await;
        assert!(!s.online("alice", 1_000).await.expect("online"));

        s.set_presence("alice", "n1", 1, 2_000).await.expect("set");
        assert!(other.online("alice", 1_000).await.expect("online"));
        assert!(s
            .online(" Alice ", 1_999)
            .await
            .expect("logins compare lowercased-trimmed"));
        // Expired at its until_ms.
        assert!(!s.online("alice", 2_000).await.expect("online"));
        assert!(!s.online("bob", 1_000).await.expect("online"));

        // Two nodes: one clears, the other keeps the login online.
        s.set_presence(" ALICE", "n1", 2, 5_000).await.expect("set");
        other
            .set_presence("alice", "n2", 1, 5_000)
            .await
            .expect("set");
        s.clear_presence("Alice", "n1").await.expect("clear");
        assert!(s.online("alice", 3_000).await.expect("online"));
        other.clear_presence("alice", "n2").await.expect("clear");
        assert!(!s.online("alice", 3_000).await.expect("online"));
        s.clear_presence("alice", "n2")
            .await
            .expect("clearing twice is harmless");

        // The upsert replaces until_ms, later or earlier; the grace period (0 connections) counts.
        s.set_presence("alice", "n1", 1, 4_000).await.expect("set");
        s.set_presence("alice", "n1", 1, 9_000).await.expect("set");
        assert!(s.online("alice", 8_000).await.expect("online"));
        s.set_presence("alice", "n1", 0, 6_000).await.expect("set");
        assert!(s
            .online("alice", 5_999)
            .await
            .expect("online in the grace period"));
        assert!(!s
            .online("alice", 8_000)
            .await
            .expect("the shorter until_ms replaced the longer"));

        let invalid = |r: Result<(), StoreError>, what: &str| {
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{what}: {r:?}");
        };
        invalid(s.set_presence(" ", "n1", 1, 9_000).await, "empty login");
        invalid(s.set_presence("alice", "", 1, 9_000).await, "empty node");
        invalid(
            s.set_presence(&"a".repeat(321), "n1", 1, 9_000).await,
            "long login",
        );
        invalid(
            s.set_presence("alice", &"n".repeat(129), 1, 9_000).await,
            "long node",
        );
        invalid(
            s.set_presence("alice", "n1", u32::MAX, 9_000).await,
            "too many connections",
        );
        assert!(!s
            .online("", 0)
            .await
            .expect("an empty login is never online"));
        s.clear_presence("", "n1").await.expect("clearing nothing");
    }

    pub async fn online_logins_returns_the_online_subset_as_given(h: &Harness) {
        let s = h.fresh().await;
        s.set_presence("alice", "n1", 1, 2_000).await.expect("set");
        s.set_presence("bob", "n1", 1, 1_000).await.expect("set");
        s.set_presence("carol", "n2", 0, 3_000).await.expect("set");
        s.set_presence("carol", "n1", 1, 500).await.expect("set");
        let ask: Vec<String> = ["Carol", "bob", "dave", " ", "alice", "ALICE "]
            .map(String::from)
            .into();
        assert_eq!(
            s.online_logins(&ask, 1_500).await.expect("online_logins"),
            ["Carol", "alice", "ALICE "]
        );
        assert_eq!(
            s.online_logins(&ask, 2_500).await.expect("online_logins"),
            ["Carol"]
        );
        assert!(s
            .online_logins(&ask, 3_000)
            .await
            .expect("online_logins")
            .is_empty());
        assert!(s
            .online_logins(&[], 0)
            .await
            .expect("online_logins")
            .is_empty());

        let full: Vec<String> = (0..MAX_PRESENCE_BATCH)
            .map(|i| format!("user{i}"))
            .chain(["alice".to_owned()])
            .skip(1)
            .collect();
        assert_eq!(
            s.online_logins(&full, 1_500).await.expect("a full batch"),
            ["alice"]
        );
        let too_many = vec![String::from("alice"); MAX_PRESENCE_BATCH + 1];
        assert!(matches!(
            s.online_logins(&too_many, 1_500).await,
            Err(StoreError::Invalid(_))
        ));
    }

    pub async fn prune_presence_removes_only_expired_rows(h: &Harness) {
        let s = h.fresh().await;
        s.set_presence("alice", "n1", 1, 1_000).await.expect("set");
        s.set_presence("alice", "n2", 1, 3_000).await.expect("set");
        s.set_presence("bob", "n1", 0, 2_000).await.expect("set");
        s.set_presence("carol", "n1", 1, 5_000).await.expect("set");
        // bob's row expires at 2_000 exactly: pruned with alice's n1.
        assert_eq!(s.prune_presence(2_000).await.expect("prune"), 2);
        assert_eq!(s.prune_presence(2_000).await.expect("prune again"), 0);
        assert!(s.online("alice", 2_500).await.expect("alice's n2 stays"));
        assert!(s.online("carol", 2_500).await.expect("carol stays"));
        assert!(!s.online("bob", 0).await.expect("bob's row is gone"));
        assert_eq!(s.prune_presence(i64::MAX).await.expect("prune all"), 2);
        assert!(!s.online("carol", 0).await.expect("carol's row is gone"));
    }
    // The mail loop (MailStore).

    fn out(message_id: &str, to: &str, room: Option<&str>, created_ms: i64) -> NewOutgoing {
        NewOutgoing {
            message_id: message_id.into(),
            kind: kind::NOTIFICATION.into(),
            to: to.into(),
            subject: "New messages about the offer".into(),
            text: "bob: hello\n".into(),
            html: Some("<p>bob: hello</p>".into()),
            headers: vec![
                ("Reply-To".into(), "r-token@reply.example".into()),
                (
                    "List-Unsubscribe".into(),
                    "<https://chat.example/u/token>".into(),
                ),
                (
                    "List-Unsubscribe-Post".into(),
                    "List-Unsubscribe=One-Click".into(),
                ),
                ("Auto-Submitted".into(), "auto-generated".into()),
            ],
            room_id: room.map(str::to_owned),
            created_ms,
        }
    }

    /// A well-formed mail token: 26 times `c` (a-z or 2-7).
    fn tok(c: char) -> String {
        c.to_string().repeat(26)
    }

    /// The ids of the mails a claim returned.
    fn ids(mails: &[OutgoingRecord]) -> Vec<i64> {
        mails.iter().map(|m| m.id).collect()
    }

    pub async fn enqueue_mail_is_idempotent_on_the_message_id(h: &Harness) {
        let s = h.fresh().await;
        let mail = out("n.1@chat.example", " Bob@X.example ", Some("r"), 100);
        let (id, fresh) = s.enqueue_mail(&mail).await.expect("enqueue");
        assert!(fresh);
        let again = NewOutgoing {
            subject: "something else".into(),
            created_ms: 999,
            ..mail.clone()
        };
        assert_eq!(
            s.enqueue_mail(&again).await.expect("enqueue again"),
            (id, false)
        );
        // Another process retrying too.
        let other = h.open().await;
        assert_eq!(
            other.enqueue_mail(&mail).await.expect("enqueue elsewhere"),
            (id, false)
        );

        let record = s.outgoing(id).await.expect("outgoing").expect("stored");
        assert_eq!(
            record,
            OutgoingRecord {
                id,
                mail: NewOutgoing {
                    to: "bob@x.example".into(),
                    ..mail.clone()
                },
                state: OutgoingState::Queued,
                attempts: 0,
                next_attempt_ms: 100,
                last_error: None,
                sent_ms: None,
                failed_ms: None,
                lease_owner: None,
                lease_until_ms: None,
            }
        );
        assert_eq!(
            s.outgoing_by_message_id("n.1@chat.example")
                .await
                .expect("by message id"),
            Some(record)
        );
        assert_eq!(
            s.outgoing_by_message_id("N.1@chat.example")
                .await
                .expect("compared exactly"),
            None
        );
        assert_eq!(s.outgoing(id + 1).await.expect("outgoing"), None);

        // A second mail gets a larger id; no headers, no HTML, no room round-trip too.
        let plain = NewOutgoing {
            html: None,
            headers: vec![],
            room_id: None,
            kind: kind::SIGNIN.into(),
            ..out("s.1@chat.example", "alice@example.com", None, 50)
        };
        let (id2, fresh) = s.enqueue_mail(&plain).await.expect("enqueue");
        assert!(fresh && id2 > id);
        assert_eq!(
            s.outgoing(id2).await.expect("outgoing").map(|r| r.mail),
            Some(plain)
        );

        // Bad input is refused before anything is written.
        let invalid = |r: Result<(i64, bool), StoreError>, what: &str| {
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{what}: {r:?}");
        };
        invalid(
            s.enqueue_mail(&out("<x@y>", "bob@x.example", None, 1))
                .await,
            "angle brackets",
        );
        invalid(
            s.enqueue_mail(&out("no-at", "bob@x.example", None, 1))
                .await,
            "no @",
        );
        invalid(
            s.enqueue_mail(&out("x.2@y", " ", None, 1)).await,
            "no recipient",
        );
        invalid(
            s.enqueue_mail(&NewOutgoing {
                headers: vec![("Reply-To".into(), "a@b\r\nBcc: everyone@x".into())],
                ..out("x.3@y", "bob@x.example", None, 1)
            })
            .await,
            "header injection",
        );
        invalid(
            s.enqueue_mail(&NewOutgoing {
                subject: "hi\nBcc: everyone@x".into(),
                ..out("x.4@y", "bob@x.example", None, 1)
            })
            .await,
            "subject injection",
        );
        invalid(
            s.enqueue_mail(&NewOutgoing {
                kind: "Reminder".into(),
                ..out("x.5@y", "bob@x.example", None, 1)
            })
            .await,
            "kind",
        );
        invalid(
            s.enqueue_mail(&NewOutgoing {
                text: "x".repeat(MAX_MAIL_BODY_LEN + 1),
                ..out("x.6@y", "bob@x.example", None, 1)
            })
            .await,
            "body",
        );
        for n in 2..=6 {
            assert_eq!(
                s.outgoing_by_message_id(&format!("x.{n}@y"))
                    .await
                    .expect("lookup"),
                None
            );
        }
        assert_eq!(
            s.claim_mail("n1", 1_000, 60, 100)
                .await
                .expect("claim")
                .len(),
            2
        );
    }

    pub async fn mail_claims_respect_due_times_owners_and_retries(h: &Harness) {
        let s = h.fresh().await;
        let (a, _) = s
            .enqueue_mail(&out("a@chat.example", "bob@x.example", Some("r"), 100))
            .await
            .expect("enqueue");
        let (b, _) = s
            .enqueue_mail(&out("b@chat.example", "carol@y.example", Some("r"), 200))
            .await
            .expect("enqueue");

        assert_eq!(s.claim_mail("n1", 99, 60, 10).await.expect("claim"), vec![]);
        let claimed = s.claim_mail("n1", 150, 60, 10).await.expect("claim");
        assert_eq!(ids(&claimed), [a]);
        assert_eq!(
            (claimed[0].lease_owner.as_deref(), claimed[0].lease_until_ms),
            (Some("n1"), Some(210))
        );
        // Leased: nobody else gets it, not even at the lease's last moment.
        assert_eq!(
            ids(&s.claim_mail("n2", 210, 60, 10).await.expect("claim")),
            [b]
        );
        assert!(s.mail_sent(b, "n2", 215).await.expect("sent"));

        // Only the owner records the attempt.
        assert!(!s.mail_sent(a, "n2", 160).await.expect("sent"));
        assert!(!s
            .mail_failed(a, "n2", 160, "451 later", Some(500))
            .await
            .expect("failed"));
        assert_eq!(
            s.outgoing(a).await.expect("outgoing").map(|r| r.state),
            Some(OutgoingState::Queued)
        );

        // A temporary failure: queued again until the retry time, the lease gone.
        assert!(s
            .mail_failed(a, "n1", 170, "451 4.3.0 try again later", Some(1_000))
            .await
            .expect("failed"));
        let retry = s.outgoing(a).await.expect("outgoing").expect("kept");
        assert_eq!(
            (
                retry.state,
                retry.attempts,
                retry.next_attempt_ms,
                retry.last_error.as_deref(),
                retry.lease_owner.as_deref(),
                retry.failed_ms
            ),
            (
                OutgoingState::Queued,
                1,
                1_000,
                Some("451 4.3.0 try again later"),
                None,
                None
            )
        );
        // The owner's claim is over: a second report changes nothing.
        assert!(!s.mail_sent(a, "n1", 171).await.expect("sent"));
        assert_eq!(
            s.claim_mail("n1", 999, 60, 10).await.expect("claim"),
            vec![]
        );
        let claimed = s.claim_mail("n3", 1_000, 60, 10).await.expect("claim");
        assert_eq!(ids(&claimed), [a]);
        assert_eq!(claimed[0].attempts, 1);

        assert!(s.mail_sent(a, "n3", 1_010).await.expect("sent"));
        let sent = s.outgoing(a).await.expect("outgoing").expect("kept");
        assert_eq!(
            (
                sent.state,
                sent.sent_ms,
                sent.attempts,
                sent.lease_owner,
                sent.lease_until_ms
            ),
            (OutgoingState::Sent, Some(1_010), 1, None, None)
        );
        // Sent is final.
        assert!(!s.mail_sent(a, "n3", 1_020).await.expect("sent twice"));
        assert!(!s
            .mail_failed(a, "n3", 1_020, "550", None)
            .await
            .expect("failed after sent"));
        assert_eq!(
            s.claim_mail("n1", 100_000, 60, 10).await.expect("claim"),
            vec![]
        );

        // An expired lease: another process takes the mail over (same Message-ID); the first
        // owner, waking up late, can no longer record it.
        let (c, _) = s
            .enqueue_mail(&out("c@chat.example", "dave@z.example", Some("r"), 300))
            .await
            .expect("enqueue");
        assert_eq!(
            ids(&s.claim_mail("n1", 300, 50, 10).await.expect("claim")),
            [c]
        );
        assert_eq!(
            s.claim_mail("n2", 350, 50, 10).await.expect("claim"),
            vec![]
        );
        let taken = s.claim_mail("n2", 351, 50, 10).await.expect("claim");
        assert_eq!(ids(&taken), [c]);
        assert_eq!(taken[0].mail.message_id, "c@chat.example");
        assert!(!s.mail_sent(c, "n1", 360).await.expect("sent"));
        assert!(s.mail_sent(c, "n2", 370).await.expect("sent"));

        // A long SMTP error is cut, not refused.
        let (d, _) = s
            .enqueue_mail(&out("d@chat.example", "dave@z.example", None, 400))
            .await
            .expect("enqueue");
        assert_eq!(
            ids(&s.claim_mail("n1", 400, 50, 10).await.expect("claim")),
            [d]
        );
        let long = "4".repeat(MAX_MAIL_ERROR_LEN * 3);
        assert!(s
            .mail_failed(d, "n1", 410, &long, Some(420))
            .await
            .expect("failed"));
        assert_eq!(
            s.outgoing(d)
                .await
                .expect("outgoing")
                .and_then(|r| r.last_error)
                .map(|e| e.len()),
            Some(MAX_MAIL_ERROR_LEN)
        );
        assert!(matches!(
            s.claim_mail("", 1, 1, 1).await,
            Err(StoreError::Invalid(_))
        ));
    }

    pub async fn permanent_failures_are_listed_and_old_mail_is_pruned(h: &Harness) {
        let s = h.fresh().await;
        let mut failed = Vec::new();
        for (i, (room, to)) in [
            (Some("r"), "bob@x.example"),
            (Some("r"), "carol@y.example"),
            (Some("other"), "bob@x.example"),
            (None, "bob@x.example"),
        ]
        .into_iter()
        .enumerate()
        {
            let (id, _) = s
                .enqueue_mail(&out(&format!("f{i}@chat.example"), to, room, 10))
                .await
                .expect("enqueue");
            failed.push(id);
        }
        let (sent, _) = s
            .enqueue_mail(&out("ok@chat.example", "bob@x.example", Some("r"), 10))
            .await
            .expect("enqueue");
        let (queued, _) = s
            .enqueue_mail(&out("q@chat.example", "bob@x.example", Some("r"), 10))
            .await
            .expect("enqueue");
        let (retrying, _) = s
            .enqueue_mail(&out("t@chat.example", "bob@x.example", Some("r"), 10))
            .await
            .expect("enqueue");
        assert_eq!(
            s.claim_mail("n1", 10, 1_000, 100)
                .await
                .expect("claim")
                .len(),
            7
        );
        for (i, id) in failed.iter().enumerate() {
            let at = 100 + i64::try_from(i).expect("small");
            assert!(s
                .mail_failed(*id, "n1", at, "550 5.1.1 no such user", None)
                .await
                .expect("failed"));
        }
        assert!(s.mail_sent(sent, "n1", 100).await.expect("sent"));
        assert!(s
            .mail_failed(retrying, "n1", 100, "421", Some(5_000))
            .await
            .expect("failed"));

        let f0 = s
            .outgoing(failed[0])
            .await
            .expect("outgoing")
            .expect("kept");
        assert_eq!(
            (
                f0.state,
                f0.attempts,
                f0.failed_ms,
                f0.last_error.as_deref(),
                f0.lease_owner
            ),
            (
                OutgoingState::Failed,
                1,
                Some(100),
                Some("550 5.1.1 no such user"),
                None
            )
        );
        // Failed is final: never claimed again.
        assert_eq!(
            ids(&s.claim_mail("n1", 10_000, 60, 100).await.expect("claim")),
            [queued, retrying]
        );
        assert_eq!(
            s.queued_mail_count().await.expect("backlog"),
            2,
            "the backlog counts queued mail, a retry included, and no sent or failed one"
        );

        let in_room = s
            .failed_mail(MailScope::Room("r"), 10)
            .await
            .expect("failed in room");
        assert_eq!(ids(&in_room), [failed[1], failed[0]]);
        let to_bob = s
            .failed_mail(MailScope::Recipient(" BOB@x.example"), 10)
            .await
            .expect("failed to bob");
        assert_eq!(ids(&to_bob), [failed[3], failed[2], failed[0]]);
        assert_eq!(
            ids(&s
                .failed_mail(MailScope::Recipient("bob@x.example"), 1)
                .await
                .expect("limited")),
            [failed[3]]
        );
        assert_eq!(
            s.failed_mail(MailScope::Room("nope"), 10)
                .await
                .expect("none"),
            vec![]
        );

        // Pruning takes finished mail older than the cut-off only.
        assert_eq!(s.prune_mail(102).await.expect("prune"), 3);
        assert_eq!(
            s.outgoing(failed[2]).await.expect("outgoing").map(|r| r.id),
            Some(failed[2])
        );
        assert_eq!(s.prune_mail(i64::MAX).await.expect("prune all"), 2);
        assert!(s.outgoing(queued).await.expect("outgoing").is_some());
        assert!(s.outgoing(retrying).await.expect("outgoing").is_some());
        assert_eq!(s.outgoing(sent).await.expect("outgoing"), None);
        // Its Message-ID is free again.
        assert!(
            s.enqueue_mail(&out("ok@chat.example", "bob@x.example", Some("r"), 10))
                .await
                .expect("enqueue")
                .1
        );
    }

    pub async fn concurrent_mail_claims_take_each_mail_exactly_once(h: &Harness) {
        let stores = [h.fresh().await, h.open().await];
        let mut expected = Vec::new();
        for i in 0..31 {
            // The last one is not due yet.
            let created = if i == 30 { 1_000_000 } else { 100 + i };
            let (id, _) = stores[0]
                .enqueue_mail(&out(
                    &format!("m{i}@chat.example"),
                    "bob@x.example",
                    None,
                    created,
                ))
                .await
                .expect("enqueue");
            if i < 30 {
                expected.push(id);
            }
        }
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = Arc::clone(&stores[t % 2]);
            tasks.push(tokio::spawn(async move {
                let owner = format!("node{t}");
                let mut claimed = Vec::new();
                loop {
                    let mails = store
                        .claim_mail(&owner, 500, 60_000, 3)
                        .await
                        .expect("claim");
                    if mails.is_empty() {
                        return claimed;
                    }
                    for mail in mails {
                        assert_eq!(mail.lease_owner.as_deref(), Some(owner.as_str()));
                        assert!(store.mail_sent(mail.id, &owner, 600).await.expect("sent"));
                        claimed.push(mail.id);
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("task"));
        }
        all.sort_unstable();
        assert_eq!(all, expected, "each due mail claimed exactly once");
    }

    pub async fn reply_tokens_are_one_per_participant_expire_and_are_looked_up(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        chat_room(&s, "r2", "alice", 1).await;
        let first = s
            .reply_token("r", "Bob@X.example", &tok('b'), 1_000, 5_000)
            .await
            .expect("token");
        assert_eq!(
            first,
            ReplyToken {
                token: tok('b'),
                room_id: "r".into(),
                address: "bob@x.example".into(),
                created_ms: 1_000,
                expires_ms: 5_000,
            }
        );
        // Get-or-create: the stored token, its expiry only ever extended.
        let same = s
            .reply_token("r", "bob@x.example", &tok('c'), 2_000, 4_000)
            .await
            .expect("token");
        assert_eq!(same, first);
        let extended = s
            .reply_token("r", "bob@x.example", &tok('c'), 2_000, 9_000)
            .await
            .expect("token");
        assert_eq!(
            (
                extended.token.as_str(),
                extended.created_ms,
                extended.expires_ms
            ),
            (tok('b').as_str(), 1_000, 9_000)
        );
        // Per (room, address).
        let carol = s
            .reply_token("r", "carol@y.example", &tok('d'), 2_000, 9_000)
            .await
            .expect("token");
        let other_room = s
            .reply_token("r2", "bob@x.example", &tok('e'), 2_000, 9_000)
            .await
            .expect("token");
        assert_eq!((carol.token, other_room.token), (tok('d'), tok('e')));

        // Looked up in any case, until it expires.
        let found = s
            .lookup_reply_token(&tok('b').to_uppercase(), 8_999)
            .await
            .expect("lookup");
        assert_eq!(found, Some(extended.clone()));
        assert_eq!(
            s.lookup_reply_token(&tok('b'), 9_000)
                .await
                .expect("lookup"),
            None
        );
        assert_eq!(
            s.lookup_reply_token(&tok('z'), 1_000)
                .await
                .expect("lookup"),
            None
        );
        assert_eq!(
            s.lookup_reply_token("short", 1_000).await.expect("lookup"),
            None
        );
        assert_eq!(s.lookup_reply_token("", 1_000).await.expect("lookup"), None);

        // Once expired, the next request stores the new candidate; the old token is dead.
        let renewed = s
            .reply_token("r", "bob@x.example", &tok('f'), 9_000, 20_000)
            .await
            .expect("token");
        assert_eq!(
            (
                renewed.token.as_str(),
                renewed.created_ms,
                renewed.expires_ms
            ),
            (tok('f').as_str(), 9_000, 20_000)
        );
        assert_eq!(
            s.lookup_reply_token(&tok('b'), 1_000)
                .await
                .expect("lookup"),
            None
        );
        assert_eq!(
            s.lookup_reply_token(&tok('f'), 10_000)
                .await
                .expect("lookup"),
            Some(renewed)
        );

        let invalid = |r: Result<ReplyToken, StoreError>, what: &str| {
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{what}: {r:?}");
        };
        invalid(
            s.reply_token("r", "mallory@evil.example", &tok('g'), 1, 2)
                .await,
            "stranger",
        );
        invalid(
            s.reply_token("nope", "bob@x.example", &tok('g'), 1, 2)
                .await,
            "unknown room",
        );
        invalid(
            s.reply_token("r", "dave@z.example", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", 1, 2)
                .await,
            "upper case",
        );
        invalid(
            s.reply_token("r", "dave@z.example", "abc", 1, 2).await,
            "short",
        );
        invalid(
            s.reply_token("r", "dave@z.example", &tok('g'), 2, 2).await,
            "already expired",
        );
        invalid(
            s.reply_token("r", "dave@z.example", &tok('f'), 10_000, 30_000)
                .await,
            "bob's token",
        );
        assert_eq!(
            s.lookup_reply_token(&tok('g'), 1).await.expect("lookup"),
            None
        );
        assert_eq!(
            s.lookup_reply_token(&tok('f'), 10_000)
                .await
                .expect("lookup")
                .map(|t| t.address),
            Some("bob@x.example".into())
        );
    }

    pub async fn concurrent_reply_token_requests_agree_on_one_token(h: &Harness) {
        let stores = [h.fresh().await, h.open().await];
        chat_room(&stores[0], "r", "alice", 1).await;
        let mut tasks = Vec::new();
        for (i, c) in "abcdefghijkl".chars().enumerate() {
            let store = Arc::clone(&stores[i % 2]);
            tasks.push(tokio::spawn(async move {
                store
                    .reply_token("r", "bob@x.example", &tok(c), 1_000, 5_000)
                    .await
                    .expect("token")
                    .token
            }));
        }
        let mut tokens = HashSet::new();
        for task in tasks {
            tokens.insert(task.await.expect("task"));
        }
        assert_eq!(tokens.len(), 1, "{tokens:?}");
    }

    pub async fn count_messages_counts_one_authors_messages_by_way_and_time(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        chat_room(&s, "r2", "alice", 1).await;
        for (room, author, via, at) in [
            ("r", "bob@x.example", Via::Mail, 100),
            ("r", "Bob@X.example", Via::Mail, 200),
            ("r", "bob@x.example", Via::Mail, 300),
            ("r", "bob@x.example", Via::Web, 300),
            ("r", "carol@y.example", Via::Mail, 300),
            ("r2", "bob@x.example", Via::Mail, 300),
        ] {
            s.add_message(&NewMessage {
                created_ms: at,
                via,
                ..msg(room, author, "hi", None)
            })
            .await
            .expect("add");
        }
        let n = |author: &'static str, via: Via, since: i64| {
            let s = Arc::clone(&s);
            async move {
                s.count_messages("r", author, via, since)
                    .await
                    .expect("count")
            }
        };
        assert_eq!(n(" BOB@x.example", Via::Mail, 0).await, 3);
        assert_eq!(n("bob@x.example", Via::Mail, 200).await, 2);
        assert_eq!(n("bob@x.example", Via::Mail, 301).await, 0);
        assert_eq!(n("bob@x.example", Via::Web, 0).await, 1);
        assert_eq!(n("carol@y.example", Via::Mail, 0).await, 1);
        assert_eq!(n("dave@z.example", Via::Mail, 0).await, 0);
        assert_eq!(
            s.count_messages("nope", "bob@x.example", Via::Mail, 0)
                .await
                .expect("count"),
            0
        );
    }

    pub async fn codes_replace_count_expire_lock_and_verify(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        assert_eq!(
            s.check_code("r", "bob@x.example", "h1", 100, 3)
                .await
                .expect("check"),
            CodeCheck::NoCode
        );
        s.create_code("r", "Bob@X.example", "h1", 100, 1_000)
            .await
            .expect("create");
        assert_eq!(
            s.check_code("r", "bob@x.example", "wrong", 110, 3)
                .await
                .expect("check"),
            CodeCheck::Wrong { attempts_left: 2 }
        );
        // A new code replaces the old one and starts with no wrong guesses.
        s.create_code("r", "bob@x.example", "h2", 200, 1_000)
            .await
            .expect("create");
        assert_eq!(
            s.check_code("r", "bob@x.example", "h1", 210, 3)
                .await
                .expect("the old code is gone"),
            CodeCheck::Wrong { attempts_left: 2 }
        );
        assert_eq!(
            s.check_code("r", "bob@x.example", "wrong", 220, 3)
                .await
                .expect("check"),
            CodeCheck::Wrong { attempts_left: 1 }
        );
        assert_eq!(
            s.check_code("r", "bob@x.example", "wrong", 230, 3)
                .await
                .expect("check"),
            CodeCheck::Wrong { attempts_left: 0 }
        );
        // Locked: even the right code no longer counts.
        assert_eq!(
            s.check_code("r", "bob@x.example", "h2", 240, 3)
                .await
                .expect("check"),
            CodeCheck::Locked
        );
        assert!(!s.is_verified("r", "bob@x.example").await.expect("verified"));

        // Sends are counted in a window.
        assert_eq!(
            s.count_codes("r", "BOB@x.example", 0).await.expect("count"),
            2
        );
        assert_eq!(
            s.count_codes("r", "bob@x.example", 101)
                .await
                .expect("count"),
            1
        );
        assert_eq!(
            s.count_codes("r", "carol@y.example", 0)
                .await
                .expect("count"),
            0
        );

        // Expired.
        s.create_code("r", "bob@x.example", "h3", 300, 400)
            .await
            .expect("create");
        assert_eq!(
            s.check_code("r", "bob@x.example", "h3", 400, 3)
                .await
                .expect("check"),
            CodeCheck::Expired
        );

        // Right: every row of bob in the room is verified (To and Cc), the code is used up.
        s.create_code("r", "bob@x.example", "h4", 500, 1_000)
            .await
            .expect("create");
        assert_eq!(
            s.check_code("r", " Bob@x.example", "h4", 510, 3)
                .await
                .expect("check"),
            CodeCheck::Verified
        );
        assert!(s.is_verified("r", "BOB@x.example").await.expect("verified"));
        assert!(!s
            .is_verified("r", "carol@y.example")
            .await
            .expect("verified"));
        assert!(!s
            .is_verified("nope", "bob@x.example")
            .await
            .expect("verified"));
        let verified: Vec<_> = s
            .members("r")
            .await
            .expect("members")
            .into_iter()
            .map(|m| (m.address, m.role, m.verified))
            .collect();
        assert_eq!(
            verified,
            vec![
                ("alice@example.com".into(), Role::From, false),
                ("bob@x.example".into(), Role::To, true),
                ("dave@z.example".into(), Role::To, false),
                ("carol@y.example".into(), Role::Cc, false),
                ("bob@x.example".into(), Role::Cc, true),
            ]
        );
        assert_eq!(
            s.check_code("r", "bob@x.example", "h4", 520, 3)
                .await
                .expect("check"),
            CodeCheck::NoCode
        );
        assert_eq!(
            s.count_codes("r", "bob@x.example", 0).await.expect("count"),
            4
        );

        // The send log is pruned after a day, so a day later the old sends no longer count.
        s.create_code(
            "r",
            "bob@x.example",
            "h5",
            500 + CODE_SEND_KEEP_MS + 1,
            i64::MAX,
        )
        .await
        .expect("create");
        assert_eq!(
            s.count_codes("r", "bob@x.example", 0).await.expect("count"),
            1
        );

        let invalid = |r: Result<(), StoreError>, what: &str| {
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{what}: {r:?}");
        };
        invalid(
            s.create_code("r", "mallory@evil.example", "h", 1, 2).await,
            "stranger",
        );
        invalid(
            s.create_code("nope", "bob@x.example", "h", 1, 2).await,
            "room",
        );
        invalid(
            s.create_code("r", "carol@y.example", "", 1, 2).await,
            "hash",
        );
        invalid(
            s.create_code("r", "carol@y.example", "h", 2, 2).await,
            "expired",
        );
        assert_eq!(
            s.count_codes("r", "mallory@evil.example", 0)
                .await
                .expect("count"),
            0
        );
        assert_eq!(
            s.count_codes("r", "carol@y.example", 0)
                .await
                .expect("count"),
            0
        );
    }

    pub async fn concurrent_wrong_guesses_never_exceed_max_attempts(h: &Harness) {
        let stores = [h.fresh().await, h.open().await];
        chat_room(&stores[0], "r", "alice", 1).await;
        stores[0]
            .create_code("r", "bob@x.example", "right", 100, 1_000_000)
            .await
            .expect("create");
        let mut tasks = Vec::new();
        for i in 0..24 {
            let store = Arc::clone(&stores[i % 2]);
            tasks.push(tokio::spawn(async move {
                store
                    .check_code("r", "bob@x.example", &format!("wrong{i}"), 200, 5)
                    .await
                    .expect("check")
            }));
        }
        let mut left = Vec::new();
        let mut locked = 0;
        for task in tasks {
            match task.await.expect("task") {
                CodeCheck::Wrong { attempts_left } => left.push(attempts_left),
                CodeCheck::Locked => locked += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        left.sort_unstable();
        assert_eq!(
            left,
            [0, 1, 2, 3, 4],
            "exactly max_attempts guesses compared"
        );
        assert_eq!(locked, 19);
        assert_eq!(
            stores[1]
                .check_code("r", "bob@x.example", "right", 300, 5)
                .await
                .expect("check"),
            CodeCheck::Locked
        );
    }

    pub async fn notifications_keep_the_earlier_due_and_wait_for_a_claim(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        assert_eq!(
            s.notify_state("r", "bob@x.example").await.expect("state"),
            None
        );
        assert!(s
            .schedule_notification("r", "Bob@X.example", 500)
            .await
            .expect("schedule"));
        assert!(s
            .schedule_notification("r", "bob@x.example", 300)
            .await
            .expect("earlier"));
        assert!(s
            .schedule_notification("r", "bob@x.example", 900)
            .await
            .expect("later"));
        let pending = s
            .notify_state("r", "bob@x.example")
            .await
            .expect("state")
            .expect("scheduled");
        assert_eq!(
            pending,
            NotifyState {
                room_id: "r".into(),
                address: "bob@x.example".into(),
                muted: false,
                due_ms: Some(300),
                next_due_ms: None,
                last_sent_ms: None,
                backoff_ms: 0,
                last_message_id: None,
                sent_count: 0,
            }
        );

        assert_eq!(
            s.claim_notifications("n1", 299, 60, 10)
                .await
                .expect("claim"),
            vec![]
        );
        let jobs = s
            .claim_notifications("n1", 300, 60, 10)
            .await
            .expect("claim");
        assert_eq!(
            jobs,
            vec![NotifyJob {
                state: pending.clone(),
                owner: "n1".into(),
                lease_until_ms: 360,
            }]
        );
        assert_eq!(
            s.claim_notifications("n2", 360, 60, 10)
                .await
                .expect("claim"),
            vec![]
        );

        // New messages while it is being sent: asked for after the claim, not lost.
        assert!(s
            .schedule_notification("r", "bob@x.example", 700)
            .await
            .expect("schedule"));
        assert!(s
            .schedule_notification("r", "bob@x.example", 650)
            .await
            .expect("schedule"));
        let during = s
            .notify_state("r", "bob@x.example")
            .await
            .expect("state")
            .expect("kept");
        assert_eq!((during.due_ms, during.next_due_ms), (Some(300), Some(650)));

        // Only the owner finishes it.
        assert!(!s
            .finish_notification("r", "bob@x.example", "n2", 320, Some(7), 120_000)
            .await
            .expect("finish"));
        assert!(s
            .finish_notification("r", "BOB@x.example", "n1", 330, Some(7), 120_000)
            .await
            .expect("finish"));
        let sent = s
            .notify_state("r", "bob@x.example")
            .await
            .expect("state")
            .expect("kept");
        assert_eq!(
            sent,
            NotifyState {
                due_ms: Some(650),
                next_due_ms: None,
                last_sent_ms: Some(330),
                backoff_ms: 120_000,
                last_message_id: Some(7),
                sent_count: 1,
                ..pending.clone()
            }
        );
        assert!(!s
            .finish_notification("r", "bob@x.example", "n1", 340, Some(8), 1)
            .await
            .expect("finish twice"));

        // The next one is claimed, found unnecessary and skipped: nothing recorded as sent.
        let jobs = s
            .claim_notifications("n2", 650, 60, 10)
            .await
            .expect("claim");
        assert_eq!(jobs.len(), 1);
        assert!(!s
            .skip_notification("r", "bob@x.example", "n1")
            .await
            .expect("skip"));
        assert!(s
            .skip_notification("r", "bob@x.example", "n2")
            .await
            .expect("skip"));
        let skipped = s
            .notify_state("r", "bob@x.example")
            .await
            .expect("state")
            .expect("kept");
        assert_eq!(
            skipped,
            NotifyState {
                due_ms: None,
                ..sent
            }
        );
        assert_eq!(
            s.claim_notifications("n1", i64::MAX, 60, 10)
                .await
                .expect("claim"),
            vec![]
        );

        // An expired lease: another process takes over; the first cannot finish any more.
        assert!(s
            .schedule_notification("r", "carol@y.example", 1_000)
            .await
            .expect("schedule"));
        assert_eq!(
            s.claim_notifications("n1", 1_000, 50, 10)
                .await
                .expect("claim")
                .len(),
            1
        );
        assert_eq!(
            s.claim_notifications("n2", 1_050, 50, 10)
                .await
                .expect("claim"),
            vec![]
        );
        let taken = s
            .claim_notifications("n2", 1_051, 50, 10)
            .await
            .expect("claim");
        assert_eq!(
            taken.iter().map(|j| j.owner.as_str()).collect::<Vec<_>>(),
            ["n2"]
        );
        assert!(!s
            .finish_notification("r", "carol@y.example", "n1", 1_060, None, 1)
            .await
            .expect("finish"));
        assert!(s
            .finish_notification("r", "carol@y.example", "n2", 1_070, None, 5)
            .await
            .expect("finish"));
        let carol = s
            .notify_state("r", "carol@y.example")
            .await
            .expect("state")
            .expect("kept");
        assert_eq!(
            (carol.sent_count, carol.last_message_id, carol.backoff_ms),
            (1, None, 5)
        );

        assert!(matches!(
            s.schedule_notification("r", "mallory@evil.example", 1)
                .await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.schedule_notification("nope", "bob@x.example", 1).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.claim_notifications("", 1, 1, 1).await,
            Err(StoreError::Invalid(_))
        ));
    }

    pub async fn muted_participants_get_no_notifications(h: &Harness) {
        let s = h.fresh().await;
        chat_room(&s, "r", "alice", 1).await;
        assert!(s
            .schedule_notification("r", "bob@x.example", 100)
            .await
            .expect("schedule"));
        // Muting drops the pending notification.
        s.set_muted("r", "Bob@X.example", true).await.expect("mute");
        let muted = s
            .notify_state("r", "bob@x.example")
            .await
            .expect("state")
            .expect("kept");
        assert_eq!((muted.muted, muted.due_ms), (true, None));
        assert!(!s
            .schedule_notification("r", "bob@x.example", 200)
            .await
            .expect("no-op"));
        assert_eq!(
            s.notify_state("r", "bob@x.example").await.expect("state"),
            Some(muted)
        );
        assert_eq!(
            s.claim_notifications("n1", 10_000, 60, 10)
                .await
                .expect("claim"),
            vec![]
        );

        // Muting a participant with no schedule yet.
        s.set_muted("r", "carol@y.example", true)
            .await
            .expect("mute");
        assert!(!s
            .schedule_notification("r", "carol@y.example", 200)
            .await
            .expect("no-op"));

        // Unmuting schedules nothing by itself.
        s.set_muted("r", "bob@x.example", false)
            .await
            .expect("unmute");
        let unmuted = s
            .notify_state("r", "bob@x.example")
            .await
            .expect("state")
            .expect("kept");
        assert_eq!((unmuted.muted, unmuted.due_ms), (false, None));
        assert!(s
            .schedule_notification("r", "bob@x.example", 300)
            .await
            .expect("schedule"));
        let jobs = s
            .claim_notifications("n1", 10_000, 60, 10)
            .await
            .expect("claim");
        assert_eq!(
            jobs.iter()
                .map(|j| j.state.address.as_str())
                .collect::<Vec<_>>(),
            ["bob@x.example"]
        );

        // Muted while claimed: the send in flight still finishes, and nothing follows it.
        assert!(s
            .schedule_notification("r", "bob@x.example", 20_000)
            .await
            .expect("schedule"));
        s.set_muted("r", "bob@x.example", true).await.expect("mute");
        assert!(s
            .finish_notification("r", "bob@x.example", "n1", 10_010, Some(3), 1)
            .await
            .expect("finish"));
        let after = s
            .notify_state("r", "bob@x.example")
            .await
            .expect("state")
            .expect("kept");
        assert_eq!(
            (after.muted, after.due_ms, after.next_due_ms),
            (true, None, None)
        );

        assert!(matches!(
            s.set_muted("r", "mallory@evil.example", true).await,
            Err(StoreError::Invalid(_))
        ));
    }

    pub async fn concurrent_notification_claims_take_each_exactly_once(h: &Harness) {
        let stores = [h.fresh().await, h.open().await];
        let mut expected = Vec::new();
        for i in 0..5 {
            let room = format!("r{i}");
            chat_room(&stores[0], &room, "alice", 1).await;
            for address in [
                "alice@example.com",
                "bob@x.example",
                "carol@y.example",
                "dave@z.example",
            ] {
                stores[0]
                    .schedule_notification(&room, address, 100 + i)
                    .await
                    .expect("schedule");
                expected.push((room.clone(), address.to_owned()));
            }
        }
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = Arc::clone(&stores[t % 2]);
            tasks.push(tokio::spawn(async move {
                let owner = format!("node{t}");
                let mut claimed = Vec::new();
                loop {
                    let jobs = store
                        .claim_notifications(&owner, 500, 60_000, 3)
                        .await
                        .expect("claim");
                    if jobs.is_empty() {
                        return claimed;
                    }
                    for job in jobs {
                        assert_eq!(job.owner, owner);
                        claimed.push((job.state.room_id, job.state.address));
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("task"));
        }
        all.sort();
        expected.sort();
        assert_eq!(all, expected, "each due notification claimed exactly once");
    }

    pub async fn unsubscribe_tokens_are_stable_and_lead_back(h: &Harness) {
        let stores = [h.fresh().await, h.open().await];
        let s = &stores[0];
        chat_room(s, "r", "alice", 1).await;
        let token = s
            .unsubscribe_token("r", "Bob@X.example", &tok('u'))
            .await
            .expect("token");
        assert_eq!(token, tok('u'));
        assert_eq!(
            stores[1]
                .unsubscribe_token("r", "bob@x.example", &tok('v'))
                .await
                .expect("token"),
            token,
            "get-or-create"
        );
        assert_eq!(
            s.lookup_unsubscribe(&token.to_uppercase())
                .await
                .expect("lookup"),
            Some(("r".into(), "bob@x.example".into()))
        );
        assert_eq!(s.lookup_unsubscribe(&tok('v')).await.expect("lookup"), None);
        assert_eq!(s.lookup_unsubscribe("x").await.expect("lookup"), None);
        // A token changes nothing about the schedule.
        let state = s
            .notify_state("r", "bob@x.example")
            .await
            .expect("state")
            .expect("row");
        assert_eq!((state.muted, state.due_ms), (false, None));
        // Muting (the one-click unsubscribe) keeps the token working.
        s.set_muted("r", "bob@x.example", true).await.expect("mute");
        assert_eq!(
            s.unsubscribe_token("r", "bob@x.example", &tok('w'))
                .await
                .expect("token"),
            token
        );
        // Concurrent first requests agree.
        let mut tasks = Vec::new();
        for (i, c) in "abcdefgh".chars().enumerate() {
            let store = Arc::clone(&stores[i % 2]);
            tasks.push(tokio::spawn(async move {
                store
                    .unsubscribe_token("r", "carol@y.example", &tok(c))
                    .await
                    .expect("token")
            }));
        }
        let mut tokens = HashSet::new();
        for task in tasks {
            tokens.insert(task.await.expect("task"));
        }
        assert_eq!(tokens.len(), 1, "{tokens:?}");

        let invalid = |r: Result<String, StoreError>, what: &str| {
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{what}: {r:?}");
        };
        invalid(
            s.unsubscribe_token("r", "mallory@evil.example", &tok('x'))
                .await,
            "stranger",
        );
        invalid(
            s.unsubscribe_token("r", "dave@z.example", "abc").await,
            "short",
        );
        invalid(
            s.unsubscribe_token("r", "dave@z.example", &tok('u')).await,
            "bob's token",
        );
        assert_eq!(
            s.notify_state("r", "dave@z.example").await.expect("state"),
            None
        );
    }
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
    rooms_keep_display_names_and_the_opening_cleaned,
    rooms_cut_long_subjects_and_cap_participants,
    record_submission_writes_login_port_and_room_together,
    record_submission_writes_nothing_when_any_part_fails,
    concurrent_submissions_of_port_holders_keep_their_ports,
    a_holders_mail_racing_a_reclaim_of_its_port_never_loses_it,
    concurrent_submissions_fail_or_succeed_each_on_its_own,
    invalid_input_is_rejected_before_writing,
    join_room_admits_only_participants_and_keeps_the_first_join,
    add_message_is_idempotent_per_author_and_client_id,
    add_message_rejects_bad_input_and_unknown_rooms,
    add_message_marks_the_room_read_for_its_author_in_the_same_write,
    pictures_belong_to_their_room_and_messages_show_only_their_rooms,
    messages_page_backwards_and_forwards_oldest_first,
    pages_are_capped,
    rooms_of_login_list_newest_first_with_the_senders_unread_count,
    rooms_of_recipient_list_their_chats_with_their_unread_count,
    ring_answers_are_compare_and_set,
    concurrent_start_ring_converges_on_one_ringing_ring,
    orphaned_rings_are_old_ringing_rings_ended_once,
    reminder_schedule_keeps_the_earlier_due_and_its_caller,
    an_expired_lease_makes_a_reminder_claimable_again,
    concurrent_claims_take_each_due_reminder_exactly_once,
    signin_tokens_are_single_use_expire_and_still_count,
    concurrent_consumes_use_a_token_once,
    sessions_expire_and_end,
    presence_is_online_until_every_nodes_row_expires_or_clears,
    online_logins_returns_the_online_subset_as_given,
    prune_presence_removes_only_expired_rows,
    enqueue_mail_is_idempotent_on_the_message_id,
    mail_claims_respect_due_times_owners_and_retries,
    permanent_failures_are_listed_and_old_mail_is_pruned,
    concurrent_mail_claims_take_each_mail_exactly_once,
    reply_tokens_are_one_per_participant_expire_and_are_looked_up,
    concurrent_reply_token_requests_agree_on_one_token,
    count_messages_counts_one_authors_messages_by_way_and_time,
    codes_replace_count_expire_lock_and_verify,
    concurrent_wrong_guesses_never_exceed_max_attempts,
    notifications_keep_the_earlier_due_and_wait_for_a_claim,
    muted_participants_get_no_notifications,
    concurrent_notification_claims_take_each_exactly_once,
    unsubscribe_tokens_are_stable_and_lead_back,
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
