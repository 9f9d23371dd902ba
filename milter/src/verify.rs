//! `chmail-milter verify`: checks every CHmail header of one mail the way a verifier does
//! (`docs/header.md`, "Verifying"), with its key from DNS or from a record given by hand, and
//! prints one line per header with its result and reason.
//!
//! It reads the header block with the milter's own [`Headers`], so the From field and the CHmail
//! fields are seen as the milter sees them; unlike the milter it knows no own domains: every
//! header is checked against the key its `s=` and `d=` name.

use std::io::Write;

use chmail::header::{check_header, AuthResult, KeyAnswer, Stage};

use crate::{
    headers::{Headers, Kind},
    keys::KeySource,
};

/// Most header bytes read from the mail, as `[milter] max_header_bytes` by default.
const MAX_HEADER_BYTES: usize = 256 * 1024;

/// Where `verify` finds each key.
pub enum KeyOrigin<'a> {
    /// This TXT record, whatever the header's `s=` and `d=`.
    Record(&'a str),
    /// What the key source (DNS) answers for the header's key name.
    Lookup(&'a dyn KeySource),
}

/// Checks every CHmail header of `mail` (a message as on disk: header fields, an empty line, the
/// body) and writes one line per header to `out`: `CHmail #<n>: <result> d=<d> s=<s>: <reason>`,
/// or one line saying there is none. Returns whether a header passed.
///
/// # Errors
/// When writing to `out` fails.
pub async fn verify_mail(
    mail: &[u8],
    keys: KeyOrigin<'_>,
    out: &mut impl Write,
) -> std::io::Result<bool> {
    let mut headers = Headers::new(MAX_HEADER_BYTES);
    for (name, value) in header_fields(mail) {
        headers.push(&name, &value);
    }
    let from = headers.from_field();
    let mut passed = false;
    let mut any = false;
    for field in headers.fields.iter().filter(|f| f.kind == Kind::Header) {
        any = true;
        let checked = match &field.value {
            None => {
                writeln!(
                    out,
                    "CHmail #{}: permerror: too large to check",
                    field.index
                )?;
                continue;
            }
            Some(value) => match check_header(value, from) {
                Stage::Decided(checked) => checked,
                Stage::AwaitingKey(pending) => {
                    let answer = match &keys {
                        KeyOrigin::Record(record) => KeyAnswer::Records(vec![(*record).to_owned()]),
                        KeyOrigin::Lookup(source) => source.key(&pending.key_name()).await,
                    };
                    pending.with_answer(&answer)
                }
            },
        };
        passed |= checked.result == AuthResult::Pass;
        let (d, s) = checked
            .header
            .as_ref()
            .map_or(("-", "-"), |h| (h.domain.as_str(), h.selector.as_str()));
        writeln!(
            out,
            "CHmail #{}: {} d={d} s={s}: {}",
            field.index, checked.result, checked.reason
        )?;
    }
    if !any {
        writeln!(out, "no CHmail header")?;
    }
    Ok(passed)
}

/// The header fields of `mail` up to the first empty line, each `(name, value)` with the value's
/// folds kept as LF (as an MTA hands them to a milter) and the space after the colon dropped.
fn header_fields(mail: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for line in mail.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(b'\n');
                value.extend_from_slice(line);
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        fields.push((name.trim_ascii().to_vec(), value.to_vec()));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_keep_folds_and_stop_at_the_body() {
        let mail = b"From: Alice\r\n <a@example.com>\r\nCHmail: v=1;\r\n\td=x\r\nNo colon\r\n\r\nBody: no\r\n";
        assert_eq!(
            header_fields(mail),
            vec![
                (b"From".to_vec(), b"Alice\n <a@example.com>".to_vec()),
                (b"CHmail".to_vec(), b"v=1;\n\td=x".to_vec()),
            ]
        );
    }
}
