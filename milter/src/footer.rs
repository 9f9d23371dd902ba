//! The opt-in body footer (`[milter] footer = true`): a short line with the chat link added to the
//! first text/plain and text/html parts of a signed mail, for recipients whose mail client shows no
//! headers.
//!
//! [`add_footer`] walks the MIME structure itself so that it changes only the bytes of the parts it
//! extends: the preamble, the epilogue, the boundaries and every other part stay byte-for-byte. A
//! part keeps its transfer encoding (quoted-printable and base64 are decoded, extended and encoded
//! again) and its charset (the footer is ASCII, so it goes only into charsets that contain ASCII).
//! Signed or encrypted mail (`multipart/signed`, `multipart/encrypted`, `application/pkcs7-mime`,
//! inline PGP) is never touched, and any doubt (an unknown charset or encoding, a broken
//! structure) leaves the body as it is: the footer is a convenience, the mail must arrive intact.

use std::{borrow::Cow, ops::Range};

use mail_parser::{MessageParser, MimeHeaders};

/// The words before the link, in the text and the HTML footer alike.
pub const FOOTER_LABEL: &str = "Chat with the sender:";

/// Deepest multipart nesting walked; deeper mail goes on without a footer. Mail clients nest three
/// or four levels (mixed, alternative, related).
const MAX_DEPTH: usize = 16;

/// Most MIME parts walked in one mail, so that a mail of many empty parts costs little.
const MAX_PARTS: usize = 1_000;

/// Longest encoded line of base64 and quoted-printable text (RFC 2045).
const LINE_LENGTH: usize = 76;

/// What became of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Footer {
    /// The new body, with the footer.
    Added(Vec<u8>),
    /// The body stays as it is, for this reason.
    Untouched(Untouched),
}

/// Why a body went on without the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untouched {
    /// The mail is signed (`multipart/signed`, S/MIME signed data, inline PGP).
    Signed,
    /// The mail is encrypted (`multipart/encrypted`, `application/pkcs7-mime`, inline PGP).
    Encrypted,
    /// No text/plain or text/html body to extend (only attachments, say).
    NoText,
    /// The MIME structure is broken, or nested deeper than the milter walks.
    Unparseable,
    /// A text part's charset is unknown or does not contain ASCII (UTF-16, say).
    Charset,
    /// A text part's transfer encoding is unknown, or its encoded text is broken.
    Encoding,
    /// The link is not plain printable ASCII.
    Link,
    /// The body is over `[milter] footer_max_bytes`, or the MIME header fields over their cap.
    TooLarge,
    /// The MTA does not let the milter replace the body.
    NotOffered,
}

impl Untouched {
    /// One word for the log and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signed => "signed",
            Self::Encrypted => "encrypted",
            Self::NoText => "no_text",
            Self::Unparseable => "unparseable",
            Self::Charset => "charset",
            Self::Encoding => "encoding",
            Self::Link => "link",
            Self::TooLarge => "too_large",
            Self::NotOffered => "not_offered",
        }
    }
}

/// Adds the footer with `link` to `body`, whose top-level MIME fields (Content-Type,
/// Content-Transfer-Encoding, Content-Disposition; others are ignored) are the header block
/// `header`. Line breaks follow the mail's own (CRLF on the milter protocol).
///
/// The footer goes into the first text/plain and the first text/html body that a reader sees:
/// both alternatives of a `multipart/alternative`, the first body of a `multipart/mixed` (never a
/// text attachment), searched through nested multiparts.
pub fn add_footer(header: &[u8], body: &[u8], link: &str) -> Footer {
    match extend(header, body, link) {
        Ok(body) => Footer::Added(body),
        Err(why) => Footer::Untouched(why),
    }
}

