//! Many domains on one milter: the signing table chooses the key by From domain, a From domain
//! without a key goes unsigned, and during a key rotation the old selector still verifies.

mod common;

use std::path::Path;

use chmail::{
    config::{Config, KeyEntry},
    header::{RoomId, Signer},
};
use chmail_milter::{headers::Headers, Mail, SigningTable};
use common::{added, deleted, parse, TestMilter, Transaction};

/// A `[[signing.keys]]` entry whose key file lives in `dir`.
fn entry(dir: &Path, domain: &str, selector: &str, from: &[&str], sign: bool) -> KeyEntry {
    KeyEntry {
        domain: domain.into(),
        selector: selector.into(),
        key_file: dir.join(format!("{domain}.{selector}.key")),
        from: from.iter().map(|s| (*s).to_owned()).collect(),
        sign,
    }
}

/// The signer of a table entry, read from its key file.
fn signer_of(entry: &KeyEntry) -> Signer {
    Signer::from_key_file(&entry.key_file, &entry.domain, &entry.selector).expect("key file")
}

/// A milter whose signing table is `keys`, with their key files made by `prepare` (as
/// `quickstart` does) and loaded from the config like `serve` does.
async fn start_with_keys(keys: Vec<KeyEntry>) -> TestMilter {
    TestMilter::start_with_table(
        |config| config.signing.keys = keys,
        |config, _| {
            chmail_milter::commands::prepare(config).expect("keys written");
            SigningTable::load(config).expect("table loads")
        },
    )
    .await
}

/// The one CHmail header the milter added to an authenticated mail from `from`.
async fn signed(m: &TestMilter, from: &str) -> Option<chmail::ChmailHeader> {
    let tx = Transaction::authenticated(from, &[("From", from), ("To", "b@b.example")]);
    let headers = added(&tx.run(m.addr).await.0, "CHmail");
    assert!(headers.len() <= 1, "{headers:?}");
    headers.first().map(|h| parse(h))
}

#[tokio::test]
async fn two_domains_are_signed_each_with_its_own_key_chosen_by_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let org = entry(dir.path(), "example.org", "org1", &[], true);
    let net = entry(dir.path(), "example.net", "net1", &[], true);
    let m = start_with_keys(vec![org.clone(), net.clone()]).await;
    let (org_key, net_key) = (signer_of(&org).public_key(), signer_of(&net).public_key());
    assert_ne!(org_key, net_key);

    let a = signed(&m, "alice@example.org").await.expect("signed");
    assert_eq!(
        (a.domain.as_str(), a.selector.as_str()),
        ("example.org", "org1")
    );
    assert!(a.verify("alice@example.org", &org_key).is_pass());
    assert!(!a.verify("alice@example.org", &net_key).is_pass());

    let b = signed(&m, "bob@example.net").await.expect("signed");
    assert_eq!(
        (b.domain.as_str(), b.selector.as_str()),
        ("example.net", "net1")
    );
    assert!(b.verify("bob@example.net", &net_key).is_pass());
    m.stop().await;
}

#[tokio::test]
async fn a_wildcard_signs_subdomains_and_the_most_specific_pattern_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let parent = entry(
        dir.path(),
        "example.org",
        "p1",
        &["example.org", "*.example.org"],
        true,
    );
    let lists = entry(
        dir.path(),
        "lists.example.org",
        "l1",
        &["*.lists.example.org"],
        true,
    );
    let exact = entry(
        dir.path(),
        "example.org",
        "x1",
        &["vip.lists.example.org"],
        true,
    );
    let m = start_with_keys(vec![parent, lists, exact]).await;
    let selector = |h: Option<chmail::ChmailHeader>| {
        let h = h.expect("signed");
        (h.domain, h.selector)
    };
    let pair = |d: &str, s: &str| (d.to_owned(), s.to_owned());
    assert_eq!(
        selector(signed(&m, "a@example.org").await),
        pair("example.org", "p1")
    );
    assert_eq!(
        selector(signed(&m, "a@mail.example.org").await),
        pair("example.org", "p1")
    );
    // `*.lists.example.org` is closer than `*.example.org` for its subdomains ...
    assert_eq!(
        selector(signed(&m, "a@team.lists.example.org").await),
        pair("lists.example.org", "l1")
    );
    // ... but not for lists.example.org itself, which only the parent's wildcard covers ...
    assert_eq!(
        selector(signed(&m, "a@lists.example.org").await),
        pair("example.org", "p1")
    );
    // ... and an exact domain beats every wildcard.
    assert_eq!(
        selector(signed(&m, "a@vip.lists.example.org").await),
        pair("example.org", "x1")
    );
    m.stop().await;
}

