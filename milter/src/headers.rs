//! What the milter keeps of a message's header block: the CHmail fields with their indexes, the
//! few fields it reads (From, To, Cc, Subject, Message-ID) and the MIME fields the footer needs,
//! all under size caps.
//!
//! Other fields are counted, not kept, so a mail with a huge header block costs no memory here.

use chmail::header::{from_address, HEADER_NAME, LINK_HEADER_NAME};
use chmail::store::{Participant, Role};
use mail_parser::{Address, MessageParser};

/// Most CHmail, CHmail-Link or Authentication-Results fields whose values are remembered per mail,
/// each; further copies are still counted (and so deleted), only their values are dropped.
const MAX_CHMAIL_FIELDS: usize = 64;

/// Most bytes of the top-level MIME fields (Content-Type, Content-Transfer-Encoding,
/// Content-Disposition) kept for the footer. Real ones take well under 1 KiB; past this the footer
/// is left out.
const MAX_MIME_BYTES: usize = 16 * 1024;

/// The name of the field that reports the results of checks (RFC 8601).
pub const AUTH_RESULTS_NAME: &str = "Authentication-Results";

/// Which of the fields the milter changes a header is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `CHmail:`
    Header,
    /// `CHmail-Link:`
    Link,
    /// `Authentication-Results:`
    AuthResults,
}

impl Kind {
    /// The field name as the milter writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Header => HEADER_NAME,
            Self::Link => LINK_HEADER_NAME,
            Self::AuthResults => AUTH_RESULTS_NAME,
        }
    }

    /// The kind's place in per-kind counters.
    fn slot(self) -> usize {
        match self {
            Self::Header => 0,
            Self::Link => 1,
            Self::AuthResults => 2,
        }
    }

    /// The kind of a field named `name` (any case), if the milter changes such fields.
    fn of(name: &[u8]) -> Option<Self> {
        [Self::Header, Self::Link, Self::AuthResults]
            .into_iter()
            .find(|kind| name.eq_ignore_ascii_case(kind.name().as_bytes()))
    }
}

/// One CHmail, CHmail-Link or Authentication-Results field of the message.
#[derive(Debug, Clone)]
pub struct Field {
    /// Which field.
    pub kind: Kind,
    /// Its 1-based index among the fields of that name (case-insensitive), as the MTA counts.
    pub index: usize,
    /// Its value, or `None` when it was not kept (over a cap).
    pub value: Option<Vec<u8>>,
}

/// The header block, as far as the milter needs it.
#[derive(Debug, Default)]
pub struct Headers {
    /// CHmail, CHmail-Link and Authentication-Results fields in the order received.
    pub fields: Vec<Field>,
    /// How many fields of each kind (by `Kind::slot`) came, and how many of them have their
    /// value kept.
    counts: [usize; 3],
    kept_values: [usize; 3],
    /// The fields to parse (From, To, Cc, Subject, Message-ID), as `Name: value\r\n` lines.
    kept: Vec<u8>,
    /// The body of each From field, as kept (within the cap).
    from_bodies: Vec<Vec<u8>>,
    /// Every From field, kept or not.
    from_count: usize,
    /// True when the kept fields would pass the cap: the mail is then only cleaned, not signed.
    pub oversized: bool,
    max_bytes: usize,
    /// The top-level MIME fields, as `Name: value\n` lines, for the footer.
    mime: Vec<u8>,
    /// True when the MIME fields passed [`MAX_MIME_BYTES`].
    mime_oversized: bool,
}

/// The parts of the header block the milter acts on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The one From address (domain lowercased), when the mail has one From field holding exactly
    /// one address, read by the parser that signing and verifying share
    /// ([`chmail::header::from_address`]).
    pub from: Option<String>,
    /// Number of From fields.
    pub from_fields: usize,
    /// The display name of the first From address, if it has one (shown in the chat).
    pub from_name: Option<String>,
    /// The To and Cc addresses (groups flattened, several fields joined), in order.
    pub recipients: Vec<Participant>,
    /// The decoded Subject.
    pub subject: Option<String>,
    /// The Message-ID, without angle brackets.
    pub message_id: Option<String>,
}

impl Summary {
    /// The one From address, when there is exactly one From field with one address.
    pub fn sole_from(&self) -> Option<&str> {
        self.from.as_deref()
    }
}