fn extend(header: &[u8], body: &[u8], link: &str) -> Result<Vec<u8>, Untouched> {
    if !plain_link(link) {
        return Err(Untouched::Link);
    }
    let root = Walker::new(body).entity(header, Some(0..body.len()), "text/plain", 0)?;
    let mut targets = Vec::new();
    find_targets(&root, Want::BOTH, &mut targets);
    if targets.is_empty() {
        return Err(Untouched::NoText);
    }
    let eol = line_break(body);
    let mut edits = Vec::with_capacity(targets.len());
    for (entity, flavor) in targets {
        // Targets always have a body: find_targets skips parts without one.
        let Some(range) = entity.body.clone() else {
            continue;
        };
        let new = extend_part(&entity.fields, &body[range.clone()], flavor, link, eol)?;
        edits.push((range, new));
    }
    edits.sort_by_key(|(range, _)| range.start);
    let mut out = Vec::with_capacity(body.len() + 512);
    let mut pos = 0;
    for (range, new) in edits {
        out.extend_from_slice(&body[pos..range.start]);
        out.extend_from_slice(&new);
        pos = range.end;
    }
    out.extend_from_slice(&body[pos..]);
    // A part encoded again could, in theory, hold a line that reads as a boundary: the result must
    // have the very shape of the original.
    let again = Walker::new(&out).entity(header, Some(0..out.len()), "text/plain", 0)?;
    if shape(&again) != shape(&root) {
        return Err(Untouched::Unparseable);
    }
    Ok(out)
}

/// The MIME fields of one entity that matter here.
#[derive(Debug, Clone)]
struct Fields {
    /// `type/subtype`, lowercase.
    mime_type: String,
    /// The multipart boundary.
    boundary: Option<Vec<u8>>,
    /// The charset, lowercase.
    charset: Option<String>,
    /// The transfer encoding, lowercase; `7bit` when none is given.
    encoding: String,
    /// An attachment: `Content-Disposition: attachment`, or a file name, which marks a file even
    /// when it is shown inline.
    attachment: bool,
    /// The `smime-type` of an `application/pkcs7-mime` entity.
    smime_type: Option<String>,
}

impl Fields {
    /// Reads the fields of the header block `block`; an entity without Content-Type is of
    /// `default_type`.
    fn parse(block: &[u8], default_type: &str) -> Self {
        let mut raw = block.to_vec();
        if raw.ends_with(b"\r\n") {
            raw.extend_from_slice(b"\r\n");
        } else {
            if !raw.is_empty() && !raw.ends_with(b"\n") {
                raw.push(b'\n');
            }
            raw.push(b'\n');
        }
        let mut fields = Self {
            mime_type: default_type.to_owned(),
            boundary: None,
            charset: None,
            encoding: "7bit".to_owned(),
            attachment: false,
            smime_type: None,
        };
        let Some(message) = MessageParser::new().parse_headers(&raw) else {
            return fields;
        };
        let lower = |s: &str| s.trim().to_ascii_lowercase();
        if let Some(ct) = message.content_type() {
            fields.mime_type = match ct.subtype() {
                Some(sub) => format!("{}/{}", lower(ct.ctype()), lower(sub)),
                None => lower(ct.ctype()),
            };
            fields.boundary = ct.attribute("boundary").map(|b| b.as_bytes().to_vec());
            fields.charset = ct.attribute("charset").map(lower);
            fields.smime_type = ct.attribute("smime-type").map(lower);
            fields.attachment = ct.attribute("name").is_some();
        }
        if let Some(cte) = message.content_transfer_encoding() {
            fields.encoding = lower(cte);
        }
        if let Some(cd) = message.content_disposition() {
            fields.attachment |=
                cd.ctype().eq_ignore_ascii_case("attachment") || cd.attribute("filename").is_some();
        }
        fields
    }
}

/// One MIME entity of the body: its fields, where its body lies, its parts.
#[derive(Debug)]
struct Entity {
    fields: Fields,
    /// Where its body lies in the mail's body; `None` for a part without the empty line that opens
    /// a body.
    body: Option<Range<usize>>,
    /// The parts of a multipart.
    parts: Vec<Entity>,
}

/// Walks the MIME structure of one body, counting the parts.
struct Walker<'a> {
    data: &'a [u8],
    parts: usize,
}

