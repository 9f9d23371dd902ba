//! The `Authentication-Results` field (RFC 8601) the milter adds to each mail it checks, method
//! `chmail`, one result per CHmail header; and the authserv-id of a field a client supplied, so
//! that fields forged under ours are removed (as OpenDKIM and OpenDMARC do).

use chmail::header::{AuthResult, Checked};

/// Longest reason text written; the rest is cut (reasons echo header values).
const MAX_REASON_LEN: usize = 200;

/// The method name of CHmail results.
pub const METHOD: &str = "chmail";

/// The field body for `results` under `authserv_id`: `<id>; chmail=<result> [reason] header.d=..
/// header.s=.. header.l=..` per header, folded between results; `<id>; chmail=none` for a mail
/// without a CHmail header.
pub fn field_body(authserv_id: &str, results: &[Checked]) -> String {
    if results.is_empty() {
        return format!("{authserv_id}; {METHOD}=none");
    }
    let mut out = authserv_id.to_owned();
    for checked in results {
        out.push_str(";\n\t");
        out.push_str(METHOD);
        out.push('=');
        out.push_str(checked.result.as_str());
        if checked.result != AuthResult::Pass {
            out.push_str(" reason=");
            out.push_str(&quoted(&checked.reason));
        }
        if let Some(header) = &checked.header {
            out.push_str(" header.d=");
            out.push_str(&pvalue(&header.domain));
            out.push_str(" header.s=");
            out.push_str(&pvalue(&header.selector));
            out.push_str(" header.l=");
            out.push_str(&pvalue(&header.login));
        }
    }
    out
}

/// The authserv-id a field body starts with (RFC 8601 section 2.2: a token or a quoted string,
/// after optional white space and comments), ASCII-lowercased; `None` when there is none.
pub fn authserv_id_of(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let mut chars = text.chars().peekable();
    // White space and comments before the id.
    loop {
        match chars.peek() {
            Some(c) if c.is_whitespace() => {
                chars.next();
            }
            Some('(') => {
                let mut depth = 0usize;
                for c in chars.by_ref() {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        break;
                    }
                }
            }
            _ => break,
        }
    }
    let id: String = if chars.peek() == Some(&'"') {
        chars.next();
        let mut id = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => id.extend(chars.next()),
                c => id.push(c),
            }
        }
        id
    } else {
        chars
            .take_while(|c| !c.is_whitespace() && !matches!(c, ';' | '(' | '"'))
            .collect()
    };
    (!id.is_empty()).then(|| id.to_ascii_lowercase())
}

/// `name` reduced to what an authserv-id written as a token may hold (letters, digits, `.`, `-`,
/// `_`), or `None` when nothing is left.
pub fn clean_authserv_id(name: &str) -> Option<String> {
    let id: String = name
        .trim()
        .trim_end_matches('.')
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    (!id.is_empty()).then_some(id)
}

/// A property value: as it is when it is a plain token or `local@domain` of token characters,
/// else a quoted string.
fn pvalue(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.@".contains(&b))
        && value.matches('@').count() <= 1;
    if plain {
        value.to_owned()
    } else {
        quoted(value)
    }
}

/// `text` as a quoted string: `"` and `\` escaped, control characters dropped, at most
/// [`MAX_REASON_LEN`] characters.
fn quoted(text: &str) -> String {
    let mut out = String::from('"');
    for c in text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_LEN)
    {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chmail::header::{RoomId, Signer};

    fn checked(result: AuthResult, reason: &str) -> Checked {
        let room = RoomId::parse("Xk3Fq9LmZ2pT7vRw4sYb8A").expect("room id");
        let header = Signer::from_seed("foreign.example", "f1", [9; 32])
            .sign(
                "zed@foreign.example",
                "chat.foreign.example",
                1,
                &room,
                1,
                "zed@foreign.example",
            )
            .expect("sign");
        Checked {
            result,
            reason: reason.to_owned(),
            header: Some(header),
        }
    }

    #[test]
    fn the_field_has_one_result_per_header_with_its_domain_selector_and_login() {
        let body = field_body(
            "mx.example.com",
            &[
                checked(AuthResult::Pass, "signature verified"),
                checked(AuthResult::TempError, "no answer: \"SERVFAIL\"\r\n"),
                Checked {
                    result: AuthResult::PermError,
                    reason: "unparseable".into(),
                    header: None,
                },
            ],
        );
        assert_eq!(
            body,
            "mx.example.com;\n\t\
             chmail=pass header.d=foreign.example header.s=f1 header.l=zed@foreign.example;\n\t\
             chmail=temperror reason=\"no answer: \\\"SERVFAIL\\\"\" header.d=foreign.example \
             header.s=f1 header.l=zed@foreign.example;\n\t\
             chmail=permerror reason=\"unparseable\""
        );
        assert_eq!(
            field_body("mx.example.com", &[]),
            "mx.example.com; chmail=none"
        );
    }

    #[test]
    fn odd_logins_are_quoted() {
        assert_eq!(pvalue("zed@foreign.example"), "zed@foreign.example");
        assert_eq!(pvalue("a(b)@x"), "\"a(b)@x\"");
        assert_eq!(pvalue("a@b@c"), "\"a@b@c\"");
    }

    #[test]
    fn the_authserv_id_is_read_after_white_space_and_comments_in_any_case() {
        for (body, want) in [
            ("mx.example.com; chmail=pass", Some("mx.example.com")),
            (" MX.Example.COM 1; none", Some("mx.example.com")),
            (
                "(forged (nested)) mx.example.com;dkim=pass",
                Some("mx.example.com"),
            ),
            ("\"mx.example.com\"; none", Some("mx.example.com")),
            ("mx.example.com(c); none", Some("mx.example.com")),
            ("; none", None),
            ("", None),
        ] {
            assert_eq!(authserv_id_of(body.as_bytes()).as_deref(), want, "{body:?}");
        }
        assert_eq!(authserv_id_of(b"\xff; none"), None);
    }

    #[test]
    fn authserv_ids_keep_only_name_characters() {
        assert_eq!(
            clean_authserv_id(" mx.example.com. ").as_deref(),
            Some("mx.example.com")
        );
        assert_eq!(
            clean_authserv_id("mx;example (x)").as_deref(),
            Some("mxexamplex")
        );
        assert_eq!(clean_authserv_id(" ; "), None);
    }
}
