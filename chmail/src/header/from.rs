//! The From address a CHmail signature covers: the one addr-spec of a From field body, read by the
//! rules of `docs/header.md` ("The From address"). The signer, the verifier and the milter's view of
//! the sender all use this one parser, so what is signed is what is checked.

/// Longest From address (addr-spec) that is signed or checked: the classic 320 characters.
const MAX_FROM_LEN: usize = super::field::MAX_LOGIN_LEN;

/// Longest From field body [`from_address`] reads, so a huge field cannot cost much.
const MAX_FROM_FIELD_LEN: usize = 4096;

/// One lexical item of a From field body; white space and comments are dropped between them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An atom, or a quoted string with its quotes and backslashes, as written (folding removed).
    Word(String),
    /// A domain literal `[...]`, as written.
    Literal(String),
    /// One of `< > @ : , ; .`.
    Special(char),
}

/// The bare address (addr-spec) in a From field body, case kept.
///
/// The field holds exactly one mailbox: `addr-spec` or `[display-name] "<" [obs-route] addr-spec
/// ">"` (RFC 5322 section 3.4, with the obsolete forms of section 4.4). White space and comments
/// may stand around each `.` and `@` of the address and around the whole; they are dropped. A
/// quoted local part is kept as written, quotes and backslashes included; a domain literal too.
/// An obsolete source route (`<@relay:alice@example.com>`) is removed.
///
/// `None` for no address, more than one (a list, two angle addresses, text after `>`), a group,
/// an unquoted `@`, `:` or `<` in the display name, words side by side in the address without a
/// dot, unbalanced quotes, comments or brackets, a control character other than folding white
/// space, or an address longer than 320 characters.
#[must_use]
pub fn from_address(field: &str) -> Option<String> {
    if field.len() > MAX_FROM_FIELD_LEN {
        return None;
    }
    let tokens = tokenize(field)?;
    let addr = match tokens.iter().position(|t| *t == Token::Special('<')) {
        Some(open) => {
            let close = tokens.iter().position(|t| *t == Token::Special('>'))?;
            // Nothing may follow the angle address; the display name holds only words and dots.
            let phrase_ok = tokens[..open]
                .iter()
                .all(|t| matches!(t, Token::Word(_) | Token::Special('.')));
            if close < open || close + 1 != tokens.len() || !phrase_ok {
                return None;
            }
            addr_spec(skip_route(&tokens[open + 1..close])?)?
        }
        None => addr_spec(&tokens)?,
    };
    let ok = addr.len() <= MAX_FROM_LEN && !addr.chars().any(char::is_control);
    ok.then_some(addr)
}

/// The tokens of `field`, or `None` when a quote, comment or literal is not closed or a control
/// character stands outside folding white space.
fn tokenize(field: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {}
            '(' => skip_comment(&mut chars)?,
            '"' => {
                let mut word = String::from('"');
                loop {
                    match chars.next()? {
                        '\\' => {
                            word.push('\\');
                            word.push(chars.next().filter(|c| !c.is_control())?);
                        }
                        '"' => break,
                        // Folding inside a quoted string: the line break goes, the space stays.
                        '\r' | '\n' => {}
                        c if c.is_control() && c != '\t' => return None,
                        c => word.push(c),
                    }
                }
                word.push('"');
                tokens.push(Token::Word(word));
            }
            '[' => {
                let mut literal = String::from('[');
                loop {
                    match chars.next()? {
                        ']' => break,
                        ' ' | '\t' | '\r' | '\n' => {}
                        c if c.is_control() || matches!(c, '[' | '\\') => return None,
                        c => literal.push(c),
                    }
                }
                literal.push(']');
                tokens.push(Token::Literal(literal));
            }
            '<' | '>' | '@' | ':' | ',' | ';' | '.' => tokens.push(Token::Special(c)),
            ')' | ']' | '\\' => return None,
            c if c.is_control() => return None,
            c => {
                let mut word = String::from(c);
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || next.is_control() || "()<>[]:;@\\,.\"".contains(next)
                    {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Some(tokens)
}

/// Skips a comment whose `(` was read, nested comments and escapes included.
fn skip_comment(chars: &mut impl Iterator<Item = char>) -> Option<()> {
    let mut depth = 1usize;
    while depth > 0 {
        match chars.next()? {
            '\\' => {
                chars.next()?;
            }
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
    }
    Some(())
}

/// The tokens inside `<>` without an obsolete source route (`@a.example,@b.example:`).
fn skip_route(tokens: &[Token]) -> Option<&[Token]> {
    if tokens.first() != Some(&Token::Special('@')) {
        return Some(tokens);
    }
    let colon = tokens.iter().position(|t| *t == Token::Special(':'))?;
    let route_ok = tokens[..colon].iter().all(|t| {
        matches!(
            t,
            Token::Word(w) if !w.starts_with('"')
        ) || matches!(t, Token::Literal(_) | Token::Special('@' | ',' | '.'))
    });
    route_ok.then(|| &tokens[colon + 1..])
}

/// `local-part "@" domain` over all of `tokens`, written without white space.
fn addr_spec(tokens: &[Token]) -> Option<String> {
    let at = tokens.iter().position(|t| *t == Token::Special('@'))?;
    let local = dotted(&tokens[..at], true)?;
    let domain = match &tokens[at + 1..] {
        [Token::Literal(literal)] => literal.clone(),
        rest => dotted(rest, false)?,
    };
    Some(format!("{local}@{domain}"))
}

/// `word *("." word)`: words (atoms, or quoted strings when `quoted` allows them) joined by single
/// dots, none leading or trailing.
fn dotted(tokens: &[Token], quoted: bool) -> Option<String> {
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        match (i % 2, token) {
            (0, Token::Word(w)) if quoted || !w.starts_with('"') => out.push_str(w),
            (1, Token::Special('.')) => out.push('.'),
            _ => return None,
        }
    }
    (tokens.len() % 2 == 1).then_some(out)
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
            (
                "<@a.example,@[192.0.2.1]:alice@example.com>",
                "alice@example.com",
            ),
            ("\"a b\"@example.com", "\"a b\"@example.com"),
            ("\"a\\\"b\"@example.com", "\"a\\\"b\"@example.com"),
            ("\"a\r\n b\"@example.com", "\"a b\"@example.com"),
            (
                "=?utf-8?q?Al=C3=AFce?= <alice@example.com>",
                "alice@example.com",
            ),
            ("Alice <alice @ our.example>", "alice@our.example"),
            (
                "Alice <alice . a (x) @ our . example>",
                "alice.a@our.example",
            ),
            ("A. B. Cee <a.b@example.com>", "a.b@example.com"),
            ("alice@[192.0.2.1]", "alice@[192.0.2.1]"),
            ("(c (nested \\) ) ) <a@b.example> (after)", "a@b.example"),
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
            "team: a@example.com;",
            "<alice@example.com> <bob@example.com>",
            "<ceo@bank.example> <alice@our.example>",
            "Alice <a@x.example> <b@x.example>",
            "<a@x.example>b@x.example",
            "<a@x.example> (c) b",
            "ceo@bank.example <alice@our.example>",
            "Boss: <alice@our.example>",
            "al ice@example.com",
            "alice@exa mple.com",
            "alice@example..com",
            ".alice@example.com",
            "alice@\"example\".com",
            "Alice <>",
            "Alice <alice@example.com",
            "Alice alice@example.com>",
            "\"Alice <alice@example.com>",
            "(Alice <alice@example.com>",
            "alice@example.com)",
            "alice\0@example.com",
            "<alice\u{7f}@example.com>",
            "<@relay.example alice@example.com>",
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
