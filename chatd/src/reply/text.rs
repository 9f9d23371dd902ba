//! The new text of a reply by mail: the body part chosen and decoded, then what the mail client
//! quoted and the signature cut away.
//!
//! The text/plain body is preferred: it is what the writer's client made of the text, where
//! turning HTML into text is a guess. HTML is taken only when there is no text/plain body, or
//! only a blank one. mail-parser undoes the transfer encoding (quoted-printable, base64) and the
//! charset (UTF-8, ISO-8859-1, EUC-KR and the rest its `full_encoding` knows); `format=flowed`
//! (RFC 3676, sent by Thunderbird and Apple Mail) is undone here.

use std::fmt;

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::{history, html, Removed};

/// The new text of a reply, and how it was found (for logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyText {
    /// What the writer wrote: lines separated by `\n`, no blank line first or last, no spaces
    /// at line ends. Never empty.
    pub text: String,
    /// The body part it was taken from.
    pub body: BodyKind,
    /// What was cut away, each kind once, in the order found.
    pub removed: Vec<Removed>,
}

/// The kind of body part a reply's text was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyKind {
    /// text/plain.
    Plain,
    /// text/plain with `format=flowed`, unflowed.
    Flowed,
    /// text/html (there was no text/plain, or a blank one), turned into text.
    Html,
}

impl BodyKind {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Flowed => "flowed",
            Self::Html => "html",
        }
    }
}

impl fmt::Display for BodyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a mail gives no text to post.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReplyError {
    /// The bytes have no mail header: not a mail.
    #[error("not a mail: no header found")]
    NotAMail,
    /// The mail has no text/plain or text/html body (only attachments, say).
    #[error("the mail has no text or HTML body")]
    NoText,
    /// Once the quoted history and the signature are cut away, nothing is left.
    #[error("the reply has no new text")]
    Empty,
}

/// The new text of the reply `raw` (a whole mail as received).
///
/// # Errors
/// [`ReplyError`]: not a mail, no text body, or no new text in it. Never panics, whatever
/// `raw` holds.
pub fn new_text(raw: &[u8]) -> Result<ReplyText, ReplyError> {
    let message = MessageParser::new()
        .parse(raw)
        .ok_or(ReplyError::NotAMail)?;
    let (body, kind) = body_text(&message).ok_or(ReplyError::NoText)?;
    let mut removed = Vec::new();
    let text = history::strip(&body, &mut removed);
    if text.is_empty() {
        return Err(ReplyError::Empty);
    }
    Ok(ReplyText {
        text,
        body: kind,
        removed,
    })
}

/// The text of the message's text/plain body parts, else of its HTML ones; lines end in `\n`.
fn body_text(message: &Message<'_>) -> Option<(String, BodyKind)> {
    let mut kind = BodyKind::Plain;
    let plain: Vec<String> = message
        .text_bodies()
        .filter_map(|part| match &part.body {
            PartType::Text(text) if is_plain(part) => {
                let text = normalise(text);
                match flowed(part) {
                    Some(delsp) => {
                        kind = BodyKind::Flowed;
                        Some(unflow(&text, delsp))
                    }
                    None => Some(text),
                }
            }
            _ => None,
        })
        .collect();
    if plain.iter().any(|t| !t.trim().is_empty()) {
        return Some((plain.join("\n"), kind));
    }
    let html: Vec<String> = message
        .html_bodies()
        .filter_map(|part| match &part.body {
            PartType::Html(text) => Some(html::to_text(&normalise(text))),
            _ => None,
        })
        .collect();
    if html.is_empty() {
        // Blank text/plain is still a text body: its reply is empty, not missing.
        return (!plain.is_empty()).then(|| (plain.join("\n"), kind));
    }
    Some((html.join("\n"), BodyKind::Html))
}

/// The part is text/plain (a part without Content-Type is).
fn is_plain(part: &MessagePart<'_>) -> bool {
    part.content_type().is_none_or(|ct| {
        ct.ctype().eq_ignore_ascii_case("text")
            && ct.subtype().is_none_or(|s| s.eq_ignore_ascii_case("plain"))
    })
}

/// `Some(delsp)` when the part is `format=flowed`.
fn flowed(part: &MessagePart<'_>) -> Option<bool> {
    let ct = part.content_type()?;
    ct.attribute("format")
        .is_some_and(|f| f.eq_ignore_ascii_case("flowed"))
        .then(|| {
            ct.attribute("delsp")
                .is_some_and(|d| d.eq_ignore_ascii_case("yes"))
        })
}

/// `text` with `\n` line ends (from CRLF or CR) and no byte-order mark.
fn normalise(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\u{feff}', "")
}

