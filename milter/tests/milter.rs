//! The milter against `indymilter-test` playing the MTA: signing, stripping, verifying, failure
//! policy and hostile input.

mod common;

use chmail::header::{link_value, RoomId};
use chmail::store::Role;
use common::{
    added, deleted, inserted, only_results_added, parse, tempfail, TestMilter, Transaction, FOREIGN,
};
use indymilter_test::Status;

const FROM: &str = "Alice Example <alice@example.com>";

#[tokio::test]
async fn authenticated_mail_gets_both_headers_and_the_tables_are_filled() {
    let m = TestMilter::start().await;
    let tx = Transaction::authenticated(
        "alice",
        &[
            ("From", FROM),
            ("To", "Bob <bob@b.example>, team: carol@c.example;"),
            ("Cc", "dan@d.example"),
            ("Subject", "=?UTF-8?Q?Caf=C3=A9?= plans"),
            ("Message-ID", "<m1@example.com>"),
        ],
    );
    let (actions, status) = tx.run(m.addr).await;
    assert_eq!(status, Status::Continue);
    let headers = added(&actions, "CHmail");
    let links = added(&actions, "CHmail-Link");
    assert_eq!(headers.len(), 1, "{actions:?}");
    assert_eq!(links.len(), 1, "{actions:?}");
    let header = parse(&headers[0]);
    assert!(header
        .verify("alice@example.com", &m.signer.public_key())
        .is_pass());
    assert_eq!(header.login, "alice@example.com");
    assert_eq!(header.host, "chat.example.com");
    assert_eq!(
        links[0],
        link_value("https://chat.example.com", header.port, &header.room)
    );

    let login = m
        .store
        .login("alice@example.com")
        .await
        .expect("store")
        .expect("row");
    assert_eq!(login.ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(login.hostname.as_deref(), Some("client.example.net"));
    let port = m
        .store
        .port_of("alice@example.com")
        .await
        .expect("store")
        .expect("port");
    assert_eq!(port.port, header.port);
    let room = m
        .store
        .room(header.room.as_str())
        .await
        .expect("store")
        .expect("room");
    assert_eq!(room.port, header.port);
    assert_eq!(room.subject.as_deref(), Some("Café plans"));
    assert_eq!(room.message_id.as_deref(), Some("m1@example.com"));
    let people: Vec<(&str, Role)> = room
        .participants
        .iter()
        .map(|p| (p.address.as_str(), p.role))
        .collect();
    assert_eq!(
        people,
        vec![
            ("alice@example.com", Role::From),
            ("bob@b.example", Role::To),
            ("carol@c.example", Role::To),
            ("dan@d.example", Role::Cc),
        ]
    );
    m.stop().await;
}

#[tokio::test]
async fn the_port_is_sticky_and_each_mail_gets_its_own_room() {
    let m = TestMilter::start().await;
    let tx = Transaction::authenticated(
        "alice@example.com",
        &[("From", FROM), ("To", "b@b.example")],
    );
    let first = parse(&added(&tx.run(m.addr).await.0, "CHmail")[0]);
    let second = parse(&added(&tx.run(m.addr).await.0, "CHmail")[0]);
    assert_eq!(first.port, second.port);
    assert_ne!(first.room, second.room);
    let other = Transaction::authenticated("bob", &[("From", "bob@example.com")]);
    let third = parse(&added(&other.run(m.addr).await.0, "CHmail")[0]);
    assert_ne!(third.port, first.port);
    m.stop().await;
}

#[tokio::test]
async fn forged_copies_in_any_case_several_and_folded_are_all_removed_highest_first() {
    let m = TestMilter::start().await;
    let tx = Transaction::authenticated(
        "alice",
        &[
            ("chmail", "v=1; d=example.com; forged"),
            ("From", FROM),
            ("CHMAIL", "v=1;\n\td=example.com; s=x"),
            ("CHmail-link", "<https://evil.example/c/1/x>"),
            ("cHmAiL", "garbage"),
            ("CHmail-Link", "<https://evil.example/c/2/y>"),
        ],
    );
    let (actions, _) = tx.run(m.addr).await;
    assert_eq!(
        deleted(&actions),
        vec![
            ("CHmail".to_owned(), 3),
            ("CHmail".to_owned(), 2),
            ("CHmail".to_owned(), 1),
            ("CHmail-Link".to_owned(), 2),
            ("CHmail-Link".to_owned(), 1),
        ]
    );
    assert_eq!(added(&actions, "CHmail").len(), 1);
    m.stop().await;
}

#[tokio::test]
async fn unauthenticated_mail_never_gets_a_header_and_loses_forged_ones() {
    let m = TestMilter::start().await;
    let tx = Transaction::inbound(&[
        ("From", "mallory@example.com"),
        ("CHmail", "v=1; d=example.com; s=sel1; l=alice@example.com"),
        ("CHmail-Link", "<https://chat.example.com/c/20000/abc>"),
    ]);
    let (actions, status) = tx.run(m.addr).await;
    assert_eq!(status, Status::Continue);
    assert!(added(&actions, "CHmail").is_empty());
    assert!(added(&actions, "CHmail-Link").is_empty());
    assert_eq!(
        deleted(&actions),
        vec![("CHmail".to_owned(), 1), ("CHmail-Link".to_owned(), 1)]
    );
    assert!(m
        .store
        .login("mallory@example.com")
        .await
        .expect("store")
        .is_none());
    m.stop().await;
}

fn foreign_header(m: &TestMilter, from: &str) -> (String, String) {
    let room = RoomId::generate();
    let header = m
        .foreign
        .sign(
            "zed@foreign.example",
            "chat.foreign.example",
            31000,
            &room,
            1_700_000_000,
            from,
        )
        .expect("sign");
    (
        header.to_value(),
        link_value("https://chat.foreign.example", 31000, &room),
    )
}

#[tokio::test]
async fn a_valid_foreign_header_is_kept_with_its_link() {
    let m = TestMilter::start().await;
    let (value, link) = foreign_header(&m, "zed@foreign.example");
    let tx = Transaction::inbound(&[
        ("From", "Zed <zed@foreign.example>"),
        ("CHmail", &value),
        ("CHmail-Link", &link),
    ]);
    let (actions, status) = tx.run(m.addr).await;
    assert_eq!(status, Status::Continue);
    assert!(
        only_results_added(&actions),
        "nothing must change: {actions:?}"
    );
    assert_eq!(
        inserted(&actions, "Authentication-Results"),
        vec![
            "example.com;\n\tchmail=pass header.d=foreign.example header.s=f1 \
             header.l=zed@foreign.example"
                .to_owned()
        ]
    );
    m.stop().await;
}

#[tokio::test]
async fn tampered_misaligned_and_keyless_foreign_headers_are_removed() {
    let m = TestMilter::start().await;
    let (value, _) = foreign_header(&m, "zed@foreign.example");
    let tampered = value.replace("p=31000", "p=31001");
    assert_ne!(tampered, value);
    let (other_from, _) = foreign_header(&m, "someone@else.example");
    let unknown_selector = value.replace("s=f1", "s=f2");
    let tx = Transaction::inbound(&[
        ("From", "zed@foreign.example"),
        ("CHmail", &tampered),
        ("CHmail", &value),
        ("CHmail", &other_from),
        ("CHmail", &unknown_selector),
    ]);
    let (actions, _) = tx.run(m.addr).await;
    assert_eq!(
        deleted(&actions),
        vec![
            ("CHmail".to_owned(), 4),
            ("CHmail".to_owned(), 3),
            ("CHmail".to_owned(), 1),
        ],
        "only the valid second header stays"
    );
    // A header that names a From outside its signing domain is misaligned.
    let tx = Transaction::inbound(&[("From", "someone@else.example"), ("CHmail", &other_from)]);
    assert_eq!(
        deleted(&tx.run(m.addr).await.0),
        vec![("CHmail".to_owned(), 1)]
    );
    m.stop().await;
}

#[tokio::test]
async fn our_own_header_on_incoming_mail_is_kept_only_with_our_valid_signature() {
    let m = TestMilter::start().await;
    let room = RoomId::generate();
    let ours = m
        .signer
        .sign(
            "alice@example.com",
            "chat.example.com",
            20001,
            &room,
            1_700_000_000,
            "alice@example.com",
        )
        .expect("sign")
        .to_value();
    let tx = Transaction::inbound(&[("From", "alice@example.com"), ("CHmail", &ours)]);
    assert!(
        deleted(&tx.run(m.addr).await.0).is_empty(),
        "our own valid header stays"
    );

    // Signed by another key under our domain and selector: forged.
    let impostor = chmail::header::Signer::from_seed(common::DOMAIN, "sel1", [1; 32])
        .sign(
            "alice@example.com",
            "chat.example.com",
            20001,
            &room,
            1_700_000_000,
            "alice@example.com",
        )
        .expect("sign")
        .to_value();
    let tx = Transaction::inbound(&[("From", "alice@example.com"), ("CHmail", &impostor)]);
    assert_eq!(
        deleted(&tx.run(m.addr).await.0),
        vec![("CHmail".to_owned(), 1)]
    );

    // A foreign signature that names our login: forged.
    let claims = m
        .foreign
        .sign(
            "alice@example.com",
            "chat.foreign.example",
            31000,
            &room,
            1_700_000_000,
            "x@foreign.example",
        )
        .expect("sign")
        .to_value();
    let tx = Transaction::inbound(&[("From", "x@foreign.example"), ("CHmail", &claims)]);
    assert_eq!(
        deleted(&tx.run(m.addr).await.0),
        vec![("CHmail".to_owned(), 1)]
    );
    let _ = FOREIGN;
    m.stop().await;
}

const DEAD_STORE: &str = "postgres://postgres@127.0.0.1:1/none";

#[tokio::test]
async fn with_the_store_down_the_mail_goes_on_unsigned() {
    let m = TestMilter::start_with(|c| c.store.url = DEAD_STORE.into()).await;
    let tx = Transaction::authenticated("alice", &[("From", FROM), ("To", "b@b.example")]);
    let (actions, status) = tx.run(m.addr).await;
    assert_eq!(status, Status::Continue);
    assert!(added(&actions, "CHmail").is_empty(), "{actions:?}");
    assert!(m
        .milter
        .metrics()
        .render()
        .contains("chmail_milter_errors_total{kind=\"store\"} 1"));
    m.stop().await;
}

#[tokio::test]
async fn with_the_store_down_and_on_error_tempfail_the_mail_is_temp_failed() {
    let m = TestMilter::start_with(|c| {
        c.store.url = DEAD_STORE.into();
        tempfail(c);
    })
    .await;
    let tx = Transaction::authenticated("alice", &[("From", FROM), ("CHmail", "forged")]);
    let (actions, status) = tx.run(m.addr).await;
    assert!(matches!(status, Status::Tempfail { .. }), "{status:?}");
    assert!(actions.actions.is_empty(), "{actions:?}");
    m.stop().await;
}

#[tokio::test]
async fn missing_or_several_from_fields_leave_the_mail_unsigned_but_cleaned() {
    let m = TestMilter::start().await;
    for headers in [
        vec![("To", "b@b.example"), ("CHmail", "x")],
        vec![
            ("From", "a@example.com"),
            ("From", "c@example.com"),
            ("CHmail", "x"),
        ],
        vec![("From", "a@example.com, c@example.com"), ("CHmail", "x")],
    ] {
        let tx = Transaction::authenticated("alice", &headers);
        let (actions, status) = tx.run(m.addr).await;
        assert_eq!(status, Status::Continue);
        assert!(added(&actions, "CHmail").is_empty(), "{headers:?}");
        assert_eq!(
            deleted(&actions),
            vec![("CHmail".to_owned(), 1)],
            "{headers:?}"
        );
    }
    m.stop().await;
}

#[tokio::test]
async fn eight_bit_garbage_and_huge_headers_never_break_the_milter() {
    let m = TestMilter::start().await;
    let garbage = String::from_utf8_lossy(&[0xff, 0xfe, b'<', 0x80, b'@', b'>']).into_owned();
    let huge = "x".repeat(300_000);
    let tx = Transaction::authenticated(
        "alice",
        &[
            ("From", &garbage),
            ("To", &huge),
            ("CHmail", &garbage),
            ("Subject", &huge),
        ],
    );
    let (actions, status) = tx.run(m.addr).await;
    assert_eq!(status, Status::Continue);
    assert_eq!(deleted(&actions), vec![("CHmail".to_owned(), 1)]);
    // Still serving.
    let tx = Transaction::authenticated("alice", &[("From", FROM)]);
    assert_eq!(added(&tx.run(m.addr).await.0, "CHmail").len(), 1);
    m.stop().await;
}

#[tokio::test]
async fn a_connection_closed_mid_message_does_not_disturb_the_next() {
    let m = TestMilter::start().await;
    {
        let mut conn = indymilter_test::TestConnection::open(m.addr)
            .await
            .expect("open");
        conn.mail(["<a@example.com>"]).await.expect("mail");
        conn.header("From", "a@example.com").await.expect("header");
        // Dropped here without end-of-message or quit.
    }
    let tx = Transaction::authenticated("alice", &[("From", FROM)]);
    assert_eq!(added(&tx.run(m.addr).await.0, "CHmail").len(), 1);
    m.stop().await;
}

#[tokio::test]
async fn a_shutdown_lets_the_mail_under_way_finish_signed_and_refuses_new_connections() {
    use indymilter::MacroStage;
    let mut m = TestMilter::start().await;
    let mut conn = indymilter_test::TestConnection::open(m.addr)
        .await
        .expect("open");
    conn.macros(
        MacroStage::Connect,
        [
            ("{client_addr}", "192.0.2.7"),
            ("{client_name}", "client.example.net"),
        ],
    )
    .await
    .expect("macros");
    conn.connect("client.example.net", ([192, 0, 2, 7], 2525))
        .await
        .expect("connect");
    conn.macros(
        MacroStage::Mail,
        [("i", "4XyZ1"), ("{auth_authen}", "alice")],
    )
    .await
    .expect("macros");
    conn.mail(["<alice@example.com>"]).await.expect("mail");
    conn.header("From", FROM).await.expect("header");
    // SIGTERM between the headers and end-of-message, as Postfix saw it.
    m.begin_stop();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(m.addr).await.is_err(),
        "a new MTA connection after the shutdown began must be refused"
    );
    let (actions, _) = conn
        .eom()
        .await
        .expect("the mail under way gets its end-of-message answer");
    assert_eq!(added(&actions, "CHmail").len(), 1, "and is signed");
    let _ = conn.close().await;
    tokio::time::timeout(std::time::Duration::from_secs(5), m.stopped())
        .await
        .expect("the milter stops once the mail is done, well inside the grace");
}

