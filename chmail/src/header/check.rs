//! Checking one `CHmail` field of a mail the way a verifier acts on it: every field gets one
//! [`AuthResult`] (the result names of RFC 8601, as DKIM uses them) and a reason, from the field,
//! the From field and what DNS answered for the key. What a verifier then does with each result is
//! fixed in `docs/header.md` ("Results").
//!
//! The check is in two steps so that the DNS look-up stays with the caller: [`check_header`] parses
//! and aligns, and the [`Pending`] it may return is finished with the key DNS gave
//! ([`Pending::with_answer`]) or a key the caller holds ([`Pending::with_key`]).

use super::key::{key_record_name, parse_key_record, KeyError};
use super::verify::{aligned, Verdict};
use super::{from_address, ChmailHeader, HeaderError, PublicKey};

/// The prefix of a CHmail key record; TXT records at the name without it are someone else's.
const RECORD_PREFIX: &str = "v=CHmail1";

/// The result of checking one CHmail field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthResult {
    /// The signature verifies with the domain's key, and `d` is the From domain or a parent.
    Pass,
    /// Checked and wrong: the signature does not match, `d` is not the From domain, the key was
    /// revoked, or (for a verifier's own domains) it is not the verifier's signature.
    Fail,
    /// A field of a version this verifier does not know: no verdict.
    Neutral,
    /// DNS did not answer for the key (SERVFAIL, REFUSED, a time-out): no verdict for now.
    TempError,
    /// The field cannot be checked, ever: it does not parse, its key name is not one DNS can hold,
    /// the mail has no single From address, no key record, or a broken one.
    PermError,
}

impl AuthResult {
    /// Every result, for metrics that start each series at 0.
    pub const ALL: [AuthResult; 5] = [
        AuthResult::Pass,
        AuthResult::Fail,
        AuthResult::Neutral,
        AuthResult::TempError,
        AuthResult::PermError,
    ];

    /// The result as RFC 8601 writes it: `pass`, `fail`, `neutral`, `temperror`, `permerror`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::Neutral => "neutral",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
        }
    }
}

impl std::fmt::Display for AuthResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What DNS answered for a key record name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAnswer {
    /// The TXT records at the name, each one's strings joined.
    Records(Vec<String>),
    /// The name does not exist (NXDOMAIN) or has no TXT record.
    NoRecord,
    /// No usable answer: SERVFAIL, REFUSED, a time-out, a network error; the text says which.
    TempError(String),
}

/// The result of one field, why, and the field's values when it parsed as v1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The result.
    pub result: AuthResult,
    /// Why, for logs and people.
    pub reason: String,
    /// The field's values, when it parsed.
    pub header: Option<ChmailHeader>,
}

impl Checked {
    fn new(result: AuthResult, reason: impl Into<String>, header: Option<ChmailHeader>) -> Self {
        Self {
            result,
            reason: reason.into(),
            header,
        }
    }
}

/// Where [`check_header`] got: a result already, or a field waiting for its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// The result is known without a key.
    Decided(Checked),
    /// The field parsed and is aligned; its key decides.
    AwaitingKey(Pending),
}

/// A v1 field that parsed and is aligned with the mail's one From address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    header: ChmailHeader,
    from: String,
}

/// The first step of checking the field body `value` (raw, as the MTA hands it over) on a mail
/// whose one From field has the body `from` (`None` when the mail has no From field or several).
///
/// Decided here: an unknown version (neutral), a field that does not parse or whose key name DNS
/// cannot hold (permerror), no single From address (permerror), `d` not aligned with the From
/// domain (fail). Everything else awaits its key.
#[must_use]
pub fn check_header(value: &[u8], from: Option<&str>) -> Stage {
    let header = match ChmailHeader::parse(value) {
        Ok(header) => header,
        Err(HeaderError::UnsupportedVersion(v)) => {
            return Stage::Decided(Checked::new(
                AuthResult::Neutral,
                format!("CHmail version v={v} is unknown to this verifier"),
                None,
            ))
        }
        Err(e) => {
            return Stage::Decided(Checked::new(
                AuthResult::PermError,
                format!("unparseable: {e}"),
                None,
            ))
        }
    };
    let Some(address) = from.and_then(from_address) else {
        return Stage::Decided(Checked::new(
            AuthResult::PermError,
            "the mail has no single From address",
            Some(header),
        ));
    };
    if !aligned(&header.domain, &address) {
        let reason = format!(
            "d={} is not the From domain or a parent of it",
            header.domain
        );
        return Stage::Decided(Checked::new(AuthResult::Fail, reason, Some(header)));
    }
    Stage::AwaitingKey(Pending {
        header,
        from: address,
    })
}

impl Pending {
    /// The field's values.
    #[must_use]
    pub fn header(&self) -> &ChmailHeader {
        &self.header
    }

    /// The DNS name of its key record, `<s>._chmail.<d>`, lowercased.
    #[must_use]
    pub fn key_name(&self) -> String {
        key_record_name(&self.header.selector, &self.header.domain).to_ascii_lowercase()
    }

    /// Finishes with `key`: pass or fail.
    #[must_use]
    pub fn with_key(self, key: &PublicKey) -> Checked {
        match self.header.verify(&self.from, key) {
            Verdict::Pass => {
                Checked::new(AuthResult::Pass, "signature verified", Some(self.header))
            }
            Verdict::Fail(reason) => Checked::new(AuthResult::Fail, reason, Some(self.header)),
        }
    }