impl<'a> Walker<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, parts: 0 }
    }

    /// The entity with header block `header` and body `body`, with all its parts; signed and
    /// encrypted entities end the walk.
    fn entity(
        &mut self,
        header: &[u8],
        body: Option<Range<usize>>,
        default_type: &str,
        depth: usize,
    ) -> Result<Entity, Untouched> {
        self.parts += 1;
        if self.parts > MAX_PARTS || depth > MAX_DEPTH {
            return Err(Untouched::Unparseable);
        }
        let fields = Fields::parse(header, default_type);
        match fields.mime_type.as_str() {
            "multipart/signed" | "application/pkcs7-signature" | "application/pgp-signature" => {
                return Err(Untouched::Signed)
            }
            "application/pkcs7-mime" | "application/x-pkcs7-mime" => {
                return Err(match fields.smime_type.as_deref() {
                    Some("signed-data") => Untouched::Signed,
                    _ => Untouched::Encrypted,
                })
            }
            "multipart/encrypted" | "application/pgp-encrypted" => {
                return Err(Untouched::Encrypted)
            }
            _ => {}
        }
        let mut parts = Vec::new();
        if fields.mime_type.starts_with("multipart/") {
            let (Some(boundary), Some(range)) = (fields.boundary.as_deref(), body.clone()) else {
                return Err(Untouched::Unparseable);
            };
            let child_type = if fields.mime_type == "multipart/digest" {
                "message/rfc822"
            } else {
                "text/plain"
            };
            let data = self.data;
            for part in split_multipart(data, range, boundary)? {
                let (head, body) = split_part(data, part);
                parts.push(self.entity(&data[head], body, child_type, depth + 1)?);
            }
        }
        Ok(Entity {
            fields,
            body,
            parts,
        })
    }
}

/// Each entity's depth, type and whether it has a body, in order: what must not change.
fn shape(root: &Entity) -> Vec<(usize, String, bool)> {
    fn walk(entity: &Entity, depth: usize, out: &mut Vec<(usize, String, bool)>) {
        out.push((
            depth,
            entity.fields.mime_type.clone(),
            entity.body.is_some(),
        ));
        for part in &entity.parts {
            walk(part, depth + 1, out);
        }
    }
    let mut out = Vec::new();
    walk(root, 0, &mut out);
    out
}

/// Which kind of text part a footer goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Plain,
    Html,
}

/// Which kinds of text part are wanted, or were found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Want {
    plain: bool,
    html: bool,
}

impl Want {
    const BOTH: Self = Self {
        plain: true,
        html: true,
    };

    fn any(self) -> bool {
        self.plain || self.html
    }

    fn without(self, found: Self) -> Self {
        Self {
            plain: self.plain && !found.plain,
            html: self.html && !found.html,
        }
    }

    fn with(self, found: Self) -> Self {
        Self {
            plain: self.plain || found.plain,
            html: self.html || found.html,
        }
    }
}

/// Collects the text parts of `entity` that get the footer, of the kinds in `want`; returns the
/// kinds found. Alternatives each get it; of any other multipart only the first part holding a
/// wanted text does.
fn find_targets<'e>(entity: &'e Entity, want: Want, out: &mut Vec<(&'e Entity, Flavor)>) -> Want {
    if entity.fields.attachment {
        return Want::default();
    }
    let mime_type = entity.fields.mime_type.as_str();
    match mime_type {
        "text/plain" if want.plain && entity.body.is_some() => {
            out.push((entity, Flavor::Plain));
            Want {
                plain: true,
                html: false,
            }
        }
        "text/html" if want.html && entity.body.is_some() => {
            out.push((entity, Flavor::Html));
            Want {
                plain: false,
                html: true,
            }
        }
        "multipart/alternative" => {
            let mut found = Want::default();
            for part in &entity.parts {
                found = found.with(find_targets(part, want.without(found), out));
            }
            found
        }
        _ if mime_type.starts_with("multipart/") => {
            for part in &entity.parts {
                let found = find_targets(part, want, out);
                if found.any() {
                    return found;
                }
            }
            Want::default()
        }
        _ => Want::default(),
    }
}

/// The lines of `data[range]`, each as (start, end without its line break, end with it).
fn lines(data: &[u8], range: Range<usize>) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let mut pos = range.start;
    std::iter::from_fn(move || {
        if pos >= range.end {
            return None;
        }
        let start = pos;
        let (end, next) = match data[start..range.end].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let newline = start + i;
                let end = if newline > start && data[newline - 1] == b'\r' {
                    newline - 1
                } else {
                    newline
                };
                (end, newline + 1)
            }
            None => (range.end, range.end),
        };
        pos = next;
        Some((start, end, next))
    })
}

/// The line break the mail uses: that of its first line, CRLF when it has none.
fn line_break(body: &[u8]) -> &'static [u8] {
    match body.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && body[i - 1] == b'\r' => b"\r\n",
        Some(_) => b"\n",
        None => b"\r\n",
    }
}

/// A boundary delimiter line.
enum Delimiter {
    Open,
    Close,
}

