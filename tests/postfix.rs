//! End to end through a real Postfix with Dovecot SASL: the milter signs mail of authenticated
//! users, strips forged CHmail headers from everyone's mail, records logins and ports in
//! PostgreSQL, delivers mail whose key cannot be used or fetched with the result in
//! Authentication-Results, and `chmail-milter verify` agrees with it on the delivered mails.

use std::fs;

use chmail::header::{ChmailHeader, PublicKey, Verdict, LINK_HEADER_NAME};
use chmail_tests::{
    field_names, fixture, has_subject, header_section, header_values, or_skip, require,
    single_header, unfold, with_auth, DnsFailure, ForeignSigner, Milter, MilterOptions, PgSchema,
    Postfix, TestDns, PUBLIC_URL, SIGNING_DOMAIN,
};

/// The tools every test here needs.
macro_rules! require_mta {
    () => {
        require!("root", "postfix", "dovecot", "smtp-sink", "swaks")
    };
}

/// The SASL account of the tests.
const ALICE: (&str, &str) = ("alice", "secret");

/// Every forged sample mail in `tests/fixtures/forged/`, as `(file stem, path)`, sorted.
fn forged_fixtures() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = fs::read_dir(fixture("forged"))
        .expect("tests/fixtures/forged")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .map(|path| {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (stem, path.display().to_string())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in tests/fixtures/forged");
    files
}

/// The mail whose Subject is `subject`.
fn by_subject<'a>(mails: &'a [String], subject: &str) -> &'a str {
    mails
        .iter()
        .find(|mail| has_subject(mail, subject))
        .unwrap_or_else(|| panic!("no delivered mail with Subject {subject:?}"))
}

/// Asserts the mail carries exactly one CHmail and one CHmail-Link header, that the CHmail header
/// verifies with `key` against the mail's From, and returns it.
fn assert_signed(mail: &str, key: &PublicKey) -> ChmailHeader {
    let value = single_header(mail, "CHmail");
    let link = single_header(mail, LINK_HEADER_NAME);
    let from = single_header(mail, "From");
    let header = ChmailHeader::parse(value.as_bytes())
        .unwrap_or_else(|err| panic!("the CHmail header {value:?} does not parse: {err}"));
    assert_eq!(
        header.verify(&from, key),
        Verdict::Pass,
        "the CHmail header does not verify against From {from:?}: {value:?}"
    );
    assert_eq!(header.domain, SIGNING_DOMAIN);
    assert_eq!(header.login, "alice@example.test");
    assert_eq!(
        link,
        format!("<{PUBLIC_URL}/c/{}/{}>", header.port, header.room.as_str()),
        "the link names the header's port and room"
    );
    header
}

/// `mail` with its From field (and any continuation lines) replaced by `From: <from>`.
fn with_from(mail: &str, from: &str) -> String {
    let mut out = String::with_capacity(mail.len());
    let mut in_from = false;
    let mut in_body = false;
    for line in mail.split_inclusive('\n') {
        if !in_body && (line == "\r\n" || line == "\n") {
            in_body = true;
        }
        if in_body {
            out.push_str(line);
            continue;
        }
        if in_from && line.starts_with([' ', '\t']) {
            continue;
        }
        in_from = line.len() >= 5 && line[..5].eq_ignore_ascii_case("from:");
        if in_from {
            out.push_str(&format!("From: {from}\r\n"));
        } else {
            out.push_str(line);
        }
    }
    assert_ne!(out, mail, "no From field to replace in:\n{mail}");
    out
}

/// `mail` with the first `old` after the start of its CHmail field replaced by `new` (a tag
/// changed after signing).
fn with_tag(mail: &str, old: &str, new: &str) -> String {
    let field = mail
        .find("\nCHmail:")
        .unwrap_or_else(|| panic!("no CHmail field in:\n{mail}"));
    let at = mail[field..]
        .find(old)
        .map(|at| at + field)
        .filter(|&at| at < header_section(mail).len())
        .unwrap_or_else(|| panic!("no {old:?} in the CHmail field of:\n{mail}"));
    format!("{}{new}{}", &mail[..at], &mail[at + old.len()..])
}

