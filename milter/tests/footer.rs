//! The body footer (`[milter] footer = true`): fixture mails in `fixtures/footer/` come out
//! well-formed with the link exactly where expected, or byte-for-byte untouched; and the milter,
//! played by `indymilter-test`, replaces the body of signed mail only when the footer is on.

mod common;

use std::{fs, path::Path};

use chmail_milter::footer::{add_footer, Footer, Untouched, FOOTER_LABEL};
use common::{added, TestMilter, Transaction};
use indymilter::ProtoOpts;
use indymilter_test::{EomAction, EomActions, Status};
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

const LINK: &str = "https://chat.example.com/c/20417/3q2-7wVYx1T0gD1m5rQh2A";

/// What a fixture must come out as.
enum Expect {
    /// The footer in these parts (`mail-parser`'s part indexes, the root being 0), nothing else
    /// changed.
    Footer(&'static [usize]),
    /// The body untouched, for this reason.
    Untouched(Untouched),
}

/// Every fixture and what it must come out as.
const CASES: &[(&str, Expect)] = &[
    ("plain.eml", Expect::Footer(&[0])),
    ("alternative.eml", Expect::Footer(&[1, 2])),
    ("mixed-attachment.eml", Expect::Footer(&[1])),
    ("nested.eml", Expect::Footer(&[2, 4])),
    ("quoted-printable.eml", Expect::Footer(&[0])),
    ("base64.eml", Expect::Footer(&[1, 2])),
    ("iso-8859-1.eml", Expect::Footer(&[0])),
    ("euc-kr.eml", Expect::Footer(&[0])),
    ("shift_jis.eml", Expect::Footer(&[0])),
    ("iso-2022-jp.eml", Expect::Footer(&[0])),
    ("html-only.eml", Expect::Footer(&[0])),
    ("signed.eml", Expect::Untouched(Untouched::Signed)),
    ("encrypted.eml", Expect::Untouched(Untouched::Encrypted)),
    ("smime.eml", Expect::Untouched(Untouched::Encrypted)),
    (
        "smime-opaque-signed.eml",
        Expect::Untouched(Untouched::Signed),
    ),
    ("utf-16.eml", Expect::Untouched(Untouched::Charset)),
    ("attachment-only.eml", Expect::Untouched(Untouched::NoText)),
];

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/footer")
}

/// A fixture as the MTA hands it over: CRLF line ends (the files keep LF), split into the header
/// block (with its last line break) and the body.
fn load(name: &str) -> (Vec<u8>, Vec<u8>) {
    let raw = fs::read(fixtures().join(name)).expect("fixture");
    let mut crlf = Vec::with_capacity(raw.len() + raw.len() / 20);
    for &b in &raw {
        if b == b'\n' && crlf.last() != Some(&b'\r') {
            crlf.push(b'\r');
        }
        crlf.push(b);
    }
    let split = crlf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    (crlf[..split + 2].to_vec(), crlf[split + 4..].to_vec())
}

fn parse(raw: &[u8]) -> Message<'_> {
    MessageParser::new().parse(raw).expect("parses as a mail")
}

/// The decoded text of a text part.
fn text(message: &Message<'_>, index: usize) -> String {
    match &message.parts[index].body {
        PartType::Text(t) | PartType::Html(t) => t.to_string(),
        other => panic!("part {index} is not text: {other:?}"),
    }
}

/// Every line ends in CRLF and is at most 998 characters (RFC 5322), base64 and
/// quoted-printable lines at most 76 (RFC 2045).
fn assert_well_formed(name: &str, message: &Message<'_>, raw: &[u8]) {
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' {
            assert_eq!(
                raw.get(i.wrapping_sub(1)),
                Some(&b'\r'),
                "{name}: bare LF at {i}"
            );
        }
    }
    for line in raw.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "{name}: a line over 998 characters");
    }
    for part in &message.parts {
        let encoding = part.content_transfer_encoding().unwrap_or("7bit");
        if ["base64", "quoted-printable"].contains(&encoding.to_ascii_lowercase().as_str()) {
            let body = &raw[part.offset_body as usize..part.offset_end as usize];
            for line in body.split(|&b| b == b'\n') {
                assert!(
                    line.len() <= 77,
                    "{name}: {encoding} line over 76 characters"
                );
            }
        }
    }
}

