//! `chatd`: reads the config, sets up logging and runs the command.

use std::{io::IsTerminal, path::PathBuf};

use anyhow::Context as _;
use chmail::Config;
use clap::{Parser, Subcommand};

/// The CHmail server: chat rooms behind CHmail links, presence, ringing, reminder mails.
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
    /// Run chatd (the default).
    Serve,
    /// Run the milter and chatd in one process on the embedded store, creating a signing key if
    /// there is none, and print the Postfix and DNS lines.
    Quickstart,
    /// Apply the store migrations and exit.
    Migrate,
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
        Command::Serve => chatd::server::serve(config).await?,
        Command::Quickstart => chatd::server::quickstart(config).await?,
        Command::Migrate => chmail_milter::commands::migrate(&config).await?,
    }
    Ok(())
}
