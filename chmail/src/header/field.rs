//! The values of a CHmail header, the rules each value obeys, and the field bodies the milter writes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{HeaderError, RoomId, HEADER_NAME};

/// Longest `d=` (a DNS name has at most 253 characters).
pub(crate) const MAX_DOMAIN_LEN: usize = 253;
/// Longest `s=`: one DNS label's worth, so `<s>._chmail.<d>` stays a usable DNS name.
pub(crate) const MAX_SELECTOR_LEN: usize = 63;
/// Longest `l=`: the classic limit of an e-mail address (64 + 1 + 255), since logins often are one.
pub(crate) const MAX_LOGIN_LEN: usize = 320;
/// Longest key record name `<s>._chmail.<d>` in presentation form: 253 characters are the 255
/// octets DNS allows a name on the wire (RFC 1035 section 3.1).
pub(crate) const MAX_KEY_NAME_LEN: usize = 253;
/// Longest `h=`: a DNS name plus `:65535`.
pub(crate) const MAX_HOST_LEN: usize = MAX_DOMAIN_LEN + 6;
/// The line length [`ChmailHeader::to_value`] folds at: RFC 5322's recommended 78 characters.
const FOLD_AT: usize = 78;
/// An Ed25519 signature's length in bytes.
pub(crate) const SIGNATURE_LEN: usize = 64;

/// The values of a `CHmail:` header field (`v=1` is implied).
///
/// Values made by [`super::Signer::sign`] or [`ChmailHeader::parse`] obey the rules in
/// `docs/header.md`; [`ChmailHeader::check`] tests a hand-built value against them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChmailHeader {
    /// `d=`: the signing domain, whose DNS holds the public key.
    pub domain: String,
    /// `s=`: the selector naming the key under `d`.
    pub selector: String,
    /// `l=`: the sender's login ID.
    pub login: String,
    /// `h=`: the chat host, optionally with `:port`.
    pub host: String,
    /// `p=`: the chat port granted to the login.
    pub port: u16,
    /// `r=`: the room of this mail's conversation.
    pub room: RoomId,
    /// `t=`: the signing time, Unix seconds.
    pub time: u64,
    /// `b=`: the Ed25519 signature (64 bytes).
    pub signature: Vec<u8>,
}

impl ChmailHeader {
    /// Checks every value against the rules of `docs/header.md`, including a 64-byte signature.
    ///
    /// # Errors
    ///
    /// The first value that breaks its rule, as a [`HeaderError`].
    pub fn check(&self) -> Result<(), HeaderError> {
        check_values(
            &self.domain,
            &self.selector,
            &self.login,
            &self.host,
            self.port,
        )?;
        if self.signature.len() != SIGNATURE_LEN {
            return Err(HeaderError::BadSignatureLength(self.signature.len()));
        }
        Ok(())
    }

    /// The field body the milter writes (what follows `CHmail:`).
    ///
    /// Tags come in the order v d s l h p r t b, folded between tags with `"\n\t"` (the milter
    /// convention: the MTA turns LF into CRLF) so that lines stay within 78 characters when the
    /// values allow it; `b` starts its own line and is folded inside after 75 characters. Lines
    /// never reach 998 octets for values that pass [`ChmailHeader::check`]. The result never holds
    /// CR, NUL or an LF other than a fold: control characters in a hand-built value are dropped.
    #[must_use]
    pub fn to_value(&self) -> String {
        let items = [
            "v=1;".to_owned(),
            format!("d={};", printable(&self.domain)),
            format!("s={};", printable(&self.selector)),
            format!("l={};", printable(&self.login)),
            format!("h={};", printable(&self.host)),
            format!("p={};", self.port),
            format!("r={};", printable(self.room.as_str())),
            format!("t={};", self.time),
        ];
        let mut out = String::with_capacity(256);
        // The MTA writes "CHmail: " before the value on the first line.
        let mut line = HEADER_NAME.len() + 2;
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                if line + 1 + item.len() <= FOLD_AT {
                    out.push(' ');
                    line += 1;
                } else {
                    out.push_str("\n\t");
                    line = 1;
                }
            }
            out.push_str(item);
            line += item.len();
        }
        out.push_str("\n\tb=");
        let b = STANDARD.encode(&self.signature);
        let mut rest = b.as_str();
        let mut room = FOLD_AT - 3;
        // base64 is ASCII, so every index is a char boundary.
        while rest.len() > room {
            let (head, tail) = rest.split_at(room);
            out.push_str(head);
            out.push_str("\n\t");
            rest = tail;
            room = FOLD_AT - 1;
        }
        out.push_str(rest);
        out
    }
}

/// The `CHmail-Link:` field body: `<{public_base}/c/{port}/{room}>`.
///
/// Trailing slashes of `public_base` (the chat server's public URL, e.g. `https://chat.example.com`)
/// are stripped; so are control characters, whitespace and `<>`, which a URL does not contain and
/// which would break the field.
#[must_use]
pub fn link_value(public_base: &str, port: u16, room: &RoomId) -> String {
    let base: String = public_base
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace() && *c != '<' && *c != '>')
        .collect();
    format!("<{}/c/{port}/{room}>", base.trim_end_matches('/'))
}

/// `s` without control characters, so a hand-built value cannot break the field.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// Checks the values that the signature covers besides room, time and From.
pub(crate) fn check_values(
    domain: &str,
    selector: &str,
    login: &str,
    host: &str,
    port: u16,
) -> Result<(), HeaderError> {
    check_dns_name("d", domain, MAX_DOMAIN_LEN)?;
    check_dns_name("s", selector, MAX_SELECTOR_LEN)?;
    let key_name = super::key_record_name(selector, domain).len();
    if key_name > MAX_KEY_NAME_LEN {
        return Err(HeaderError::KeyNameTooLong(key_name));
    }
    check_login(login)?;
    check_host(host)?;
    if port == 0 {
        return Err(HeaderError::BadPort("0".to_owned()));
    }
    Ok(())
}

