//! The results of incoming CHmail headers with their keys looked up through the milter's real
//! resolver (hickory-resolver) at the harness's test DNS server: names no resolver accepts, names
//! too long for DNS, NXDOMAIN, SERVFAIL and time-outs each get their documented result and action,
//! and no result leaves a usable CHmail-Link behind a header that did not pass.

mod common;

use std::{sync::Arc, time::Duration};

use chmail::header::{link_value, RoomId, Signer};
use chmail_milter::keys::{DnsKeys, KeySource};
use chmail_tests::{DnsFailure, TestDns};
use common::{deleted, only_results_added, TestMilter, Transaction};
use indymilter_test::{EomActions, Status};

/// The resolver's time-out in these tests: short, so the time-out case is quick.
const DNS_TIMEOUT: Duration = Duration::from_millis(400);

/// A milter whose key look-ups go to `dns`.
async fn milter_using(dns: &TestDns) -> TestMilter {
    let addr = dns.addr();
    TestMilter::start_with_keys(move |_| {
        let keys = DnsKeys::new(&addr, DNS_TIMEOUT).expect("resolver on the test DNS server");
        Arc::new(keys) as Arc<dyn KeySource>
    })
    .await
}

/// A header of `signer` for a mail from `from`, and its link.
fn signed(signer: &Signer, from: &str) -> (String, String) {
    let room = RoomId::generate();
    let header = signer
        .sign(
            &format!("zed@{}", signer.domain()),
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

/// A header with these `d=` and `s=` that no signer would write, with a well-formed but garbage
/// signature, and a link to go with it.
fn unsignable(domain: &str, selector: &str) -> (String, String) {
    let garbage = "A".repeat(86) + "==";
    let room = "Xk3Fq9LmZ2pT7vRw4sYb8A";
    (
        format!(
            "v=1; d={domain}; s={selector}; l=ceo@{domain}; h=chat.foreign.example;\n\t\
             p=31000; r={room}; t=1700000000;\n\tb={garbage}"
        ),
        format!("<https://chat.foreign.example/c/31000/{room}>"),
    )
}

/// The value of `line` in the milter's metrics, e.g. `..._total{result="pass"}`.
fn metric(m: &TestMilter, line: &str) -> Option<String> {
    m.milter
        .metrics()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(line).map(|v| v.trim().to_owned()))
}

fn verified(m: &TestMilter, result: &str) -> String {
    metric(
        m,
        &format!("chmail_milter_headers_verified_total{{result=\"{result}\"}}"),
    )
    .unwrap_or_default()
}

#[tokio::test]
async fn a_header_whose_domain_no_resolver_accepts_is_removed_with_its_link_unasked() {
    let dns = TestDns::start::<String, String>([]);
    let m = milter_using(&dns).await;
    let (header, link) = unsignable("-x.bank.example", "s1");
    let tx = Transaction::inbound(&[
        ("From", "ceo@-x.bank.example"),
        ("CHmail", &header),
        ("CHmail-Link", &link),
    ]);
    let before = dns.queries();
    let (actions, status) = tx.run(m.addr).await;
    assert_eq!(status, Status::Continue);
    assert_eq!(
        deleted(&actions),
        vec![("CHmail".to_owned(), 1), ("CHmail-Link".to_owned(), 1)]
    );
    assert_eq!(dns.queries(), before, "a name DNS refuses is not looked up");
    assert_eq!(verified(&m, "permerror"), "1");
    m.stop().await;
}

#[tokio::test]
async fn a_header_whose_key_name_dns_cannot_hold_is_removed_with_its_link() {
    let dns = TestDns::start::<String, String>([]);
    let m = milter_using(&dns).await;
    // 63 + 9 (`._chmail.`) + 183 = 255 characters: two more than a DNS name holds.
    let domain = format!("{0}.{0}.{1}", "b".repeat(63), "b".repeat(55));
    let (header, link) = unsignable(&domain, &"a".repeat(63));
    let from = format!("ceo@{domain}");
    let tx = Transaction::inbound(&[("From", &from), ("CHmail", &header), ("CHmail-Link", &link)]);
    let (actions, status) = tx.run(m.addr).await;
    assert_eq!(status, Status::Continue);
    assert_eq!(
        deleted(&actions),
        vec![("CHmail".to_owned(), 1), ("CHmail-Link".to_owned(), 1)]
    );
    assert_eq!(verified(&m, "permerror"), "1");
    m.stop().await;
}

#[tokio::test]
async fn a_key_in_dns_passes_and_a_name_without_a_record_is_a_permerror() {
    let foreign = Signer::from_seed("foreign.example", "f1", [9; 32]);
    let dns = TestDns::start([(foreign.dns_name(), foreign.dns_record())]);
    let m = milter_using(&dns).await;
    let (header, link) = signed(&foreign, "zed@foreign.example");
    let tx = Transaction::inbound(&[
        ("From", "Zed <zed@foreign.example>"),
        ("CHmail", &header),
        ("CHmail-Link", &link),
    ]);
    let (actions, _) = tx.run(m.addr).await;
    assert!(only_results_added(&actions), "{actions:?}");
    assert_eq!(verified(&m, "pass"), "1");

    let other = Signer::from_seed("other.example", "o1", [5; 32]);
    let (header, link) = signed(&other, "zed@other.example");
    let tx = Transaction::inbound(&[
        ("From", "zed@other.example"),
        ("CHmail", &header),
        ("CHmail-Link", &link),
    ]);
    let (actions, _) = tx.run(m.addr).await;
    assert_eq!(
        deleted(&actions),
        vec![("CHmail".to_owned(), 1), ("CHmail-Link".to_owned(), 1)]
    );
    assert_eq!(verified(&m, "permerror"), "1");
    m.stop().await;
}

/// A mail validly signed by a foreign domain whose key record the test DNS fails with `failure`:
/// the milter's answer to it, and the milter (for its metrics).
async fn foreign_mail_under(failure: DnsFailure) -> (TestMilter, EomActions, Status) {
    let foreign = Signer::from_seed("foreign.example", "f1", [9; 32]);
    let dns = TestDns::start([(foreign.dns_name(), foreign.dns_record())]);
    dns.fail(foreign.dns_name(), failure);
    let m = milter_using(&dns).await;
    let (header, link) = signed(&foreign, "zed@foreign.example");
    let tx = Transaction::inbound(&[
        ("From", "zed@foreign.example"),
        ("CHmail", &header),
        ("CHmail-Link", &link),
    ]);
    let (actions, status) = tx.run(m.addr).await;
    (m, actions, status)
}

#[tokio::test]
async fn on_servfail_a_valid_header_is_kept_without_a_verdict_and_its_link_removed() {
    let (m, actions, status) = foreign_mail_under(DnsFailure::ServFail).await;
    assert_eq!(status, Status::Continue);
    assert_eq!(
        deleted(&actions),
        vec![("CHmail-Link".to_owned(), 1)],
        "the header stays, its link goes"
    );
    assert_eq!(verified(&m, "temperror"), "1");
    assert_eq!(
        metric(&m, "chmail_milter_errors_total{kind=\"dns\"}").as_deref(),
        Some("1")
    );
    m.stop().await;
}

#[tokio::test]
async fn on_a_dns_time_out_the_header_is_kept_and_its_link_removed_and_the_mail_goes_on() {
    let (m, actions, status) = foreign_mail_under(DnsFailure::Silent).await;
    assert_eq!(status, Status::Continue);
    assert_eq!(deleted(&actions), vec![("CHmail-Link".to_owned(), 1)]);
    assert_eq!(verified(&m, "temperror"), "1");
    m.stop().await;
}

#[tokio::test]
async fn under_on_error_tempfail_a_dns_failure_still_lets_the_mail_go_on() {
    let foreign = Signer::from_seed("foreign.example", "f1", [9; 32]);
    let dns = TestDns::start([(foreign.dns_name(), foreign.dns_record())]);
    dns.fail(foreign.dns_name(), DnsFailure::ServFail);
    let addr = dns.addr();
    let m = TestMilter::start_with_parts(
        common::tempfail,
        |_, signer| chmail_milter::SigningTable::single(signer),
        move |_| {
            Arc::new(DnsKeys::new(&addr, DNS_TIMEOUT).expect("resolver")) as Arc<dyn KeySource>
        },
    )
    .await;
    let (header, link) = signed(&foreign, "zed@foreign.example");
    let tx = Transaction::inbound(&[
        ("From", "zed@foreign.example"),
        ("CHmail", &header),
        ("CHmail-Link", &link),
    ]);
    let (actions, status) = tx.run(m.addr).await;
    assert_eq!(status, Status::Continue);
    assert_eq!(deleted(&actions), vec![("CHmail-Link".to_owned(), 1)]);
    m.stop().await;
}
