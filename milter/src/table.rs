//! The signing table: which of our keys signs a mail, chosen by its From domain, and which of our
//! keys verify our own headers on incoming mail (every key, old ones kept during a rotation too).

use std::{collections::HashMap, sync::Arc};

use chmail::{
    config::Config,
    header::{PublicKey, Signer},
};

use crate::{error::Result, server::load_signer};

/// Our keys: the signers by From pattern, and every key by domain and selector.
#[derive(Debug, Default)]
pub struct SigningTable {
    /// Exact From domains and their signer.
    exact: HashMap<String, Arc<Signer>>,
    /// `*.domain` patterns, by `domain`, and their signer.
    wildcard: HashMap<String, Arc<Signer>>,
    /// Every key of ours, signing or not, by (domain, selector), lowercased.
    keys: HashMap<(String, String), PublicKey>,
}

impl SigningTable {
    /// Reads every key file of the config's signing table ([`Config::signing_keys`]).
    ///
    /// # Errors
    /// [`MilterError::Key`] naming the file, domain and selector of a key that is missing or
    /// unreadable.
    pub fn load(config: &Config) -> Result<Self> {
        let mut table = Self::default();
        for entry in config.signing_keys() {
            let signer = load_signer(&entry)?;
            if entry.sign {
                table = table.signing(signer, &entry.from);
            } else {
                table = table.verifying(&signer);
            }
        }
        Ok(table)
    }

    /// The table of one signer for its own domain (the single-domain setup).
    pub fn single(signer: Signer) -> Self {
        let domain = signer.domain().to_owned();
        Self::default().signing(signer, &[domain])
    }

    /// Adds `signer`, signing mail whose From domain matches one of `patterns` (`example.org`
    /// or `*.example.org`). A pattern already in the table is replaced.
    pub fn signing(mut self, signer: Signer, patterns: &[impl AsRef<str>]) -> Self {
        self = self.verifying(&signer);
        let signer = Arc::new(signer);
        for pattern in patterns {
            let pattern = normalize(pattern.as_ref());
            match pattern.strip_prefix("*.") {
                Some(parent) => self.wildcard.insert(parent.to_owned(), signer.clone()),
                None => self.exact.insert(pattern, signer.clone()),
            };
        }
        self
    }

    /// Adds the public key of `signer` for verifying our own headers only.
    pub fn verifying(mut self, signer: &Signer) -> Self {
        self.keys.insert(
            (normalize(signer.domain()), normalize(signer.selector())),
            signer.public_key(),
        );
        self
    }

    /// The signer for mail from `from_domain`: an exact pattern, else the wildcard of the
    /// closest parent domain; `None` when no pattern matches.
    pub fn signer_for(&self, from_domain: &str) -> Option<&Signer> {
        let domain = normalize(from_domain);
        if let Some(signer) = self.exact.get(&domain) {
            return Some(signer);
        }
        let mut rest = domain.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(signer) = self.wildcard.get(parent) {
                return Some(signer);
            }
            rest = parent;
        }
        None
    }

    /// Our public key for `selector` at `domain`, signing or kept for verifying.
    pub fn key(&self, domain: &str, selector: &str) -> Option<&PublicKey> {
        self.keys.get(&(normalize(domain), normalize(selector)))
    }
}

fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(domain: &str, selector: &str, seed: u8) -> Signer {
        Signer::from_seed(domain, selector, [seed; 32])
    }

    #[test]
    fn an_exact_pattern_beats_a_wildcard_and_the_closest_wildcard_wins() {
        let table = SigningTable::default()
            .signing(
                signer("example.org", "a", 1),
                &["example.org", "*.example.org"],
            )
            .signing(
                signer("lists.example.org", "b", 2),
                &["*.lists.example.org"],
            )
            .signing(
                signer("example.org", "c", 3),
                &["special.lists.example.org"],
            );
        let selector = |d: &str| table.signer_for(d).map(|s| s.selector().to_owned());
        assert_eq!(selector("example.org").as_deref(), Some("a"));
        assert_eq!(selector("Mail.Example.ORG.").as_deref(), Some("a"));
        assert_eq!(selector("x.lists.example.org").as_deref(), Some("b"));
        assert_eq!(selector("a.b.lists.example.org").as_deref(), Some("b"));
        assert_eq!(selector("lists.example.org").as_deref(), Some("a"));
        assert_eq!(selector("special.lists.example.org").as_deref(), Some("c"));
        assert_eq!(selector("example.com"), None);
        assert_eq!(selector("badexample.org"), None);
    }

    #[test]
    fn a_wildcard_does_not_match_its_own_domain() {
        let table =
            SigningTable::default().signing(signer("example.org", "a", 1), &["*.example.org"]);
        assert!(table.signer_for("example.org").is_none());
        assert!(table.signer_for("a.example.org").is_some());
    }

    #[test]
    fn verifying_keys_are_found_but_never_sign() {
        let old = signer("example.org", "old", 1);
        let table = SigningTable::default()
            .verifying(&old)
            .signing(signer("example.org", "new", 2), &["example.org"]);
        assert_eq!(table.key("EXAMPLE.org", "Old"), Some(&old.public_key()));
        assert!(table.key("example.org", "new").is_some());
        assert!(table.key("example.org", "other").is_none());
        assert_eq!(
            table.signer_for("example.org").map(Signer::selector),
            Some("new")
        );
    }
}
