//! The administrative commands of `chmail-milter`: `serve`, `keygen`, `records`, `migrate`,
//! `quickstart`.

use std::{io::Write, path::PathBuf};

use chmail::{
    config::{is_dns_name, Config, KeyEntry},
    header::Signer,
    store::open_store,
};
use tracing::info;

use crate::{
    error::{MilterError, Result},
    server::{shutdown_signal, start},
};

/// Runs the milter until SIGINT or SIGTERM, then lets the sessions under way finish.
///
/// # Errors
/// When it cannot start or fails while serving.
pub async fn serve(config: Config) -> Result<()> {
    let mut running = start(config).await?;
    tokio::select! {
        () = shutdown_signal() => {
            info!("shutting down");
            running.stop().await?;
        }
        result = running.wait() => result?,
    }
    Ok(())
}

/// Which key `keygen` makes; what is not given comes from the config.
#[derive(Debug, Clone, Default)]
pub struct KeygenArgs {
    /// The signing domain. Default `[signing] domain`.
    pub domain: Option<String>,
    /// The selector. Default: that of the domain's (signing) entry in the table, else
    /// `[signing] selector`.
    pub selector: Option<String>,
    /// The key file. Default: that of the table entry, else `<data_dir>/<domain>.<selector>.key`.
    pub key_file: Option<PathBuf>,
}

/// The table entry `args` names: the entry of the config's signing table with that domain (and
/// selector, when given), else a new one with the defaults.
///
/// # Errors
/// [`MilterError::Keygen`] when the domain or selector is not a DNS name, or the domain has
/// several signing keys and no selector was given.
pub fn keygen_entry(config: &Config, args: &KeygenArgs) -> Result<KeyEntry> {
    let lower = |s: &str| s.trim().trim_end_matches('.').to_ascii_lowercase();
    let domain = lower(args.domain.as_deref().unwrap_or(&config.signing.domain));
    let selector = args.selector.as_deref().map(lower);
    for (what, name) in [("domain", Some(&domain)), ("selector", selector.as_ref())] {
        if let Some(name) = name.filter(|n| !is_dns_name(n)) {
            return Err(MilterError::Keygen(format!(
                "{what} {name:?} is not a DNS name"
            )));
        }
    }
    let table = config.signing_keys();
    let matches: Vec<&KeyEntry> = table
        .iter()
        .filter(|e| e.domain == domain && selector.as_ref().is_none_or(|s| *s == e.selector))
        .collect();
    let signing: Vec<&KeyEntry> = matches.iter().copied().filter(|e| e.sign).collect();
    let mut entry = match (matches.as_slice(), signing.as_slice()) {
        ([one], _) | (_, [one]) => (*one).clone(),
        ([], _) => {
            let selector = selector.unwrap_or_else(|| lower(&config.signing.selector));
            KeyEntry {
                key_file: config.default_key_file(&domain, &selector),
                from: vec![domain.clone()],
                domain,
                selector,
                sign: true,
            }
        }
        (several, _) => {
            let names: Vec<&str> = several.iter().map(|e| e.selector.as_str()).collect();
            return Err(MilterError::Keygen(format!(
                "{domain} has several keys ({}): name one with --selector",
                names.join(", ")
            )));
        }
    };
    if let Some(path) = &args.key_file {
        entry.key_file.clone_from(path);
    }
    Ok(entry)
}

/// Writes a new signing key for the entry `args` names ([`keygen_entry`]; mode 0600, never over
/// an existing file) and prints the DNS record to publish on `out`.
///
/// # Errors
/// When the entry is ambiguous or the key file exists or cannot be written.
pub fn keygen(config: &Config, args: &KeygenArgs, out: &mut impl Write) -> Result<KeyEntry> {
    let entry = keygen_entry(config, args)?;
    let signer = Signer::generate(&entry.domain, &entry.selector);
    signer
        .write_key_file(&entry.key_file)
        .map_err(|e| MilterError::Key {
            path: entry.key_file.clone(),
            domain: entry.domain.clone(),
            selector: entry.selector.clone(),
            cause: e.to_string(),
        })?;
    let in_table = config
        .signing_keys()
        .iter()
        .any(|e| e.domain == entry.domain && e.selector == entry.selector);
    info!(
        path = %entry.key_file.display(),
        domain = %entry.domain,
        selector = %entry.selector,
        in_table,
        "wrote a new signing key"
    );
    writeln!(out, "{}", zone_line(&signer))?;
    Ok(entry)
}

/// Prints the DNS record of every key of the signing table (`sign = false` ones too: they stay
/// published until they are retired) on `out`, one zone-file line each.
///
/// # Errors
/// When a key file is missing or unreadable.
pub fn records(config: &Config, out: &mut impl Write) -> Result<()> {
    for entry in config.signing_keys() {
        let signer = crate::server::load_signer(&entry)?;
        writeln!(out, "{}", zone_line(&signer))?;
    }
    Ok(())
}

/// The DNS record of `signer` as a zone-file line.
pub fn zone_line(signer: &Signer) -> String {
    format!("{}. IN TXT \"{}\"", signer.dns_name(), signer.dns_record())
}

/// Applies the store migrations.
///
/// # Errors
/// When the store cannot be opened or a migration fails.
pub async fn migrate(config: &Config) -> Result<()> {
    let store = open_store(&config.store_url(), config.store.pool_size).await?;
    store.migrate().await?;
    info!(backend = store.backend(), "store migrated");
    Ok(())
}

/// The laptop path: create the key if there is none, print what to add to Postfix and DNS, serve.
///
/// # Errors
/// As [`serve`] and [`keygen`].
pub async fn quickstart(config: Config) -> Result<()> {
    let text = prepare(&config)?;
    writeln!(std::io::stdout(), "{text}")?;
    serve(config).await
}

/// Creates the key of every signing entry that has none; returns what a mail admin adds to
/// Postfix and DNS.
///
/// # Errors
/// When a key cannot be written or read.
pub fn prepare(config: &Config) -> Result<String> {
    let mut signers = Vec::new();
    for entry in config.signing_keys() {
        if entry.sign && !entry.key_file.exists() {
            let args = KeygenArgs {
                domain: Some(entry.domain.clone()),
                selector: Some(entry.selector.clone()),
                key_file: Some(entry.key_file.clone()),
            };
            keygen(config, &args, &mut std::io::sink())?;
        }
        signers.push(crate::server::load_signer(&entry)?);
    }
    Ok(setup_text(config, &signers))
}

/// What a mail admin adds to Postfix and DNS for this configuration and these keys.
pub fn setup_text(config: &Config, signers: &[Signer]) -> String {
    let keys: Vec<String> = config
        .signing_keys()
        .iter()
        .map(|e| e.key_file.display().to_string())
        .collect();
    let zone: Vec<String> = signers.iter().map(zone_line).collect();
    format!(
        "CHmail milter on {listen}, store {store}, key {key}.\n\
         \n\
         Add to Postfix main.cf, then `postfix reload`:\n\
         \n\
         \x20   smtpd_milters = {{ {listen}, default_action=accept }}\n\
         \x20   non_smtpd_milters = $smtpd_milters\n\
         \x20   milter_protocol = 6\n\
         \n\
         Publish in DNS:\n\
         \n\
         \x20   {zone}\n",
        listen = config.milter.listen,
        store = config.store_url(),
        key = keys.join(", "),
        zone = zone.join("\n    "),
    )
}
