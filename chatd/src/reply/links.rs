//! chatd's own sign-in links in a reply. Reminder mails carry a sign-in link
//! (`<[chat] public_url>/auth/<token>`); a reply that quotes the reminder in a way the history
//! heuristics miss would post that link into the room, where every participant could sign in as
//! the sender. Whatever [`super::new_text`] leaves, such links are cut out before posting, in
//! two ways that do not depend on each other:
//!
//! - [`strip_signin_links`]: every word of the text that is, or wraps, a link into
//!   `<public_url>/auth/`, read percent-decoded (a gateway such as Microsoft Safe Links writes
//!   `https://eur01.safelinks.protection.outlook.com/?url=http%3A%2F%2F<host>%2Fauth%2F<token>`),
//!   goes whole;
//! - [`token_candidates`] and [`remove_tokens`]: every word of the text with the shape of a
//!   token (43 URL-safe base64 characters, again percent-decoded) is a candidate; the listener
//!   uses each candidate that is a live sign-in token of this chatd (which spends it) and cuts
//!   it out. So a token that a client wrapped onto a line of its own, or a link in a form
//!   nobody foresaw, still signs nobody in.
//!
//! Quoted-printable soft line breaks never split a link here: mail-parser has undone the
//! transfer encoding before (see [`super::text`]).

/// What a removed link becomes in the posted text.
pub const REMOVED: &str = "[sign-in link removed]";

/// Bytes that end a URL in running text.
const URL_END: &[u8] = b"<>\"'()[]{}";

/// Length of a token as written (32 bytes in URL-safe base64 without padding).
const TOKEN_LEN: usize = 43;

/// How many rounds of percent-decoding a word gets: a gateway may wrap a link that another one
/// wrapped already (`%252F`).
const DECODE_ROUNDS: usize = 3;

/// `text` with every word that is or wraps a link into `public_base`'s `/auth/` path replaced by
/// [`REMOVED`] (with or without its scheme, percent-encoded or not, the host compared
/// case-insensitively), and how many were replaced. A word is a run of bytes without white
/// space and without the bytes that end a URL in running text (`<>"'()[]{}`).
pub fn strip_signin_links(text: &str, public_base: &str) -> (String, usize) {
    let without_scheme = public_base
        .split_once("://")
        .map_or(public_base, |(_, rest)| rest)
        .trim_end_matches('/');
    let needle = format!("{without_scheme}/auth/").to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut count = 0;
    for (is_word, piece) in words(text) {
        if is_word && decoded(piece).to_ascii_lowercase().contains(&needle) {
            out.push_str(REMOVED);
            count += 1;
        } else {
            out.push_str(piece);
        }
    }
    (out, count)
}

/// The distinct token-shaped runs of `text` (43 URL-safe base64 characters between other
/// characters), looked for in each word percent-decoded, in the order found.
pub fn token_candidates(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for (is_word, piece) in words(text) {
        if !is_word || piece.len() < TOKEN_LEN {
            continue;
        }
        let word = decoded(piece);
        for run in word.split(|c: char| !is_token_char(c)) {
            if run.len() == TOKEN_LEN && !found.iter().any(|f| f == run) {
                found.push(run.to_owned());
            }
        }
    }
    found
}

/// `text` with every word that holds one of `tokens` (percent-decoded) replaced by [`REMOVED`],
/// and how many were replaced.
pub fn remove_tokens(text: &str, tokens: &[String]) -> (String, usize) {
    if tokens.is_empty() {
        return (text.to_owned(), 0);
    }
    let mut out = String::with_capacity(text.len());
    let mut count = 0;
    for (is_word, piece) in words(text) {
        if is_word && {
            let word = decoded(piece);
            tokens.iter().any(|t| word.contains(t.as_str()))
        } {
            out.push_str(REMOVED);
            count += 1;
        } else {
            out.push_str(piece);
        }
    }
    (out, count)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// `text` cut into pieces that join back to it: words (`true`) and what lies between them.
fn words(text: &str) -> impl Iterator<Item = (bool, &str)> {
    let bytes = text.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= bytes.len() {
            return None;
        }
        let is_word = !ends_word(bytes[at]);
        let start = at;
        while at < bytes.len() && ends_word(bytes[at]) != is_word {
            at += 1;
        }
        // Word bytes and separators are told apart by ASCII bytes only (every byte of a
        // multi-byte character is a word byte), so `start` and `at` are character boundaries.
        Some((is_word, &text[start..at]))
    })
}