#[tokio::test]
async fn a_shutdown_ends_a_stalled_mail_after_the_grace() {
    let mut m = TestMilter::start_with(|c| c.milter.shutdown_grace_secs = 1).await;
    let mut conn = indymilter_test::TestConnection::open(m.addr)
        .await
        .expect("open");
    conn.mail(["<alice@example.com>"]).await.expect("mail");
    m.begin_stop();
    let started = std::time::Instant::now();
    tokio::time::timeout(std::time::Duration::from_secs(5), m.stopped())
        .await
        .expect("a mail that never ends holds the shutdown only for the grace");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    drop(conn);
}

#[tokio::test]
async fn metrics_count_signed_mails_and_stripped_headers() {
    let m = TestMilter::start().await;
    let tx =
        Transaction::authenticated("alice", &[("From", FROM), ("CHmail", "x"), ("CHmail", "y")]);
    tx.run(m.addr).await;
    let text = m.milter.metrics().render();
    assert!(
        text.contains("chmail_milter_mails_total{action=\"signed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("chmail_milter_headers_added_total 2"),
        "{text}"
    );
    assert!(
        text.contains("chmail_milter_headers_stripped_total 2"),
        "{text}"
    );
    m.stop().await;
}

#[tokio::test]
async fn without_a_name_from_the_mta_the_hostname_comes_from_a_reverse_look_up() {
    let m = TestMilter::start().await;
    let mut tx = Transaction::authenticated("alice", &[("From", FROM)]);
    tx.client_addr = "192.0.2.8";
    tx.client_name = "unknown";
    tx.run(m.addr).await;
    let login = m
        .store
        .login("alice@example.com")
        .await
        .expect("store")
        .expect("row");
    assert_eq!(login.ip.as_deref(), Some("192.0.2.8"));
    assert_eq!(login.hostname.as_deref(), Some("named.example.net"));

    // An address without a name anywhere is recorded without one.
    tx.client_addr = "192.0.2.9";
    tx.client_name = "[192.0.2.9]";
    tx.run(m.addr).await;
    let login = m
        .store
        .login("alice@example.com")
        .await
        .expect("store")
        .expect("row");
    assert_eq!(login.ip.as_deref(), Some("192.0.2.9"));
    assert_eq!(login.hostname, None);
    m.stop().await;
}

#[tokio::test]
async fn past_eight_chmail_headers_the_rest_are_removed_unchecked() {
    let m = TestMilter::start().await;
    let (value, _) = foreign_header(&m, "zed@foreign.example");
    let mut headers = vec![("From", "zed@foreign.example".to_owned())];
    headers.extend((0..10).map(|_| ("CHmail", value.clone())));
    let tx = Transaction {
        headers,
        ..Transaction::inbound(&[])
    };
    let (actions, _) = tx.run(m.addr).await;
    assert_eq!(
        deleted(&actions),
        vec![("CHmail".to_owned(), 10), ("CHmail".to_owned(), 9)],
        "the first eight valid copies stay, the two past the limit go"
    );
    let results = inserted(&actions, "Authentication-Results");
    let parts: Vec<&str> = results[0].split(";\n\t").collect();
    assert_eq!(parts.len(), 1 + 8 + 1, "{results:?}");
    assert!(parts[1..9].iter().all(|p| p.starts_with("chmail=pass ")));
    assert_eq!(
        parts[9],
        "chmail=permerror reason=\"not checked: 2 more CHmail headers (at most 8 are checked)\""
    );
    m.stop().await;
}

#[tokio::test]
async fn mail_from_a_trusted_network_in_our_domain_is_signed_without_auth() {
    let m =
        TestMilter::start_with(|c| c.milter.trusted_networks = vec!["192.0.2.0/24".into()]).await;
    let mut tx = Transaction::inbound(&[("From", FROM), ("To", "b@b.example")]);
    tx.client_addr = "192.0.2.20";
    let header = parse(&added(&tx.run(m.addr).await.0, "CHmail")[0]);
    assert_eq!(header.login, "alice@example.com");

    // The same network with a foreign From, and our From from elsewhere: not signed.
    let mut foreign = Transaction::inbound(&[("From", "zed@foreign.example")]);
    foreign.client_addr = "192.0.2.20";
    assert!(added(&foreign.run(m.addr).await.0, "CHmail").is_empty());
    let outside = Transaction::inbound(&[("From", FROM)]);
    assert!(added(&outside.run(m.addr).await.0, "CHmail").is_empty());
    m.stop().await;
}

#[tokio::test]
async fn a_from_field_with_two_addresses_is_never_signed() {
    let m = TestMilter::start().await;
    for from in [
        "<ceo@bank.example> <alice@example.com>",
        "Alice <alice@example.com> <bob@example.com>",
        "<alice@example.com>bob@example.com",
        "ceo@bank.example <alice@example.com>",
        "team: alice@example.com;",
    ] {
        let tx = Transaction::authenticated("alice", &[("From", from), ("CHmail", "x")]);
        let (actions, status) = tx.run(m.addr).await;
        assert_eq!(status, Status::Continue);
        assert!(
            added(&actions, "CHmail").is_empty(),
            "{from:?}: {actions:?}"
        );
        assert_eq!(
            deleted(&actions),
            vec![("CHmail".to_owned(), 1)],
            "{from:?}"
        );
    }
    m.stop().await;
}

#[tokio::test]
async fn white_space_and_comments_in_the_from_address_are_signed_as_the_one_address() {
    let m = TestMilter::start().await;
    let tx = Transaction::authenticated("alice", &[("From", "Alice <alice @ Example.com> (work)")]);
    let value = added(&tx.run(m.addr).await.0, "CHmail")
        .pop()
        .expect("signed");
    let header = parse(&value);
    assert!(header
        .verify("alice@example.com", &m.signer.public_key())
        .is_pass());
    // The milter's own check keeps it on the same From field.
    let tx = Transaction::inbound(&[
        ("From", "Alice <alice @ Example.com> (work)"),
        ("CHmail", &value),
    ]);
    assert!(deleted(&tx.run(m.addr).await.0).is_empty());
    m.stop().await;
}

#[tokio::test]
async fn a_valid_header_on_a_from_with_a_second_address_is_removed_with_its_link() {
    let m = TestMilter::start().await;
    let (value, link) = foreign_header(&m, "zed@foreign.example");
    for from in [
        "<ceo@bank.example> <zed@foreign.example>",
        "<zed@foreign.example>ceo@bank.example",
    ] {
        let tx =
            Transaction::inbound(&[("From", from), ("CHmail", &value), ("CHmail-Link", &link)]);
        assert_eq!(
            deleted(&tx.run(m.addr).await.0),
            vec![("CHmail".to_owned(), 1), ("CHmail-Link".to_owned(), 1)],
            "{from:?}"
        );
    }
    m.stop().await;
}

#[tokio::test]
async fn a_header_of_an_unknown_version_is_kept_but_vouches_for_no_link() {
    let m = TestMilter::start().await;
    let v2 = "v=2; d=foreign.example; s=f1; future=tag; b=AAAA";
    let tx = Transaction::inbound(&[
        ("From", "zed@foreign.example"),
        ("CHmail", v2),
        (
            "CHmail-Link",
            "<https://chat.foreign.example/c/31000/Xk3Fq9LmZ2pT7vRw4sYb8A>",
        ),
    ]);
    let (actions, status) = tx.run(m.addr).await;
    assert_eq!(status, Status::Continue);
    assert_eq!(deleted(&actions), vec![("CHmail-Link".to_owned(), 1)]);
    assert!(m
        .milter
        .metrics()
        .render()
        .contains("chmail_milter_headers_verified_total{result=\"neutral\"} 1"));

    // Beside a v1 header that passes, its own link stays.
    let (value, link) = foreign_header(&m, "zed@foreign.example");
    let tx = Transaction::inbound(&[
        ("From", "zed@foreign.example"),
        ("CHmail", v2),
        ("CHmail", &value),
        ("CHmail-Link", &link),
    ]);
    assert!(deleted(&tx.run(m.addr).await.0).is_empty());
    m.stop().await;
}

#[tokio::test]
async fn each_checked_mail_gets_authentication_results_and_loses_forged_ones_under_our_id() {
    let m = TestMilter::start_with(|c| c.milter.authserv_id = "mx.example.com".into()).await;
    let tx = Transaction::inbound(&[
        (
            "Authentication-Results",
            "mx.example.com; chmail=pass header.d=foreign.example",
        ),
        ("From", "zed@foreign.example"),
        ("Authentication-Results", "relay.other.example; dkim=pass"),
        (
            "Authentication-Results",
            " (forged)\n\tMX.Example.COM; dkim=pass",
        ),
    ]);
    let (actions, status) = tx.run(m.addr).await;
    assert_eq!(status, Status::Continue);
    assert_eq!(
        deleted(&actions),
        vec![
            ("Authentication-Results".to_owned(), 3),
            ("Authentication-Results".to_owned(), 1),
        ]
    );
    assert_eq!(
        inserted(&actions, "Authentication-Results"),
        vec!["mx.example.com; chmail=none".to_owned()]
    );

    // One result per header: a forged one fails and is named by its domain and login.
    let (value, _) = foreign_header(&m, "zed@foreign.example");
    let forged = value.replace("p=31000", "p=31001");
    let tx = Transaction::inbound(&[
        ("From", "zed@foreign.example"),
        ("CHmail", &value),
        ("CHmail", &forged),
        ("CHmail", "v=1; garbage"),
    ]);
    let (actions, _) = tx.run(m.addr).await;
    let results = inserted(&actions, "Authentication-Results");
    assert_eq!(results.len(), 1, "{actions:?}");
    let lines: Vec<&str> = results[0].split(";\n\t").collect();
    assert_eq!(lines[0], "mx.example.com");
    assert_eq!(
        lines[1],
        "chmail=pass header.d=foreign.example header.s=f1 header.l=zed@foreign.example"
    );
    assert!(
        lines[2].starts_with("chmail=fail reason=\""),
        "{}",
        lines[2]
    );
    assert!(
        lines[2].ends_with(" header.d=foreign.example header.s=f1 header.l=zed@foreign.example")
    );
    assert!(
        lines[3].starts_with("chmail=permerror reason=\"unparseable"),
        "{}",
        lines[3]
    );
    assert_eq!(lines.len(), 4);

    // Signed mail gets no results, but forged ones still go.
    let tx = Transaction::authenticated(
        "alice",
        &[
            ("From", FROM),
            ("Authentication-Results", "mx.example.com; chmail=pass"),
        ],
    );
    let (actions, _) = tx.run(m.addr).await;
    assert_eq!(added(&actions, "CHmail").len(), 1);
    assert!(inserted(&actions, "Authentication-Results").is_empty());
    assert!(deleted(&actions).contains(&("Authentication-Results".to_owned(), 1)));
    m.stop().await;
}

#[tokio::test]
async fn the_authserv_id_defaults_to_the_mta_host_name_else_the_signing_domain() {
    let m = TestMilter::start().await;
    let tx = Transaction::inbound(&[("From", "zed@foreign.example")]);
    let (actions, _) = tx.run(m.addr).await;
    assert_eq!(
        inserted(&actions, "Authentication-Results"),
        vec!["example.com; chmail=none".to_owned()]
    );
    let mail = chmail_milter::Mail {
        mta_host: Some("mx1.example.net".into()),
        ..Default::default()
    };
    assert_eq!(
        m.milter.decide(&mail).await.add,
        vec![(
            chmail_milter::headers::Kind::AuthResults,
            "mx1.example.net; chmail=none".to_owned()
        )]
    );
    m.stop().await;
}

#[tokio::test]
async fn a_signed_mail_keeps_the_start_of_its_text_and_names_for_its_chat() {
    let m = TestMilter::start().await;
    let mut tx = Transaction::authenticated(
        "alice",
        &[
            ("From", FROM),
            ("To", "\"Bob Baker\" <bob@b.example>"),
            ("Subject", "Numbers"),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Transfer-Encoding", "quoted-printable"),
        ],
    );
    tx.body =
        b"Hi Bob,\r\n\r\nhere are the numbers for Q3 =E2=80=94 can we talk?\r\n-- \r\nAlice\r\n"
            .to_vec();
    let played = tx.play(m.addr).await;
    let header = parse(&added(&played.actions, "CHmail")[0]);
    let room = m
        .store
        .room(header.room.as_str())
        .await
        .expect("store")
        .expect("room");
    assert_eq!(
        room.opening.as_deref(),
        Some("Hi Bob,\n\nhere are the numbers for Q3 — can we talk?")
    );
    let names: Vec<(&str, Option<&str>)> = room
        .participants
        .iter()
        .map(|p| (p.address.as_str(), p.name.as_deref()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("alice@example.com", Some("Alice Example")),
            ("bob@b.example", Some("Bob Baker")),
        ]
    );
    // A long body: the milter asks the MTA to skip what it does not need.
    let mut long = tx;
    long.body = vec![b'x'; 64 * 1024];
    let played = long.play(m.addr).await;
    if played.opts.contains(indymilter_test::ProtoOpts::SKIP) {
        assert_eq!(played.body_status, Some(Status::Skip));
    }
    m.stop().await;

    // Turned off: no body asked for, no opening kept.
    let m = TestMilter::start_with(|c| c.milter.opening_chars = 0).await;
    let mut tx = Transaction::authenticated("alice", &[("From", FROM), ("To", "bob@b.example")]);
    tx.body = b"Secret text\r\n".to_vec();
    let played = tx.play(m.addr).await;
    assert!(played.opts.contains(indymilter_test::ProtoOpts::NO_BODY));
    let header = parse(&added(&played.actions, "CHmail")[0]);
    let room = m
        .store
        .room(header.room.as_str())
        .await
        .expect("store")
        .expect("room");
    assert_eq!(room.opening, None);
    m.stop().await;
}