    /// Finishes with what DNS answered for [`Pending::key_name`].
    ///
    /// No record, no `v=CHmail1` record, several of them, or one that does not parse: permerror.
    /// A revoked key (empty `p=`): fail. No answer: temperror. Else as [`Pending::with_key`].
    #[must_use]
    pub fn with_answer(self, answer: &KeyAnswer) -> Checked {
        let name = self.key_name();
        let records: Vec<&String> = match answer {
            KeyAnswer::TempError(why) => {
                let reason = format!("no answer for {name}: {why}");
                return Checked::new(AuthResult::TempError, reason, Some(self.header));
            }
            KeyAnswer::NoRecord => Vec::new(),
            KeyAnswer::Records(records) => records
                .iter()
                .filter(|r| r.trim_start().starts_with(RECORD_PREFIX))
                .collect(),
        };
        let record = match records.as_slice() {
            [one] => *one,
            [] => return self.perm_error(format!("no CHmail key record at {name}")),
            _ => return self.perm_error(format!("several CHmail key records at {name}")),
        };
        match parse_key_record(record) {
            Ok(key) => self.with_key(&key),
            Err(KeyError::Revoked) => {
                let reason = format!("the key at {name} was revoked");
                Checked::new(AuthResult::Fail, reason, Some(self.header))
            }
            Err(e) => self.perm_error(format!("{name}: {e}")),
        }
    }

    /// Finishes as fail for a reason of the caller's (a forgery of its own domain, say).
    #[must_use]
    pub fn fail(self, reason: impl Into<String>) -> Checked {
        Checked::new(AuthResult::Fail, reason, Some(self.header))
    }

    fn perm_error(self, reason: String) -> Checked {
        Checked::new(AuthResult::PermError, reason, Some(self.header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{RoomId, Signer};

    const FROM: &str = "Alice <alice@example.com>";

    fn signer() -> Signer {
        Signer::from_seed("example.com", "sel1", [7; 32])
    }

    fn field() -> String {
        let room = RoomId::parse("Xk3Fq9LmZ2pT7vRw4sYb8A").expect("room id");
        signer()
            .sign(
                "alice@example.com",
                "chat.example.com",
                20417,
                &room,
                1,
                FROM,
            )
            .expect("sign")
            .to_value()
    }

    fn with(answer: &KeyAnswer) -> AuthResult {
        match check_header(field().as_bytes(), Some(FROM)) {
            Stage::AwaitingKey(pending) => {
                assert_eq!(pending.key_name(), "sel1._chmail.example.com");
                pending.with_answer(answer).result
            }
            Stage::Decided(checked) => panic!("decided early: {checked:?}"),
        }
    }

    #[test]
    fn each_dns_answer_has_its_result() {
        let record = signer().dns_record();
        let other = Signer::from_seed("example.com", "sel1", [8; 32]).dns_record();
        let cases = [
            (KeyAnswer::Records(vec![record.clone()]), AuthResult::Pass),
            (
                KeyAnswer::Records(vec!["v=DKIM1; p=x".into(), record.clone()]),
                AuthResult::Pass,
            ),
            (KeyAnswer::Records(vec![other]), AuthResult::Fail),
            (
                KeyAnswer::Records(vec!["v=CHmail1; k=ed25519; p=".into()]),
                AuthResult::Fail,
            ),
            (KeyAnswer::NoRecord, AuthResult::PermError),
            (KeyAnswer::Records(vec![]), AuthResult::PermError),
            (
                KeyAnswer::Records(vec!["v=spf1 -all".into()]),
                AuthResult::PermError,
            ),
            (
                KeyAnswer::Records(vec![record.clone(), record]),
                AuthResult::PermError,
            ),
            (
                KeyAnswer::Records(vec!["v=CHmail1; k=rsa; p=AAAA".into()]),
                AuthResult::PermError,
            ),
            (
                KeyAnswer::TempError("SERVFAIL".into()),
                AuthResult::TempError,
            ),
        ];
        for (answer, want) in cases {
            assert_eq!(with(&answer), want, "{answer:?}");
        }
    }

    #[test]
    fn results_decided_before_the_key() {
        let good = field();
        let decided = |value: &str, from: Option<&str>| match check_header(value.as_bytes(), from) {
            Stage::Decided(checked) => checked.result,
            Stage::AwaitingKey(_) => panic!("{value:?} awaits a key"),
        };
        assert_eq!(
            decided("v=2; d=example.com; x=y", Some(FROM)),
            AuthResult::Neutral
        );
        assert_eq!(decided("v=1; garbage", Some(FROM)), AuthResult::PermError);
        assert_eq!(
            decided(
                &good.replace("d=example.com", "d=-x.example.com"),
                Some(FROM)
            ),
            AuthResult::PermError
        );
        assert_eq!(decided(&good, None), AuthResult::PermError);
        assert_eq!(
            decided(&good, Some("<ceo@bank.example> <alice@example.com>")),
            AuthResult::PermError
        );
        assert_eq!(decided(&good, Some("bob@example.net")), AuthResult::Fail);
    }

    #[test]
    fn result_names_are_those_of_rfc_8601() {
        let names: Vec<&str> = AuthResult::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ["pass", "fail", "neutral", "temperror", "permerror"]);
    }
}
