//! The keys: the private key file a signer reads, and the public key's DNS TXT record.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::PublicKey;

/// Prefix of the one key line in a key file; names the algorithm so other ones can follow.
const KEY_LINE_PREFIX: &str = "ed25519:";

/// Largest key file read: a real one has about 100 bytes; more is not a key file.
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

/// Largest TXT record value parsed: DNS limits a TXT RR to 64 KiB, a CHmail record needs 70 bytes.
const MAX_RECORD_LEN: usize = 4096;

/// Every reason a key file or a DNS key record is unusable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("key file {}: {source}", path.display())]
    Io {
        /// The key file or the directory being created.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file exists already; it is never overwritten.
    #[error("key file {} exists already; not overwriting it", .0.display())]
    AlreadyExists(PathBuf),
    /// The key file is not in the key file format.
    #[error("bad key file: {0}")]
    BadKeyFile(String),
    /// The TXT record is not a CHmail v1 key record.
    #[error("bad CHmail key record: {0}")]
    BadRecord(String),
    /// The TXT record has an empty `p=`: the key was revoked.
    #[error("the CHmail key was revoked (empty p=)")]
    Revoked,
}

/// The DNS name of a key record: `<selector>._chmail.<domain>`.
#[must_use]
pub fn key_record_name(selector: &str, domain: &str) -> String {
    format!("{selector}._chmail.{domain}")
}

/// The TXT record value that publishes `key`: `v=CHmail1; k=ed25519; p=<base64 public key>`.
#[must_use]
pub fn key_record(key: &PublicKey) -> String {
    format!(
        "v=CHmail1; k=ed25519; p={}",
        STANDARD.encode(key.as_bytes())
    )
}

/// The public key in a TXT record value (the strings of one TXT RR, already concatenated).
///
/// Tags are `;`-separated `tag=value` pairs with any whitespace around them and an optional
/// trailing `;`. `v=CHmail1` is required and comes first; `k=ed25519` is required; `p=` holds the
/// standard base64 of the 32-byte key (whitespace inside it is ignored). Other tags are ignored, as
/// in DKIM key records.
///
/// # Errors
///
/// [`KeyError::Revoked`] for an empty `p=`; [`KeyError::BadRecord`] for anything else wrong: no or
/// misplaced `v`, a duplicate tag, `k` other than `ed25519`, bad base64, a key that is not 32 bytes
/// or is not a valid, non-weak Ed25519 point.
pub fn parse_key_record(txt: &str) -> Result<PublicKey, KeyError> {
    let bad = |why: &str| KeyError::BadRecord(why.to_owned());
    if txt.len() > MAX_RECORD_LEN {
        return Err(bad("longer than 4096 bytes"));
    }
    let mut tags: Vec<(&str, &str)> = Vec::new();
    for spec in txt.split(';') {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| bad("a tag without '='"))?;
        let (name, value) = (name.trim(), value.trim());
        if tags.iter().any(|(n, _)| *n == name) {
            return Err(KeyError::BadRecord(format!("tag {name}= appears twice")));
        }
        tags.push((name, value));
    }
    match tags.first() {
        Some(("v", "CHmail1")) => {}
        Some(("v", other)) => {
            return Err(KeyError::BadRecord(format!(
                "v={other}, expected v=CHmail1"
            )))
        }
        _ => return Err(bad("does not start with v=CHmail1")),
    }
    let get = |tag: &str| tags.iter().find(|(n, _)| *n == tag).map(|(_, v)| *v);
    let p: String = get("p")
        .ok_or_else(|| bad("no p= tag"))?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if p.is_empty() {
        return Err(KeyError::Revoked);
    }
    match get("k") {
        Some("ed25519") => {}
        Some(other) => {
            return Err(KeyError::BadRecord(format!(
                "k={other}, expected k=ed25519"
            )))
        }
        None => return Err(bad("no k= tag")),
    }
    let bytes = STANDARD
        .decode(p.as_bytes())
        .map_err(|_| bad("p= is not valid base64"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| KeyError::BadRecord(format!("p= holds {} bytes, not 32", b.len())))?;
    let key = PublicKey::from_bytes(&bytes).map_err(|_| bad("p= is not an Ed25519 public key"))?;
    if key.is_weak() {
        return Err(bad("p= is a weak (small-order) Ed25519 key"));
    }
    Ok(key)
}

/// Reads the 32-byte seed from a key file.
pub(crate) fn read_key_file(path: &Path) -> Result<[u8; 32], KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let bad = |why: &str| KeyError::BadKeyFile(format!("{}: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.mode() & 0o777),
            "CHmail key file is readable by others; chmod 600 it");
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidData => bad("not UTF-8 text"),
            _ => io(e),
        })?;
    if text.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(bad("larger than 64 KiB"));
    }
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let line = lines.next().ok_or_else(|| bad("no key line"))?;
    if lines.next().is_some() {
        return Err(bad("more than one key line"));
    }
    let b64 = line
        .strip_prefix(KEY_LINE_PREFIX)
        .ok_or_else(|| bad("the key line does not start with 'ed25519:'"))?;
    let seed = STANDARD
        .decode(b64.trim().as_bytes())
        .map_err(|_| bad("the key is not valid base64"))?;
    seed.try_into().map_err(|_| bad("the key is not 32 bytes"))
}

