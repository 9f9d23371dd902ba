//! The CHmail header v1 from the outside: the test vectors of `docs/header.md`, round trips,
//! tampering, and hostile input.

use chmail::header::{
    canonical_bytes, check_header, link_value, parse_key_record, AuthResult, ChmailHeader,
    HeaderError, KeyAnswer, RoomId, Signer, Stage, Verdict, HEADER_NAME, LINK_HEADER_NAME,
};

const DOC: &str = include_str!("../../docs/header.md");

const SEED: [u8; 32] = [7; 32];
const DOMAIN: &str = "example.com";
const SELECTOR: &str = "sel1";
const LOGIN: &str = "alice@example.com";
const HOST: &str = "chat.example.com";
const PORT: u16 = 20417;
const ROOM: &str = "Xk3Fq9LmZ2pT7vRw4sYb8A";
const TIME: u64 = 1_700_000_000;
const FROM: &str = "Alice <Alice@Example.COM>";
const PUBLIC_BASE: &str = "https://chat.example.com/";

fn room() -> RoomId {
    RoomId::parse(ROOM).expect("the vector room id is valid")
}

fn signer() -> Signer {
    Signer::from_seed(DOMAIN, SELECTOR, SEED)
}

fn signed() -> ChmailHeader {
    signer()
        .sign(LOGIN, HOST, PORT, &room(), TIME, FROM)
        .expect("the vector values are signable")
}

/// The text of the fenced block that follows `<!-- vector:{name} -->` in the doc.
fn doc_vector(name: &str) -> String {
    let marker = format!("<!-- vector:{name} -->");
    let start = DOC
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/header.md lacks {marker}"));
    let rest = &DOC[start + marker.len()..];
    let open = rest.find("```text\n").expect("a ```text block follows") + "```text\n".len();
    let body = &rest[open..];
    let close = body.find("\n```").expect("the block is closed");
    body[..close].to_owned()
}

#[test]
fn doc_vectors_equal_what_the_code_produces() {
    let signer = signer();
    let header = signed();

    assert_eq!(doc_vector("dns-name"), signer.dns_name());
    assert_eq!(doc_vector("dns-record"), signer.dns_record());
    assert!(
        DOC.contains(&format!("\"{}\"", signer.dns_record())),
        "the zone-file example publishes the vector key"
    );

    let canonical = canonical_bytes(&header, FROM).expect("canonical form");
    assert_eq!(
        format!("{}\n", doc_vector("canonical")).as_bytes(),
        canonical
    );

    let fields = format!(
        "{HEADER_NAME}: {}\n{LINK_HEADER_NAME}: {}",
        header.to_value(),
        link_value(PUBLIC_BASE, PORT, &room())
    );
    assert_eq!(doc_vector("fields"), fields);

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sel1.key");
    signer.write_key_file(&path).expect("write key file");
    let written = std::fs::read_to_string(&path).expect("read key file");
    assert_eq!(format!("{}\n", doc_vector("key-file")), written);
}

/// The `CHmail` field body of the doc's `fields` vector, folded with CRLF as on the wire.
fn doc_field_body() -> String {
    let fields = doc_vector("fields");
    let value = fields
        .lines()
        .take_while(|l| !l.starts_with(LINK_HEADER_NAME))
        .collect::<Vec<_>>()
        .join("\r\n");
    value
        .strip_prefix("CHmail: ")
        .expect("the block starts with the field name")
        .to_owned()
}

#[test]
fn doc_vector_fields_parse_and_verify_with_the_doc_dns_record() {
    let value = doc_field_body();
    let key = parse_key_record(&doc_vector("dns-record")).expect("doc record parses");
    let header = ChmailHeader::parse(value.as_bytes()).expect("doc field parses");
    assert_eq!(header.verify(FROM, &key), Verdict::Pass);
    assert_eq!(header, signed());
}

