//! Public keys of other domains' CHmail signatures, from DNS (`<s>._chmail.<d>` TXT), cached for the
//! record's TTL.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use async_trait::async_trait;
use chmail::header::{key_record_name, parse_key_record, PublicKey};
use hickory_resolver::{
    config::{NameServerConfigGroup, ResolverConfig, ResolverOpts},
    name_server::TokioConnectionProvider,
    TokioResolver,
};

use crate::error::{MilterError, Result};

/// The answer to a key look-up.
#[derive(Debug, Clone)]
pub enum KeyLookup {
    /// The domain publishes this key.
    Found(PublicKey),
    /// The domain publishes no usable key (no record, revoked, malformed): the header fails.
    Missing(String),
    /// DNS did not answer (time-out, server failure): nothing can be said.
    Unavailable(String),
}

/// Where the milter finds public keys and host names. A seam for tests.
#[async_trait]
pub trait KeySource: Send + Sync + 'static {
    /// The public key for `selector` at `domain`.
    async fn key(&self, selector: &str, domain: &str) -> KeyLookup;
    /// The host name of `ip` (reverse look-up), when there is one.
    async fn hostname(&self, ip: IpAddr) -> Option<String>;
}

/// Keys and host names from DNS through hickory-resolver, every query under a time-out.
///
/// hickory-resolver's own cache keeps each answer for its TTL (at most a day; a missing key at
/// most a minute, so a newly published key is seen soon).
pub struct DnsKeys {
    resolver: TokioResolver,
    timeout: Duration,
}

/// Most answers the resolver caches.
const CACHE_SIZE: usize = 10_000;
/// The longest a key is cached whatever its TTL says.
const MAX_TTL: Duration = Duration::from_secs(86_400);
/// The longest a missing key is cached.
const NEGATIVE_TTL: Duration = Duration::from_secs(60);

impl DnsKeys {
    /// A resolver on `server` (`IP:PORT`), or on the system's `/etc/resolv.conf` when empty.
    ///
    /// # Errors
    /// When `server` is not `IP:PORT` or the system configuration cannot be read.
    pub fn new(server: &str, timeout: Duration) -> Result<Self> {
        let mut builder = if server.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| MilterError::Resolver(e.to_string()))?
        } else {
            let addr: SocketAddr = server.parse().map_err(|_| {
                MilterError::Resolver(format!("[milter] resolver {server:?} is not IP:PORT"))
            })?;
            let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
            let config = ResolverConfig::from_parts(None, vec![], group);
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = timeout;
        opts.attempts = 1;
        opts.cache_size = CACHE_SIZE;
        opts.positive_max_ttl = Some(MAX_TTL);
        opts.negative_max_ttl = Some(NEGATIVE_TTL);
        Ok(Self {
            resolver: builder.build(),
            timeout,
        })
    }
}

#[async_trait]
impl KeySource for DnsKeys {
    async fn key(&self, selector: &str, domain: &str) -> KeyLookup {
        let name = format!(
            "{}.",
            key_record_name(selector, domain).to_ascii_lowercase()
        );
        let answer = tokio::time::timeout(self.timeout, self.resolver.txt_lookup(name.as_str()));
        let txt = match answer.await {
            Err(_) => return KeyLookup::Unavailable(format!("DNS time-out for {name}")),
            Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => {
                return KeyLookup::Missing(format!("no key record at {name}"))
            }
            Ok(Err(e)) => return KeyLookup::Unavailable(format!("DNS error for {name}: {e}")),
            Ok(Ok(txt)) => txt,
        };
        let records: Vec<String> = txt
            .iter()
            .map(|r| {
                r.txt_data()
                    .iter()
                    .map(|part| String::from_utf8_lossy(part))
                    .collect::<String>()
            })
            .filter(|r| r.trim_start().starts_with("v=CHmail1"))
            .collect();
        match records.as_slice() {
            [one] => match parse_key_record(one) {
                Ok(key) => KeyLookup::Found(key),
                Err(e) => KeyLookup::Missing(format!("{name}: {e}")),
            },
            [] => KeyLookup::Missing(format!("no v=CHmail1 record at {name}")),
            _ => KeyLookup::Missing(format!("several v=CHmail1 records at {name}")),
        }
    }

    async fn hostname(&self, ip: IpAddr) -> Option<String> {
        let answer = tokio::time::timeout(self.timeout, self.resolver.reverse_lookup(ip))
            .await
            .ok()?
            .ok()?;
        answer
            .iter()
            .next()
            .map(|name| name.to_utf8().trim_end_matches('.').to_ascii_lowercase())
    }
}

/// Fixed keys and host names instead of DNS (for tests).
#[derive(Default)]
pub struct StaticKeys {
    keys: HashMap<String, PublicKey>,
    hosts: HashMap<IpAddr, String>,
}

impl StaticKeys {
    /// Adds the key of `selector` at `domain`.
    pub fn with(mut self, selector: &str, domain: &str, key: PublicKey) -> Self {
        self.keys
            .insert(key_record_name(selector, domain).to_ascii_lowercase(), key);
        self
    }

    /// Adds the host name of `ip`.
    pub fn with_host(mut self, ip: IpAddr, name: &str) -> Self {
        self.hosts.insert(ip, name.to_owned());
        self
    }
}

#[async_trait]
impl KeySource for StaticKeys {
    async fn key(&self, selector: &str, domain: &str) -> KeyLookup {
        let name = key_record_name(selector, domain).to_ascii_lowercase();
        match self.keys.get(&name) {
            Some(key) => KeyLookup::Found(*key),
            None => KeyLookup::Missing(format!("no key record at {name}")),
        }
    }

    async fn hostname(&self, ip: IpAddr) -> Option<String> {
        self.hosts.get(&ip).cloned()
    }
}