/// Whether `line` (without its line break) is a delimiter of `boundary`: `--boundary` or
/// `--boundary--`, then only spaces and tabs.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<Delimiter> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let blank = |s: &[u8]| s.iter().all(|&b| b == b' ' || b == b'\t');
    if let Some(after) = rest.strip_prefix(b"--") {
        blank(after).then_some(Delimiter::Close)
    } else {
        blank(rest).then_some(Delimiter::Open)
    }
}

/// The parts (headers and body) of the multipart body `data[range]`. The line break before a
/// delimiter belongs to the delimiter (RFC 2046), so it is not in the part. A multipart without
/// parts or without its closing delimiter is refused.
fn split_multipart(
    data: &[u8],
    range: Range<usize>,
    boundary: &[u8],
) -> Result<Vec<Range<usize>>, Untouched> {
    let floor = range.start;
    let mut parts = Vec::new();
    let mut open: Option<usize> = None;
    for (start, end, next) in lines(data, range) {
        let Some(kind) = delimiter(&data[start..end], boundary) else {
            continue;
        };
        let before = if start > floor && data[start - 1] == b'\n' {
            if start - 1 > floor && data[start - 2] == b'\r' {
                2
            } else {
                1
            }
        } else {
            0
        };
        if let Some(at) = open.take() {
            parts.push(at..(start - before).max(at));
        }
        match kind {
            Delimiter::Close if parts.is_empty() => return Err(Untouched::Unparseable),
            Delimiter::Close => return Ok(parts),
            Delimiter::Open if next == end => return Err(Untouched::Unparseable),
            Delimiter::Open => open = Some(next),
        }
    }
    Err(Untouched::Unparseable)
}

/// Splits a part into its header block and its body (after the first empty line); a part without
/// an empty line is all header block.
fn split_part(data: &[u8], part: Range<usize>) -> (Range<usize>, Option<Range<usize>>) {
    for (start, end, next) in lines(data, part.clone()) {
        if start == end && next > end {
            return (part.start..start, Some(next..part.end));
        }
    }
    (part, None)
}

/// Whether `link` is printable ASCII that needs no quoting in text or in an HTML attribute.
fn plain_link(link: &str) -> bool {
    !link.is_empty()
        && link
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'\\'))
}

/// How a charset relates to ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    /// ASCII bytes always mean ASCII characters (UTF-8, ISO-8859-*, EUC-KR, Shift_JIS, ...).
    AsciiCompatible,
    /// ISO-2022-JP: ASCII only where the text has switched back to ASCII.
    Iso2022Jp,
}

/// How `charset` (lowercase) relates to ASCII; `None` for charsets unknown or without ASCII.
fn charset_kind(charset: &str) -> Option<Charset> {
    const COMPATIBLE: &[&str] = &[
        "us-ascii",
        "ascii",
        "utf-8",
        "utf8",
        "latin1",
        "koi8-r",
        "koi8-u",
        "euc-kr",
        "euc-jp",
        "shift_jis",
        "shift-jis",
        "sjis",
        "x-sjis",
        "cp932",
        "windows-31j",
        "ks_c_5601-1987",
        "cp949",
        "gb2312",
        "gbk",
        "gb18030",
        "big5",
        "big5-hkscs",
        "tis-620",
        "windows-874",
        "macintosh",
        "ibm437",
        "ibm850",
    ];
    const COMPATIBLE_FAMILIES: &[&str] =
        &["iso-8859-", "iso8859-", "iso_8859-", "windows-125", "cp125"];
    if COMPATIBLE.contains(&charset) || COMPATIBLE_FAMILIES.iter().any(|f| charset.starts_with(f)) {
        Some(Charset::AsciiCompatible)
    } else if charset == "iso-2022-jp" || charset == "iso-2022-jp-2" {
        Some(Charset::Iso2022Jp)
    } else {
        None
    }
}

/// Whether ISO-2022-JP `text` is in ASCII at its end: its last designation of G0, if any, is
/// ASCII (`ESC ( B`) or JIS-Roman (`ESC ( J`), as RFC 1468 requires at every line end.
fn iso2022_ends_in_ascii(text: &[u8]) -> bool {
    let last = text
        .windows(2)
        .enumerate()
        .rev()
        .find(|(_, w)| w[0] == 0x1b && (w[1] == b'(' || w[1] == b'$'))
        .map(|(i, _)| i);
    match last {
        None => true,
        Some(i) => matches!(text.get(i + 1..i + 3), Some(b"(B") | Some(b"(J")),
    }
}

