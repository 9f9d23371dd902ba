//! Reading a `CHmail:` field body: tolerant of folding and whitespace, strict on tags and values.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::field::{check_values, parse_decimal, SIGNATURE_LEN};
use super::{ChmailHeader, HeaderError, RoomId, MAX_HEADER_LEN};

/// The tags of v=1; any other tag is rejected because it would not be signed.
const TAGS: [&str; 9] = ["v", "d", "s", "l", "h", "p", "r", "t", "b"];

/// Digits in the largest `t=` (`u64::MAX` has 20).
const MAX_TIME_DIGITS: usize = 20;

impl ChmailHeader {
    /// Parses a field body (what follows `CHmail:`), raw bytes as the MTA hands them over.
    ///
    /// Tolerant where RFC 5322 is: CRLF or LF folds followed by a space or tab, whitespace around
    /// tags, names and values, an optional trailing `;`, whitespace inside `b=`. Strict on tags: all
    /// of v d s l h p r t b exactly once, `v=1`, no other tag, every value as `docs/header.md` says.
    ///
    /// # Errors
    ///
    /// A [`HeaderError`] naming the first problem found; [`super::check_header`] makes it the
    /// result permerror, or neutral for an unknown version.
    pub fn parse(raw: &[u8]) -> Result<ChmailHeader, HeaderError> {
        if raw.len() > MAX_HEADER_LEN {
            return Err(HeaderError::TooLong(raw.len()));
        }
        let text = std::str::from_utf8(raw).map_err(|_| HeaderError::NotUtf8)?;
        let text = unfold(text)?;
        if text.trim().is_empty() {
            return Err(HeaderError::Empty);
        }
        // A field of another version follows that version's rules, which v1 does not know: only
        // its leading `v=` is read, so that it is never mistaken for a broken v1 field.
        if let Some(version) = leading_version(&text) {
            check_version(version)?;
        }
        let tags = split_tags(&text)?;
        let get = |name: &'static str| {
            tags.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .ok_or(HeaderError::MissingTag(name))
        };
        // The version decides what the rest means, so it is checked before anything else.
        check_version(get("v")?)?;
        if let Some((name, _)) = tags.iter().find(|(n, _)| !TAGS.contains(n)) {
            return Err(HeaderError::UnknownTag(clip(name)));
        }
        for (name, value) in &tags {
            if *name != "b" && value.contains(char::is_whitespace) {
                return Err(HeaderError::ForbiddenChars(tag_name(name)));
            }
        }
        let (domain, selector, login, host) = (get("d")?, get("s")?, get("l")?, get("h")?);
        let (port, room, time, b) = (get("p")?, get("r")?, get("t")?, get("b")?);

        let port = parse_decimal(port, 5)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n != 0)
            .ok_or_else(|| HeaderError::BadPort(clip(port)))?;
        let room = RoomId::parse(room).ok_or_else(|| HeaderError::BadRoom(clip(room)))?;
        let time =
            parse_decimal(time, MAX_TIME_DIGITS).ok_or_else(|| HeaderError::BadTime(clip(time)))?;
        check_values(domain, selector, login, host, port)?;
        // Only folding white space may sit inside `b` (space and tab once unfolded); any other
        // character, a non-breaking space included, makes the base64 invalid.
        let b: String = b.chars().filter(|c| !matches!(c, ' ' | '\t')).collect();
        let signature = STANDARD
            .decode(b.as_bytes())
            .map_err(|_| HeaderError::BadBase64)?;
        if signature.len() != SIGNATURE_LEN {
            return Err(HeaderError::BadSignatureLength(signature.len()));
        }
        Ok(ChmailHeader {
            domain: domain.to_owned(),
            selector: selector.to_owned(),
            login: login.to_owned(),
            host: host.to_owned(),
            port,
            room,
            time,
            signature,
        })
    }
}

/// Unfolds: a CRLF or LF followed by a space or tab becomes that whitespace; a CRLF or LF at the
/// very end is dropped. Any other CR or LF, NUL or control character (except tab) is an error.
fn unfold(text: &str) -> Result<String, HeaderError> {
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' if matches!(chars.peek(), Some(' ' | '\t')) => {}
            '\r' | '\n' => {
                return Err(HeaderError::Syntax(
                    "a line break not followed by a space or tab".to_owned(),
                ))
            }
            '\t' => out.push(c),
            c if c.is_control() => {
                return Err(HeaderError::Syntax(format!(
                    "control character U+{:04X}",
                    u32::from(c)
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `Ok` for `v=1`; another version number (1 to 9 digits) is [`HeaderError::UnsupportedVersion`],
/// anything else a syntax error.
fn check_version(version: &str) -> Result<(), HeaderError> {
    if version == "1" {
        Ok(())
    } else if (1..=9).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_digit()) {
        Err(HeaderError::UnsupportedVersion(version.to_owned()))
    } else {
        Err(HeaderError::Syntax(format!(
            "v={:?} is not a version number",
            clip(version)
        )))
    }
}

/// The value of the first tag-spec when it is `v=` (whitespace around it ignored).
fn leading_version(text: &str) -> Option<&str> {
    let first = text.split(';').next()?;
    let (name, value) = first.split_once('=')?;
    (name.trim_matches([' ', '\t']) == "v").then(|| value.trim_matches([' ', '\t']))
}

/// Splits `tag=value; ...` into trimmed pairs; rejects empty tag-specs (except after the last `;`),
/// bad tag names and duplicates.
fn split_tags(text: &str) -> Result<Vec<(&str, &str)>, HeaderError> {
    let specs: Vec<&str> = text.split(';').collect();
    let last = specs.len() - 1; // `split` yields at least one piece.
    let mut tags: Vec<(&str, &str)> = Vec::with_capacity(TAGS.len());
    for (i, spec) in specs.iter().enumerate() {
        let spec = spec.trim_matches([' ', '\t']);
        if spec.is_empty() {
            if i == last && i > 0 {
                break;
            }
            return Err(HeaderError::Syntax("an empty tag between ';'".to_owned()));
        }
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| HeaderError::Syntax(format!("{:?} is not tag=value", clip(spec))))?;
        let (name, value) = (
            name.trim_matches([' ', '\t']),
            value.trim_matches([' ', '\t']),
        );
        let name_ok = name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok {
            return Err(HeaderError::Syntax(format!(
                "{:?} is not a tag name",
                clip(name)
            )));
        }
        if tags.iter().any(|(n, _)| *n == name) {
            return Err(HeaderError::DuplicateTag(clip(name)));
        }
        tags.push((name, value));
    }
    Ok(tags)
}

/// The static name of a known tag, for errors that carry one.
fn tag_name(name: &str) -> &'static str {
    TAGS.iter().find(|t| **t == name).copied().unwrap_or("?")
}

/// At most 40 characters of `s`, for error texts that echo input.
fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}
