//! The milter's error type: what can stop it from starting or serving.

use std::path::PathBuf;

/// Errors of the milter's setup (a mail never fails with these: see `policy`).
#[derive(Debug, thiserror::Error)]
pub enum MilterError {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] chmail::config::ConfigError),
    /// The `[milter] listen` socket spec is not `inet:HOST:PORT` or `unix:PATH`.
    #[error("[milter] listen {0:?} must be inet:HOST:PORT or unix:PATH")]
    ListenSpec(String),
    /// The socket could not be bound.
    #[error("cannot listen on {spec}: {source}")]
    Bind {
        /// The socket spec.
        spec: String,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] chmail::store::StoreError),
    /// A signing key is missing or unreadable, or `keygen` cannot write it.
    #[error(
        "signing key {path} (d={domain}, s={selector}): {cause}; create one with \
         `chmail-milter keygen --domain {domain} --selector {selector}`"
    )]
    Key {
        /// The key file.
        path: PathBuf,
        /// The signing domain of its table entry.
        domain: String,
        /// The selector of its table entry.
        selector: String,
        /// Why it cannot be used.
        cause: String,
    },
    /// `keygen` was asked for an entry that the signing table does not single out.
    #[error("keygen: {0}")]
    Keygen(String),
    /// A trusted network is not `ADDRESS/PREFIX`.
    #[error("[milter] trusted_networks: {0:?} is not ADDRESS/PREFIX")]
    Network(String),
    /// The DNS resolver could not be set up.
    #[error("DNS resolver: {0}")]
    Resolver(String),
    /// Another I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The milter's result type.
pub type Result<T, E = MilterError> = std::result::Result<T, E>;