#[tokio::test]
async fn a_from_domain_without_a_key_goes_unsigned_but_forged_copies_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let org = entry(dir.path(), "example.org", "org1", &[], true);
    let m = start_with_keys(vec![org]).await;
    let tx = Transaction::authenticated(
        "zed@elsewhere.example",
        &[
            ("CHmail", "v=1; d=example.org; forged"),
            ("From", "zed@elsewhere.example"),
            ("CHmail-Link", "<https://evil.example/c/1/x>"),
            ("CHmail", "v=1; d=elsewhere.example; forged"),
        ],
    );
    let (actions, _) = tx.run(m.addr).await;
    assert!(added(&actions, "CHmail").is_empty(), "{actions:?}");
    assert!(added(&actions, "CHmail-Link").is_empty(), "{actions:?}");
    assert_eq!(
        deleted(&actions),
        vec![
            ("CHmail".to_owned(), 2),
            ("CHmail".to_owned(), 1),
            ("CHmail-Link".to_owned(), 1),
        ]
    );
    // Nothing was opened for it: no port was granted to the login.
    let port = m
        .store
        .port_of("zed@elsewhere.example")
        .await
        .expect("store");
    assert!(port.is_none(), "{port:?}");
    let unsigned = m.milter.metrics().render();
    assert!(
        unsigned.contains("chmail_milter_mails_total{action=\"unsigned\"} 1"),
        "{unsigned}"
    );
    // The log line says why.
    let mut headers = Headers::new(64 * 1024);
    headers.push(b"From", b"zed@elsewhere.example");
    let mail = Mail {
        auth_authen: Some("zed@elsewhere.example".into()),
        headers,
        ..Default::default()
    };
    let outcome = m.milter.decide(&mail).await;
    assert_eq!(outcome.action, "unsigned");
    assert_eq!(
        outcome.note.as_deref(),
        Some("no signing key for elsewhere.example")
    );
    m.stop().await;
}

#[tokio::test]
async fn during_a_rotation_new_mail_uses_the_new_selector_and_the_old_one_still_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = entry(dir.path(), "example.org", "sel1", &[], true);
    let new = entry(dir.path(), "example.org", "sel2", &[], true);
    // Before: sel1 signs. Its key file stays for the rotation.
    let before = start_with_keys(vec![old.clone()]).await;
    let old_header = signed(&before, "alice@example.org")
        .await
        .expect("signed")
        .to_value();
    before.stop().await;

    // After: sel2 signs, sel1 is kept for verifying only.
    let verify_only = KeyEntry {
        sign: false,
        from: Vec::new(),
        ..old.clone()
    };
    let m = start_with_keys(vec![verify_only, new.clone()]).await;
    let fresh = signed(&m, "alice@example.org").await.expect("signed");
    assert_eq!(fresh.selector, "sel2");
    assert!(fresh
        .verify("alice@example.org", &signer_of(&new).public_key())
        .is_pass());

    // Mail signed before the switch comes back in (a reply quoting the headers, a forward): kept.
    let tx = Transaction::inbound(&[("From", "alice@example.org"), ("CHmail", &old_header)]);
    assert!(
        deleted(&tx.run(m.addr).await.0).is_empty(),
        "the old selector still verifies"
    );
    // A header under a selector that is not ours, even signed with a real old key: forged.
    let stray = Signer::from_seed("example.org", "sel0", [3; 32])
        .sign(
            "alice@example.org",
            "chat.example.com",
            20001,
            &RoomId::generate(),
            1_700_000_000,
            "alice@example.org",
        )
        .expect("sign")
        .to_value();
    let tx = Transaction::inbound(&[("From", "alice@example.org"), ("CHmail", &stray)]);
    assert_eq!(
        deleted(&tx.run(m.addr).await.0),
        vec![("CHmail".to_owned(), 1)]
    );
    m.stop().await;
}

#[tokio::test]
async fn a_missing_key_file_of_a_table_entry_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.milter.listen = "inet:127.0.0.1:0".into();
    config.milter.metrics_listen = String::new();
    config.signing.keys = vec![entry(dir.path(), "example.org", "sel2", &[], false)];
    let err = SigningTable::load(&config)
        .expect_err("no key file")
        .to_string();
    for part in [
        "example.org.sel2.key",
        "d=example.org",
        "s=sel2",
        "keygen --domain example.org --selector sel2",
    ] {
        assert!(err.contains(part), "{part:?} missing in {err}");
    }
    let Err(err) = chmail_milter::start(config).await else {
        panic!("the milter started without its key");
    };
    assert!(err.to_string().contains("example.org.sel2.key"), "{err}");
}
