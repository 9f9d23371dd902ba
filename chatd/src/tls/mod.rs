//! TLS on chatd's own listeners: HTTPS on `[chat] listen` ([`https`]) and STARTTLS on
//! `[reply] listen` ([`crate::reply::listener`]), each with a certificate chain and private key
//! from the PEM files that `tls_cert` and `tls_key` of its section name.
//!
//! The files are read and checked when chatd starts (readable, PEM, a certificate and a key that
//! belong together), so a mistake stops the start with a message that names the setting and the
//! file. [`Tls::reload`] reads them again for the connections that follow (chatd does on
//! SIGHUP); a reload that fails keeps the certificate in use. The crypto provider is
//! `aws-lc-rs`, rustls' default.

pub mod https;

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock},
};

use chmail::Config;
use rustls::{
    crypto::{aws_lc_rs, CryptoProvider},
    pki_types::{pem, pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    InconsistentKeys, ServerConfig,
};

/// Errors reading a listener's certificate and key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read: missing, or not readable by chatd's user.
    #[error("{setting} {path}: cannot read it: {source}")]
    Read {
        /// The setting that names the file, `[chat] tls_cert` and the like.
        setting: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is not valid PEM.
    #[error("{setting} {path}: not a valid PEM file: {reason}")]
    Pem {
        /// The setting that names the file.
        setting: String,
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        reason: String,
    },
    /// The certificate file holds no certificate.
    #[error("{setting} {path}: no certificate in it (a PEM block `BEGIN CERTIFICATE`)")]
    NoCertificate {
        /// The setting that names the file.
        setting: String,
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error(
        "{setting} {path}: no private key in it (a PEM block `BEGIN PRIVATE KEY`, \
         `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`)"
    )]
    NoKey {
        /// The setting that names the file.
        setting: String,
        /// The file.
        path: PathBuf,
    },
    /// The key is not the key of the certificate.
    #[error("[{section}] tls_key {key} is not the private key of tls_cert {cert}")]
    Mismatch {
        /// `chat` or `reply`.
        section: &'static str,
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate or the key cannot be used (an unsupported key type, a certificate
    /// that does not parse).
    #[error("[{section}] tls_cert {cert} with tls_key {key} cannot be used: {reason}")]
    Unusable {
        /// `chat` or `reply`.
        section: &'static str,
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        reason: String,
    },
    /// The TLS settings themselves were refused (protocol versions the provider lacks).
    #[error("[{section}] TLS setup: {source}")]
    Setup {
        /// `chat` or `reply`.
        section: &'static str,
        /// rustls' reason.
        source: rustls::Error,
    },
}

/// Where one listener's certificate chain and key are: `tls_cert` and `tls_key` of `[chat]` or
/// `[reply]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `chat` or `reply`.
    pub section: &'static str,
    /// The PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// The PEM private key of that certificate.
    pub key: PathBuf,
}

impl TlsFiles {
    /// `[chat] tls_cert` and `tls_key`; `None` when they are empty (plain HTTP).
    pub fn chat(config: &Config) -> Option<Self> {
        Self::new("chat", &config.chat.tls_cert, &config.chat.tls_key)
    }

    /// `[reply] tls_cert` and `tls_key`; `None` when they are empty (no STARTTLS).
    pub fn reply(config: &Config) -> Option<Self> {
        Self::new("reply", &config.reply.tls_cert, &config.reply.tls_key)
    }

    fn new(section: &'static str, cert: &Path, key: &Path) -> Option<Self> {
        // The config refuses one without the other; an empty certificate is TLS off.
        if cert.as_os_str().is_empty() {
            return None;
        }
        Some(Self {
            section,
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Reads and checks both files.
    fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let cert_setting = format!("[{}] tls_cert", self.section);
        let key_setting = format!("[{}] tls_key", self.section);
        let pem_error = |setting: &str, path: &Path, e: pem::Error| TlsError::Pem {
            setting: setting.to_owned(),
            path: path.to_owned(),
            reason: pem_reason(&e),
        };
        let certs = read(&cert_setting, &self.cert)?;
        // Blocks of other kinds (a key in the same file) are passed over.
        let chain = CertificateDer::pem_slice_iter(&certs)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(&cert_setting, &self.cert, e))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                setting: cert_setting,
                path: self.cert.clone(),
            });
        }
        let key = read(&key_setting, &self.key)?;
        let key = match PrivateKeyDer::from_pem_slice(&key) {
            Ok(key) => key,
            Err(pem::Error::NoItemsFound) => {
                return Err(TlsError::NoKey {
                    setting: key_setting,
                    path: self.key.clone(),
                })
            }
            Err(e) => return Err(pem_error(&key_setting, &self.key, e)),
        };
        CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => TlsError::Mismatch {
                section: self.section,
                cert: self.cert.clone(),
                key: self.key.clone(),
            },
            reason => TlsError::Unusable {
                section: self.section,
                cert: self.cert.clone(),
                key: self.key.clone(),
                reason: reason.to_string(),
            },
        })
    }
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        setting: setting.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// A PEM error in words (the library's own message shows the bytes of the marker).
fn pem_reason(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a block has no end line {:?}",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => {
            format!("a malformed BEGIN line {:?}", String::from_utf8_lossy(line))
        }
        pem::Error::Base64Decode(why) => format!("a block is not valid base64 ({why})"),
        other => other.to_string(),
    }
}

/// One listener's TLS: the rustls configuration to accept connections with, and its
/// certificate, which [`Tls::reload`] replaces for the connections that follow.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    config: Arc<ServerConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Reads and checks `files`; `alpn` lists the application protocols offered, most
    /// preferred first (none for SMTP).
    ///
    /// # Errors
    /// When a file is missing or unreadable, is not PEM, holds no certificate or no key, or
    /// the key is not the certificate's.
    pub fn load(files: TlsFiles, alpn: &[&[u8]]) -> Result<Self, TlsError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(files.load(&provider)?))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Setup {
                section: files.section,
                source,
            })?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            files,
            provider,
            current,
            config: Arc::new(config),
        })
    }

    /// Reads the files again; connections from now on get the new certificate. On an error
    /// the certificate in use stays.
    ///
    /// # Errors
    /// As [`Tls::load`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(self.files.load(&self.provider)?);
        *self
            .current
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// The files it was loaded from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The rustls configuration for accepting connections.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

/// The certificate and key in use: the same for every client, whatever name it asks for.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}