/// `format=flowed` text (RFC 3676) as fixed lines: a line ending in a space goes on in the
/// next line of the same quote depth; space-stuffing is undone; quoted lines keep a `> ` per
/// depth so that quoting is still seen.
fn unflow(text: &str, delsp: bool) -> String {
    let mut out = String::with_capacity(text.len());
    // The quote depth of the line being continued, when the last line was flowed.
    let mut continuing: Option<usize> = None;
    for (n, line) in text.split('\n').enumerate() {
        let depth = line.bytes().take_while(|b| *b == b'>').count();
        let content = &line[depth..];
        let content = content.strip_prefix(' ').unwrap_or(content);
        if continuing != Some(depth) {
            if n > 0 {
                out.push('\n');
            }
            for _ in 0..depth {
                out.push('>');
            }
            if depth > 0 {
                out.push(' ');
            }
        }
        let is_flowed = content.ends_with(' ') && content != "-- ";
        out.push_str(match content.strip_suffix(' ') {
            Some(cut) if is_flowed && delsp => cut,
            _ => content,
        });
        continuing = is_flowed.then_some(depth);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(body: &str) -> Vec<u8> {
        format!(
            "From: Alice <alice@a.example>\r\nTo: r-1@reply.a.example\r\nSubject: Re: x\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
        )
        .into_bytes()
    }

    #[test]
    fn unflow_joins_flowed_lines_of_one_depth() {
        assert_eq!(
            unflow(
                "Hello this is \nflowed.\n> quoted \n> on\nNew\n-- \nsig",
                false
            ),
            "Hello this is flowed.\n> quoted on\nNew\n-- \nsig"
        );
        assert_eq!(unflow("word-\nbreak \nnext", true), "word-\nbreaknext");
        assert_eq!(unflow(" From me", false), "From me");
    }

    #[test]
    fn empty_input_is_not_a_mail() {
        assert_eq!(new_text(b""), Err(ReplyError::NotAMail));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x2545_f491_u32;
        for len in [1usize, 7, 100, 4_096, 65_536] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed.to_le_bytes()[0]
                })
                .collect();
            let _ = new_text(&bytes);
            let mut with_header = b"Content-Type: text/html\r\n\r\n".to_vec();
            with_header.extend_from_slice(&bytes);
            let _ = new_text(&with_header);
        }
        for odd in [
            &b"\xff\xfe\x00\x00"[..],
            b"\r\n\r\n",
            b":\r\n",
            b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n",
            b"Content-Type: text/html\r\n\r\n<<<&&&;;<!--<blockquote></blockquote></",
            b"Content-Type: text/html\r\n\r\n&#xffffffff;&#99999999999;&#;&#x;\xc3",
        ] {
            let _ = new_text(odd);
        }
    }

    #[test]
    fn a_megabyte_of_quote_lines_is_empty_and_quick() {
        let body = "> quoted line of a long history\r\n".repeat(1_048_576 / 33);
        let started = std::time::Instant::now();
        assert_eq!(new_text(&mail(&body)), Err(ReplyError::Empty));
        let html = format!(
            "Content-Type: text/html\r\n\r\n{}",
            "<blockquote><head>&gt;".repeat(50_000)
        );
        assert_eq!(new_text(html.as_bytes()), Err(ReplyError::Empty));
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn deeply_nested_multipart_never_panics() {
        let depth = 5_000;
        let mut raw = String::from("From: a@a.example\r\nSubject: deep\r\n");
        for level in 0..depth {
            raw.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"
            ));
        }
        raw.push_str("Content-Type: text/plain\r\n\r\nDeep inside.\r\n");
        for level in (0..depth).rev() {
            raw.push_str(&format!("--b{level}--\r\n"));
        }
        assert_eq!(
            new_text(raw.as_bytes()).map(|r| r.text),
            Ok("Deep inside.".to_owned())
        );
        let mut nested = String::new();
        for _ in 0..depth {
            nested.push_str("Subject: x\r\nContent-Type: message/rfc822\r\n\r\n");
        }
        nested.push_str("Subject: y\r\n\r\nbody\r\n");
        // The innermost text is an attached message's, not the reply's own.
        assert_eq!(new_text(nested.as_bytes()), Err(ReplyError::NoText));
    }

    #[test]
    fn attachments_only_have_no_text() {
        let raw = b"From: a@a.example\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\
                    Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                    JVBERi0=\r\n--x--\r\n";
        assert_eq!(new_text(raw), Err(ReplyError::NoText));
    }

    #[test]
    fn only_a_signature_is_empty() {
        assert_eq!(
            new_text(&mail("\r\n-- \r\nAlice\r\n")),
            Err(ReplyError::Empty)
        );
    }

    #[test]
    fn blank_text_part_falls_back_to_html() {
        let raw = b"From: a@a.example\r\nContent-Type: multipart/alternative; boundary=x\r\n\r\n\
                    --x\r\nContent-Type: text/plain\r\n\r\n \r\n--x\r\nContent-Type: text/html\r\n\r\n\
                    <p>From HTML</p>\r\n--x--\r\n";
        let reply = new_text(raw).expect("has text");
        assert_eq!(reply.text, "From HTML");
        assert_eq!(reply.body, BodyKind::Html);
    }
}
