//! `chmail-milter`: reads the config, sets up logging and runs the command.

use std::{
    io::{IsTerminal, Read as _},
    path::PathBuf,
};

use anyhow::Context as _;
use chmail::Config;
use chmail_milter::{
    keys::DnsKeys,
    verify::{verify_mail, KeyOrigin},
};
use clap::{Parser, Subcommand};

/// The CHmail milter: signs mail of authenticated users with a CHmail header and link, and
/// removes forged CHmail headers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The TOML config file (every key has a default; CHMAIL_<SECTION>_<KEY> overrides).
    #[arg(long, short, env = "CHMAIL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the milter (the default).
    Serve,
    /// Write a new signing key (mode 0600) and print the DNS TXT record to publish.
    Keygen {
        /// The signing domain (default `[signing] domain`).
        #[arg(long)]
        domain: Option<String>,
        /// The selector (default: the domain's entry in the signing table, else `[signing]
        /// selector`).
        #[arg(long)]
        selector: Option<String>,
        /// The key file (default: the entry's, else `<data_dir>/<domain>.<selector>.key`).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Print the DNS TXT record of every key in the signing table.
    Records,
    /// Apply the store migrations and exit.
    Migrate,
    /// Create a key if there is none, print the Postfix and DNS lines, and run.
    Quickstart,
    /// Check every CHmail header of a mail against its key in DNS and print one line per header
    /// with its result and reason; exit 0 only when a header passes.
    Verify {
        /// The mail, as on disk (default: standard input).
        file: Option<PathBuf>,
        /// Check against this TXT record (`v=CHmail1; k=ed25519; p=...`) instead of DNS.
        #[arg(long)]
        key: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = Config::load(cli.config.as_deref()).context("reading the configuration")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => chmail_milter::commands::serve(config).await?,
        Command::Keygen {
            domain,
            selector,
            key_file,
        } => {
            let args = chmail_milter::commands::KeygenArgs {
                domain,
                selector,
                key_file,
            };
            chmail_milter::commands::keygen(&config, &args, &mut std::io::stdout())?;
        }
        Command::Records => chmail_milter::commands::records(&config, &mut std::io::stdout())?,
        Command::Migrate => chmail_milter::commands::migrate(&config).await?,
        Command::Quickstart => chmail_milter::commands::quickstart(config).await?,
        Command::Verify { file, key } => {
            let mail = match &file {
                Some(path) => {
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
                }
                None => {
                    let mut mail = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut mail)
                        .context("reading the mail from standard input")?;
                    mail
                }
            };
            let dns;
            let keys = match &key {
                Some(record) => KeyOrigin::Record(record),
                None => {
                    dns = DnsKeys::new(&config.milter.resolver, config.milter.dns_timeout())?;
                    KeyOrigin::Lookup(&dns)
                }
            };
            let passed = verify_mail(&mail, keys, &mut std::io::stdout()).await?;
            if !passed {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