/// The type and subtype of every part, and whether it is an attachment: what must not change.
fn shape(message: &Message<'_>) -> Vec<(String, String, bool)> {
    message
        .parts
        .iter()
        .map(|p| {
            let ct = p.content_type();
            (
                ct.map(|c| c.ctype().to_ascii_lowercase())
                    .unwrap_or_default(),
                ct.and_then(|c| c.subtype())
                    .map(str::to_ascii_lowercase)
                    .unwrap_or_default(),
                p.is_message() || p.content_disposition().is_some_and(|d| d.is_attachment()),
            )
        })
        .collect()
}

fn check_footer(name: &str, header: &[u8], body: &[u8], new_body: &[u8], targets: &[usize]) {
    let old_raw = [header, b"\r\n", body].concat();
    let new_raw = [header, b"\r\n", new_body].concat();
    let old = parse(&old_raw);
    let new = parse(&new_raw);
    assert_well_formed(name, &new, &new_raw);
    assert_eq!(shape(&new), shape(&old), "{name}: the structure changed");

    let plain_footer = format!("{FOOTER_LABEL} {LINK}");
    let html_footer = format!("<p>{FOOTER_LABEL} <a href=\"{LINK}\">{LINK}</a></p>");
    for &i in targets {
        let (before, after) = (text(&old, i), text(&new, i));
        assert!(
            !before.contains(LINK),
            "{name}: part {i} had the link already"
        );
        if matches!(new.parts[i].body, PartType::Html(_)) {
            assert_eq!(
                after.matches(&html_footer).count(),
                1,
                "{name}: part {i}: {after}"
            );
            let at = after.find(&html_footer).expect("counted once");
            let without = format!(
                "{}{}",
                &after[..at],
                after[at + html_footer.len()..]
                    .strip_prefix("\r\n")
                    .or_else(|| after[at + html_footer.len()..].strip_prefix('\n'))
                    .unwrap_or(&after[at + html_footer.len()..])
            );
            match before.to_ascii_lowercase().rfind("</body") {
                Some(end) => {
                    assert_eq!(at, end, "{name}: part {i}: not right before </body>");
                    assert_eq!(
                        without, before,
                        "{name}: part {i}: more than the footer changed"
                    );
                }
                None => assert_eq!(without.trim_end(), before.trim_end(), "{name}: part {i}"),
            }
        } else {
            assert_eq!(after.matches(LINK).count(), 1, "{name}: part {i}: {after}");
            assert!(
                after.trim_end().ends_with(&plain_footer),
                "{name}: part {i} does not end with the footer: {after:?}"
            );
            let head = after
                .trim_end()
                .strip_suffix(&plain_footer)
                .expect("ends with it");
            assert_eq!(
                head.trim_end(),
                before.trim_end(),
                "{name}: part {i}: text changed"
            );
        }
    }

    // Every byte outside the bodies of the extended parts is the same, in the same order.
    let mut targets = targets.to_vec();
    targets.sort_unstable();
    let region = |m: &Message<'_>, i: usize| {
        let p = &m.parts[i];
        p.offset_body as usize..p.offset_end as usize
    };
    let (mut old_at, mut new_at) = (0, 0);
    for &i in &targets {
        let (o, n) = (region(&old, i), region(&new, i));
        assert_eq!(
            old_raw[old_at..o.start],
            new_raw[new_at..n.start],
            "{name}: bytes before part {i} changed"
        );
        (old_at, new_at) = (o.end, n.end);
    }
    assert_eq!(
        old_raw[old_at..],
        new_raw[new_at..],
        "{name}: bytes after the last extended part changed"
    );
}

