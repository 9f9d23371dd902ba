//! End to end through a real Sendmail (Debian's sendmail-bin) with Cyrus SASL AUTH and the
//! milter lines of contrib/sendmail/chmail.mc: the milter signs the mail of authenticated users,
//! with a CHmail-Link, strips forged CHmail headers from everyone's mail and records where the
//! login came from; while the milter is down, Sendmail temp-fails mail (`F=T`).

use std::fs;

use chmail::header::{ChmailHeader, Verdict, LINK_HEADER_NAME};
use chmail_tests::{
    field_names, fixture, has_subject, header_section, header_values, or_skip, prepare_sendmail,
    require, single_header, with_auth, Milter, MilterOptions, Sendmail, TestDns, DELIVERY_TIMEOUT,
    PUBLIC_URL, SIGNING_DOMAIN,
};

/// The tools every test here needs (`unshare`, `mount` and `hostname` give Sendmail its own host
/// name and SASL directory; m4 builds sendmail.cf; saslpasswd2 makes the sasldb).
macro_rules! require_sendmail {
    () => {
        require!(
            "root",
            "m4",
            "saslpasswd2",
            "unshare",
            "mount",
            "hostname",
            "smtp-sink",
            "swaks"
        )
    };
}

/// The SASL account of the tests.
const ALICE: (&str, &str) = ("alice", "secret");

#[test]
fn authenticated_mail_through_sendmail_arrives_signed_with_its_link_and_without_forged_copies() {
    require_sendmail!();
    let root = or_skip!(prepare_sendmail());
    let dns = TestDns::start::<String, String>([]);
    let (milter, record) = Milter::start_with_dns(&dns, MilterOptions::default());
    let key = record.public_key();
    let sendmail = Sendmail::start(&root, milter.port(), &[ALICE]);

    let submission = sendmail.swaks(&with_auth(
        ALICE,
        &[
            "--from",
            "alice@example.test",
            "--to",
            "bob@other.test",
            "--header",
            "Subject: through sendmail",
            "--header",
            "CHmail: forged",
            "--header",
            "CHmail-Link: <https://chat.forged.test/c/1/forged>",
        ],
    ));
    assert!(
        submission.accepted,
        "Sendmail refused the authenticated mail:\n{}",
        submission.transcript
    );
    assert!(
        submission.transcript.contains("235 "),
        "AUTH did not succeed:\n{}",
        submission.transcript
    );
    let mail = sendmail.wait_for_mail("signed mail", DELIVERY_TIMEOUT, |mail| {
        has_subject(mail, "through sendmail")
    });

    let value = single_header(&mail, "CHmail");
    let header = ChmailHeader::parse(value.as_bytes())
        .unwrap_or_else(|err| panic!("the CHmail header {value:?} does not parse: {err}"));
    let from = single_header(&mail, "From");
    assert_eq!(
        header.verify(&from, &key),
        Verdict::Pass,
        "the CHmail header does not verify against From {from:?}: {value:?}"
    );
    assert_eq!(header.domain, SIGNING_DOMAIN);
    assert_eq!(
        header.login, "alice@example.test",
        "Sendmail's {{auth_authen}} is the SASL login, completed with the signing domain"
    );
    assert_eq!(
        single_header(&mail, LINK_HEADER_NAME),
        format!("<{PUBLIC_URL}/c/{}/{}>", header.port, header.room.as_str()),
        "the link names the header's port and room"
    );
    assert!(
        !header_section(&mail).contains("forged"),
        "a forged copy is still there:\n{mail}"
    );

    // Where alice connected from reached the milter. CHmail asks Sendmail for {client_addr} and
    // {client_name} itself; the confMILTER_MACROS_CONNECT line of contrib/sendmail/chmail.mc
    // lists them in sendmail.cf as well, for Sendmail versions that ignore such requests.
    let (ip, hostname) = milter.sqlite_login("alice@example.test");
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
    // The test DNS server has no reverse records: the name came from Sendmail.
    assert!(hostname.is_some(), "no host name recorded for alice");
    let cf = sendmail.cf();
    let connect_macros = cf
        .lines()
        .find(|line| line.starts_with("O Milter.macros.connect="))
        .unwrap_or_else(|| panic!("sendmail.cf sets no Milter.macros.connect"));
    assert!(
        connect_macros.contains("{client_addr}") && connect_macros.contains("{client_name}"),
        "contrib's connection macros are not in sendmail.cf: {connect_macros}"
    );
}

#[test]
fn unauthenticated_mail_through_sendmail_loses_every_forged_chmail_header() {
    require_sendmail!();
    let root = or_skip!(prepare_sendmail());
    let dns = TestDns::start::<String, String>([]);
    let (milter, _) = Milter::start_with_dns(&dns, MilterOptions::default());
    let sendmail = Sendmail::start(&root, milter.port(), &[ALICE]);

    let mut fixtures: Vec<_> = fs::read_dir(fixture("forged"))
        .expect("tests/fixtures/forged")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .collect();
    fixtures.sort();
    assert!(!fixtures.is_empty(), "no fixtures in tests/fixtures/forged");
    for path in &fixtures {
        // No AUTH: Sendmail relays for 127.0.0.1, as for any local client.
        let submission = sendmail.swaks(&[
            "--from",
            "mallory@other.test",
            "--to",
            "bob@other.test",
            "--data",
            &path.display().to_string(),
        ]);
        assert!(
            submission.accepted,
            "Sendmail refused {}:\n{}",
            path.display(),
            submission.transcript
        );
    }

    for path in &fixtures {
        // Each fixture's Subject is its file name without .eml.
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mail = sendmail.wait_for_mail(&name, DELIVERY_TIMEOUT, |mail| has_subject(mail, &name));
        assert!(
            !field_names(&mail).iter().any(|n| n.contains("chmail")),
            "a CHmail field is left in {name}:\n{mail}"
        );
        let results = header_values(&mail, "Authentication-Results");
        assert!(
            matches!(results.as_slice(), [one] if one.contains("chmail=")),
            "{name}: {results:?}"
        );
    }
    let db = rusqlite::Connection::open(milter.sqlite_path()).expect("open the milter's store");
    let logins: i64 = db
        .query_row("SELECT count(*) FROM logins", [], |row| row.get(0))
        .expect("count logins");
    assert_eq!(logins, 0, "unauthenticated mail records no login");
}

#[test]
fn sendmail_temp_fails_mail_while_the_milter_is_down() {
    require_sendmail!();
    let root = or_skip!(prepare_sendmail());
    // F=T in contrib/sendmail/chmail.mc: no milter, no mail, but only a temporary refusal.
    let nobody_listens = chmail_tests::free_port();
    let sendmail = Sendmail::start(&root, nobody_listens, &[ALICE]);
    let submission = sendmail.swaks(&[
        "--from",
        "alice@example.test",
        "--to",
        "bob@other.test",
        "--header",
        "Subject: milter down",
    ]);
    assert!(
        !submission.accepted,
        "Sendmail took mail without its milter:\n{}",
        submission.transcript
    );
    assert!(
        submission.transcript.contains("<** 4") && !submission.transcript.contains("<** 5"),
        "the refusal is not temporary:\n{}",
        submission.transcript
    );
    assert!(sendmail.sink_mails().is_empty(), "a mail got through");
}