#[test]
fn round_trip_sign_to_value_parse_verify_passes() {
    let signer = signer();
    let header = signed();
    let parsed = ChmailHeader::parse(header.to_value().as_bytes()).expect("own output parses");
    assert_eq!(parsed, header);
    assert_eq!(parsed.verify(FROM, &signer.public_key()), Verdict::Pass);
    assert!(parsed
        .verify("alice@example.com", &signer.public_key())
        .is_pass());

    let fresh = Signer::generate("mail.example.org", "2025a");
    let room = RoomId::generate();
    let h = fresh
        .sign(
            "bob",
            "[2001:db8::1]:8443",
            1,
            &room,
            0,
            "bob@mail.example.org",
        )
        .expect("sign");
    let parsed = ChmailHeader::parse(h.to_value().as_bytes()).expect("parse");
    assert!(parsed
        .verify("bob@mail.example.org", &fresh.public_key())
        .is_pass());
}

#[test]
fn parse_accepts_crlf_refolding_extra_whitespace_and_trailing_semicolon() {
    let header = signed();
    let key = signer().public_key();
    let value = header.to_value();
    let crlf_space = value.replace("\n\t", "\r\n ");
    let unfolded = value.replace("\n\t", " ");
    let spaced = value
        .replace("; ", " \t;\r\n \t ")
        .replace('=', " = ")
        .replace("\n\tb =", "\n\tb =\r\n\t ");
    let mixed = format!(" \t{}; \r\n", crlf_space.replace("; ", ";\n\t"));
    let b_split = unfolded.replace("b = ", "b=");
    let b64 = b_split.rsplit_once("b=").expect("b tag").1.to_owned();
    let (head, tail) = b64.split_at(30);
    let b_folded = b_split.replace(&b64, &format!("{head}\r\n\t {tail}"));
    for text in [value, crlf_space, unfolded, spaced, mixed, b_folded] {
        let parsed = ChmailHeader::parse(text.as_bytes())
            .unwrap_or_else(|e| panic!("{text:?} must parse: {e}"));
        assert_eq!(parsed, header, "{text:?}");
        assert!(parsed.verify(FROM, &key).is_pass(), "{text:?}");
    }
}

#[test]
fn tags_in_any_order_parse_to_the_same_header() {
    let header = signed();
    let value = header.to_value().replace("\n\t", " ");
    let mut tags: Vec<&str> = value.split("; ").collect();
    tags.reverse();
    assert_eq!(
        ChmailHeader::parse(tags.join("; ").as_bytes()).as_ref(),
        Ok(&header)
    );
}

#[test]
fn every_tampered_tag_and_a_different_from_fail_verification() {
    let key = signer().public_key();
    let good = signed();
    let tampered: Vec<(&str, ChmailHeader)> = vec![
        (
            "d",
            ChmailHeader {
                domain: "example.net".into(),
                ..good.clone()
            },
        ),
        (
            "s",
            ChmailHeader {
                selector: "sel2".into(),
                ..good.clone()
            },
        ),
        (
            "l",
            ChmailHeader {
                login: "mallory@example.com".into(),
                ..good.clone()
            },
        ),
        (
            "h",
            ChmailHeader {
                host: "chat.evil.example".into(),
                ..good.clone()
            },
        ),
        (
            "h port",
            ChmailHeader {
                host: "chat.example.com:8443".into(),
                ..good.clone()
            },
        ),
        (
            "p",
            ChmailHeader {
                port: PORT + 1,
                ..good.clone()
            },
        ),
        (
            "r",
            ChmailHeader {
                room: RoomId::generate(),
                ..good.clone()
            },
        ),
        (
            "t",
            ChmailHeader {
                time: TIME + 1,
                ..good.clone()
            },
        ),
        ("b", {
            let mut h = good.clone();
            h.signature[10] ^= 1;
            h
        }),
        (
            "b short",
            ChmailHeader {
                signature: good.signature[..63].to_vec(),
                ..good.clone()
            },
        ),
        (
            "b empty",
            ChmailHeader {
                signature: Vec::new(),
                ..good.clone()
            },
        ),
    ];
    for (what, header) in tampered {
        match header.verify(FROM, &key) {
            Verdict::Fail(reason) => assert!(!reason.is_empty(), "{what}"),
            Verdict::Pass => panic!("tampered {what} passed"),
        }
    }
    for from in [
        "mallory@example.com",
        "alice@example.com.evil.net",
        "Alice <alice@example.co>",
        "alice@example.com, bob@example.com",
        "",
    ] {
        assert!(!good.verify(from, &key).is_pass(), "From {from:?} passed");
    }
}