/// Asserts that `chmail-milter verify` passes `mail` exactly when it carries a CHmail header
/// (with the key record given and with the key from the test DNS server), and that a signed copy
/// whose From or `l=` was changed fails.
fn assert_verify_agrees(milter: &Milter, record: &str, mail: &str) {
    let signed = !header_values(mail, "CHmail").is_empty();
    let (passed, output) = milter.verify(mail, Some(record));
    assert_eq!(passed, signed, "verify --key:\n{output}\n{mail}");
    let (passed, output) = milter.verify(mail, None);
    assert_eq!(passed, signed, "verify with DNS:\n{output}\n{mail}");
    if !signed {
        assert!(output.contains("no CHmail header"), "{output}");
        return;
    }
    assert!(output.contains(": pass"), "{output}");
    let tampered = [
        with_from(mail, &format!("Mallory <mallory@{SIGNING_DOMAIN}>")),
        with_tag(
            mail,
            &format!("l=alice@{SIGNING_DOMAIN}"),
            &format!("l=mallory@{SIGNING_DOMAIN}"),
        ),
    ];
    for copy in &tampered {
        let (passed, output) = milter.verify(copy, Some(record));
        assert!(
            !passed && output.contains(": fail"),
            "a tampered copy must fail:\n{output}\n{copy}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn authenticated_mail_arrives_signed_without_forged_copies_and_postgres_records_login_and_port(
) {
    require_mta!();
    let schema = or_skip!(PgSchema::create().await);
    let dns = TestDns::start::<String, String>([]);
    let (milter, record) = Milter::start_with_dns(
        &dns,
        MilterOptions {
            store_url: Some(schema.url()),
            ..Default::default()
        },
    );
    assert_eq!(record.name, format!("sel1._chmail.{SIGNING_DOMAIN}"));
    let key = record.public_key();
    let postfix = Postfix::start(milter.port(), &[ALICE]);

    postfix.swaks(&with_auth(
        ALICE,
        &[
            "--from",
            "alice@example.test",
            "--to",
            "bob@other.test",
            "--header",
            "Subject: plain",
            "--header",
            "CHmail: forged",
        ],
    ));
    let fixtures = forged_fixtures();
    for (_, path) in &fixtures {
        postfix.swaks(&with_auth(
            ALICE,
            &[
                "--from",
                "alice@example.test",
                "--to",
                "bob@other.test",
                "--data",
                path,
            ],
        ));
    }
    let mails = postfix.delivered(1 + fixtures.len());

    let plain = by_subject(&mails, "plain");
    let header = assert_signed(plain, &key);
    assert!(
        !header_section(plain).contains("forged"),
        "the forged copy is still there:\n{plain}"
    );
    // A fixture whose From is in our signing domain is signed; one whose From is elsewhere is not
    // (no key signs that domain, and receivers would refuse a d= that does not match it). Either
    // way the forged copies are gone.
    let mut signed_mails = 1;
    for (name, _) in &fixtures {
        let mail = by_subject(&mails, name);
        let from = single_header(mail, "From");
        if from.contains(&format!("@{SIGNING_DOMAIN}>")) {
            let signed = assert_signed(mail, &key);
            assert_eq!(signed.port, header.port, "alice keeps her port ({name})");
            signed_mails += 1;
        } else {
            assert!(
                header_values(mail, "CHmail").is_empty()
                    && header_values(mail, LINK_HEADER_NAME).is_empty(),
                "{name} has a From outside {SIGNING_DOMAIN} and must go unsigned:\n{mail}"
            );
        }
        assert!(
            !header_section(mail).contains("forged")
                && !header_section(mail).contains("AAAAAAAAAAAAAAAAAAAAAA"),
            "a forged copy of {name} is still there:\n{mail}"
        );
    }
    assert!(
        signed_mails >= 2,
        "some fixture must be signed besides the plain mail"
    );
    // The command-line verifier agrees with the milter on every delivered mail.
    for mail in &mails {
        assert_verify_agrees(&milter, &record.value, mail);
    }

    let db = schema.client().await;
    let login = db
        .query_one(
            "SELECT ip, last_seen FROM logins WHERE login = 'alice@example.test'",
            &[],
        )
        .await
        .expect("a logins row for alice@example.test");
    assert_eq!(
        login.get::<_, Option<String>>(0).as_deref(),
        Some("127.0.0.1")
    );
    assert!(login.get::<_, i64>(1) > 0, "last_seen is set");
    let ports = db
        .query(
            "SELECT port FROM ports WHERE login = 'alice@example.test'",
            &[],
        )
        .await
        .expect("query ports");
    assert_eq!(ports.len(), 1, "alice holds one port");
    assert_eq!(
        ports[0].get::<_, i32>(0),
        i32::from(header.port),
        "the port in the header is alice's port in the store"
    );
    let rooms: i64 = db
        .query_one(
            "SELECT count(*) FROM rooms WHERE login = 'alice@example.test'",
            &[],
        )
        .await
        .expect("count rooms")
        .get(0);
    assert_eq!(rooms, signed_mails, "a room per signed mail");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_footer_on_postfix_delivers_the_link_in_the_body_of_signed_mail_only() {
    require_mta!();
    let dns = TestDns::start::<String, String>([]);
    let (milter, record) = Milter::start_with_dns(
        &dns,
        MilterOptions {
            footer: true,
            ..Default::default()
        },
    );
    let key = record.public_key();
    let postfix = Postfix::start(milter.port(), &[ALICE]);
    let body = "Hello Bob,\r\nsee you at noon.\r\n";
    postfix.swaks(&with_auth(
        ALICE,
        &[
            "--from",
            "alice@example.test",
            "--to",
            "bob@other.test",
            "--header",
            "Subject: with footer",
            "--body",
            body,
        ],
    ));
    postfix.swaks(&[
        "--from",
        "carol@other.test",
        "--to",
        "bob@example.test",
        "--header",
        "Subject: not ours",
        "--body",
        body,
    ]);
    let mails = postfix.delivered(2);

    let signed = by_subject(&mails, "with footer");
    let header = assert_signed(signed, &key);
    let link = format!("{PUBLIC_URL}/c/{}/{}", header.port, header.room.as_str());
    let text = &signed[header_section(signed).len()..];
    assert!(
        text.contains("see you at noon."),
        "the text stays:\n{signed}"
    );
    assert_eq!(
        text.matches(&format!("Chat with the sender: {link}"))
            .count(),
        1,
        "the body ends with the footer naming the header's room:\n{signed}"
    );
    let other = by_subject(&mails, "not ours");
    assert!(
        !other.contains("Chat with the sender"),
        "unsigned mail keeps its body:\n{other}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_mail_with_forged_copies_in_any_spelling_arrives_with_none() {
    require_mta!();
    let schema = or_skip!(PgSchema::create().await);
    // nowhere.test has no record: the milter gets a definite NXDOMAIN instead of a timeout.
    let dns = TestDns::start::<String, String>([]);
    let (milter, _) = Milter::start_with_dns(
        &dns,
        MilterOptions {
            store_url: Some(schema.url()),
            ..Default::default()
        },
    );
    let postfix = Postfix::start(milter.port(), &[ALICE]);

    let fixtures = forged_fixtures();
    for (_, path) in &fixtures {
        // No AUTH: relaying is allowed because 127.0.0.1 is in mynetworks.
        postfix.swaks(&[
            "--from",
            "mallory@other.test",
            "--to",
            "bob@other.test",
            "--data",
            path,
        ]);
    }
    let mails = postfix.delivered(fixtures.len());

    for (name, _) in &fixtures {
        let mail = by_subject(&mails, name);
        assert_eq!(
            header_values(mail, "CHmail"),
            Vec::<String>::new(),
            "CHmail copies left in {name}:\n{mail}"
        );
        assert_eq!(
            header_values(mail, LINK_HEADER_NAME),
            Vec::<String>::new(),
            "CHmail-Link copies left in {name}:\n{mail}"
        );
        assert!(
            !field_names(mail).iter().any(|n| n.contains("chmail")),
            "a CHmail field in some spelling is left in {name}:\n{mail}"
        );
        // The results went into an Authentication-Results field, on top of Postfix's Received.
        let results = header_values(mail, "Authentication-Results");
        assert_eq!(results.len(), 1, "{name}:\n{mail}");
        assert!(
            results[0].starts_with("mx.example.test;") && results[0].contains("chmail="),
            "{name}: {results:?}"
        );
        let section = header_section(mail);
        let (results_at, received_at) = (
            section.find("Authentication-Results:"),
            section.find("by mx.example.test (Postfix)"),
        );
        assert!(
            matches!((results_at, received_at), (Some(a), Some(r)) if a < r),
            "{name}:\n{mail}"
        );
    }
    let logins: i64 = schema
        .client()
        .await
        .query_one("SELECT count(*) FROM logins", &[])
        .await
        .expect("count logins")
        .get(0);
    assert_eq!(logins, 0, "unauthenticated mail records no login");
}

/// The sender of the inbound mails whose keys cannot be used: its domain aligns with their `d=`.
const BANK_SENDER: &str = "alice@bank.example";

/// A CHmail header of `signer` for [`BANK_SENDER`], unfolded into one line as swaks sends it,
/// with each `(old, new)` of `edits` applied, and the CHmail-Link that matches it.
fn bank_header(signer: &ForeignSigner, edits: &[(&str, &str)]) -> (String, String) {
    let mut value = unfold(&signer.header(BANK_SENDER, BANK_SENDER));
    let header = ChmailHeader::parse(value.as_bytes()).expect("the signed header parses");
    let link = format!(
        "<https://{}/c/{}/{}>",
        header.host,
        header.port,
        header.room.as_str()
    );
    for (old, new) in edits {
        assert!(value.contains(old), "no {old:?} in {value:?}");
        value = value.replacen(old, new, 1);
    }
    (value, link)
}

#[tokio::test(flavor = "multi_thread")]
async fn inbound_headers_whose_key_is_unusable_or_unreachable_arrive_without_link_and_with_their_result(
) {
    require_mta!();
    let dns = TestDns::start::<String, String>([]);
    let (milter, _) = Milter::start_with_dns(&dns, MilterOptions::default());
    let postfix = Postfix::start(milter.port(), &[ALICE]);
    let servfail = ForeignSigner::new("bank.example", "servfail", 21);
    let silent = ForeignSigner::new("bank.example", "silent", 22);
    dns.fail(servfail.record_name(), DnsFailure::ServFail);
    dns.fail(silent.record_name(), DnsFailure::Silent);
    // A selector and a domain each within their own limit, whose key name
    // `<s>._chmail.<d>` (63 + 9 + 195 octets) is longer than the 253 DNS allows.
    let long_selector = format!("s={};", "s".repeat(63));
    let long_domain = format!("d={}.bank.example;", vec!["d".repeat(60); 3].join("."));
    // (Subject, header and link, the result, a word of its reason, whether the CHmail field stays)
    let cases = [
        (
            "malformed key name",
            bank_header(&servfail, &[("d=bank.example;", "d=-x.bank.example;")]),
            "permerror",
            "tag d=",
            false,
        ),
        (
            "oversized key name",
            bank_header(
                &servfail,
                &[
                    ("d=bank.example;", long_domain.as_str()),
                    ("s=servfail;", long_selector.as_str()),
                ],
            ),
            "permerror",
            "key record name",
            false,
        ),
        (
            "SERVFAIL",
            bank_header(&servfail, &[]),
            "temperror",
            "servfail",
            true,
        ),
        (
            "time-out",
            bank_header(&silent, &[]),
            "temperror",
            "time",
            true,
        ),
    ];
    for (subject, (header, link), _, _, _) in &cases {
        // No AUTH: relaying is allowed because 127.0.0.1 is in mynetworks.
        postfix.swaks(&[
            "--from",
            BANK_SENDER,
            "--to",
            "bob@other.test",
            "--header",
            &format!("Subject: {subject}"),
            "--header",
            &format!("CHmail: {header}"),
            "--header",
            &format!("{LINK_HEADER_NAME}: {link}"),
        ]);
    }
    // `delivered` fails as soon as Postfix defers or bounces a mail.
    let mails = postfix.delivered(cases.len());

    for (subject, (header, _), result, reason, kept) in &cases {
        let mail = by_subject(&mails, subject);
        assert_eq!(
            header_values(mail, LINK_HEADER_NAME),
            Vec::<String>::new(),
            "{subject}: the link stays without a header that passed:\n{mail}"
        );
        let expected = if *kept { vec![header.clone()] } else { vec![] };
        assert_eq!(
            header_values(mail, "CHmail"),
            expected,
            "{subject}: a {result} header is kept only when it was not judged:\n{mail}"
        );
        let results = header_values(mail, "Authentication-Results");
        assert_eq!(results.len(), 1, "{subject}:\n{mail}");
        assert!(
            results[0].starts_with("mx.example.test;")
                && results[0].contains(&format!("chmail={result} reason=")),
            "{subject}: expected chmail={result} with a reason: {results:?}"
        );
        assert!(
            results[0].to_ascii_lowercase().contains(reason),
            "{subject}: the reason should name {reason:?}: {results:?}"
        );
        // The command-line verifier, asking the same DNS server, does not pass what is left.
        let (passed, output) = milter.verify(mail, None);
        assert!(!passed, "{subject}: verify passed:\n{output}");
        if *kept {
            assert!(output.contains(": temperror"), "{subject}: {output}");
        }
    }
}

#[test]
fn mail_still_flows_when_the_milter_is_down() {
    require_mta!();
    // default_action=accept (contrib/postfix/main.cf.snippet): a milter outage must not stop mail.
    let nobody_listens = chmail_tests::free_port();
    let postfix = Postfix::start(nobody_listens, &[ALICE]);
    postfix.swaks(&with_auth(
        ALICE,
        &["--from", "alice@example.test", "--to", "bob@other.test"],
    ));
    let mails = postfix.delivered(1);
    assert_eq!(mails.len(), 1);
    assert!(header_values(&mails[0], "CHmail").is_empty());
    assert!(postfix.maillog().contains("sasl_username=alice"));
}
