//! The administrative commands of `chmail-milter`: `serve`, `keygen`, `migrate`, `quickstart`.

use std::io::Write;

use chmail::{config::Config, header::Signer, store::open_store};
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

/// Writes a new signing key (mode 0600; never over an existing one) and prints the DNS record to
/// publish on `out`.
///
/// # Errors
/// When the key file exists or cannot be written.
pub fn keygen(config: &Config, out: &mut impl Write) -> Result<()> {
    let path = config.key_file();
    let signer = Signer::generate(&config.signing.domain, &config.signing.selector);
    signer.write_key_file(&path).map_err(|e| MilterError::Key {
        path: path.clone(),
        cause: e.to_string(),
    })?;
    info!(path = %path.display(), "wrote a new signing key");
    writeln!(out, "{}", zone_line(&signer))?;
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

/// Creates the signing key if there is none; returns what a mail admin adds to Postfix and DNS.
///
/// # Errors
/// When the key cannot be written or read.
pub fn prepare(config: &Config) -> Result<String> {
    if !config.key_file().exists() {
        keygen(config, &mut std::io::sink())?;
    }
    let signer = crate::server::load_signer(config)?;
    Ok(setup_text(config, &signer))
}

/// What a mail admin adds to Postfix and DNS for this configuration.
pub fn setup_text(config: &Config, signer: &Signer) -> String {
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
        key = config.key_file().display(),
        zone = zone_line(signer),
    )
}