/// The text of a key file for `seed`; `name` (the DNS name) goes into the comment line.
pub(crate) fn key_file_text(seed: &[u8; 32], name: &str) -> String {
    format!(
        "# CHmail v1 signing key for {name}; keep secret (mode 0600)\n{KEY_LINE_PREFIX}{}\n",
        STANDARD.encode(seed)
    )
}

/// Writes a new key file: mode 0600 from creation, parents created with mode 0700, never overwrites.
pub(crate) fn write_key_file(path: &Path, seed: &[u8; 32], name: &str) -> Result<(), KeyError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| KeyError::Io {
                path: parent.to_owned(),
                source,
            })?;
    }
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => KeyError::AlreadyExists(path.to_owned()),
            _ => io(e),
        })?;
    file.write_all(key_file_text(seed, name).as_bytes())
        .map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Signer;

    fn record(p: &str) -> String {
        format!("v=CHmail1; k=ed25519; p={p}")
    }

    #[test]
    fn key_record_good_forms_parse_to_the_signers_key() {
        let signer = Signer::from_seed("example.com", "sel1", [7; 32]);
        let want = signer.public_key();
        let p = STANDARD.encode(want.as_bytes());
        let (head, tail) = p.split_at(20);
        for txt in [
            signer.dns_record(),
            format!("v=CHmail1;k=ed25519;p={p};"),
            format!("  v = CHmail1 ;\tp={p} ; k=ed25519 ; x=future  "),
            format!("v=CHmail1; k=ed25519; p={head} {tail}"),
        ] {
            assert_eq!(parse_key_record(&txt).ok(), Some(want), "{txt}");
        }
    }

    #[test]
    fn key_record_with_empty_p_is_revoked() {
        assert!(matches!(
            parse_key_record(&record("")),
            Err(KeyError::Revoked)
        ));
        assert!(matches!(
            parse_key_record("v=CHmail1; p="),
            Err(KeyError::Revoked)
        ));
    }

    #[test]
    fn key_record_rejects_wrong_version_algorithm_and_garbage() {
        let p = STANDARD.encode(
            Signer::from_seed("e.com", "s", [7; 32])
                .public_key()
                .as_bytes(),
        );
        let weak = STANDARD.encode([0u8; 32]); // the identity point: small order.
        for txt in [
            String::new(),
            "garbage".to_owned(),
            ";;;".to_owned(),
            format!("v=DKIM1; k=ed25519; p={p}"),
            format!("k=ed25519; p={p}"),
            format!("k=ed25519; v=CHmail1; p={p}"),
            format!("v=CHmail1; k=rsa; p={p}"),
            format!("v=CHmail1; p={p}"),
            format!("v=CHmail1; k=ed25519; p={p}; p={p}"),
            "v=CHmail1; k=ed25519".to_owned(),
            record("!!!!"),
            record(&STANDARD.encode([1u8; 31])),
            record(&weak),
            record(&"A".repeat(5000)),
        ] {
            assert!(
                matches!(parse_key_record(&txt), Err(KeyError::BadRecord(_))),
                "{txt:?}"
            );
        }
    }

    #[test]
    fn key_file_is_mode_0600_never_overwritten_and_reads_back_the_same_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("new/sub/sel1.key");
        let signer = Signer::from_seed("example.com", "sel1", [9; 32]);
        signer.write_key_file(&path).expect("first write");
        let meta = std::fs::metadata(&path).expect("key file exists");
        assert_eq!(meta.mode() & 0o777, 0o600);
        let parent = std::fs::metadata(path.parent().expect("has parent")).expect("dir");
        assert_eq!(parent.mode() & 0o777, 0o700);

        let other = Signer::from_seed("example.com", "sel1", [1; 32]);
        match other.write_key_file(&path) {
            Err(KeyError::AlreadyExists(p)) => assert_eq!(p, path),
            r => panic!("expected AlreadyExists, got {r:?}"),
        }
        let back = Signer::from_key_file(&path, "example.com", "sel1").expect("read back");
        assert_eq!(back.public_key(), signer.public_key());
    }

    #[test]
    fn bad_key_files_are_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let seed = STANDARD.encode([3u8; 32]);
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"# only a comment\n".to_vec(),
            b"ed25519:!!!\n".to_vec(),
            b"ed25519:AAAA\n".to_vec(),
            b"rsa:AAAA\n".to_vec(),
            b"\xff\xfe\n".to_vec(),
            format!("ed25519:{seed}\ned25519:{seed}\n").into_bytes(),
            format!("{seed}\n").into_bytes(),
        ];
        for (i, content) in cases.iter().enumerate() {
            let path = dir.path().join(format!("bad{i}.key"));
            std::fs::write(&path, content).expect("write test file");
            let r = Signer::from_key_file(&path, "example.com", "sel1");
            assert!(matches!(r, Err(KeyError::BadKeyFile(_))), "case {i}: {r:?}");
        }
        let missing = Signer::from_key_file(&dir.path().join("missing"), "e.com", "s");
        assert!(matches!(missing, Err(KeyError::Io { .. })));
    }
}
