//! chatd's own sign-in links in a reply. Reminder mails carry a sign-in link
//! (`<[chat] public_url>/auth/<token>`); a reply that quotes the reminder in a way the history
//! heuristics miss would post that link into the room, where every participant could sign in as
//! the sender. Whatever [`super::new_text`] leaves, such links are cut out before posting.

/// What a removed link becomes in the posted text.
pub const REMOVED: &str = "[sign-in link removed]";

/// Bytes that end a URL in running text.
const URL_END: &[u8] = b"<>\"'()[]{}";

/// `text` with every link into `public_base`'s `/auth/` path replaced by [`REMOVED`] (with or
/// without its scheme, the host compared case-insensitively), and how many were replaced.
pub fn strip_signin_links(text: &str, public_base: &str) -> (String, usize) {
    let without_scheme = public_base
        .split_once("://")
        .map_or(public_base, |(_, rest)| rest)
        .trim_end_matches('/');
    let needle = format!("{without_scheme}/auth/").to_ascii_lowercase();
    // ASCII lowercasing keeps every byte offset, so offsets in `lower` are offsets in `text`.
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut count) = (0, 0);
    let mut from = 0;
    while let Some(found) = lower[from..].find(&needle) {
        let at = from + found;
        let start = ["https://", "http://"]
            .iter()
            .find(|scheme| lower[..at].ends_with(*scheme))
            .map_or(at, |scheme| at - scheme.len());
        let mut end = at + needle.len();
        while end < bytes.len()
            && !bytes[end].is_ascii_whitespace()
            && !URL_END.contains(&bytes[end])
        {
            end += 1;
        }
        // `start` and `end` sit next to ASCII bytes (the needle, a scheme, a delimiter, or the
        // end), so they are character boundaries.
        out.push_str(&text[copied..start]);
        out.push_str(REMOVED);
        copied = end;
        from = end;
        count += 1;
    }
    out.push_str(&text[copied..]);
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://Chat.Example.com:8443/base";

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
    fn other_links_and_plain_text_stay() {
        for text in [
            "see https://chat.example.com:8443/base/c/20000/room",
            "https://other.example/auth/abc",
            "https://chat.example.com:8443/auth/abc",
            "ünïcödé ✓ /auth/",
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
}
