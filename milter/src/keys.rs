//! Key records of other domains' CHmail signatures, from DNS (`<s>._chmail.<d>` TXT), cached for
//! the record's TTL; what DNS answered (records, no record, no answer) goes to the header check.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use async_trait::async_trait;
use chmail::header::{key_record, key_record_name, KeyAnswer, PublicKey};
use hickory_proto::{op::ResponseCode, rr::Name, ProtoErrorKind};
use hickory_resolver::{
    config::{NameServerConfigGroup, ResolverConfig, ResolverOpts},
    name_server::TokioConnectionProvider,
    ResolveError, TokioResolver,
};

use crate::error::{MilterError, Result};

/// Where the milter finds key records and host names. A seam for tests.
#[async_trait]
pub trait KeySource: Send + Sync + 'static {
    /// What DNS answers for the TXT records at `name` (`<s>._chmail.<d>`, without a final dot).
    async fn key(&self, name: &str) -> KeyAnswer;
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
    async fn key(&self, name: &str) -> KeyAnswer {
        // A name DNS cannot hold has no record; the header check refuses such names before.
        let Ok(query) = Name::from_ascii(format!("{name}.")) else {
            return KeyAnswer::NoRecord;
        };
        let answer = tokio::time::timeout(self.timeout, self.resolver.txt_lookup(query));
        match answer.await {
            Err(_) => {
                KeyAnswer::TempError(format!("time-out after {} ms", self.timeout.as_millis()))
            }
            Ok(Err(e)) if no_record(&e) => KeyAnswer::NoRecord,
            Ok(Err(e)) => KeyAnswer::TempError(e.to_string()),
            Ok(Ok(txt)) => KeyAnswer::Records(
                txt.iter()
                    .map(|r| {
                        r.txt_data()
                            .iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect()
                    })
                    .collect(),
            ),
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

/// Whether `e` says that the name has no TXT record: NXDOMAIN, or an answer without one. Every
/// other failure (SERVFAIL, REFUSED, a network error) is no answer at all.
fn no_record(e: &ResolveError) -> bool {
    let Some(proto) = e.proto() else {
        return false;
    };
    matches!(
        proto.kind(),
        ProtoErrorKind::NoRecordsFound {
            response_code: ResponseCode::NoError | ResponseCode::NXDomain,
            ..
        }
    )
}

/// Fixed key records, DNS answers and host names instead of DNS (for tests).
#[derive(Default)]
pub struct StaticKeys {
    answers: HashMap<String, KeyAnswer>,
    hosts: HashMap<IpAddr, String>,
}

impl StaticKeys {
    /// Publishes `key` for `selector` at `domain`.
    pub fn with(self, selector: &str, domain: &str, key: PublicKey) -> Self {
        let record = key_record(&key);
        self.with_answer(selector, domain, KeyAnswer::Records(vec![record]))
    }

    /// Answers `answer` for the key record of `selector` at `domain` (a DNS failure, say).
    pub fn with_answer(mut self, selector: &str, domain: &str, answer: KeyAnswer) -> Self {
        self.answers.insert(
            key_record_name(selector, domain).to_ascii_lowercase(),
            answer,
        );
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
    async fn key(&self, name: &str) -> KeyAnswer {
        let name = name.to_ascii_lowercase();
        self.answers
            .get(&name)
            .cloned()
            .unwrap_or(KeyAnswer::NoRecord)
    }

    async fn hostname(&self, ip: IpAddr) -> Option<String> {
        self.hosts.get(&ip).cloned()
    }
}