/// The part body `encoded` (of `fields`) with the footer, in the part's own transfer encoding.
fn extend_part(
    fields: &Fields,
    encoded: &[u8],
    flavor: Flavor,
    link: &str,
    eol: &[u8],
) -> Result<Vec<u8>, Untouched> {
    let charset =
        charset_kind(fields.charset.as_deref().unwrap_or("us-ascii")).ok_or(Untouched::Charset)?;
    let text: Cow<'_, [u8]> = match fields.encoding.as_str() {
        "7bit" | "8bit" | "binary" => Cow::Borrowed(encoded),
        "quoted-printable" => Cow::Owned(qp_decode(encoded).ok_or(Untouched::Encoding)?),
        "base64" => Cow::Owned(base64_decode(encoded).ok_or(Untouched::Encoding)?),
        _ => return Err(Untouched::Encoding),
    };
    if text.contains(&0) || text.starts_with(b"\xfe\xff") || text.starts_with(b"\xff\xfe") {
        // UTF-16 or UTF-32 under a wrong label.
        return Err(Untouched::Charset);
    }
    if find(&text, b"-----BEGIN PGP SIGNED MESSAGE-----").is_some() {
        return Err(Untouched::Signed);
    }
    if find(&text, b"-----BEGIN PGP MESSAGE-----").is_some() {
        return Err(Untouched::Encrypted);
    }
    let (at, addition) = match flavor {
        Flavor::Plain => (None, format!("{FOOTER_LABEL} {link}")),
        Flavor::Html => {
            let link = escape_html(link);
            (
                find_body_end(&text),
                format!("<p>{FOOTER_LABEL} <a href=\"{link}\">{link}</a></p>"),
            )
        }
    };
    if charset == Charset::Iso2022Jp && !iso2022_ends_in_ascii(&text[..at.unwrap_or(text.len())]) {
        return Err(Untouched::Charset);
    }
    let extended = match at {
        Some(at) => [&text[..at], addition.as_bytes(), eol, &text[at..]].concat(),
        None => append(&text, addition.as_bytes(), eol),
    };
    Ok(match fields.encoding.as_str() {
        "quoted-printable" => qp_encode(&extended, eol),
        "base64" => base64_encode(&extended, eol, encoded.ends_with(b"\n")),
        _ => extended,
    })
}

