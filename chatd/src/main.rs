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
    Quickstart {
        /// Load the mall's demo data (companies, ads with pictures, a demo host and member) when
        /// the mall has no companies yet.
        #[arg(long)]
        demo: bool,
    },
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
    /// The mall: companies, hosts, ads.
    Mall {
        #[command(subcommand)]
        command: MallCommand,
    },
}

#[derive(Subcommand)]
enum MallCommand {
    /// Add a company (an advertiser); adding an existing name changes nothing.
    AddCompany {
        /// The company's name.
        name: String,
    },
    /// Make a login (an address) a host of a company: they answer its ads' inquiries.
    AddHost {
        /// The company's name.
        #[arg(long)]
        company: String,
        /// The host's address, which is their CHmail login.
        login: String,
        /// The display name members see (default: the address's local part).
        #[arg(long)]
        name: Option<String>,
    },
    /// Import ads from a CSV file with the header
    /// company,host,title,description,price,currency,category,pictures,starts,ends.
    /// Bad rows are reported by line and the good ones imported; rows imported before (same
    /// company and title) are skipped. Exits with status 1 when a row was bad.
    ImportAds {
        /// The CSV file; picture paths in it are relative to it.
        file: PathBuf,
    },
    /// Load the demo data (companies, hosts, 24 ads with pictures, a demo host and member).
    Demo,
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
        Command::Quickstart { demo } => chatd::server::quickstart(config, demo).await?,
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
        Command::Mall { command } => mall(&config, command).await?,
    }
    Ok(())
}

/// Runs a `chatd mall` command over the (migrated) store of `config`.
async fn mall(config: &Config, command: MallCommand) -> anyhow::Result<()> {
    use chatd::mall::{admin, demo};
    let store = chatd::admin::open(config).await?;
    store.migrate().await.context("migrating the store")?;
    let now = chatd::clock::Clock::new().now_ms();
    match command {
        MallCommand::AddCompany { name } => {
            print!("{}", admin::add_company(&*store, &name, now).await?)
        }
        MallCommand::AddHost {
            company,
            login,
            name,
        } => print!(
            "{}",
            admin::add_host(&*store, &company, &login, name.as_deref(), now).await?
        ),
        MallCommand::ImportAds { file } => {
            let report =
                admin::import_ads_file(&*store, &file, config.mall.max_picture_bytes, now).await?;
            print!("{}", report.text());
            if !report.bad.is_empty() {
                anyhow::bail!(
                    "{} bad rows were not imported: fix them and import the file again (rows \
                     imported before are skipped)",
                    report.bad.len()
                );
            }
        }
        MallCommand::Demo => {
            let report = demo::load(&*store, config.mall.max_picture_bytes, now).await?;
            print!(
                "{}",
                demo::console_text(Some(&report), config.chat.public_base())
            );
        }
    }
    Ok(())
}
