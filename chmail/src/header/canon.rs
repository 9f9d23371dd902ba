//! The canonical form that `b=` signs, and the From address it covers.

use super::field::{check_values, MAX_LOGIN_LEN};
use super::{ChmailHeader, HeaderError};

/// The first line of the canonical form; it names the format and version, so a v=1 signature can
/// never be replayed as anything else.
const CANON_PREFIX: &str = "CHmail-v1\n";

/// Longest From address (addr-spec) that is signed or checked: the classic 320 characters.
const MAX_FROM_LEN: usize = MAX_LOGIN_LEN;

/// Longest From field body [`from_address`] reads, so a huge field cannot cost much.
const MAX_FROM_FIELD_LEN: usize = 4096;

/// The bytes that `b=` signs for `header` and the mail's From address `from`.
///
/// `"CHmail-v1\n"`, then one `tag=value\n` line per tag in the order d, s, l, h, p, r, t, f, where
/// d, h and the From address f are ASCII-lowercased, p and t are plain decimal, and f is the bare
/// addr-spec found by [`from_address`]. `v` is implied by the first line; `b` is not covered.
///
/// # Errors
///
/// [`HeaderError::BadFrom`] if `from` holds no single usable address, or the error of a value that
/// breaks its rule (so no value can smuggle in a line break).
pub fn canonical_bytes(header: &ChmailHeader, from: &str) -> Result<Vec<u8>, HeaderError> {
    check_values(
        &header.domain,
        &header.selector,
        &header.login,
        &header.host,
        header.port,
    )?;
    let f = from_address(from)
        .ok_or_else(|| HeaderError::BadFrom(from.chars().take(80).collect()))?
        .to_ascii_lowercase();
    let text = format!(
        "{CANON_PREFIX}d={}\ns={}\nl={}\nh={}\np={}\nr={}\nt={}\nf={}\n",
        header.domain.to_ascii_lowercase(),
        header.selector,
        header.login,
        header.host.to_ascii_lowercase(),
        header.port,
        header.room,
        header.time,
        f,
    );
    Ok(text.into_bytes())
}

/// The bare address (addr-spec) in a From field body, trimmed, case kept.
///
/// Accepts a bare address (`alice@example.com`) or a mailbox with a display name
/// (`"Alice A." <alice@example.com>`); comments and whitespace outside quotes are dropped, an
/// obsolete source route (`<@relay:alice@example.com>`) is removed. `None` for no address, more
/// than one mailbox, a group, unbalanced quotes, comments or brackets, NUL or another control
/// character in the address, or an address longer than 320 characters.
#[must_use]
pub fn from_address(field: &str) -> Option<String> {
    if field.len() > MAX_FROM_FIELD_LEN {
        return None;
    }
    let mut outside = String::new();
    let mut angle = String::new();
    let (mut in_angle, mut angles) = (false, 0usize);
    let (mut in_quote, mut comment, mut escaped) = (false, 0usize, false);
    for c in field.chars() {
        let buf = if in_angle { &mut angle } else { &mut outside };
        if escaped {
            escaped = false;
            if comment == 0 {
                buf.push(c);
            }
            continue;
        }
        if comment > 0 {
            match c {
                '\\' => escaped = true,
                '(' => comment += 1,
                ')' => comment -= 1,
                _ => {}
            }
            continue;
        }
        if in_quote {
            buf.push(c);
            match c {
                '\\' => escaped = true,
                '"' => in_quote = false,
                _ => {}
            }
            continue;
        }
        match c {
            ' ' | '\t' | '\r' | '\n' => {}
            '(' => comment = 1,
            '"' => {
                in_quote = true;
                buf.push(c);
            }
            '<' if !in_angle && angles == 0 => in_angle = true,
            '>' if in_angle => {
                in_angle = false;
                angles += 1;
            }
            '<' | '>' | ',' | ';' => return None,
            _ => buf.push(c),
        }
    }
    if in_angle || in_quote || comment > 0 || escaped {
        return None;
    }
    let mut addr = if angles == 1 { angle } else { outside };
    if addr.starts_with('@') {
        let (_route, rest) = addr.split_once(':')?;
        addr = rest.to_owned();
    }
    let (local, domain) = addr.rsplit_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && addr.len() <= MAX_FROM_LEN
        && !addr.chars().any(char::is_control);
    ok.then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_address_finds_the_addr_spec_in_common_from_fields() {
        for (field, want) in [
            ("alice@example.com", "alice@example.com"),
            ("  Alice@Example.COM \r\n", "Alice@Example.COM"),
            ("Alice <alice@example.com>", "alice@example.com"),
            (
                "\"Doe, Alice <boss>\" <alice@example.com>",
                "alice@example.com",
            ),
            ("alice@example.com (Alice)", "alice@example.com"),
            ("Alice\r\n <alice@example.com>", "alice@example.com"),
            ("<@relay.example:alice@example.com>", "alice@example.com"),
            ("\"a b\"@example.com", "\"a b\"@example.com"),
            (
                "=?utf-8?q?Al=C3=AFce?= <alice@example.com>",
                "alice@example.com",
            ),
        ] {
            assert_eq!(from_address(field).as_deref(), Some(want), "{field:?}");
        }
    }

    #[test]
    fn from_address_rejects_lists_groups_and_broken_fields() {
        for field in [
            "",
            "   ",
            "alice",
            "@example.com",
            "alice@",
            "a@example.com, b@example.com",
            "undisclosed-recipients:;",
            "<alice@example.com> <bob@example.com>",
            "Alice <alice@example.com",
            "\"Alice <alice@example.com>",
            "(Alice <alice@example.com>",
            "alice\0@example.com",
            "<alice\u{7f}@example.com>",
        ] {
            assert_eq!(from_address(field), None, "{field:?}");
        }
        assert_eq!(
            from_address(&format!("{}@example.com", "a".repeat(400))),
            None
        );
        assert_eq!(from_address(&"a".repeat(100_000)), None);
    }
}