#[test]
fn tampering_in_the_field_text_fails_verification() {
    let key = signer().public_key();
    let value = signed().to_value();
    for (from, to) in [
        ("d=example.com", "d=example.org"),
        ("s=sel1", "s=sel9"),
        ("l=alice@", "l=alicf@"),
        ("h=chat.", "h=chat2."),
        ("p=20417", "p=20418"),
        ("r=Xk3", "r=Yk3"),
        ("t=1700000000", "t=1700000001"),
        ("b=7", "b=8"),
    ] {
        let forged = value.replacen(from, to, 1);
        assert_ne!(forged, value, "{from} is in the field");
        let verdict = ChmailHeader::parse(forged.as_bytes()).map(|h| h.verify(FROM, &key));
        assert!(
            !matches!(verdict, Ok(Verdict::Pass)),
            "{from} -> {to} passed"
        );
    }
}

#[test]
fn case_of_d_h_and_from_is_not_signed_but_case_of_login_is() {
    let key = signer().public_key();
    let good = signed();
    let upper = ChmailHeader {
        domain: "EXAMPLE.com".into(),
        host: "Chat.Example.COM".into(),
        ..good.clone()
    };
    assert!(upper.verify("ALICE@EXAMPLE.COM", &key).is_pass());
    let login = ChmailHeader {
        login: "Alice@example.com".into(),
        ..good
    };
    assert!(!login.verify(FROM, &key).is_pass());
}

#[test]
fn a_wrong_key_fails_verification() {
    let other = Signer::from_seed(DOMAIN, SELECTOR, [8; 32]);
    match signed().verify(FROM, &other.public_key()) {
        Verdict::Fail(reason) => assert!(reason.contains("sel1._chmail.example.com"), "{reason}"),
        Verdict::Pass => panic!("a wrong key passed"),
    }
}

/// A valid field body with `tag=value` as the only change (appended, or replacing the tag).
fn with_tag(tag: &str, value: Option<&str>) -> String {
    let base = signed().to_value().replace("\n\t", " ");
    let mut tags: Vec<String> = base
        .split("; ")
        .filter(|t| !t.starts_with(&format!("{tag}=")))
        .map(str::to_owned)
        .collect();
    if let Some(v) = value {
        tags.push(format!("{tag}={v}"));
    }
    tags.join("; ")
}

#[test]
fn parse_rejects_duplicate_missing_unknown_and_versioned_tags() {
    let value = signed().to_value();
    let dup = format!("{value}; p=20417");
    assert_eq!(
        ChmailHeader::parse(dup.as_bytes()),
        Err(HeaderError::DuplicateTag("p".into()))
    );
    for tag in ["v", "d", "s", "l", "h", "p", "r", "t", "b"] {
        let missing = with_tag(tag, None);
        assert_eq!(
            ChmailHeader::parse(missing.as_bytes()),
            Err(HeaderError::MissingTag(tag)),
            "{missing}"
        );
    }
    assert_eq!(
        ChmailHeader::parse(with_tag("v", Some("2")).as_bytes()),
        Err(HeaderError::UnsupportedVersion("2".into()))
    );
    assert_eq!(
        ChmailHeader::parse(format!("{value}; x=1").as_bytes()),
        Err(HeaderError::UnknownTag("x".into()))
    );
    assert_eq!(
        ChmailHeader::parse(format!("{value}; D=1").as_bytes()),
        Err(HeaderError::UnknownTag("D".into()))
    );
}

