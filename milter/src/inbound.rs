//! Mail not from one of our senders: keep each CHmail header that verifies against its domain's
//! DNS key and names the From domain; remove the rest, and every CHmail-Link without a kept header.

use chmail::header::{aligned, ChmailHeader, Verdict};
use tracing::{debug, warn};

use crate::{
    headers::Kind,
    keys::KeyLookup,
    policy::{Mail, Milter, Outcome},
};

/// Most CHmail headers verified per mail: a real mail carries one (a forwarded one, a few). Past
/// this they are removed unchecked, so a mail full of them cannot make the milter wait on DNS
/// for long.
const MAX_CHECKED_HEADERS: usize = 8;

/// What became of one CHmail header.
enum Check {
    Keep(ChmailHeader),
    Remove(String),
    /// DNS could not answer: nothing is known.
    Unknown(String),
}

impl Milter {
    /// Checks the CHmail headers of `mail`. Headers that were not kept (past
    /// the size cap) have no value and are removed; so are any past [`MAX_CHECKED_HEADERS`].
    pub(crate) async fn check(&self, mail: &Mail) -> Outcome {
        let mut outcome = Outcome::new("checked");
        let summary = mail.headers.summary();
        let from = summary.sole_from();
        let mut kept = Vec::new();
        let mut remove = Vec::new();
        let mut unknown = None;
        let fields = mail
            .headers
            .fields
            .iter()
            .filter(|f| f.kind == Kind::Header);
        for (n, field) in fields.enumerate() {
            let check = match (&field.value, from) {
                _ if n >= MAX_CHECKED_HEADERS => Check::Remove("too many CHmail headers".into()),
                (None, _) => Check::Remove("over the size cap".into()),
                (Some(_), None) => Check::Remove("the mail has no single From address".into()),
                (Some(value), Some(from)) => self.check_one(value, from).await,
            };
            match check {
                Check::Keep(header) => {
                    self.metrics.verified("pass");
                    kept.push(header);
                }
                Check::Remove(reason) => {
                    self.metrics.verified("fail");
                    debug!(index = field.index, reason = %reason, "removing CHmail header");
                    remove.push(field.index);
                }
                Check::Unknown(reason) => {
                    unknown = Some(reason);
                }
            }
        }
        outcome.delete_all(Kind::Header, remove);
        let links = mail
            .headers
            .fields
            .iter()
            .filter(|f| f.kind == Kind::Link)
            .filter(|f| {
                unknown.is_none()
                    && !f
                        .value
                        .as_deref()
                        .is_some_and(|v| kept.iter().any(|h| link_matches(v, h)))
            })
            .map(|f| f.index)
            .collect();
        outcome.delete_all(Kind::Link, links);
        if let Some(reason) = unknown {
            warn!(cause = %reason, "cannot verify a CHmail header: DNS failed");
            self.metrics.error("dns");
            return self.on_failure(outcome, reason);
        }
        outcome
    }

    async fn check_one(&self, value: &[u8], from: &str) -> Check {
        let header = match ChmailHeader::parse(value) {
            Ok(h) => h,
            Err(e) => return Check::Remove(format!("unparseable: {e}")),
        };
        if !aligned(&header.domain, from) {
            return Check::Remove(format!(
                "d={} does not match the From domain",
                header.domain
            ));
        }
        let domain = header.domain.to_ascii_lowercase();
        let ours = self.own_domains.contains(&domain);
        let claims_us = self.claims_us(&header);
        let verdict = if ours {
            // Our own domains are checked against our keys, never DNS: a key kept for verifying
            // (the old selector of a rotation) still passes its headers.
            match self.table.key(&domain, &header.selector) {
                Some(key) => header.verify(from, key),
                None => Verdict::Fail(format!(
                    "s={} is not one of our selectors for d={domain}",
                    header.selector
                )),
            }
        } else if claims_us {
            Verdict::Fail("names our login or chat host under another domain's signature".into())
        } else {
            match self.keys.key(&header.selector, &header.domain).await {
                KeyLookup::Found(key) => header.verify(from, &key),
                KeyLookup::Missing(reason) => Verdict::Fail(reason),
                KeyLookup::Unavailable(reason) => return Check::Unknown(reason),
            }
        };
        match verdict {
            Verdict::Pass => Check::Keep(header),
            Verdict::Fail(reason) => Check::Remove(reason),
        }
    }

    /// Whether a header names one of our logins or our chat host.
    fn claims_us(&self, header: &ChmailHeader) -> bool {
        let login_domain = header
            .login
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase());
        login_domain.is_some_and(|d| self.own_domains.contains(&d))
            || header.host.eq_ignore_ascii_case(&self.public_host)
    }
}

/// Whether a CHmail-Link value points at the room of `header`: `<http(s)://HOST/.../c/PORT/ROOM>`.
fn link_matches(value: &[u8], header: &ChmailHeader) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let value: String = value.split_whitespace().collect();
    let Some(url) = value.strip_prefix('<').and_then(|v| v.strip_suffix('>')) else {
        return false;
    };
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or_default();
    host.eq_ignore_ascii_case(&header.host)
        && url.ends_with(&format!("/c/{}/{}", header.port, header.room))
}