impl Headers {
    /// An empty header block that keeps at most `max_bytes` of the fields it reads.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            ..Default::default()
        }
    }

    /// Takes one header field as the MTA hands it over.
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        if let Some(kind) = Kind::of(name) {
            let k = kind.slot();
            self.counts[k] += 1;
            let keep = self.kept_values[k] < MAX_CHMAIL_FIELDS && value.len() <= self.max_bytes;
            self.kept_values[k] += usize::from(keep);
            self.fields.push(Field {
                kind,
                index: self.counts[k],
                value: keep.then(|| value.to_vec()),
            });
            return;
        }
        const READ: [&[u8]; 5] = [b"from", b"to", b"cc", b"subject", b"message-id"];
        const MIME: [&[u8]; 3] = [
            b"content-type",
            b"content-transfer-encoding",
            b"content-disposition",
        ];
        if READ.iter().any(|n| name.eq_ignore_ascii_case(n)) {
            let is_from = name.eq_ignore_ascii_case(b"from");
            self.from_count += usize::from(is_from);
            if !keep_line(&mut self.kept, self.max_bytes, name, value) {
                self.oversized = true;
            } else if is_from {
                self.from_bodies.push(value.to_vec());
            }
        } else if MIME.iter().any(|n| name.eq_ignore_ascii_case(n))
            && !keep_line(&mut self.mime, MAX_MIME_BYTES, name, value)
        {
            self.mime_oversized = true;
        }
    }

    /// The top-level MIME fields (Content-Type, Content-Transfer-Encoding, Content-Disposition) as
    /// a header block with LF line ends, or `None` when they were over their cap.
    pub fn mime_fields(&self) -> Option<&[u8]> {
        (!self.mime_oversized).then_some(self.mime.as_slice())
    }

    /// How many fields of `kind` the message has.
    pub fn count(&self, kind: Kind) -> usize {
        self.counts[kind.slot()]
    }

    /// The body of the one From field, when the mail has exactly one and it is UTF-8 (RFC 6532)
    /// within the size cap; the header check reads its address.
    pub fn from_field(&self) -> Option<&str> {
        match (self.from_count, self.from_bodies.as_slice()) {
            (1, [one]) => std::str::from_utf8(one).ok(),
            _ => None,
        }
    }

    /// Reads the From address with [`from_address`], and To, Cc, Subject and Message-ID with
    /// `mail-parser` (RFC 5322 and 2047: groups, encoded words, several fields, comments).
    pub fn summary(&self) -> Summary {
        let mut raw = self.kept.clone();
        raw.extend_from_slice(b"\n");
        let mut summary = Summary {
            from: self.from_field().and_then(from_address).map(|address| {
                match address.rsplit_once('@') {
                    Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
                    None => address,
                }
            }),
            from_fields: self.from_count,
            ..Default::default()
        };
        let Some(message) = MessageParser::new().parse_headers(&raw) else {
            return summary;
        };
        summary.subject = message.subject().map(clean_text);
        summary.message_id = message.message_id().map(clean_text);
        // The display name only, shown in the chat; the address is the shared parser's.
        summary.from_name = message
            .header_values(mail_parser::HeaderName::From)
            .next()
            .and_then(|field| field.as_address())
            .and_then(|address| people(address).next())
            .and_then(|(_, name)| name);
        let to = message.all_to().collect::<Vec<_>>();
        let cc = message.all_cc().collect::<Vec<_>>();
        for (role, list) in [(Role::To, to), (Role::Cc, cc)] {
            for address in list {
                summary
                    .recipients
                    .extend(people(address).map(|(address, name)| {
                        Participant::new(address, role).named(name.as_deref().unwrap_or(""))
                    }));
            }
        }
        summary
    }
}

/// Appends `name: value` as one LF-ended line to `kept` unless that would pass `max_bytes`; tells
/// whether it did.
fn keep_line(kept: &mut Vec<u8>, max_bytes: usize, name: &[u8], value: &[u8]) -> bool {
    let needed = name.len() + value.len() + 4;
    if kept.len() + needed > max_bytes {
        return false;
    }
    kept.extend_from_slice(name);
    kept.extend_from_slice(b": ");
    // The MTA folds with a bare LF; the parser wants CRLF or LF consistently: keep LF.
    kept.extend(value.iter().filter(|&&b| b != b'\r'));
    kept.extend_from_slice(b"\n");
    true
}

/// The addr-specs of an address list or group list with their display names (decoded, cleaned
/// of control characters; `None` when absent or only the address again).
fn people<'a>(address: &'a Address<'_>) -> impl Iterator<Item = (String, Option<String>)> + 'a {
    address.iter().filter_map(|a| {
        let spec = normalize_address(a.address()?)?;
        let name = a
            .name()
            .map(clean_text)
            .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case(&spec));
        Some((spec, name))
    })
}

/// Trims an addr-spec and lowercases its domain; refuses what cannot be an address.
pub fn normalize_address(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (local, domain) = raw.rsplit_once('@')?;
    if local.is_empty()
        || domain.is_empty()
        || raw.len() > 320
        || raw.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return None;
    }
    Some(format!("{local}@{}", domain.to_ascii_lowercase()))
}