#[test]
fn parse_rejects_bad_values() {
    let cases: &[(&str, &str)] = &[
        ("b", "!!!notbase64!!!"),
        ("b", "AAAA"),
        ("b", "7/MtL+CyY0Io0vV5IH+aBHzW7tYqOMR7O5xvcsDtqqJaEtstWjP3O14Zuh6p+594pp4BNJzipXLDmA8Wv41xCA"),
        ("p", "0"),
        ("p", "65536"),
        ("p", "020417"),
        ("p", "+20417"),
        ("p", "-1"),
        ("p", ""),
        ("t", "-1"),
        ("t", "18446744073709551616"),
        ("t", "01700000000"),
        ("t", "1.5"),
        ("r", "short"),
        ("r", "Xk3Fq9LmZ2pT7vRw4sYb8A/"),
        ("d", ""),
        ("d", "exa mple.com"),
        ("d", "example..com"),
        ("d", "exämple.com"),
        ("s", "sel_1"),
        ("l", ""),
        ("l", "al\u{7f}ice"),
        ("h", "chat.example.com:0"),
        ("h", "https://chat.example.com"),
    ];
    for (tag, bad) in cases {
        let text = with_tag(tag, Some(bad));
        assert!(
            ChmailHeader::parse(text.as_bytes()).is_err(),
            "{tag}={bad:?} was accepted"
        );
    }
    let b_unpadded = with_tag("b", Some(cases[2].1));
    assert_eq!(
        ChmailHeader::parse(b_unpadded.as_bytes()),
        Err(HeaderError::BadBase64)
    );
}

#[test]
fn parse_rejects_empty_separator_only_non_utf8_control_and_huge_input() {
    let value = signed().to_value();
    assert_eq!(ChmailHeader::parse(b""), Err(HeaderError::Empty));
    assert_eq!(ChmailHeader::parse(b" \r\n\t"), Err(HeaderError::Empty));
    for seps in [";", ";;;", " ; ; ", "=", "==;=="] {
        assert!(ChmailHeader::parse(seps.as_bytes()).is_err(), "{seps:?}");
    }
    let mut non_utf8 = value.clone().into_bytes();
    non_utf8.insert(20, 0xff);
    assert_eq!(ChmailHeader::parse(&non_utf8), Err(HeaderError::NotUtf8));
    for (i, bad) in ["\0", "\r", "\n", "\r\n", "\x1b", "\n\n\t", ";;"]
        .iter()
        .enumerate()
    {
        let at = value.find("s=sel1").expect("s tag") + 2 * (i % 2);
        let mut text = value.clone();
        text.insert_str(at, bad);
        assert!(
            ChmailHeader::parse(text.as_bytes()).is_err(),
            "{bad:?} at {at} accepted"
        );
    }
    let huge = vec![b'a'; 1 << 20];
    assert_eq!(
        ChmailHeader::parse(&huge),
        Err(HeaderError::TooLong(1 << 20))
    );
    let padded = format!("{value}{}", " ".repeat(5000));
    assert!(matches!(
        ChmailHeader::parse(padded.as_bytes()),
        Err(HeaderError::TooLong(_))
    ));
}

/// A tiny deterministic PRNG (xorshift64) so the fuzz loops need no extra crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_bytes_never_panic_and_never_verify() {
    let key = signer().public_key();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let alphabet = b"v=1;dslhprtb =;\r\n\t\0\xff\xc3\xa9AZaz09+/_-.:@[]";
    for i in 0..10_000 {
        let len = rng.below(300);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if i % 2 == 0 {
                    rng.next() as u8
                } else {
                    alphabet[rng.below(alphabet.len())]
                }
            })
            .collect();
        if let Ok(h) = ChmailHeader::parse(&bytes) {
            assert!(!h.verify(FROM, &key).is_pass());
        }
    }
}

#[test]
fn mutated_fields_never_panic_and_pass_only_with_the_signed_content() {
    let key = signer().public_key();
    let good = signed();
    let want = canonical_bytes(&good, FROM).expect("canonical");
    let value = good.to_value().into_bytes();
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let pool = b" \t\r\n;=\0abAZ09+/-_.:@[]\xff";
    let mut parsed = 0;
    for _ in 0..10_000 {
        let mut bytes = value.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len() + 1);
            match rng.below(3) {
                0 if at < bytes.len() => bytes[at] = pool[rng.below(pool.len())],
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, pool[rng.below(pool.len())]),
            }
        }
        if let Ok(h) = ChmailHeader::parse(&bytes) {
            parsed += 1;
            let from = if rng.below(2) == 0 {
                FROM
            } else {
                "alice@example.com"
            };
            if h.verify(from, &key).is_pass() {
                assert_eq!(h.signature, good.signature);
                assert_eq!(canonical_bytes(&h, from).expect("canonical"), want);
            }
        }
    }
    assert!(
        parsed > 100,
        "only {parsed} mutants parsed: the loop barely reaches verify"
    );
}

