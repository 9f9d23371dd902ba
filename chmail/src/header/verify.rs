//! Verifying a header: the verdict on its signature, and the alignment of `d` with the From domain.

use ed25519_dalek::Signature;

use super::canon::canonical_bytes;
use super::field::SIGNATURE_LEN;
use super::from::from_address;
use super::{ChmailHeader, PublicKey};

/// The result of checking a header's signature. A failure is an expected outcome, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The signature is valid for the values, the From address and the key.
    Pass,
    /// It is not; the text says why, for logs.
    Fail(String),
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Pass`].
    #[must_use]
    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass)
    }
}

impl ChmailHeader {
    /// Checks `b` against the canonical form for the mail's From address `from` (a bare address or
    /// a From field body) with `key`, using Ed25519 `verify_strict`.
    ///
    /// It does not check alignment (see [`aligned`]), the time, or that `key` belongs to `d`/`s`:
    /// the caller fetched it from `<s>._chmail.<d>`.
    #[must_use]
    pub fn verify(&self, from: &str, key: &PublicKey) -> Verdict {
        let Ok(bytes) = <[u8; SIGNATURE_LEN]>::try_from(self.signature.as_slice()) else {
            return Verdict::Fail(format!(
                "the signature has {} bytes, not {SIGNATURE_LEN}",
                self.signature.len()
            ));
        };
        let message = match canonical_bytes(self, from) {
            Ok(m) => m,
            Err(e) => return Verdict::Fail(e.to_string()),
        };
        match key.verify_strict(&message, &Signature::from_bytes(&bytes)) {
            Ok(()) => Verdict::Pass,
            Err(_) => Verdict::Fail(format!(
                "the signature does not match the header, the From address and the key of {}",
                super::key_record_name(&self.selector, &self.domain)
            )),
        }
    }
}

/// Relaxed alignment: the From address's domain equals `domain` or is a subdomain of it (ASCII
/// case-insensitive; a trailing dot is ignored). `from` is a bare address or a From field body;
/// `false` if it holds no single usable address.
#[must_use]
pub fn aligned(domain: &str, from: &str) -> bool {
    let domain = domain.trim().trim_end_matches('.');
    let Some(addr) = from_address(from) else {
        return false;
    };
    let Some((_, from_domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let from_domain = from_domain.trim_end_matches('.');
    if domain.is_empty() || from_domain.len() < domain.len() {
        return false;
    }
    let split = from_domain.len() - domain.len();
    // `get` keeps a non-ASCII From domain from panicking at a non-char boundary.
    let (Some(prefix), Some(suffix)) = (from_domain.get(..split), from_domain.get(split..)) else {
        return false;
    };
    suffix.eq_ignore_ascii_case(domain) && (prefix.is_empty() || prefix.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_accepts_the_domain_and_its_subdomains_only() {
        assert!(aligned("example.com", "alice@example.com"));
        assert!(aligned("Example.COM", "Alice <alice@mail.EXAMPLE.com>"));
        assert!(aligned("example.com.", "alice@example.com"));
        // A final dot is no part of an addr-spec (RFC 5322 dot-atom).
        assert!(!aligned("example.com", "alice@example.com."));
        assert!(!aligned("example.com", "alice@badexample.com"));
        assert!(!aligned("example.com", "alice@example.com.evil.net"));
        assert!(!aligned("mail.example.com", "alice@example.com"));
        assert!(!aligned("", "alice@example.com"));
        assert!(!aligned("example.com", "not an address"));
        assert!(!aligned("é.com", "alice@aé.com"));
        assert!(!aligned("com", "alice@xé"));
    }
}
