//! Mail not from one of our senders: check each CHmail header (pass, fail, neutral, temperror,
//! permerror; see `docs/header.md`, "Results") and act on its result: keep a header that passed,
//! remove one that failed or cannot ever be checked, leave one without a verdict (neutral,
//! temperror) in place, and remove every CHmail-Link that does not belong to a header that passed.
//! The results go into an `Authentication-Results` field on top. Nothing here delays or refuses a
//! mail.

use chmail::header::{check_header, AuthResult, Checked, ChmailHeader, Stage};
use tracing::{info, warn};

use crate::{
    auth_results::field_body,
    headers::Kind,
    policy::{Mail, Milter, Outcome},
};

/// Most CHmail headers verified per mail: a real mail carries one (a forwarded one, a few). Past
/// this they are removed unchecked, so a mail full of them cannot make the milter wait on DNS
/// for long.
const MAX_CHECKED_HEADERS: usize = 8;

impl Milter {
    /// Checks the CHmail headers of `mail` and removes those that failed and every CHmail-Link
    /// without a header that passed. Headers not kept in full (over the size cap) and those past
    /// [`MAX_CHECKED_HEADERS`] cannot be checked: permerror.
    pub(crate) async fn check(&self, mail: &Mail) -> Outcome {
        let mut outcome = Outcome::new("checked");
        let from = mail.headers.from_field();
        let mut passed = Vec::new();
        let mut remove = Vec::new();
        let mut results: Vec<Checked> = Vec::new();
        let mut skipped = 0usize;
        let fields = mail
            .headers
            .fields
            .iter()
            .filter(|f| f.kind == Kind::Header);
        for (n, field) in fields.enumerate() {
            if n >= MAX_CHECKED_HEADERS {
                // Counted, but neither logged nor reported one by one: there may be thousands.
                self.metrics.verified(AuthResult::PermError.as_str());
                remove.push(field.index);
                skipped += 1;
                continue;
            }
            let checked = match &field.value {
                None => unchecked("over the size cap".to_owned()),
                Some(value) => self.check_one(value, from).await,
            };
            self.metrics.verified(checked.result.as_str());
            let (d, s) = checked
                .header
                .as_ref()
                .map_or(("-", "-"), |h| (h.domain.as_str(), h.selector.as_str()));
            if checked.result == AuthResult::TempError {
                warn!(index = field.index, d, s, cause = %checked.reason,
                    "cannot verify a CHmail header: DNS failed");
                self.metrics.error("dns");
            } else {
                info!(index = field.index, result = checked.result.as_str(), d, s,
                    reason = %checked.reason, "CHmail header checked");
            }
            match checked.result {
                AuthResult::Pass => passed.extend(checked.header.clone()),
                AuthResult::Fail | AuthResult::PermError => remove.push(field.index),
                AuthResult::Neutral | AuthResult::TempError => {}
            }
            results.push(checked);
        }
        if skipped > 0 {
            info!(
                count = skipped,
                "CHmail headers past the eighth removed unchecked"
            );
            results.push(unchecked(format!(
                "{skipped} more CHmail headers (at most {MAX_CHECKED_HEADERS} are checked)"
            )));
        }
        outcome.delete_all(Kind::Header, remove);
        let links = mail
            .headers
            .fields
            .iter()
            .filter(|f| f.kind == Kind::Link)
            .filter(|f| {
                !f.value
                    .as_deref()
                    .is_some_and(|v| passed.iter().any(|h| link_matches(v, h)))
            })
            .map(|f| f.index)
            .collect();
        outcome.delete_all(Kind::Link, links);
        if !results.is_empty() {
            let notes: Vec<String> = results
                .iter()
                .map(|c| format!("{}: {}", c.result, c.reason))
                .collect();
            outcome.note = Some(notes.join("; "));
        }
        let authserv_id = self.authserv_id(mail);
        outcome
            .add
            .push((Kind::AuthResults, field_body(&authserv_id, &results)));
        outcome
    }

    /// The result of one header on a mail whose one From field is `from`.
    async fn check_one(&self, value: &[u8], from: Option<&str>) -> Checked {
        let pending = match check_header(value, from) {
            Stage::Decided(checked) => return checked,
            Stage::AwaitingKey(pending) => pending,
        };
        let header = pending.header();
        let domain = header.domain.to_ascii_lowercase();
        if self.own_domains.contains(&domain) {
            // Our own domains are checked against our keys, never DNS: a key kept for verifying
            // (the old selector of a rotation) still passes its headers.
            return match self.table.key(&domain, &header.selector) {
                Some(key) => pending.with_key(key),
                None => {
                    let reason = format!(
                        "s={} is not one of our selectors for d={domain}",
                        header.selector
                    );
                    pending.fail(reason)
                }
            };
        }
        if self.claims_us(header) {
            return pending.fail("names our login or chat host under another domain's signature");
        }
        let answer = self.keys.key(&pending.key_name()).await;
        pending.with_answer(&answer)
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

/// A header the milter does not check: permerror.
fn unchecked(why: String) -> Checked {
    Checked {
        result: AuthResult::PermError,
        reason: format!("not checked: {why}"),
        header: None,
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