/// `d=` and `s=`: dot-separated labels of 1 to 63 letters, digits and hyphens, a hyphen never
/// first or last in a label (the host name rule of RFC 1123, which resolvers enforce: a name they
/// refuse to look up could never be checked).
fn check_dns_name(tag: &'static str, s: &str, max: usize) -> Result<(), HeaderError> {
    if s.is_empty() || s.len() > max {
        return Err(HeaderError::BadLength { tag, max });
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if s.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(HeaderError::ForbiddenChars(tag))
    }
}

/// `l=`: visible ASCII except `;` (no whitespace, no control characters).
fn check_login(s: &str) -> Result<(), HeaderError> {
    if s.is_empty() || s.len() > MAX_LOGIN_LEN {
        return Err(HeaderError::BadLength {
            tag: "l",
            max: MAX_LOGIN_LEN,
        });
    }
    if s.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
        Ok(())
    } else {
        Err(HeaderError::ForbiddenChars("l"))
    }
}

/// `h=`: a DNS name or a bracketed IPv6 literal, optionally followed by `:port`.
fn check_host(s: &str) -> Result<(), HeaderError> {
    const TAG: &str = "h";
    if s.is_empty() || s.len() > MAX_HOST_LEN {
        return Err(HeaderError::BadLength {
            tag: TAG,
            max: MAX_HOST_LEN,
        });
    }
    let bad = || HeaderError::ForbiddenChars(TAG);
    let port = if let Some(inner) = s.strip_prefix('[') {
        let (addr, after) = inner.split_once(']').ok_or_else(bad)?;
        let addr_ok = !addr.is_empty()
            && addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !addr_ok {
            return Err(bad());
        }
        match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
        }
    } else {
        let (name, port) = match s.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (s, None),
        };
        check_dns_name(TAG, name, MAX_DOMAIN_LEN).map_err(|_| bad())?;
        port
    };
    match port.map(|p| parse_decimal(p, 5)) {
        None => Ok(()),
        Some(Some(n)) if (1..=u64::from(u16::MAX)).contains(&n) => Ok(()),
        Some(_) => Err(bad()),
    }
}

/// A plain decimal number: 1 to `max_digits` ASCII digits, no sign, no leading zero (except "0").
pub(crate) fn parse_decimal(s: &str, max_digits: usize) -> Option<u64> {
    let ok = (1..=max_digits).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_accepts_names_ipv6_literals_and_ports() {
        for ok in [
            "chat.example.com",
            "chat.example.com:8443",
            "localhost",
            "192.0.2.1:80",
            "[2001:db8::1]",
            "[2001:db8::1]:8443",
        ] {
            assert_eq!(check_host(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "chat.example.com:",
            "chat.example.com:0",
            "chat.example.com:65536",
            "chat.example.com:080",
            "a:1:2",
            "[2001:db8::1",
            "[]",
            "[2001:db8::1]x",
            "chat example.com",
            "chat..example.com",
            "https://chat.example.com",
            "-chat.example.com",
            "chat-.example.com:80",
        ] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dns_names_refuse_edge_hyphens_and_key_names_past_253_characters() {
        for bad in [
            "-x.bank.example",
            "x-.bank.example",
            "bank.example-",
            "-",
            "a.-.b",
        ] {
            assert_eq!(
                check_dns_name("d", bad, MAX_DOMAIN_LEN),
                Err(HeaderError::ForbiddenChars("d")),
                "{bad:?}"
            );
        }
        assert_eq!(
            check_dns_name("d", "x-y.b--c.example", MAX_DOMAIN_LEN),
            Ok(())
        );
        let label = "a".repeat(63);
        // 63 + 9 (`._chmail.`) + 181 = 253: the longest name DNS can hold.
        let fits = format!("{label}.{label}.{}", "b".repeat(53));
        assert_eq!(fits.len(), 181);
        let ok = check_values(&fits, &label, "l", "h", 1);
        assert_eq!(ok, Ok(()));
        let over = format!("{fits}c");
        assert_eq!(
            check_values(&over, &label, "l", "h", 1),
            Err(HeaderError::KeyNameTooLong(254))
        );
    }

    #[test]
    fn decimal_rejects_signs_leading_zeros_and_overlong_numbers() {
        assert_eq!(parse_decimal("0", 5), Some(0));
        assert_eq!(parse_decimal("65535", 5), Some(65535));
        for bad in ["", "+1", "-1", "01", "1 ", "123456", "1e3"] {
            assert_eq!(parse_decimal(bad, 5), None, "{bad:?}");
        }
        assert_eq!(parse_decimal("18446744073709551615", 20), Some(u64::MAX));
        assert_eq!(parse_decimal("18446744073709551616", 20), None);
    }

    #[test]
    fn link_value_strips_trailing_slash_and_unsafe_characters() {
        let room = RoomId::parse("AAAAAAAAAAAAAAAAAAAAAA").expect("valid room id literal");
        let want = "<https://chat.example.com/c/20417/AAAAAAAAAAAAAAAAAAAAAA>";
        assert_eq!(link_value("https://chat.example.com", 20417, &room), want);
        assert_eq!(link_value("https://chat.example.com//", 20417, &room), want);
        assert_eq!(
            link_value("https://chat.example.com\r\n>x", 20417, &room),
            "<https://chat.example.comx/c/20417/AAAAAAAAAAAAAAAAAAAAAA>"
        );
    }
}
