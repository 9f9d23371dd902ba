//! Reading delivered mails and making CHmail headers: header fields, foreign signers, tampering.

use chmail::{ChmailHeader, RoomId, Signer};

/// The values of every header field `name` (case-insensitive) in the header section of `mail`,
/// unfolded (each line break before white space removed, RFC 5322 section 2.2.3), in order.
pub fn header_values(mail: &str, name: &str) -> Vec<String> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in mail.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push_str(line);
            }
        } else if let Some((field, value)) = line.split_once(':') {
            fields.push((field.trim().to_owned(), value.trim_start().to_owned()));
        }
    }
    fields
        .into_iter()
        .filter(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
        .collect()
}

/// Whether a Subject field of `mail` is `subject`.
pub fn has_subject(mail: &str, subject: &str) -> bool {
    header_values(mail, "Subject").iter().any(|s| s == subject)
}

/// The header section of `mail`: everything before the first empty line.
pub fn header_section(mail: &str) -> &str {
    let end = [mail.find("\r\n\r\n"), mail.find("\n\n")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(mail.len());
    &mail[..end]
}

/// The names of the header fields of `mail`, ASCII-lowercased, in order.
pub fn field_names(mail: &str) -> Vec<String> {
    header_section(mail)
        .lines()
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_ascii_lowercase())
        .collect()
}

/// The single value of header field `name`.
///
/// # Panics
///
/// When there is not exactly one.
pub fn single_header(mail: &str, name: &str) -> String {
    let values = header_values(mail, name);
    assert_eq!(
        values.len(),
        1,
        "expected exactly one {name} header, found {values:?} in:\n{mail}"
    );
    values.into_iter().next().unwrap_or_default()
}

/// A signer of another domain with a deterministic key: it makes the "foreign" headers that
/// the test DNS server publishes keys for.
pub struct ForeignSigner {
    signer: Signer,
}

impl ForeignSigner {
    /// A signer for `domain`/`selector` with a key made from `seed_byte`.
    pub fn new(domain: &str, selector: &str, seed_byte: u8) -> Self {
        Self {
            signer: Signer::from_seed(domain, selector, [seed_byte; 32]),
        }
    }

    /// Where its key is published: `<selector>._chmail.<domain>`.
    pub fn record_name(&self) -> String {
        self.signer.dns_name()
    }

    /// The TXT value publishing its public key.
    pub fn record_value(&self) -> String {
        self.signer.dns_record()
    }

    /// A CHmail header value (folded, as the library writes it) signed now for `login` sending
    /// as `from`.
    ///
    /// # Panics
    ///
    /// When the library refuses to sign.
    pub fn header(&self, login: &str, from: &str) -> String {
        let header: ChmailHeader = self
            .signer
            .sign(
                login,
                "chat.foreign.test",
                21_000,
                &RoomId::generate(),
                now(),
                from,
            )
            .expect("sign a foreign header");
        header.to_value()
    }
}

/// The current Unix time in seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The same header value with its signature broken: the first base64 character after `b=` is
/// swapped for another, which changes the signature's first byte.
///
/// # Panics
///
/// When the value has no `b=` tag.
pub fn tamper_signature(value: &str) -> String {
    let start = value
        .find("b=")
        .unwrap_or_else(|| panic!("no b= tag in {value:?}"));
    let position = value[start + 2..]
        .find(|c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/')
        .map(|offset| start + 2 + offset)
        .expect("a signature after b=");
    let old = value.as_bytes()[position];
    let new = if old == b'A' { 'B' } else { 'A' };
    format!("{}{new}{}", &value[..position], &value[position + 1..])
}

/// Unfolds a header value into one line (the form miltertest passes on as is).
pub fn unfold(value: &str) -> String {
    value.replace("\r\n", "").replace('\n', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_found_case_insensitively_and_unfolded() {
        let mail = "From: a@b\r\nchmail: one\r\n\ttwo\r\nCHMAIL: three\r\n\r\nCHmail: body\r\n";
        assert_eq!(header_values(mail, "CHmail"), ["one\ttwo", "three"]);
        assert!(header_values(mail, "CHmail-Link").is_empty());
    }

    #[test]
    fn tampering_changes_only_the_first_signature_character() {
        assert_eq!(tamper_signature("v=1; b=Abc"), "v=1; b=Bbc");
        assert_eq!(tamper_signature("v=1; b=\r\n xyz"), "v=1; b=\r\n Ayz");
    }
}