/// `text`, an empty line and `addition`, ending with a line break when `text` did.
fn append(text: &[u8], addition: &[u8], eol: &[u8]) -> Vec<u8> {
    let (core, had_eol) = match text.strip_suffix(eol) {
        Some(core) => (core, true),
        None => (text, false),
    };
    let mut out = Vec::with_capacity(text.len() + addition.len() + 3 * eol.len());
    out.extend_from_slice(core);
    if !core.is_empty() {
        out.extend_from_slice(eol);
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(addition);
    if had_eol {
        out.extend_from_slice(eol);
    }
    out
}

/// Where the last `</body>` tag of an HTML text starts, in any case.
fn find_body_end(html: &[u8]) -> Option<usize> {
    const TAG: &[u8] = b"</body";
    (0..html.len().saturating_sub(TAG.len() - 1))
        .rev()
        .find(|&i| {
            html[i..i + TAG.len()].eq_ignore_ascii_case(TAG)
                && matches!(
                    html.get(i + TAG.len()),
                    Some(b'>' | b' ' | b'\t' | b'\r' | b'\n')
                )
        })
}

/// The first position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `s` with the characters that are special in HTML escaped.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Decodes quoted-printable text; hard line breaks stay as they were. `None` for a broken escape.
fn qp_decode(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    for (start, end, next) in lines(data, 0..data.len()) {
        let mut line = &data[start..end];
        // Transport may add trailing white space; decoders drop it (RFC 2045 6.7).
        while let [rest @ .., b' ' | b'\t'] = line {
            line = rest;
        }
        let (line, soft) = match line.strip_suffix(b"=") {
            Some(line) => (line, true),
            None => (line, false),
        };
        let mut bytes = line.iter();
        while let Some(&b) = bytes.next() {
            if b == b'=' {
                let hi = hex_value(*bytes.next()?)?;
                let lo = hex_value(*bytes.next()?)?;
                out.push(hi << 4 | lo);
            } else {
                out.push(b);
            }
        }
        if !soft {
            out.extend_from_slice(&data[end..next]);
        }
    }
    Some(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Encodes text as quoted-printable: `eol` is a hard line break, lines are at most 76 characters.
fn qp_encode(text: &[u8], eol: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(text.len() + text.len() / 8 + 16);
    let mut rest = text;
    loop {
        let (line, next) = match find(rest, eol) {
            Some(i) => (&rest[..i], Some(&rest[i + eol.len()..])),
            None => (rest, None),
        };
        let mut width = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            // White space at a line end would be dropped in transport (RFC 2045 6.3).
            let mut literal =
                matches!(b, b'!'..=b'<' | b'>'..=b'~') || (matches!(b, b' ' | b'\t') && !last);
            let len = if literal { 1 } else { 3 };
            // A line that goes on needs one more column for its soft break.
            let room = if last { LINE_LENGTH } else { LINE_LENGTH - 1 };
            if width + len > room {
                out.push(b'=');
                out.extend_from_slice(eol);
                width = 0;
            }
            // A line starting with a dash could read as a boundary delimiter.
            if width == 0 && b == b'-' {
                literal = false;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
            width += if literal { 1 } else { 3 };
        }
        match next {
            Some(next) => {
                out.extend_from_slice(eol);
                rest = next;
            }
            None => return out,
        }
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Decodes base64, ignoring white space. `None` for anything else out of place.
fn base64_decode(data: &[u8]) -> Option<Vec<u8>> {
    let chars: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if chars.len() % 4 != 0 {
        return None;
    }
    let padding = chars.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(chars.len() / 4 * 3);
    let mut bits = 0u32;
    let mut count = 0;
    for &c in &chars[..chars.len() - padding] {
        bits = bits << 6 | u32::from(base64_value(c)?);
        count += 1;
        if count == 4 {
            out.extend_from_slice(&bits.to_be_bytes()[1..]);
            bits = 0;
            count = 0;
        }
    }
    match count {
        0 => {}
        2 => out.push((bits >> 4) as u8),
        3 => out.extend_from_slice(&((bits >> 2) as u16).to_be_bytes()),
        _ => return None,
    }
    Some(out)
}

/// The 6-bit value of a base64 character.
fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Encodes `data` as base64 in lines of 76 characters, ending with a line break when `trailing`.
fn base64_encode(data: &[u8], eol: &[u8], trailing: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + data.len() / 38 + 8);
    let mut width = 0;
    for chunk in data.chunks(3) {
        if width == LINE_LENGTH {
            out.extend_from_slice(eol);
            width = 0;
        }
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
        width += 4;
    }
    if trailing {
        out.extend_from_slice(eol);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: &str = "https://chat.example.com/c/20417/3q2-7wVYx1T0gD1m5rQh2A";

    fn added(header: &str, body: &str) -> String {
        match add_footer(header.as_bytes(), body.as_bytes(), LINK) {
            Footer::Added(b) => String::from_utf8(b).expect("ASCII in, ASCII out"),
            Footer::Untouched(why) => panic!("untouched: {why:?}"),
        }
    }

    fn untouched(header: &str, body: &[u8]) -> Untouched {
        match add_footer(header.as_bytes(), body, LINK) {
            Footer::Added(b) => panic!("changed: {}", String::from_utf8_lossy(&b)),
            Footer::Untouched(why) => why,
        }
    }

    #[test]
    fn plain_text_gets_an_empty_line_and_the_footer_keeping_its_last_line_break() {
        let footer = format!("{FOOTER_LABEL} {LINK}");
        assert_eq!(
            added("", "Hello\r\nBob\r\n"),
            format!("Hello\r\nBob\r\n\r\n{footer}\r\n")
        );
        assert_eq!(added("", "Hello"), format!("Hello\r\n\r\n{footer}"));
        assert_eq!(added("", "Hi\nthere\n"), format!("Hi\nthere\n\n{footer}\n"));
        assert_eq!(added("", ""), footer);
    }

    #[test]
    fn html_gets_the_footer_before_the_last_body_end_tag_or_at_the_end() {
        let header = "Content-Type: text/html; charset=utf-8\n";
        let out = added(header, "<html><BODY><p>x</p></BODY ></html>\r\n");
        assert_eq!(
            out,
            format!(
                "<html><BODY><p>x</p><p>{FOOTER_LABEL} <a href=\"{LINK}\">{LINK}</a></p>\r\n</BODY ></html>\r\n"
            )
        );
        let bare = added(header, "<b>hi</b>");
        assert!(bare.starts_with("<b>hi</b>\r\n\r\n<p>"), "{bare}");
        assert_eq!(find_body_end(b"</bodyx></body>"), Some(8));
        assert_eq!(find_body_end(b"</bo"), None);
    }

    #[test]
    fn quoted_printable_round_trips_with_soft_breaks_and_trailing_space() {
        let text: Vec<u8> = [
            "caf\u{e9} ".repeat(30).as_bytes(),
            b"\r\nend with space \r\n= sign\tand tab\r\n",
        ]
        .concat();
        let encoded = qp_encode(&text, b"\r\n");
        for line in encoded.split(|&b| b == b'\n') {
            assert!(
                line.len() <= LINE_LENGTH + 1,
                "{}",
                String::from_utf8_lossy(line)
            );
            assert!(!line.ends_with(b" \r") && !line.ends_with(b"\t\r"));
        }
        assert_eq!(qp_decode(&encoded).as_deref(), Some(&text[..]));
        assert_eq!(
            qp_decode(b"a=\r\nb=3D \r\n").as_deref(),
            Some(&b"ab=\r\n"[..])
        );
        assert_eq!(qp_decode(b"bad =ZZ"), None);
        assert_eq!(qp_decode(b"cut =4"), None);
    }

    #[test]
    fn base64_round_trips_at_every_length() {
        for n in 0..200 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let encoded = base64_encode(&data, b"\r\n", true);
            assert!(encoded
                .split(|&b| b == b'\n')
                .all(|l| l.len() <= LINE_LENGTH + 1));
            assert_eq!(base64_decode(&encoded), Some(data));
        }
        assert_eq!(base64_decode(b"aGVsbG8=\r\n"), Some(b"hello".to_vec()));
        assert_eq!(base64_decode(b"aGVs*G8="), None);
        assert_eq!(base64_decode(b"aGVsbG8"), None);
        assert_eq!(base64_decode(b"aG=sbG8="), None);
    }

    #[test]
    fn only_charsets_that_contain_ascii_are_extended() {
        for charset in [
            "utf-8",
            "ISO-8859-15",
            "windows-1252",
            "euc-kr",
            "Shift_JIS",
            "gb18030",
        ] {
            let header = format!("Content-Type: text/plain; charset={charset}\n");
            assert!(matches!(
                add_footer(header.as_bytes(), b"x\r\n", LINK),
                Footer::Added(_)
            ));
        }
        for charset in ["utf-16", "UTF-32BE", "utf-7", "x-unknown", "iso-2022-kr"] {
            let header = format!("Content-Type: text/plain; charset=\"{charset}\"\n");
            assert_eq!(
                untouched(&header, b"x\r\n"),
                Untouched::Charset,
                "{charset}"
            );
        }
        let header = "Content-Type: text/plain; charset=us-ascii\n";
        assert_eq!(untouched(header, b"\xff\xfeh\x00i\x00"), Untouched::Charset);
    }

    #[test]
    fn iso_2022_jp_is_extended_only_after_a_switch_back_to_ascii() {
        let header = "Content-Type: text/plain; charset=ISO-2022-JP\n";
        let good = "\x1b$B$3$s\x1b(B\r\n";
        assert!(added(header, good).ends_with(&format!("{LINK}\r\n")));
        assert_eq!(untouched(header, b"\x1b$B$3$s\r\n"), Untouched::Charset);
    }

    #[test]
    fn signed_encrypted_and_inline_pgp_mail_is_left_alone() {
        let cases: [(&str, &[u8], Untouched); 5] = [
            (
                "Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=s\n",
                b"--s\r\n\r\nhi\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--s--\r\n",
                Untouched::Signed,
            ),
            (
                "Content-Type: multipart/encrypted; boundary=e\n",
                b"--e\r\n\r\nx\r\n--e--\r\n",
                Untouched::Encrypted,
            ),
            (
                "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\n",
                b"MIIB\r\n",
                Untouched::Encrypted,
            ),
            (
                "",
                b"-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhi\r\n",
                Untouched::Signed,
            ),
            (
                "Content-Type: multipart/mixed; boundary=m\n",
                b"--m\r\n\r\nhi\r\n--m\r\nContent-Type: multipart/signed; boundary=s\r\n\r\n--s\r\n\r\nx\r\n--s--\r\n--m--\r\n",
                Untouched::Signed,
            ),
        ];
        for (header, body, why) in cases {
            assert_eq!(untouched(header, body), why, "{header}");
        }
    }

    #[test]
    fn broken_structures_are_left_alone() {
        let mixed = "Content-Type: multipart/mixed; boundary=b\n";
        assert_eq!(
            untouched(mixed, b"--b\r\n\r\nno end\r\n"),
            Untouched::Unparseable
        );
        assert_eq!(
            untouched(mixed, b"no delimiter at all\r\n"),
            Untouched::Unparseable
        );
        assert_eq!(untouched(mixed, b"--b--\r\n"), Untouched::Unparseable);
        assert_eq!(
            untouched(
                "Content-Type: multipart/mixed\n",
                b"--b\r\n\r\nx\r\n--b--\r\n"
            ),
            Untouched::Unparseable
        );
        // Multiparts nested `levels` deep around one text part.
        let nested = |levels: usize| {
            let mut body = format!("--b{levels}\r\n\r\nhi\r\n--b{levels}--\r\n");
            for i in (1..levels).rev() {
                body = format!(
                    "--b{i}\r\nContent-Type: multipart/mixed; boundary=b{}\r\n\r\n{body}--b{i}--\r\n",
                    i + 1
                );
            }
            body
        };
        let top = "Content-Type: multipart/mixed; boundary=b1\n";
        assert!(added(top, &nested(MAX_DEPTH)).contains(LINK));
        assert_eq!(
            untouched(top, nested(MAX_DEPTH + 1).as_bytes()),
            Untouched::Unparseable
        );
        assert_eq!(
            untouched(
                "Content-Transfer-Encoding: x-uuencode\n",
                b"begin 644 x\r\n"
            ),
            Untouched::Encoding
        );
        assert_eq!(
            untouched("Content-Transfer-Encoding: base64\n", b"not base64!\r\n"),
            Untouched::Encoding
        );
    }

    #[test]
    fn attachments_and_non_text_bodies_get_nothing() {
        assert_eq!(
            untouched("Content-Type: application/pdf\n", b"%PDF"),
            Untouched::NoText
        );
        assert_eq!(
            untouched("Content-Disposition: attachment; filename=a.txt\n", b"x"),
            Untouched::NoText
        );
        let mixed = "Content-Type: multipart/mixed; boundary=b\n";
        let body = "--b\r\nContent-Type: text/plain; name=notes.txt\r\n\r\nfile\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b--\r\n";
        let out = added(mixed, body);
        assert!(
            out.starts_with("--b\r\nContent-Type: text/plain; name=notes.txt\r\n\r\nfile\r\n--b")
        );
        assert!(out.contains(&format!("body\r\n\r\n{FOOTER_LABEL} {LINK}\r\n--b--")));
    }

    #[test]
    fn a_link_that_needs_quoting_is_refused() {
        for link in [
            "",
            "https://x/\"><script>",
            "https://x/a b",
            "https://ü.example/",
        ] {
            assert_eq!(
                add_footer(b"", b"hi", link),
                Footer::Untouched(Untouched::Link)
            );
        }
    }

    #[test]
    fn no_quoted_printable_line_starts_with_a_dash_so_none_reads_as_a_boundary() {
        // Re-wrapped, the 75 x would push "--b" to the start of a line of its own.
        let header = "Content-Type: multipart/mixed; boundary=b\n";
        let part = "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n";
        let body = format!("{part}{}=\r\nxxxxx--b\r\n--b--\r\n", "x".repeat(70));
        let out = added(header, &body);
        assert!(
            out.contains(&format!("\r\n=2D-b\r\n\r\n{FOOTER_LABEL}")),
            "{out}"
        );
        let text = out
            .strip_prefix(part)
            .and_then(|t| t.strip_suffix("\r\n--b--\r\n"))
            .expect("the part stays in place");
        let decoded = qp_decode(text.as_bytes()).expect("valid");
        assert_eq!(
            String::from_utf8(decoded).expect("ASCII"),
            format!("{}--b\r\n\r\n{FOOTER_LABEL} {LINK}", "x".repeat(75))
        );
    }
}