/// Drops control characters (a decoded subject may hold any) and trims.
fn clean_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(fields: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new(64 * 1024);
        for (n, v) in fields {
            h.push(n.as_bytes(), v.as_bytes());
        }
        h
    }

    fn addrs(s: &Summary, role: Role) -> Vec<&str> {
        s.recipients
            .iter()
            .filter(|p| p.role == role)
            .map(|p| p.address.as_str())
            .collect()
    }

    #[test]
    fn chmail_fields_are_indexed_per_name_in_any_case() {
        let h = block(&[
            ("chmail", "a"),
            ("Subject", "x"),
            ("CHMAIL-LINK", "b"),
            ("CHmail", "c"),
            ("cHmAiL", "d"),
        ]);
        let got: Vec<_> = h.fields.iter().map(|f| (f.kind, f.index)).collect();
        assert_eq!(
            got,
            vec![
                (Kind::Header, 1),
                (Kind::Link, 1),
                (Kind::Header, 2),
                (Kind::Header, 3)
            ]
        );
        assert_eq!(h.count(Kind::Header), 3);
    }

    #[test]
    fn groups_encoded_words_and_several_fields_are_read() {
        let h = block(&[
            ("From", " \"Alice A.\" <Alice@Example.COM>"),
            ("To", " undisclosed-recipients:;"),
            (
                "To",
                " friends: bob@b.example, =?UTF-8?B?7LKg7IiY?= <chul@c.example>;",
            ),
            (
                "Cc",
                " (comment) carol@c.example,\n\t\"Dan, Jr.\" <dan@d.example>",
            ),
            ("Subject", " =?UTF-8?Q?Caf=C3=A9?= menu"),
            ("Message-ID", " <abc@example.com>"),
        ]);
        let s = h.summary();
        assert_eq!(s.sole_from(), Some("Alice@example.com"));
        assert_eq!(addrs(&s, Role::To), vec!["bob@b.example", "chul@c.example"]);
        assert_eq!(
            addrs(&s, Role::Cc),
            vec!["carol@c.example", "dan@d.example"]
        );
        assert_eq!(s.subject.as_deref(), Some("Café menu"));
        assert_eq!(s.message_id.as_deref(), Some("abc@example.com"));
    }

    #[test]
    fn display_names_are_kept_decoded_for_the_chat() {
        let h = block(&[
            ("From", " \"Alice A.\" <Alice@Example.COM>"),
            (
                "To",
                " =?UTF-8?B?7LKg7IiY?= <chul@c.example>, bob@b.example, b@x.example <b@x.example>",
            ),
            ("Cc", " \"Dan, Jr.\" <dan@d.example>"),
        ]);
        let s = h.summary();
        assert_eq!(s.from_name.as_deref(), Some("Alice A."));
        let names: Vec<(&str, Option<&str>)> = s
            .recipients
            .iter()
            .map(|p| (p.address.as_str(), p.name.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("chul@c.example", Some("철수")),
                ("bob@b.example", None),
                ("b@x.example", None),
                ("dan@d.example", Some("Dan, Jr.")),
            ]
        );
    }

    #[test]
    fn missing_or_several_from_fields_give_no_sole_sender() {
        assert_eq!(block(&[("To", "a@b.example")]).summary().sole_from(), None);
        let two = block(&[("From", "a@b.example"), ("From", "c@d.example")]);
        assert_eq!(two.summary().sole_from(), None);
        let list = block(&[("From", "a@b.example, c@d.example")]);
        assert_eq!(list.summary().sole_from(), None);
    }

    #[test]
    fn garbage_and_eight_bit_headers_never_panic() {
        let mut h = Headers::new(1024);
        h.push(b"From", b"\xff\xfe <\x00@@>");
        h.push(b"To", &[0x80; 300]);
        h.push(b"Subject", b"=?x?Q?\xff?=");
        let _ = h.summary();
    }

    #[test]
    fn the_size_cap_marks_the_mail_oversized_and_keeps_memory_bounded() {
        let mut h = Headers::new(100);
        h.push(b"From", b"a@b.example");
        h.push(b"To", &[b'x'; 200]);
        h.push(b"X-Huge", &[b'y'; 10_000]);
        assert!(h.oversized);
        assert!(h.kept.len() <= 100);
        for _ in 0..1000 {
            h.push(b"CHmail", b"v=1");
        }
        assert_eq!(h.count(Kind::Header), 1000);
        assert!(h.fields.iter().filter(|f| f.value.is_some()).count() <= MAX_CHMAIL_FIELDS);
    }

    #[test]
    fn mime_fields_are_kept_apart_and_capped() {
        let mut h = block(&[
            ("Subject", " hi"),
            ("content-type", " multipart/mixed;\r\n\tboundary=\"b1\""),
            ("Content-Transfer-Encoding", " 7bit"),
        ]);
        assert_eq!(
            h.mime_fields(),
            Some(&b"content-type:  multipart/mixed;\n\tboundary=\"b1\"\nContent-Transfer-Encoding:  7bit\n"[..])
        );
        assert!(!h.oversized);
        h.push(b"Content-Disposition", &[b'x'; MAX_MIME_BYTES]);
        assert_eq!(h.mime_fields(), None);
        assert!(!h.oversized, "the footer's cap does not stop signing");
    }
}
