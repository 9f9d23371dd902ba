//! The signer: a signing domain, a selector and its Ed25519 key, which turn values into a header.

use std::path::Path;

use ed25519_dalek::{Signer as _, SigningKey};

use super::canon::canonical_bytes;
use super::key::{self, KeyError};
use super::{ChmailHeader, HeaderError, PublicKey, RoomId};

/// Signs CHmail headers for one domain and selector.
///
/// `Debug` shows the domain, selector and public key, never the private key.
#[derive(Debug)]
pub struct Signer {
    domain: String,
    selector: String,
    key: SigningKey,
}

impl Signer {
    /// A signer with a new random key.
    ///
    /// # Panics
    ///
    /// Only if the operating system's random number generator is unavailable.
    #[must_use]
    pub fn generate(domain: &str, selector: &str) -> Signer {
        let mut seed = [0u8; 32];
        // Without the OS RNG there is no safe key or room id to make; the doc says it panics.
        getrandom::fill(&mut seed).expect("the OS random number generator is unavailable");
        Signer::from_seed(domain, selector, seed)
    }

    /// A signer whose key is derived from `seed` (the 32-byte Ed25519 secret key); for test vectors
    /// and for keys read from a file.
    #[must_use]
    pub fn from_seed(domain: &str, selector: &str, seed: [u8; 32]) -> Signer {
        Signer {
            domain: domain.to_owned(),
            selector: selector.to_owned(),
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// Reads the private key file at `path` (format in `docs/header.md`).
    ///
    /// Logs a warning if the file is readable by group or others.
    ///
    /// # Errors
    ///
    /// [`KeyError::Io`] if the file cannot be read, [`KeyError::BadKeyFile`] if it does not hold
    /// exactly one `ed25519:<base64 seed>` line.
    pub fn from_key_file(path: &Path, domain: &str, selector: &str) -> Result<Signer, KeyError> {
        let seed = key::read_key_file(path)?;
        Ok(Signer::from_seed(domain, selector, seed))
    }

    /// Writes the private key to a new file at `path`, mode 0600 from its creation, creating
    /// missing parent directories (mode 0700); never overwrites.
    ///
    /// # Errors
    ///
    /// [`KeyError::AlreadyExists`] naming `path` if it exists, [`KeyError::Io`] for other I/O
    /// failures.
    pub fn write_key_file(&self, path: &Path) -> Result<(), KeyError> {
        key::write_key_file(path, &self.key.to_bytes(), &self.dns_name())
    }

    /// Signs: the header for these values over the mail's From address `from` (a bare address or a
    /// From field body, see [`super::from_address`]).
    ///
    /// # Errors
    ///
    /// A [`HeaderError`] if a value cannot be written safely: the signer's domain or selector is
    /// not a DNS name, `login` or `host` is empty, too long or holds a control character,
    /// whitespace or `;`, `port` is 0, or `from` holds no single usable address.
    pub fn sign(
        &self,
        login: &str,
        host: &str,
        port: u16,
        room: &RoomId,
        time: u64,
        from: &str,
    ) -> Result<ChmailHeader, HeaderError> {
        let mut header = ChmailHeader {
            domain: self.domain.clone(),
            selector: self.selector.clone(),
            login: login.to_owned(),
            host: host.to_owned(),
            port,
            room: room.clone(),
            time,
            signature: Vec::new(),
        };
        let message = canonical_bytes(&header, from)?;
        header.signature = self.key.sign(&message).to_bytes().to_vec();
        Ok(header)
    }

    /// The signing domain (`d=`).
    #[must_use]
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selector (`s=`).
    #[must_use]
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The public key verifiers find in DNS.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        self.key.verifying_key()
    }

    /// The DNS name of the key record: `<selector>._chmail.<domain>`.
    #[must_use]
    pub fn dns_name(&self) -> String {
        key::key_record_name(&self.selector, &self.domain)
    }

    /// The TXT record value to publish at [`Signer::dns_name`]:
    /// `v=CHmail1; k=ed25519; p=<base64 public key>`.
    #[must_use]
    pub fn dns_record(&self) -> String {
        key::key_record(&self.public_key())
    }
}