/// A byte that is not part of a word: white space or one of [`URL_END`].
fn ends_word(b: u8) -> bool {
    b.is_ascii_whitespace() || URL_END.contains(&b)
}

/// `word` percent-decoded up to [`DECODE_ROUNDS`] times (bytes that are not UTF-8 become
/// U+FFFD); unchanged when it holds no `%`.
fn decoded(word: &str) -> String {
    let mut word = word.to_owned();
    for _ in 0..DECODE_ROUNDS {
        if !word.contains('%') {
            break;
        }
        let next = percent_decode(&word);
        if next == word {
            break;
        }
        word = next;
    }
    word
}

/// One round of percent-decoding: `%XX` becomes its byte; a `%` without two hex digits stays.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let value = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                // Two hex digits make at most 0xff.
                out.push(u8::try_from(value).unwrap_or(b'%'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://Chat.Example.com:8443/base";
    const TOKEN: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE";

    #[test]
    fn links_with_and_without_scheme_are_removed() {
        let text =
            "Yes.\nSign in: https://chat.example.com:8443/base/auth/AbC-d_9 (valid 15 min)\n\
                    also <CHAT.example.com:8443/base/auth/xyz>, done";
        let (out, n) = strip_signin_links(text, BASE);
        assert_eq!(n, 2);
        assert_eq!(
            out,
            "Yes.\nSign in: [sign-in link removed] (valid 15 min)\nalso <[sign-in link removed]>, done"
        );
    }

    #[test]
    fn links_wrapped_by_safe_links_or_encoded_twice_go_whole() {
        let text = format!(
            "See https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fchat.example.com\
             %3A8443%2Fbase%2Fauth%2F{TOKEN}&data=05%7C02%7Ca%40b%7C&reserved=0 then\n\
             https://gw.example/r?u=https%253A%252F%252FCHAT.example.com%253A8443%252Fbase\
             %252Fauth%252F{TOKEN}\nok"
        );
        let (out, n) = strip_signin_links(&text, BASE);
        assert_eq!(
            (out.as_str(), n),
            (
                "See [sign-in link removed] then\n[sign-in link removed]\nok",
                2
            )
        );
    }

    #[test]
    fn other_links_and_plain_text_stay() {
        for text in [
            "see https://chat.example.com:8443/base/c/20000/room",
            "https://other.example/auth/abc",
            "https://chat.example.com:8443/auth/abc",
            "https://other.example/?url=https%3A%2F%2Fchat.example.com%3A8443%2Fbase%2Fc%2F1",
            "ünïcödé ✓ /auth/ 100% sure %zz",
            "",
        ] {
            assert_eq!(
                strip_signin_links(text, BASE),
                (text.to_owned(), 0),
                "{text}"
            );
        }
    }

    #[test]
    fn a_link_at_the_very_end_goes_too() {
        let (out, n) = strip_signin_links("ok http://chat.test/auth/t0k3n", "http://chat.test");
        assert_eq!((out.as_str(), n), ("ok [sign-in link removed]", 1));
    }

    #[test]
    fn token_shaped_runs_are_found_in_any_encoding_and_cut() {
        let text = format!(
            "line one\n{TOKEN}\nx?url=a%2Fauth%2F{TOKEN}&data=1 \
             short_run and a 44 {TOKEN}x"
        );
        assert_eq!(token_candidates(&text), [TOKEN.to_owned()]);
        let (out, n) = remove_tokens(&text, &[TOKEN.to_owned()]);
        assert_eq!(n, 3, "{out}");
        assert!(!out.contains("AbCdEfGh"), "{out}");
        assert!(
            out.starts_with("line one\n[sign-in link removed]\n"),
            "{out}"
        );
        assert_eq!(remove_tokens("no tokens", &[]), ("no tokens".to_owned(), 0));
    }
}