#[test]
fn every_fixture_comes_out_well_formed_with_the_link_where_expected_or_untouched() {
    for (name, expect) in CASES {
        let (header, body) = load(name);
        let result = add_footer(&header, &body, LINK);
        match (expect, result) {
            (Expect::Footer(targets), Footer::Added(new_body)) => {
                check_footer(name, &header, &body, &new_body, targets);
            }
            (Expect::Untouched(want), Footer::Untouched(why)) => {
                assert_eq!(why, *want, "{name}: left untouched for another reason");
            }
            (Expect::Footer(_), Footer::Untouched(why)) => {
                panic!("{name}: expected the footer, left untouched: {why:?}")
            }
            (Expect::Untouched(want), Footer::Added(_)) => {
                panic!("{name}: expected untouched ({want:?}), got the footer")
            }
        }
    }
}

#[test]
fn every_fixture_file_has_an_expectation() {
    let mut files: Vec<String> = fs::read_dir(fixtures())
        .expect("fixtures")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    files.sort();
    let mut listed: Vec<String> = CASES.iter().map(|(n, _)| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(files, listed);
}

#[test]
fn extending_an_extended_mail_adds_a_second_footer_only_where_the_first_went() {
    // The milter signs a mail once; this shows the walk is stable on its own output.
    let (header, body) = load("nested.eml");
    let Footer::Added(once) = add_footer(&header, &body, LINK) else {
        panic!("nested.eml gets the footer");
    };
    let Footer::Added(twice) = add_footer(&header, &once, LINK) else {
        panic!("and again");
    };
    let raw = [&header[..], b"\r\n", &twice].concat();
    let message = parse(&raw);
    assert_eq!(text(&message, 2).matches(LINK).count(), 2);
    assert_eq!(text(&message, 4).matches(LINK).count(), 4);
}

/// Headers of an authenticated plain-text mail, Content-Type folded the way the MTA passes it.
fn mail_headers(content_type: &str) -> Vec<(&str, &str)> {
    vec![
        ("From", "Alice Example <alice@example.com>"),
        ("To", "bob@b.example"),
        ("Subject", "Friday"),
        ("MIME-Version", "1.0"),
        ("Content-Type", content_type),
    ]
}

fn replaced_body(actions: &EomActions) -> Option<Vec<u8>> {
    let chunks: Vec<&[u8]> = actions
        .actions
        .iter()
        .filter_map(|a| match a {
            EomAction::ReplaceBody { chunk } => Some(&chunk[..]),
            _ => None,
        })
        .collect();
    (!chunks.is_empty()).then(|| chunks.concat())
}

fn footer_on(config: &mut chmail::config::Config) {
    config.milter.footer = true;
}

#[tokio::test]
async fn with_the_footer_on_the_body_of_a_signed_mail_gets_the_link() {
    let m = TestMilter::start_with(footer_on).await;
    let (_, body) = load("alternative.eml");
    let mut tx = Transaction::authenticated(
        "alice",
        &mail_headers(" multipart/alternative;\n\tboundary=\"alt-1\""),
    );
    tx.body = body.clone();
    let played = tx.play(m.addr).await;
    assert_eq!(played.status, Status::Continue);
    assert_eq!(played.body_status, Some(Status::Continue));
    let link = added(&played.actions, "CHmail-Link");
    assert_eq!(link.len(), 1, "{:?}", played.actions);
    let link = link[0].trim_matches(|c| c == '<' || c == '>');
    let new = replaced_body(&played.actions).expect("the body is replaced");
    let text = String::from_utf8(new).expect("UTF-8 fixture");
    assert!(text.contains(&format!(
        "Café at nine?\r\n\r\n{FOOTER_LABEL} {link}\r\n--alt-1"
    )));
    assert!(text.contains(&format!("<a href=\"{link}\">{link}</a></p>\r\n</body>")));
    assert!(m
        .milter
        .metrics()
        .render()
        .contains("footers_total{result=\"added\"} 1"));
    m.stop().await;
}

#[tokio::test]
async fn a_body_of_many_chunks_is_put_together_before_the_footer() {
    let m = TestMilter::start_with(footer_on).await;
    let line = "All work and no play makes a long mail.\r\n";
    let body = line.repeat(5_000); // ~200 KB: four chunks on the wire
    let mut tx =
        Transaction::authenticated("alice", &mail_headers(" text/plain; charset=us-ascii"));
    tx.body = body.clone().into_bytes();
    let played = tx.play(m.addr).await;
    let link = added(&played.actions, "CHmail-Link")[0]
        .trim_matches(|c| c == '<' || c == '>')
        .to_owned();
    let new = replaced_body(&played.actions).expect("the body is replaced");
    assert_eq!(
        new,
        format!("{body}\r\n{FOOTER_LABEL} {link}\r\n").into_bytes()
    );
    m.stop().await;
}

#[tokio::test]
async fn with_the_footer_off_the_body_is_never_replaced_and_asked_for_only_for_the_opening() {
    // The opening (the start of the text, for the chat) reads the body, but never changes it.
    let m = TestMilter::start().await;
    let mut tx = Transaction::authenticated("alice", &mail_headers(" text/plain"));
    tx.body = b"Hello\r\n".to_vec();
    let played = tx.play(m.addr).await;
    assert!(!played.opts.contains(ProtoOpts::NO_BODY));
    assert_eq!(added(&played.actions, "CHmail").len(), 1);
    assert_eq!(replaced_body(&played.actions), None);
    m.stop().await;

    // Without the opening either, the body stage is negotiated away.
    let m = TestMilter::start_with(|c| c.milter.opening_chars = 0).await;
    let played = tx.play(m.addr).await;
    assert!(
        played.opts.contains(ProtoOpts::NO_BODY),
        "the body stage is negotiated away"
    );
    assert_eq!(played.body_status, None);
    assert_eq!(added(&played.actions, "CHmail").len(), 1);
    assert_eq!(replaced_body(&played.actions), None);
    m.stop().await;
}

#[tokio::test]
async fn the_body_of_mail_that_is_not_signed_is_skipped() {
    let m = TestMilter::start_with(footer_on).await;
    let mut tx = Transaction::inbound(&mail_headers(" text/plain"));
    tx.body = b"Hello\r\n".to_vec();
    let played = tx.play(m.addr).await;
    assert_eq!(played.body_status, Some(Status::Skip));
    assert_eq!(replaced_body(&played.actions), None);
    m.stop().await;
}

#[tokio::test]
async fn signed_or_oversized_mail_is_signed_but_its_body_untouched() {
    let m = TestMilter::start_with(|c| {
        c.milter.footer = true;
        c.milter.footer_max_bytes = 1_000;
        // Only the footer reads the body here: past its limit the rest is skipped.
        c.milter.opening_chars = 0;
    })
    .await;
    let (_, signed) = load("signed.eml");
    let mut tx = Transaction::authenticated(
        "alice",
        &mail_headers(
            " multipart/signed; micalg=pgp-sha256;\n\tprotocol=\"application/pgp-signature\"; boundary=\"sig\"",
        ),
    );
    tx.body = signed;
    let played = tx.play(m.addr).await;
    assert_eq!(added(&played.actions, "CHmail").len(), 1);
    assert_eq!(replaced_body(&played.actions), None);

    let mut big = Transaction::authenticated("alice", &mail_headers(" text/plain"));
    big.body = vec![b'x'; 2_000];
    let played = big.play(m.addr).await;
    assert_eq!(played.body_status, Some(Status::Skip));
    assert_eq!(added(&played.actions, "CHmail").len(), 1);
    assert_eq!(replaced_body(&played.actions), None);

    let metrics = m.milter.metrics().render();
    assert!(
        metrics.contains("footers_total{result=\"signed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("footers_total{result=\"too_large\"} 1"),
        "{metrics}"
    );
    m.stop().await;
}
