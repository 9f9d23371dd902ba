//! The milter against OpenDKIM's real `miltertest` (tests/lua/*.lua), on an SQLite store: signing
//! authenticated mail, and the policy for CHmail fields on incoming mail.

use chmail::header::{parse_key_record, ChmailHeader, Verdict};
use chmail_tests::{
    check_incoming, printed_block, require, run_miltertest, tamper_signature, Expect,
    ForeignSigner, Milter, MilterOptions, TestDns, PUBLIC_URL, SIGNING_DOMAIN,
};

/// A milter with a fresh key whose record, and `foreign`'s, the test DNS server publishes.
fn milter_with_dns(foreign: &[&ForeignSigner]) -> (Milter, TestDns, String) {
    let dns = TestDns::start(
        foreign
            .iter()
            .map(|signer| (signer.record_name(), signer.record_value())),
    );
    let (milter, record) = Milter::start_with_dns(&dns, MilterOptions::default());
    (milter, dns, record.value)
}

#[test]
fn authenticated_mail_gets_signed_chmail_and_link_and_forged_copies_deleted() {
    require!("miltertest");
    let (milter, _dns, record) = milter_with_dns(&[]);
    let key = parse_key_record(&record).expect("keygen's record parses");

    let stdout = run_miltertest(
        "authenticated.lua",
        &[("socket", &milter.miltertest_socket()), ("login", "alice")],
    );

    let value = printed_block(&stdout, "CHmail").expect("the script printed the CHmail value");
    let header = ChmailHeader::parse(value.as_bytes())
        .unwrap_or_else(|err| panic!("added CHmail {value:?} does not parse: {err}"));
    assert_eq!(
        header.verify("Alice <alice@example.test>", &key),
        Verdict::Pass
    );
    assert_eq!(header.domain, SIGNING_DOMAIN);
    assert_eq!(
        header.login, "alice@example.test",
        "a login without @ gets the signing domain"
    );
    assert_eq!(header.host, "chat.example.test");
    let link = printed_block(&stdout, "CHmail-Link").expect("the script printed the link");
    assert_eq!(
        link.trim(),
        format!("<{PUBLIC_URL}/c/{}/{}>", header.port, header.room.as_str())
    );

    // The first table: the login's last client address and name, as the MTA's macros gave them.
    let (ip, hostname) = milter.sqlite_login("alice@example.test");
    assert_eq!(ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(hostname.as_deref(), Some("client.example.test"));
    // The second table: her port.
    let db = rusqlite::Connection::open(milter.sqlite_path()).expect("open the SQLite store");
    let port: i64 = db
        .query_row(
            "SELECT port FROM ports WHERE login = 'alice@example.test'",
            [],
            |row| row.get(0),
        )
        .expect("a ports row for alice@example.test");
    assert_eq!(port, i64::from(header.port));
}

#[test]
fn valid_foreign_header_on_unauthenticated_mail_is_kept() {
    require!("miltertest");
    let foreign = ForeignSigner::new("foreign.test", "s1", 7);
    let (milter, _dns, _) = milter_with_dns(&[&foreign]);
    let from = "Frank <frank@foreign.test>";
    check_incoming(
        &milter.miltertest_socket(),
        from,
        &foreign.header("frank@foreign.test", from),
        Expect::Keep,
    );
}

#[test]
fn tampered_foreign_header_on_unauthenticated_mail_is_deleted() {
    require!("miltertest");
    let foreign = ForeignSigner::new("foreign.test", "s1", 7);
    let (milter, _dns, _) = milter_with_dns(&[&foreign]);
    let from = "Frank <frank@foreign.test>";
    let valid = foreign.header("frank@foreign.test", from);
    check_incoming(
        &milter.miltertest_socket(),
        from,
        &tamper_signature(&valid),
        Expect::Delete,
    );
}

#[test]
fn foreign_header_for_another_from_address_is_deleted() {
    require!("miltertest");
    let foreign = ForeignSigner::new("foreign.test", "s1", 7);
    let (milter, _dns, _) = milter_with_dns(&[&foreign]);
    // Signed over Frank's address, replayed on Mallory's mail of the same domain.
    let header = foreign.header("frank@foreign.test", "frank@foreign.test");
    check_incoming(
        &milter.miltertest_socket(),
        "Mallory <mallory@foreign.test>",
        &header,
        Expect::Delete,
    );
}

#[test]
fn foreign_header_whose_domain_is_not_the_from_domain_is_deleted() {
    require!("miltertest");
    let foreign = ForeignSigner::new("foreign.test", "s1", 7);
    let (milter, _dns, _) = milter_with_dns(&[&foreign]);
    // A valid signature of foreign.test, but the From domain is someone else's.
    let from = "Ursula <ursula@unrelated.test>";
    check_incoming(
        &milter.miltertest_socket(),
        from,
        &foreign.header("ursula@unrelated.test", from),
        Expect::Delete,
    );
}

#[test]
fn foreign_header_of_the_from_domains_parent_is_kept() {
    require!("miltertest");
    let foreign = ForeignSigner::new("foreign.test", "s1", 7);
    let (milter, _dns, _) = milter_with_dns(&[&foreign]);
    let from = "Frank <frank@mail.foreign.test>";
    check_incoming(
        &milter.miltertest_socket(),
        from,
        &foreign.header("frank", from),
        Expect::Keep,
    );
}

#[test]
fn header_claiming_our_domain_without_our_signature_is_deleted() {
    require!("miltertest");
    let (milter, _dns, _) = milter_with_dns(&[]);
    // Signed for example.test with a key that is not the milter's (DNS holds the real one).
    let impostor = ForeignSigner::new(SIGNING_DOMAIN, "sel1", 9);
    let from = "Alice <alice@example.test>";
    check_incoming(
        &milter.miltertest_socket(),
        from,
        &impostor.header("alice@example.test", from),
        Expect::Delete,
    );
}

#[test]
fn header_claiming_an_own_domain_is_deleted_even_with_a_valid_signature_of_its_dns() {
    require!("miltertest");
    // partner.test is listed in own_domains, but its key in DNS is not ours.
    let partner = ForeignSigner::new("partner.test", "s1", 11);
    let dns = TestDns::start([(partner.record_name(), partner.record_value())]);
    let (milter, _) = Milter::start_with_dns(
        &dns,
        MilterOptions {
            own_domains: vec!["partner.test".into()],
            ..Default::default()
        },
    );
    let from = "Pat <pat@partner.test>";
    check_incoming(
        &milter.miltertest_socket(),
        from,
        &partner.header("pat@partner.test", from),
        Expect::Delete,
    );
}