#[test]
fn to_value_has_no_cr_or_nul_and_short_lines_even_with_the_longest_values() {
    let label = "a".repeat(63);
    // `s` and `d` together make a key name of at most 253 characters: `s._chmail.` + 243.
    let domain = format!("{label}.{label}.{label}.{}", "b".repeat(51));
    assert_eq!(domain.len(), 243);
    let login = format!("{}@{}", "l".repeat(64), "c".repeat(255));
    assert_eq!(login.len(), 320);
    let host = format!("{label}.{label}.{label}.{}:65535", "c".repeat(61));
    assert_eq!(host.len(), 253 + 6);
    let signer = Signer::from_seed(&domain, "s", SEED);
    let room = RoomId::parse(&"r".repeat(64)).expect("64-char room id");
    let from = format!("{}@{domain}", "f".repeat(64));
    let header = signer
        .sign(&login, &host, u16::MAX, &room, u64::MAX, &from)
        .expect("the longest values are signable");
    let value = header.to_value();
    assert!(!value.contains('\r') && !value.contains('\0'));
    let field = format!("{HEADER_NAME}: {value}");
    for (i, line) in field.split('\n').enumerate() {
        assert!(line.len() < 998, "line {i} has {} octets", line.len());
        if i > 0 {
            assert!(line.starts_with('\t'), "line {i} is a fold");
        }
    }
    assert!(field.len() < chmail::header::MAX_HEADER_LEN);
    let parsed = ChmailHeader::parse(value.as_bytes()).expect("parses");
    assert!(parsed.verify(&from, &signer.public_key()).is_pass());

    let short = signed().to_value();
    let first = format!("{HEADER_NAME}: {short}");
    assert!(first.split('\n').all(|l| l.len() <= 78), "{first}");
}

#[test]
fn to_value_drops_control_characters_from_hand_built_values() {
    let header = ChmailHeader {
        login: "alice\r\nBcc: victim@example.com\0".into(),
        host: "chat\n.example.com".into(),
        ..signed()
    };
    let value = header.to_value();
    assert!(!value.contains('\r') && !value.contains('\0'));
    assert!(value.split('\n').skip(1).all(|l| l.starts_with('\t')));
    assert!(!header.verify(FROM, &signer().public_key()).is_pass());
}

#[test]
fn sign_rejects_unsafe_login_host_and_from() {
    let signer = signer();
    let room = room();
    for bad in [
        "", "al ice", "alice;x", "al\rice", "al\nice", "al\0ice", "al\tice", "alïce",
    ] {
        let r = signer.sign(bad, HOST, PORT, &room, TIME, FROM);
        assert!(r.is_err(), "login {bad:?} accepted");
        if !bad.is_empty() {
            let host = format!("chat{bad}.example.com");
            let r = signer.sign(LOGIN, &host, PORT, &room, TIME, FROM);
            assert!(r.is_err(), "host {host:?} accepted");
        }
    }
    assert!(signer.sign(LOGIN, "", PORT, &room, TIME, FROM).is_err());
    assert_eq!(
        signer.sign(LOGIN, HOST, 0, &room, TIME, FROM),
        Err(HeaderError::BadPort("0".into()))
    );
    assert!(matches!(
        signer.sign(LOGIN, HOST, PORT, &room, TIME, "a@x, b@y"),
        Err(HeaderError::BadFrom(_))
    ));
    let bad_domain = Signer::from_seed("exa;mple.com", SELECTOR, SEED);
    assert!(bad_domain
        .sign(LOGIN, HOST, PORT, &room, TIME, FROM)
        .is_err());
}

#[test]
fn header_errors_say_what_is_wrong() {
    assert_eq!(
        HeaderError::MissingTag("b").to_string(),
        "tag b= is missing"
    );
    assert_eq!(
        HeaderError::DuplicateTag("d".into()).to_string(),
        "tag d= appears more than once"
    );
    assert!(HeaderError::TooLong(5000).to_string().contains("4096"));
}

