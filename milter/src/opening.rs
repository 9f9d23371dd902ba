//! The opening of a signed mail: the start of its text, kept with its room so that the chat
//! shows the mail that started it as its first item (`[milter] opening_chars`).
//!
//! Only the first [`PREFIX_BYTES`] of the body are read (the MTA is asked to skip the rest when
//! nothing else needs it). The text is the mail's first text part as `mail-parser` decodes it
//! (quoted-printable, base64, charsets; an HTML-only mail as its text), read up to the first
//! signature line (`-- `), a quoted line (`>`) or the attribution before a quote ("On ... wrote:"),
//! with runs of blank lines made one, cut to `opening_chars` characters. A mail that is signed or
//! encrypted end to end (S/MIME, PGP), or whose text cannot be read, has no opening: the chat
//! then shows the subject alone.

use mail_parser::{MessageParser, MimeHeaders};

/// Most body bytes read for the opening: the start of the text, even behind a few MIME headers
/// and a base64 part, without holding a large mail.
pub const PREFIX_BYTES: usize = 16 * 1024;

/// The opening of a mail whose MIME header fields are `mime` (Content-Type and
/// Content-Transfer-Encoding, as kept by [`crate::headers::Headers::mime_fields`]) and whose body
/// starts with `body`, at most `max_chars` characters; `None` when there is no readable text.
pub fn opening(mime: &[u8], body: &[u8], max_chars: usize) -> Option<String> {
    if max_chars == 0 || body.is_empty() {
        return None;
    }
    let mut raw = Vec::with_capacity(mime.len() + body.len() + 2);
    raw.extend_from_slice(mime);
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
    let message = MessageParser::new().parse(&raw)?;
    let protected = message.content_type().is_some_and(|ct| {
        let sub = ct.subtype().unwrap_or_default().to_ascii_lowercase();
        ct.ctype().eq_ignore_ascii_case("multipart") && (sub == "signed" || sub == "encrypted")
            || ct.ctype().eq_ignore_ascii_case("application") && sub.contains("pkcs7")
    });
    if protected {
        return None;
    }
    let text = message.body_text(0)?;
    let kept = new_text(&text);
    let cut = cut(&kept, max_chars);
    (!cut.trim().is_empty()).then_some(cut)
}

/// The lines of `text` before its signature, its quote or the attribution of a quote; blank
/// runs made one, the ends trimmed.
fn new_text(text: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut blank = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let trimmed = line.trim();
        if line == "-- " || line == "--" || trimmed.starts_with('>') || is_attribution(trimmed) {
            break;
        }
        if trimmed.is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push("");
            blank = false;
        }
        out.push(line.trim_end());
    }
    out.join("\n")
}

/// "On Mon, 1 May 2024, Alice <a@x> wrote:" and the like, the line before a quote.
fn is_attribution(line: &str) -> bool {
    let lower = line.to_lowercase();
    (lower.starts_with("on ") && lower.ends_with("wrote:"))
        || (lower.starts_with("am ") && lower.ends_with("schrieb:"))
        || (lower.starts_with("le ") && lower.ends_with("a écrit :"))
}

/// `text` cut to `max` characters, with an ellipsis when it was longer.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", text[..end].trim_end()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &[u8] = b"Content-Type: text/plain; charset=utf-8\r\n";

    #[test]
    fn the_new_text_of_a_plain_mail_is_kept_up_to_the_signature_or_the_quote() {
        let body = b"\r\n\r\nHi Bob,\r\n\r\n\r\nhere are the numbers.\r\n-- \r\nAlice\r\n";
        assert_eq!(
            opening(PLAIN, body, 500).as_deref(),
            Some("Hi Bob,\n\nhere are the numbers.")
        );
        let reply = b"Yes, Tuesday works.\r\n\r\nOn Mon, 1 May 2024, Bob wrote:\r\n> When?\r\n";
        assert_eq!(
            opening(PLAIN, reply, 500).as_deref(),
            Some("Yes, Tuesday works.")
        );
        assert_eq!(opening(PLAIN, b"> only a quote\r\n", 500), None);
        assert_eq!(opening(PLAIN, b"", 500), None);
        assert_eq!(opening(PLAIN, b"Hello", 0), None);
    }

    #[test]
    fn encoded_and_html_mails_are_read_as_text_and_cut() {
        let qp = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n";
        assert_eq!(
            opening(qp, b"Caf=C3=A9 at n=\r\noon?\r\n", 500).as_deref(),
            Some("Café at noon?")
        );
        let html = b"Content-Type: text/html; charset=utf-8\r\n";
        let got = opening(
            html,
            b"<html><body><p>Hello <b>there</b></p></body></html>",
            500,
        );
        assert!(
            got.as_deref()
                .is_some_and(|t| t.contains("Hello") && !t.contains('<')),
            "{got:?}"
        );
        let long = "word ".repeat(200);
        let got = opening(PLAIN, long.as_bytes(), 20).expect("an opening");
        assert_eq!(got.chars().count(), 20);
        assert!(got.ends_with('…'));
    }

    #[test]
    fn the_first_text_part_of_a_multipart_mail_and_never_a_signed_one() {
        let mixed = b"Content-Type: multipart/alternative; boundary=\"b1\"\r\n";
        let body = b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nPlain part\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>HTML part</p>\r\n--b1--\r\n";
        assert_eq!(opening(mixed, body, 500).as_deref(), Some("Plain part"));
        let signed =
            b"Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=\"s\"\r\n";
        let body = b"--s\r\nContent-Type: text/plain\r\n\r\nSecret plans\r\n--s--\r\n";
        assert_eq!(opening(signed, body, 500), None);
        // A body cut in the middle of a part still gives its start.
        let cut_short = b"--b1\r\nContent-Type: text/plain\r\n\r\nThe start of a long";
        assert_eq!(
            opening(mixed, cut_short, 500).as_deref(),
            Some("The start of a long")
        );
    }
}
