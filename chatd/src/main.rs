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
    /// Show a login: its port, last IP/hostname and when, online or not, its rooms.
    ShowLogin {
        /// The login ID.
        login: String,
    },
    /// Show a port: the login that holds it.
    ShowPort {
        /// The chat port.
        port: u16,
    },
    /// Show a room: its participants, message count, ring and reminder state.
    ShowRoom {
        /// The room id (the last part of the CHmail-Link).
        room: String,
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
        Command::Serve => chatd::server::serve(config).await?,
        Command::Quickstart => chatd::server::quickstart(config).await?,
        Command::Migrate => chmail_milter::commands::migrate(&config).await?,
        Command::ShowLogin { login } => {
            let store = chatd::admin::open(&config).await?;
            let now = chatd::clock::Clock::new().now_ms();
            print!("{}", chatd::admin::show_login(&*store, &login, now).await?);
        }
        Command::ShowPort { port } => {
            let store = chatd::admin::open(&config).await?;
            print!("{}", chatd::admin::show_port(&*store, port).await?);
        }
        Command::ShowRoom { room } => {
            let store = chatd::admin::open(&config).await?;
            let now = chatd::clock::Clock::new().now_ms();
            print!("{}", chatd::admin::show_room(&*store, &room, now).await?);
        }
    }
    Ok(())
}
