//! What the milter decides for one mail at end-of-message: sign it (authenticated sender) or
//! check the CHmail headers it carries (everything else). Pure of the milter protocol, so it is
//! tested directly and the callbacks only carry out the [`Outcome`].

use std::{net::IpAddr, sync::Arc, time::SystemTime};

use chmail::{
    config::{Config, OnError},
    store::Store,
};

use crate::{
    auth_results::{authserv_id_of, clean_authserv_id},
    error::Result,
    headers::{normalize_address, Headers, Kind},
    keys::KeySource,
    metrics::Metrics,
    network::{parse_client_addr, Network},
    table::SigningTable,
};

/// The milter's shared state: configuration, store, our keys, key source, metrics.
pub struct Milter {
    pub(crate) config: Config,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) table: SigningTable,
    pub(crate) keys: Arc<dyn KeySource>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) own_domains: Vec<String>,
    pub(crate) public_host: String,
    trusted: Vec<Network>,
}

/// What the MTA told about one mail.
#[derive(Debug, Default)]
pub struct Mail {
    /// The queue id (macro `i`), for the log.
    pub queue_id: Option<String>,
    /// The SASL login (macro `{auth_authen}`).
    pub auth_authen: Option<String>,
    /// The client's address (macro `{client_addr}`).
    pub client_addr: Option<String>,
    /// The client's host name (macro `{client_name}`), `unknown` when it has none.
    pub client_name: Option<String>,
    /// The MTA's own host name (macro `j`), the default authserv-id.
    pub mta_host: Option<String>,
    /// The header block.
    pub headers: Headers,
    /// The start of the mail's text ([`crate::opening`]), kept with the room of a signed mail.
    pub opening: Option<String>,
}

/// What to do with the mail.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Fields to delete, each name's indexes from the highest down.
    pub delete: Vec<(Kind, usize)>,
    /// Fields to add, in order; an `Authentication-Results` field goes on top of the header,
    /// the others at its end.
    pub add: Vec<(Kind, String)>,
    /// Answer with a temporary failure instead (only under `on_error = "tempfail"`).
    pub tempfail: bool,
    /// One word for the log and the metrics: `signed`, `checked`, `unsigned`, `tempfail`.
    pub action: &'static str,
    /// Why, when it was not the plain case (for the log).
    pub note: Option<String>,
    /// The login the mail was signed for.
    pub login: Option<String>,
    /// The chat port of that login.
    pub port: Option<u16>,
    /// The chat link of a signed mail, without angle brackets, for the body footer.
    pub link: Option<String>,
}

impl Outcome {
    pub(crate) fn new(action: &'static str) -> Self {
        Self {
            action,
            ..Default::default()
        }
    }

    /// Deletes `fields` of `kind`, highest index first (the MTA renumbers later copies after a
    /// delete, so ascending order would leave copies behind).
    pub(crate) fn delete_all(&mut self, kind: Kind, mut indexes: Vec<usize>) {
        indexes.sort_unstable_by(|a, b| b.cmp(a));
        indexes.dedup();
        self.delete.extend(indexes.into_iter().map(|i| (kind, i)));
    }
}

impl Milter {
    /// Builds the milter's state.
    ///
    /// # Errors
    /// When `[chat] public_url` or `[milter] trusted_networks` is invalid.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        table: SigningTable,
        keys: Arc<dyn KeySource>,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let public_host = config.chat.public_host()?;
        let trusted = config
            .milter
            .trusted_networks
            .iter()
            .map(|n| Network::parse(n))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            own_domains: config.own_domains(),
            public_host,
            trusted,
            config,
            store,
            table,
            keys,
            metrics,
        })
    }

    /// The metrics this milter counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Decides what to do with `mail`. Never fails: trouble with the store becomes an unsigned
    /// mail (or a temporary failure under `on_error = "tempfail"`), trouble with DNS a header
    /// result of temperror; both are logged and counted.
    pub async fn decide(&self, mail: &Mail) -> Outcome {
        let login = self.sender_login(
            mail.auth_authen.as_deref(),
            mail.client_addr.as_deref(),
            &mail.headers,
        );
        let mut outcome = match login {
            Some(login) => self.sign(mail, login).await,
            None => self.check(mail).await,
        };
        if !outcome.tempfail {
            outcome.delete_all(Kind::AuthResults, self.forged_results(mail));
        }
        outcome
    }

    /// The authserv-id of our `Authentication-Results` fields: `[milter] authserv_id`, else the
    /// MTA's host name, else `[signing] domain`.
    pub(crate) fn authserv_id(&self, mail: &Mail) -> String {
        [
            Some(self.config.milter.authserv_id.as_str()),
            mail.mta_host.as_deref(),
            Some(self.config.signing.domain.as_str()),
        ]
        .into_iter()
        .flatten()
        .find_map(clean_authserv_id)
        .unwrap_or_else(|| "localhost".to_owned())
    }

    /// The indexes of the `Authentication-Results` fields a client supplied under our
    /// authserv-id, and of those too long to tell: only we speak under our name.
    fn forged_results(&self, mail: &Mail) -> Vec<usize> {
        let ours = self.authserv_id(mail).to_ascii_lowercase();
        mail.headers
            .fields
            .iter()
            .filter(|f| f.kind == Kind::AuthResults)
            .filter(|f| match &f.value {
                Some(value) => authserv_id_of(value).is_some_and(|id| id == ours),
                None => true,
            })
            .map(|f| f.index)
            .collect()
    }

    /// The login to sign for: the SASL login (with `@domain` added when it has none), or the From
    /// address of mail from a trusted network within our domains or the signing table. `None`
    /// for other mail.
    pub(crate) fn sender_login(
        &self,
        auth_authen: Option<&str>,
        client_addr: Option<&str>,
        headers: &Headers,
    ) -> Option<String> {
        if let Some(auth) = auth_authen.map(str::trim) {
            if !auth.is_empty() {
                let login = if auth.contains('@') {
                    auth.to_owned()
                } else {
                    format!("{auth}@{}", self.config.signing.domain)
                };
                return normalize_address(&login).or(Some(login));
            }
        }
        if self.trusted.is_empty() {
            return None;
        }
        let ip = client_addr.and_then(parse_client_addr)?;
        if !self.trusted.iter().any(|n| n.contains(ip)) {
            return None;
        }
        let summary = headers.summary();
        let from = summary.sole_from()?;
        let (_, domain) = from.rsplit_once('@')?;
        (self.own_domains.iter().any(|d| d == domain) || self.table.signer_for(domain).is_some())
            .then(|| from.to_owned())
    }

    /// The client's address and host name for the first table: the MTA's name for it, else
    /// (no name, or `unknown`, or a bracketed address) a reverse look-up under the DNS time-out.
    pub(crate) async fn client(&self, mail: &Mail) -> (Option<IpAddr>, Option<String>) {
        let ip = mail.client_addr.as_deref().and_then(parse_client_addr);
        let given = mail
            .client_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty() && *n != "unknown" && !n.starts_with('['));
        let name = match (given, ip) {
            (Some(name), _) => Some(name.trim_end_matches('.').to_ascii_lowercase()),
            (None, Some(ip)) => self.keys.hostname(ip).await,
            (None, None) => None,
        };
        (ip, name)
    }

    /// What `on_error` makes of a failure of the store.
    pub(crate) fn on_failure(&self, mut outcome: Outcome, note: String) -> Outcome {
        outcome.note = Some(note);
        if self.config.milter.on_error == OnError::Tempfail {
            outcome.tempfail = true;
            outcome.action = "tempfail";
            outcome.add.clear();
            outcome.delete.clear();
        }
        outcome
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