#[test]
fn a_non_breaking_space_inside_the_signature_is_refused() {
    let value = signed().to_value();
    let (head, tail) = value.split_at(value.len() - 10);
    let mangled = format!("{head}\u{a0}{tail}");
    assert!(
        ChmailHeader::parse(mangled.as_bytes()).is_err(),
        "{mangled}"
    );
    let spaced = format!("{head} \t{tail}");
    assert!(ChmailHeader::parse(spaced.as_bytes()).is_ok(), "{spaced}");
}

/// The rows of the table after `<!-- vectors:results -->`: each row's cells, trimmed.
fn doc_result_rows() -> Vec<Vec<String>> {
    let marker = "<!-- vectors:results -->";
    let start = DOC
        .find(marker)
        .unwrap_or_else(|| panic!("docs/header.md lacks {marker}"));
    DOC[start + marker.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the head and the |---| line
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The text between the backticks of each `code` span in `cell`, with the doc's placeholders
/// (`%A63%`, `%D183%`) written out.
fn code_spans(cell: &str) -> Vec<String> {
    let long_name = format!("{0}.{0}.{1}", "b".repeat(63), "b".repeat(55));
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| {
            s.replace("%A63%", &"a".repeat(63))
                .replace("%D183%", &long_name)
        })
        .collect()
}

/// The vector field with each `tag=value` of `edits` replacing that tag, or added.
fn vector_with(edits: &[String]) -> String {
    let unfolded = doc_field_body().replace("\r\n\t", " ");
    let mut tags: Vec<String> = unfolded
        .split(';')
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    for edit in edits {
        let (name, _) = edit.split_once('=').expect("an edit is tag=value");
        let prefix = format!("{name}=");
        match tags.iter_mut().find(|t| t.starts_with(&prefix)) {
            Some(tag) => tag.clone_from(edit),
            None => tags.push(edit.clone()),
        }
    }
    tags.join("; ")
}

#[test]
fn doc_result_vectors_give_the_documented_results() {
    let rows = doc_result_rows();
    assert!(rows.len() >= 20, "only {} rows", rows.len());
    let record = doc_vector("dns-record");
    for row in &rows {
        let [field, from, dns, result, reason] = row.as_slice() else {
            panic!("a row has five cells: {row:?}");
        };
        let body = match field.as_str() {
            "vector" => doc_field_body(),
            f if f.starts_with("vector with ") => vector_with(&code_spans(f)),
            f => code_spans(f).concat(),
        };
        let from = match from.as_str() {
            "none" => None,
            f => Some(code_spans(f).concat()),
        };
        let answer = match dns.as_str() {
            "not asked" => None,
            "vector" => Some(KeyAnswer::Records(vec![record.clone()])),
            "vector, twice" => Some(KeyAnswer::Records(vec![record.clone(), record.clone()])),
            "`NXDOMAIN`" => Some(KeyAnswer::NoRecord),
            "`SERVFAIL`" => Some(KeyAnswer::TempError("SERVFAIL".into())),
            "time-out" => Some(KeyAnswer::TempError("time-out".into())),
            d => Some(KeyAnswer::Records(code_spans(d))),
        };
        let checked = match (check_header(body.as_bytes(), from.as_deref()), &answer) {
            (Stage::Decided(checked), None) => checked,
            (Stage::AwaitingKey(pending), Some(answer)) => {
                assert_eq!(pending.key_name(), "sel1._chmail.example.com", "{row:?}");
                pending.with_answer(answer)
            }
            (Stage::Decided(checked), Some(_)) => panic!("decided before DNS: {checked:?} {row:?}"),
            (Stage::AwaitingKey(_), None) => panic!("asks DNS: {row:?}"),
        };
        assert_eq!(
            checked.result.as_str(),
            result,
            "{row:?}: {}",
            checked.reason
        );
        assert!(!reason.is_empty() && !checked.reason.is_empty(), "{row:?}");
    }
    for result in AuthResult::ALL {
        assert!(
            rows.iter().any(|r| r[3] == result.as_str()),
            "no row for {result}"
        );
    }
}
