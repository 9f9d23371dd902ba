//! The bodies of the fuzz targets, one function per target: each takes the fuzzer's bytes, feeds
//! them to one parser of CHmail and checks what must hold whatever the input (no panic, and the
//! properties named in each function's doc). The targets in `fuzz_targets/` call these, and the
//! stable test `tests/fuzz_corpus.rs` runs every file of `corpus/<target>/` through the same
//! functions, so the seed corpus is checked on every `cargo test` without a nightly toolchain.
//!
//! Inputs that need two parts (a header field and the From field, the MIME header block and the
//! body) are split at the first NUL byte or, for a mail, at the first blank line, so that a
//! fixture mail is a seed as it is.

use chmail::header::{canonical_bytes, check_header, from_address, ChmailHeader, Signer};

/// The public base of the chat links in the targets.
const PUBLIC_BASE: &str = "https://chat.example.com/";

/// The link the footer target adds.
const LINK: &str = "https://chat.example.com/c/20417/Xk3Fq9LmZ2pT7vRw4sYb8A";

/// The opening length the milter uses by default (`[milter] opening_chars`).
const OPENING_CHARS: usize = 500;

/// The From field used when the input holds none.
const DEFAULT_FROM: &str = "Alice <alice@example.com>";

/// `data` split at its first NUL byte; the whole and nothing when it holds none.
fn split_nul(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    }
}

/// A mail split into its header block and its body at the first blank line (CRLF or LF).
fn split_mail(data: &[u8]) -> (&[u8], &[u8]) {
    for (i, window) in data.windows(2).enumerate() {
        if window == b"\n\n" {
            return (&data[..=i], &data[i + 2..]);
        }
        if window == b"\n\r" && data.get(i + 2) == Some(&b'\n') {
            return (&data[..=i], &data[i + 3..]);
        }
    }
    (data, b"")
}

/// The CHmail header field: `data` is the field body, optionally followed by a NUL and the From
/// field body. Parsing never panics; a field that parses prints (`to_value`) as a field that
/// parses to the same values; its canonical form and its verification against an unrelated key
/// (which must fail) never panic; the verifier's first step decides or awaits a key.
pub fn chmail_header(data: &[u8]) {
    let (value, from) = split_nul(data);
    let from = from.map_or_else(
        || DEFAULT_FROM.to_owned(),
        |f| String::from_utf8_lossy(f).into_owned(),
    );
    let _ = check_header(value, Some(&from));
    let _ = check_header(value, None);
    let Ok(header) = ChmailHeader::parse(value) else {
        return;
    };
    let printed = header.to_value();
    let again = ChmailHeader::parse(printed.as_bytes())
        .unwrap_or_else(|e| panic!("printed field {printed:?} does not parse: {e}"));
    assert_eq!(
        again, header,
        "printing and parsing again changes the values"
    );
    let _ = canonical_bytes(&header, &from);
    let stranger = Signer::from_seed("example.com", "fuzz", [9; 32]);
    let _ = header.verify(&from, &stranger.public_key()).is_pass();
}

/// From fields and address lists: `data` as the body of From, To and Cc. The shared From parser
/// never panics and what it returns is an address it accepts again; the milter's header summary
/// (To and Cc lists through `mail-parser`, groups, encoded words) never panics and names only
/// addresses with an `@`.
pub fn from_and_addresses(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(address) = from_address(&text) {
        assert!(
            from_address(&address).is_some(),
            "the address {address:?} read from {text:?} does not read again"
        );
    }
    let _ = chmail_milter::headers::normalize_address(&text);
    let mut headers = chmail_milter::headers::Headers::new(64 * 1024);
    headers.push(b"From", data);
    headers.push(b"To", data);
    headers.push(b"Cc", data);
    headers.push(b"Subject", data);
    let summary = headers.summary();
    for person in &summary.recipients {
        assert!(person.address.contains('@'), "{person:?}");
    }
}

/// A reply mail to chatd's reply address: `data` is the whole mail. Reading its new text
/// (cutting the quoted history, the signature and chatd's own links, HTML as text) never panics,
/// and neither do the automatic-reply check and the sign-in link and token cutting of the text.
pub fn reply_text(data: &[u8]) {
    let _ = chatd::reply::is_automatic(data, None);
    let _ = chatd::reply::is_automatic(data, Some(""));
    let text = match chatd::reply::new_text(data) {
        Ok(reply) => reply.text,
        Err(_) => String::from_utf8_lossy(data).into_owned(),
    };
    let (cut, _) = chatd::reply::links::strip_signin_links(&text, PUBLIC_BASE);
    let tokens = chatd::reply::links::token_candidates(&cut);
    let _ = chatd::reply::links::remove_tokens(&cut, &tokens);
}

/// A WebSocket text frame from a client: decoding it never panics, whatever the bytes (a frame
/// that is no UTF-8 never reaches the decoder: the socket refuses it first).
pub fn ws_frame(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = chatd::ws::protocol::parse(text);
    }
}

/// The milter's footer: `data` is a mail, its header block holding the MIME fields. Adding the
/// footer never panics, and a body it changed is not empty.
pub fn footer(data: &[u8]) {
    let (header, body) = split_mail(data);
    if let chmail_milter::footer::Footer::Added(new) =
        chmail_milter::footer::add_footer(header, body, LINK)
    {
        assert!(!new.is_empty(), "an added footer left an empty body");
    }
}

/// The CSV import of the mall's ads: splitting any text into records never panics, records come
/// in the order of their lines, and reading any field as a `starts` or `ends` time never panics.
pub fn ads_csv(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let records = chatd::mall::admin::parse_csv(&text);
    for pair in records.windows(2) {
        assert!(pair[0].line < pair[1].line, "{records:?}");
    }
    for field in records.iter().flat_map(|r| &r.fields) {
        let _ = chatd::mall::admin::parse_when(field, false);
        let _ = chatd::mall::admin::parse_when(field, true);
    }
}

/// The milter's opening of a signed mail: `data` is a mail, its header block holding the MIME
/// fields. Reading the opening never panics and never gives more than the characters asked for.
pub fn opening(data: &[u8]) {
    let (mime, body) = split_mail(data);
    let body = &body[..body.len().min(chmail_milter::opening::PREFIX_BYTES)];
    if let Some(text) = chmail_milter::opening::opening(mime, body, OPENING_CHARS) {
        assert!(text.chars().count() <= OPENING_CHARS, "{text:?}");
    }
    let _ = chmail_milter::opening::opening(mime, body, 1);
}

/// The body of a fuzz target: takes the fuzzer's bytes, panics when a property breaks.
pub type Target = fn(&[u8]);

/// Every target by the name of its folder under `corpus/` and of its file under
/// `fuzz_targets/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("chmail_header", chmail_header),
    ("from_and_addresses", from_and_addresses),
    ("reply_text", reply_text),
    ("ws_frame", ws_frame),
    ("footer", footer),
    ("ads_csv", ads_csv),
    ("opening", opening),
];
