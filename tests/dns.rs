//! The milter's CHmail key look-ups through its resolver (hickory-resolver), against the test DNS
//! server on 127.0.0.1 (`[milter] resolver`): what it finds there decides a foreign header's fate.

use chmail_tests::{
    check_incoming, require, tamper_signature, Expect, ForeignSigner, Milter, MilterOptions,
    TestDns,
};

/// The From of the incoming mails.
const FROM: &str = "Frank <frank@foreign.test>";

/// A milter whose resolver is `dns`.
fn milter_using(dns: &TestDns) -> Milter {
    let mut milter = Milter::new(&MilterOptions {
        resolver: Some(dns.addr()),
        ..Default::default()
    });
    let record = milter.keygen();
    dns.insert(&record.name, &record.value);
    milter.start();
    milter
}

#[test]
fn key_published_in_dns_verifies_a_foreign_header_which_is_kept() {
    require!("miltertest");
    let foreign = ForeignSigner::new("foreign.test", "s1", 7);
    let dns = TestDns::start([(foreign.record_name(), foreign.record_value())]);
    let milter = milter_using(&dns);
    let before = dns.queries();
    check_incoming(
        &milter.miltertest_socket(),
        FROM,
        &foreign.header("frank@foreign.test", FROM),
        Expect::Keep,
    );
    assert!(
        dns.queries() > before,
        "the milter did not ask the configured resolver"
    );
}

#[test]
fn tampered_header_is_removed_although_its_key_is_in_dns() {
    require!("miltertest");
    let foreign = ForeignSigner::new("foreign.test", "s1", 7);
    let dns = TestDns::start([(foreign.record_name(), foreign.record_value())]);
    let milter = milter_using(&dns);
    let valid = foreign.header("frank@foreign.test", FROM);
    check_incoming(
        &milter.miltertest_socket(),
        FROM,
        &tamper_signature(&valid),
        Expect::Delete,
    );
}

#[test]
fn header_whose_key_has_no_record_is_removed() {
    require!("miltertest");
    let foreign = ForeignSigner::new("foreign.test", "s1", 7);
    // The server knows nothing of foreign.test: NXDOMAIN.
    let dns = TestDns::start::<String, String>([]);
    let milter = milter_using(&dns);
    let before = dns.queries();
    check_incoming(
        &milter.miltertest_socket(),
        FROM,
        &foreign.header("frank@foreign.test", FROM),
        Expect::Delete,
    );
    assert!(dns.queries() > before, "the milter did not look the key up");
}

#[test]
fn header_whose_record_holds_another_key_is_removed() {
    require!("miltertest");
    let foreign = ForeignSigner::new("foreign.test", "s1", 7);
    let rotated = ForeignSigner::new("foreign.test", "s1", 8);
    let dns = TestDns::start([(foreign.record_name(), rotated.record_value())]);
    let milter = milter_using(&dns);
    check_incoming(
        &milter.miltertest_socket(),
        FROM,
        &foreign.header("frank@foreign.test", FROM),
        Expect::Delete,
    );
}

#[test]
fn header_whose_record_is_malformed_is_removed() {
    require!("miltertest");
    let foreign = ForeignSigner::new("foreign.test", "s1", 7);
    let dns = TestDns::start([(foreign.record_name(), "v=CHmail1; k=ed25519; p=not*base64")]);
    let milter = milter_using(&dns);
    check_incoming(
        &milter.miltertest_socket(),
        FROM,
        &foreign.header("frank@foreign.test", FROM),
        Expect::Delete,
    );
}

#[test]
fn header_whose_key_record_is_revoked_is_removed() {
    require!("miltertest");
    let foreign = ForeignSigner::new("foreign.test", "s1", 7);
    // An empty p= revokes the key (as in DKIM).
    let dns = TestDns::start([(foreign.record_name(), "v=CHmail1; k=ed25519; p=")]);
    let milter = milter_using(&dns);
    check_incoming(
        &milter.miltertest_socket(),
        FROM,
        &foreign.header("frank@foreign.test", FROM),
        Expect::Delete,
    );
}

#[test]
fn contrib_zone_example_is_a_valid_key_record() {
    let zone = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/dns/chmail.zone"
    ))
    .expect("contrib/dns/chmail.zone");
    let line = zone
        .lines()
        .find(|line| line.contains("IN  TXT") && !line.starts_with(';'))
        .expect("a TXT record line");
    let record = chmail_tests::KeyRecord::parse(line).expect("a NAME IN TXT \"...\" line");
    assert_eq!(record.name, "chmail._chmail");
    chmail::header::parse_key_record(&record.value)
        .unwrap_or_else(|err| panic!("{:?} is not a usable key record: {err}", record.value));
}
