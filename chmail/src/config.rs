//! The one TOML file for the whole system, with `CHMAIL_<SECTION>_<KEY>` environment overrides.
//!
//! Every field documents its default, and `impl Default` supplies it, so an empty file is a valid
//! configuration for a laptop: an SQLite store in `./data`, the milter on `inet:127.0.0.1:8890`.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use serde::{de, Deserialize, Deserializer};

/// Prefix of the environment variables that override the file: `CHMAIL_STORE_URL`,
/// `CHMAIL_MILTER_LISTEN`, `CHMAIL_DATA_DIR`, ...
pub const ENV_PREFIX: &str = "CHMAIL_";

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or an environment override is not valid TOML or has a wrong key or value.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration: one file for the milter and chatd.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where CHmail keeps its files (the SQLite store, the signing key). Default `data`
    /// (relative to the working directory).
    pub data_dir: PathBuf,
    /// `[store]`: where the tables live.
    pub store: StoreConfig,
    /// `[milter]`: the milter's socket and failure policy.
    pub milter: MilterConfig,
    /// `[signing]`: the domain, selector and key of the CHmail header signature.
    pub signing: SigningConfig,
    /// `[chat]`: the chat server and the port range.
    pub chat: ChatConfig,
    /// `[smtp]`: how chatd sends mail.
    pub smtp: SmtpConfig,
    /// `[reply]`: chatd's SMTP listener for replies by mail.
    pub reply: ReplyConfig,
    /// `[mall]`: the internet mall chatd serves under `/mall`.
    pub mall: MallConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            store: StoreConfig::default(),
            milter: MilterConfig::default(),
            signing: SigningConfig::default(),
            chat: ChatConfig::default(),
            smtp: SmtpConfig::default(),
            reply: ReplyConfig::default(),
            mall: MallConfig::default(),
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://user@host/db` for PostgreSQL, `sqlite://PATH` for the embedded store. Default
    /// empty: an SQLite file `chmail.db` in `data_dir`.
    pub url: String,
    /// Most connections the PostgreSQL pool opens. Default 16.
    pub pool_size: usize,
    /// Longest wait for one store call, in milliseconds. Default 5000: well inside Postfix's 30 s
    /// milter command timeout.
    pub timeout_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            pool_size: 16,
            timeout_ms: 5_000,
        }
    }
}

impl StoreConfig {
    /// The time limit of one store call.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// What the milter does with a mail when the store or DNS fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Let the mail go on unchanged (logged and counted). The default: CHmail never blocks mail.
    Accept,
    /// Answer with a temporary failure so the client retries later.
    Tempfail,
}

/// `[milter]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MilterConfig {
    /// The milter socket: `inet:HOST:PORT` or `unix:PATH`. Default `inet:127.0.0.1:8890`.
    pub listen: String,
    /// `accept` (default) or `tempfail`: what happens to a mail of one of our senders when the
    /// store fails. DNS failures never delay a mail: a header that cannot be checked gets the
    /// result temperror (see `docs/header.md`).
    pub on_error: OnError,
    /// Longest wait for one DNS query, in milliseconds. Default 3000.
    pub dns_timeout_ms: u64,
    /// The name server for CHmail key and reverse look-ups, `IP:PORT` (UDP and TCP). Default
    /// empty: the system's `/etc/resolv.conf`.
    pub resolver: String,
    /// Most header bytes kept per mail for parsing; past this the mail goes on unchanged. Default
    /// 262144 (256 KiB, far above any real header block).
    pub max_header_bytes: usize,
    /// Most concurrent MTA connections. Default 1000.
    pub max_connections: usize,
    /// On SIGTERM the milter stops accepting connections at once and waits this many seconds
    /// at most for the mails under way (MAIL FROM to end-of-message) to finish, so that none
    /// goes out unsigned or half-judged. Default 15, inside the 20 s that systemd gives a
    /// service to stop (`TimeoutStopSec` in `contrib/systemd`); 0 stops at once.
    pub shutdown_grace_secs: u64,
    /// Address of the Prometheus `/metrics` endpoint, `HOST:PORT`. Default `127.0.0.1:9890`;
    /// empty turns it off.
    pub metrics_listen: String,
    /// Also sign mail that is not SMTP-authenticated but comes from one of these networks
    /// (`10.0.0.0/8`, `::1/128`) with a sender in `[signing] domain`. Default empty.
    pub trusted_networks: Vec<String>,
    /// Add a short line with the chat link to the first text/plain and text/html parts of every
    /// signed mail, for recipients whose mail client shows no headers. Signed or encrypted mail
    /// and anything the milter cannot read with certainty are left as they are. Default false.
    pub footer: bool,
    /// Largest body, in bytes, the milter reads for the footer; a longer mail goes on without it.
    /// Default 10485760 (10 MiB).
    pub footer_max_bytes: usize,
    /// Most characters of a signed mail's text kept with its room, shown as the first item of
    /// its chat (the milter reads the first 16 KiB of the body for it; signed or encrypted mail
    /// keeps none). Default 500; 0 keeps none and the MTA sends the milter no body.
    pub opening_chars: usize,
    /// The authserv-id of the `Authentication-Results` field the milter adds to each mail it
    /// checks (RFC 8601), and under which it removes the ones a client supplied. Default empty:
    /// the MTA's host name (its `j` macro), else `[signing] domain`.
    pub authserv_id: String,
}

impl Default for MilterConfig {
    fn default() -> Self {
        Self {
            listen: "inet:127.0.0.1:8890".into(),
            on_error: OnError::Accept,
            dns_timeout_ms: 3_000,
            resolver: String::new(),
            max_header_bytes: 256 * 1024,
            max_connections: 1_000,
            shutdown_grace_secs: 15,
            metrics_listen: "127.0.0.1:9890".into(),
            trusted_networks: Vec::new(),
            footer: false,
            footer_max_bytes: 10 * 1024 * 1024,
            opening_chars: 500,
            authserv_id: String::new(),
        }
    }
}

impl MilterConfig {
    /// The time limit of one DNS query.
    pub fn dns_timeout(&self) -> Duration {
        Duration::from_millis(self.dns_timeout_ms)
    }

    /// How long a shutdown waits for the mails under way.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// `[signing]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningConfig {
    /// The signing domain (`d=`), also given to logins without `@`. Default `localhost`.
    pub domain: String,
    /// The selector (`s=`): the key is published at `<selector>._chmail.<domain>`. Default `chmail`.
    pub selector: String,
    /// The private key file written by `keygen`. Default empty: `chmail.key` in `data_dir`.
    pub key_file: PathBuf,
    /// More domains that are ours: a CHmail header claiming one of them without our valid
    /// signature is removed from incoming mail. `domain` and the domains of `keys` are always
    /// included. Default empty.
    pub own_domains: Vec<String>,
    /// `[[signing.keys]]`: the signing table, for many domains on one installation and for key
    /// rotation. Default empty: the one entry `domain`, `selector`, `key_file` signs mail from
    /// `domain`. When it is not empty it is the whole table, and `selector` and `key_file` are
    /// not used.
    pub keys: Vec<KeyEntry>,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            domain: "localhost".into(),
            selector: "chmail".into(),
            key_file: PathBuf::new(),
            own_domains: Vec::new(),
            keys: Vec::new(),
        }
    }
}

/// One `[[signing.keys]]` entry: a signing domain, selector and key, and the From domains it
/// signs for (in the spirit of OpenDKIM's SigningTable and KeyTable in one).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The signing domain `d=`. Required.
    pub domain: String,
    /// The selector `s=`: the key is published at `<selector>._chmail.<domain>`. Required.
    pub selector: String,
    /// The private key file. Default empty: `<data_dir>/<domain>.<selector>.key`.
    #[serde(default)]
    pub key_file: PathBuf,
    /// The From domains this key signs: `example.org` (exactly that domain) or `*.example.org`
    /// (any subdomain of it, not the domain itself), each `domain` or within it, since receivers
    /// accept `d=` only for the From domain or a parent of it. Default empty: `[domain]`. The most
    /// specific pattern wins: an exact domain, then the wildcard of the closest parent.
    #[serde(default)]
    pub from: Vec<String>,
    /// Whether this key signs. Default true. `false` keeps an old key for verifying our own
    /// headers made with it (during a key rotation) without signing new mail.
    #[serde(default = "yes")]
    pub sign: bool,
}

fn yes() -> bool {
    true
}

/// `[chat]`: chatd, the chat server, and the ports the milter grants.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// The chat server's public base URL; its host goes into `h=` and the CHmail-Link, and
    /// WebSocket Origins are checked against it. Default `http://localhost:8080`.
    pub public_url: String,
    /// Where chatd listens for HTTP, `HOST:PORT`. Default `127.0.0.1:8080`.
    pub listen: String,
    /// A PEM file with the certificate chain (the server's certificate first) that makes chatd
    /// serve HTTPS on `listen` itself. Default empty: plain HTTP, for a TLS proxy in front. Set
    /// together with `tls_key`.
    pub tls_cert: PathBuf,
    /// The PEM file with the private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1). Default empty.
    pub tls_key: PathBuf,
    /// The range ports are granted from, `FIRST-LAST`. Default `20000-29999`.
    pub ports: PortRange,
    /// A port unused for this many days may be reclaimed for another login when the range is full.
    /// Default 180.
    pub reclaim_after_days: u64,
    /// Seconds between rings of the sender's sessions. Default 10.
    pub ring_interval_secs: u64,
    /// Seconds a ring lasts unanswered before the sender is reminded by mail. Default 90.
    pub ring_timeout_secs: u64,
    /// Seconds from "the sender is offline" (or a ring timing out) to the reminder mail. Default
    /// 60; 0 sends at once.
    pub reminder_delay_secs: u64,
    /// Least seconds between two reminders of one room; messages meanwhile wait for the next.
    /// Default 1800 (30 min).
    pub reminder_interval_secs: u64,
    /// Seconds a login stays online after its last connection closed, so a reload does not flap.
    /// Default 10.
    pub presence_grace_secs: u64,
    /// Largest chat message, in bytes. Default 4096.
    pub max_message_bytes: usize,
    /// Largest picture sent in a chat, in bytes (checked by content: PNG, JPEG, GIF or WebP of
    /// at most 40 megapixels). Default 5242880 (5 MiB); 0 turns pictures off.
    pub max_picture_bytes: usize,
    /// Most pictures one client network may upload to chats per hour. Default 60.
    pub pictures_per_hour: u32,
    /// Most messages one writer (the sender's login, or a recipient in a room) may send per
    /// minute over all their connections; a client network gets ten times that. Default 30.
    pub messages_per_minute: u32,
    /// Most connections in one room at once. Default 50.
    pub max_room_connections: usize,
    /// Messages per history page. Default 50.
    pub history_page: u32,
    /// Largest WebSocket frame accepted, in bytes. Default 16384.
    pub max_frame_bytes: usize,
    /// Frames queued for one slow connection before it is dropped. Default 256.
    pub send_queue: usize,
    /// Most WebSocket frames of any kind one connection may send in a sliding minute; more get
    /// `rate_limited` and change nothing. Far above what a person types (messages and rings have
    /// their own, lower limits: `messages_per_minute`), low enough that a flood costs little.
    /// Default 600.
    pub frames_per_minute: u32,
    /// Minutes a mailed sign-in link works. Default 15.
    pub signin_ttl_minutes: u64,
    /// Most sign-in links mailed to one login per hour from one client network; a login gets
    /// at most 4 times that per hour in all. Default 5.
    pub signins_per_hour: u32,
    /// Days a sign-in session lasts. Default 30.
    pub session_days: u64,
    /// Recipients must prove their address with a mailed code before they may write. Default
    /// false.
    pub require_verified: bool,
    /// Minutes a mailed address code works. Default 15.
    pub code_ttl_minutes: u64,
    /// Wrong guesses allowed per code. Default 5.
    pub code_attempts: u32,
    /// Most codes mailed to one address of one room per hour. Default 3.
    pub codes_per_hour: u32,
    /// Seconds new messages wait before a notification mail, batching what arrives meanwhile.
    /// Default 120.
    pub notify_delay_secs: u64,
    /// The longest back-off between two notifications of one room, in seconds. Default 86400.
    pub notify_max_backoff_secs: u64,
    /// Address of chatd's Prometheus `/metrics` endpoint, `HOST:PORT`: a listener of its own,
    /// never the public `listen`. Default `127.0.0.1:9891` (the milter's is 9890); empty turns
    /// it off.
    pub metrics_listen: String,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            public_url: "http://localhost:8080".into(),
            listen: "127.0.0.1:8080".into(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            ports: PortRange {
                first: 20_000,
                last: 29_999,
            },
            reclaim_after_days: 180,
            ring_interval_secs: 10,
            ring_timeout_secs: 90,
            reminder_delay_secs: 60,
            reminder_interval_secs: 1_800,
            presence_grace_secs: 10,
            max_message_bytes: 4_096,
            max_picture_bytes: 5 * 1024 * 1024,
            pictures_per_hour: 60,
            messages_per_minute: 30,
            max_room_connections: 50,
            history_page: 50,
            max_frame_bytes: 16_384,
            send_queue: 256,
            frames_per_minute: 600,
            signin_ttl_minutes: 15,
            signins_per_hour: 5,
            session_days: 30,
            require_verified: false,
            code_ttl_minutes: 15,
            code_attempts: 5,
            codes_per_hour: 3,
            notify_delay_secs: 120,
            notify_max_backoff_secs: 86_400,
            metrics_listen: "127.0.0.1:9891".into(),
        }
    }
}

/// `[smtp]`: how chatd sends mail (reminders, sign-in links).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// The relay, `HOST:PORT`, spoken to in plain SMTP. Default `127.0.0.1:25`: the local MTA,
    /// so chatd's mail passes the milter like any other.
    pub relay: String,
    /// The From address of chatd's mail. Default empty: `chmail@<[signing] domain>`.
    pub from: String,
    /// Longest wait for the relay, per mail, in milliseconds. Default 10000.
    pub timeout_ms: u64,
    /// Seconds before the first retry of a temporarily failed mail; each retry waits twice as
    /// long, up to an hour. Default 60.
    pub retry_initial_secs: u64,
    /// Hours after which a mail that keeps failing temporarily is given up as failed. Default 48.
    pub give_up_hours: u64,
}

impl SmtpConfig {
    /// The time limit of sending one mail.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The wait before the first retry.
    pub fn retry_initial(&self) -> Duration {
        Duration::from_secs(self.retry_initial_secs)
    }

    /// How long a mail is retried before it is given up.
    pub fn give_up_after(&self) -> Duration {
        Duration::from_secs(self.give_up_hours * 3_600)
    }
}

/// `[reply]`: chatd's own SMTP listener for replies by mail.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplyConfig {
    /// Where the reply listener takes SMTP, `HOST:PORT`; the MTA routes the reply domain here.
    /// Default `127.0.0.1:2525`; empty turns replies by mail off.
    pub listen: String,
    /// The domain of reply addresses (`<token>@<domain>`). Default empty:
    /// `reply.<[signing] domain>`.
    pub domain: String,
    /// Largest reply accepted, in bytes. Default 1048576.
    pub max_bytes: usize,
    /// Most replies per reply address per hour. Default 20.
    pub per_token_per_hour: u32,
    /// Days a reply address keeps working after the last mail that carried it. Default 30.
    pub token_days: u64,
    /// A PEM file with the certificate chain that the reply listener offers STARTTLS with.
    /// Default empty: no STARTTLS (the `[chat]` certificate is not taken over: replies usually
    /// come from the local MTA over loopback). Set together with `tls_key`.
    pub tls_cert: PathBuf,
    /// The PEM file with the private key of `tls_cert`. Default empty.
    pub tls_key: PathBuf,
}

impl Default for ReplyConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:2525".into(),
            domain: String::new(),
            max_bytes: 1024 * 1024,
            per_token_per_hour: 20,
            token_days: 30,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
        }
    }
}

/// `[mall]`: the internet mall (S201-S219) that chatd serves under `/mall`: ads, members,
/// product inquiries that become chats, and promotions.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MallConfig {
    /// Whether chatd serves the mall. Default true.
    pub enabled: bool,
    /// The mall's name, shown on its pages and in its mails. Default `CHmail Mall`.
    pub name: String,
    /// The address inquiry and promotion mails come from, with the member's or host's name as
    /// display name (the mails are signed for this address's domain, so that they align).
    /// Default empty: `mall@<[signing] domain>`.
    pub from: String,
    /// Ads per page (home, category, search). Default 24.
    pub page_size: u32,
    /// Largest picture accepted, in bytes. Default 2097152 (2 MiB).
    pub max_picture_bytes: usize,
    /// Minutes a confirm or password-reset link works. Default 60.
    pub token_ttl_minutes: u64,
    /// Sign-ups per client network per hour. Default 10.
    pub signups_per_hour: u32,
    /// Failed password checks per client network, and per account and client network, per
    /// hour; an account takes 5 times that from networks it has not signed in from lately.
    /// Default 20.
    pub signins_per_hour: u32,
    /// Confirm and reset mails per account per hour. Default 3.
    pub mails_per_hour: u32,
    /// Inquiries per member per hour. Default 20.
    pub inquiries_per_hour: u32,
    /// Promotion mails queued per minute by each chatd process (pacing; with several nodes the
    /// mall's rate is this times the number of nodes). 0: this process sends no promotions.
    /// Default 60.
    pub promotions_per_minute: u32,
}

impl Default for MallConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            name: "CHmail Mall".into(),
            from: String::new(),
            page_size: 24,
            max_picture_bytes: 2 * 1024 * 1024,
            token_ttl_minutes: 60,
            signups_per_hour: 10,
            signins_per_hour: 20,
            mails_per_hour: 3,
            inquiries_per_hour: 20,
            promotions_per_minute: 60,
        }
    }
}

impl MallConfig {
    /// How long a confirm or reset link works.
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_minutes * 60)
    }
}

impl ReplyConfig {
    /// How long a reply address works.
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_days * 86_400)
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            relay: "127.0.0.1:25".into(),
            from: String::new(),
            timeout_ms: 10_000,
            retry_initial_secs: 60,
            give_up_hours: 48,
        }
    }
}

impl ChatConfig {
    /// How long a port must be unused before it can be reclaimed.
    pub fn reclaim_after(&self) -> Duration {
        Duration::from_secs(self.reclaim_after_days * 86_400)
    }

    /// Time between rings.
    pub fn ring_interval(&self) -> Duration {
        Duration::from_secs(self.ring_interval_secs)
    }

    /// How long a ring lasts unanswered.
    pub fn ring_timeout(&self) -> Duration {
        Duration::from_secs(self.ring_timeout_secs)
    }

    /// Delay before a reminder mail.
    pub fn reminder_delay(&self) -> Duration {
        Duration::from_secs(self.reminder_delay_secs)
    }

    /// Least time between two reminders of one room.
    pub fn reminder_interval(&self) -> Duration {
        Duration::from_secs(self.reminder_interval_secs)
    }

    /// How long a login stays online after its last connection closed.
    pub fn presence_grace(&self) -> Duration {
        Duration::from_secs(self.presence_grace_secs)
    }

    /// How long a mailed sign-in link works.
    pub fn signin_ttl(&self) -> Duration {
        Duration::from_secs(self.signin_ttl_minutes * 60)
    }

    /// How long a sign-in session lasts.
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_days * 86_400)
    }

    /// How long a mailed address code works.
    pub fn code_ttl(&self) -> Duration {
        Duration::from_secs(self.code_ttl_minutes * 60)
    }

    /// The wait before a notification mail.
    pub fn notify_delay(&self) -> Duration {
        Duration::from_secs(self.notify_delay_secs)
    }

    /// The longest back-off between two notifications of one room.
    pub fn notify_max_backoff(&self) -> Duration {
        Duration::from_secs(self.notify_max_backoff_secs)
    }

    /// The host (and port, if any) of `public_url`, as it goes into the `h=` tag.
    ///
    /// # Errors
    /// When `public_url` is not an `http://` or `https://` URL with a host.
    pub fn public_host(&self) -> Result<String, ConfigError> {
        let rest = self
            .public_url
            .strip_prefix("https://")
            .or_else(|| self.public_url.strip_prefix("http://"))
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "[chat] public_url {:?} must start with http:// or https://",
                    self.public_url
                ))
            })?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() || host.contains(['@', ' ', ';']) {
            return Err(ConfigError::Invalid(format!(
                "[chat] public_url {:?} has no usable host",
                self.public_url
            )));
        }
        Ok(host.to_ascii_lowercase())
    }

    /// The base URL without a trailing slash.
    pub fn public_base(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }
}

/// An inclusive range of chat ports, written `FIRST-LAST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// The first port of the range.
    pub first: u16,
    /// The last port of the range (inclusive).
    pub last: u16,
}

impl PortRange {
    /// How many ports the range holds.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Never true: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("port range {s:?} must be FIRST-LAST"))?;
        let first: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("port range {s:?}: {a:?} is not a port"))?;
        let last: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("port range {s:?}: {b:?} is not a port"))?;
        if first == 0 || first > last {
            return Err(format!(
                "port range {s:?} must have 1 <= FIRST <= LAST <= 65535"
            ));
        }
        Ok(Self { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl Config {
    /// Reads `path` (if given) and applies the `CHMAIL_*` environment overrides.
    ///
    /// # Errors
    /// When the file cannot be read or a key or value is wrong; the message names it.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_toml_and_env(&text, std::env::vars())
    }

    /// Parses `text` and applies the overrides among `env` (pairs of name and value).
    ///
    /// An override `CHMAIL_SECTION_KEY=value` sets `key` in `[section]` (`CHMAIL_DATA_DIR` sets the
    /// top-level `data_dir`); the value is read as a TOML value when it is one (`5000`, `true`,
    /// `["a", "b"]`) and as a string otherwise. Variables naming no section are ignored.
    ///
    /// # Errors
    /// When the text or an override is invalid.
    pub fn from_toml_and_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let value = parse_env_value(&value);
            if rest == "data_dir" {
                table.insert(rest, value);
                continue;
            }
            let Some((section, key)) = rest.split_once('_') else {
                continue;
            };
            if !SECTIONS.contains(&section) {
                continue;
            }
            let entry = table
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => {
                    t.insert(key.to_owned(), value);
                }
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "{section} must be a [section] to take {name}"
                    )))
                }
            }
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.chat.public_host()?;
        let chat = &self.chat;
        if chat.ring_interval_secs == 0 || chat.ring_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "[chat] ring_interval_secs and ring_timeout_secs must be at least 1".into(),
            ));
        }
        if chat.max_message_bytes == 0 || chat.max_message_bytes > crate::store::MAX_BODY_LEN {
            return Err(ConfigError::Invalid(format!(
                "[chat] max_message_bytes must be 1..={}",
                crate::store::MAX_BODY_LEN
            )));
        }
        if chat.max_picture_bytes > crate::store::MAX_PICTURE_LEN {
            return Err(ConfigError::Invalid(format!(
                "[chat] max_picture_bytes must be at most {}",
                crate::store::MAX_PICTURE_LEN
            )));
        }
        if chat.max_frame_bytes < chat.max_message_bytes + 1024 {
            return Err(ConfigError::Invalid(
                "[chat] max_frame_bytes must exceed max_message_bytes by at least 1024".into(),
            ));
        }
        if chat.send_queue == 0
            || chat.history_page == 0
            || chat.messages_per_minute == 0
            || chat.frames_per_minute == 0
        {
            return Err(ConfigError::Invalid(
                "[chat] send_queue, history_page, messages_per_minute and frames_per_minute must \
                 be at least 1"
                    .into(),
            ));
        }
        for (section, cert, key) in [
            ("chat", &chat.tls_cert, &chat.tls_key),
            ("reply", &self.reply.tls_cert, &self.reply.tls_key),
        ] {
            if cert.as_os_str().is_empty() != key.as_os_str().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "[{section}] tls_cert and tls_key must be set together (or both left empty)"
                )));
            }
        }
        if self.reply.token_days == 0 {
            return Err(ConfigError::Invalid(
                "[reply] token_days must be at least 1: a reply address that expires at once \
                 would refuse every reply by mail and every mall inquiry"
                    .into(),
            ));
        }
        if self.signing.domain.is_empty() || self.signing.selector.is_empty() {
            return Err(ConfigError::Invalid(
                "[signing] domain and selector must not be empty".into(),
            ));
        }
        self.validate_keys()
    }

    /// The signing table must be unambiguous: every entry a valid domain and selector, each pair
    /// once, each From pattern valid, within its entry's domain and signed by one entry only.
    fn validate_keys(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(format!("[[signing.keys]] {msg}")));
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut patterns: Vec<(String, String)> = Vec::new();
        for entry in &self.signing.keys {
            let domain = entry.domain.trim_end_matches('.').to_ascii_lowercase();
            let selector = entry.selector.to_ascii_lowercase();
            if !is_dns_name(&domain) {
                return invalid(format!("domain {:?} is not a domain name", entry.domain));
            }
            if !is_dns_name(&selector) {
                return invalid(format!(
                    "selector {:?} of {domain} is not a DNS name",
                    entry.selector
                ));
            }
            let name = format!("{domain} selector {selector}");
            if pairs.contains(&(domain.clone(), selector.clone())) {
                return invalid(format!("{name} is listed twice"));
            }
            pairs.push((domain.clone(), selector.clone()));
            if !entry.sign {
                if !entry.from.is_empty() {
                    return invalid(format!(
                        "{name} has sign = false: it signs nothing, so it takes no from"
                    ));
                }
                continue;
            }
            for raw in &entry.from {
                let pattern = raw.trim_end_matches('.').to_ascii_lowercase();
                let base = pattern.strip_prefix("*.").unwrap_or(&pattern);
                if !is_dns_name(base) {
                    return invalid(format!(
                        "{name}: from pattern {raw:?} must be a domain or *.domain"
                    ));
                }
                if base != domain && !base.ends_with(&format!(".{domain}")) {
                    return invalid(format!(
                        "{name}: from pattern {raw:?} is not {domain} or within it \
                         (receivers accept d={domain} only for From addresses there)"
                    ));
                }
                if let Some((_, other)) = patterns.iter().find(|(p, _)| *p == pattern) {
                    return invalid(format!(
                        "from pattern {pattern:?} is listed twice ({other}, and {name})"
                    ));
                }
                patterns.push((pattern, name.clone()));
            }
            if entry.from.is_empty() {
                if let Some((_, other)) = patterns.iter().find(|(p, _)| *p == domain) {
                    return invalid(format!(
                        "from pattern {domain:?} is listed twice ({other}, and {name} by default)"
                    ));
                }
                patterns.push((domain.clone(), name.clone()));
            }
        }
        Ok(())
    }

    /// The store URL, with the default (an SQLite file in `data_dir`) filled in.
    pub fn store_url(&self) -> String {
        if self.store.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("chmail.db").display())
        } else {
            self.store.url.clone()
        }
    }

    /// The signing key file, with the default (`chmail.key` in `data_dir`) filled in.
    pub fn key_file(&self) -> PathBuf {
        if self.signing.key_file.as_os_str().is_empty() {
            self.data_dir.join("chmail.key")
        } else {
            self.signing.key_file.clone()
        }
    }

    /// The signing table with its defaults filled in: `[[signing.keys]]` with domains and
    /// selectors lowercased, each `key_file` (default `<data_dir>/<domain>.<selector>.key`) and
    /// `from` (default `[domain]`); without entries, the one entry of `[signing] domain`,
    /// `selector` and [`Config::key_file`].
    pub fn signing_keys(&self) -> Vec<KeyEntry> {
        if self.signing.keys.is_empty() {
            let domain = self.signing.domain.to_ascii_lowercase();
            return vec![KeyEntry {
                from: vec![domain.clone()],
                domain,
                selector: self.signing.selector.to_ascii_lowercase(),
                key_file: self.key_file(),
                sign: true,
            }];
        }
        self.signing
            .keys
            .iter()
            .map(|entry| {
                let domain = entry.domain.trim_end_matches('.').to_ascii_lowercase();
                let selector = entry.selector.to_ascii_lowercase();
                let key_file = if entry.key_file.as_os_str().is_empty() {
                    self.default_key_file(&domain, &selector)
                } else {
                    entry.key_file.clone()
                };
                let from = if entry.from.is_empty() && entry.sign {
                    vec![domain.clone()]
                } else {
                    entry
                        .from
                        .iter()
                        .map(|p| p.trim_end_matches('.').to_ascii_lowercase())
                        .collect()
                };
                KeyEntry {
                    domain,
                    selector,
                    key_file,
                    from,
                    sign: entry.sign,
                }
            })
            .collect()
    }

    /// Where a table entry's key lives when it names no `key_file`:
    /// `<data_dir>/<domain>.<selector>.key`.
    pub fn default_key_file(&self, domain: &str, selector: &str) -> PathBuf {
        self.data_dir.join(format!("{domain}.{selector}.key"))
    }

    /// The From address of chatd's mail: `[smtp] from`, else `chmail@<[signing] domain>`.
    pub fn smtp_from(&self) -> String {
        if self.smtp.from.is_empty() {
            format!("chmail@{}", self.signing.domain)
        } else {
            self.smtp.from.clone()
        }
    }

    /// The From address of the mall's inquiry and promotion mails: `[mall] from`, else
    /// `mall@<[signing] domain>`.
    pub fn mall_from(&self) -> String {
        if self.mall.from.is_empty() {
            format!("mall@{}", self.signing.domain)
        } else {
            self.mall.from.clone()
        }
    }

    /// The domain of reply addresses: `[reply] domain`, else `reply.<[signing] domain>`.
    pub fn reply_domain(&self) -> String {
        if self.reply.domain.is_empty() {
            format!("reply.{}", self.signing.domain)
        } else {
            self.reply.domain.to_ascii_lowercase()
        }
    }

    /// Our own domains, lowercased: `[signing] domain`, the domains of `[[signing.keys]]` and
    /// `own_domains`.
    pub fn own_domains(&self) -> Vec<String> {
        let mut all = vec![self.signing.domain.to_ascii_lowercase()];
        let more = self
            .signing
            .keys
            .iter()
            .map(|k| &k.domain)
            .chain(&self.signing.own_domains);
        for domain in more {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if !all.contains(&domain) {
                all.push(domain);
            }
        }
        all
    }
}

/// Whether `name` is a usable DNS name: dot-separated labels of letters, digits, `-` and `_`,
/// each 1-63 bytes, at most 253 in all.
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The sections an environment override may name.
const SECTIONS: &[&str] = &[
    "store", "milter", "signing", "chat", "smtp", "reply", "mall",
];

fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let c = Config::from_toml_and_env("", env(&[])).expect("valid");
        assert_eq!(c.milter.listen, "inet:127.0.0.1:8890");
        assert_eq!(
            c.chat.ports,
            PortRange {
                first: 20_000,
                last: 29_999
            }
        );
        assert_eq!(c.store_url(), "sqlite://data/chmail.db");
        assert_eq!(c.key_file(), PathBuf::from("data/chmail.key"));
        assert_eq!(c.milter.on_error, OnError::Accept);
        assert!(!c.milter.footer);
        assert_eq!(c.milter.footer_max_bytes, 10 * 1024 * 1024);
        assert_eq!(c.milter.authserv_id, "");
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = Config::from_toml_and_env(
            "[store]\nurl = \"sqlite://a.db\"\n[milter]\non_error = \"accept\"\n",
            env(&[
                ("CHMAIL_STORE_URL", "postgres://localhost/test"),
                ("CHMAIL_MILTER_ON_ERROR", "tempfail"),
                ("CHMAIL_STORE_TIMEOUT_MS", "250"),
                ("CHMAIL_DATA_DIR", "/var/lib/chmail"),
                (
                    "CHMAIL_SIGNING_OWN_DOMAINS",
                    "[\"a.example\", \"b.example\"]",
                ),
                ("CHMAIL_MILTER_FOOTER", "true"),
                ("CHMAIL_MILTER_FOOTER_MAX_BYTES", "65536"),
                ("CHMAIL_MILTER_AUTHSERV_ID", "mx.example.net"),
                ("CHMAIL_UNRELATED", "ignored"),
                ("OTHER_STORE_URL", "ignored"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.store.url, "postgres://localhost/test");
        assert_eq!(c.milter.on_error, OnError::Tempfail);
        assert_eq!(c.store.timeout_ms, 250);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/chmail"));
        assert_eq!(c.signing.own_domains, vec!["a.example", "b.example"]);
        assert!(c.milter.footer);
        assert_eq!(c.milter.footer_max_bytes, 65_536);
        assert_eq!(c.milter.authserv_id, "mx.example.net");
    }

    #[test]
    fn reply_addresses_that_expire_at_once_are_refused() {
        let e = Config::from_toml_and_env("[reply]\ntoken_days = 0\n", env(&[])).unwrap_err();
        assert!(e.to_string().contains("[reply] token_days"), "{e}");
        let c = Config::from_toml_and_env("[reply]\ntoken_days = 1\n", env(&[])).expect("valid");
        assert_eq!(c.reply.token_days, 1);
    }

    #[test]
    fn a_tls_certificate_needs_its_key() {
        for section in ["chat", "reply"] {
            let e = Config::from_toml_and_env(
                &format!("[{section}]\ntls_cert = \"cert.pem\"\n"),
                env(&[]),
            )
            .unwrap_err();
            assert!(
                e.to_string().contains(&format!("[{section}] tls_cert")),
                "{e}"
            );
        }
        let e =
            Config::from_toml_and_env("", env(&[("CHMAIL_REPLY_TLS_KEY", "key.pem")])).unwrap_err();
        assert!(e.to_string().contains("[reply] tls_cert"), "{e}");
        let c = Config::from_toml_and_env(
            "[chat]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
            env(&[]),
        )
        .expect("valid");
        assert_eq!(c.chat.tls_cert, PathBuf::from("c.pem"));
        assert!(c.reply.tls_cert.as_os_str().is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named_in_the_error() {
        let e = Config::from_toml_and_env("[milter]\nlisen = \"x\"\n", env(&[])).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
        let e = Config::from_toml_and_env("[chat]\nports = \"300-200\"\n", env(&[])).unwrap_err();
        assert!(e.to_string().contains("300-200"), "{e}");
        let e =
            Config::from_toml_and_env("[chat]\npublic_url = \"ftp://x\"\n", env(&[])).unwrap_err();
        assert!(e.to_string().contains("public_url"), "{e}");
    }

    #[test]
    fn without_a_table_the_signing_section_is_its_one_entry() {
        let c = Config::from_toml_and_env(
            "[signing]\ndomain = \"Example.com\"\nselector = \"sel1\"\n",
            env(&[]),
        )
        .expect("valid");
        assert_eq!(
            c.signing_keys(),
            vec![KeyEntry {
                domain: "example.com".into(),
                selector: "sel1".into(),
                key_file: PathBuf::from("data/chmail.key"),
                from: vec!["example.com".into()],
                sign: true,
            }]
        );
    }

    #[test]
    fn table_entries_get_their_default_key_file_and_from_and_are_our_domains() {
        let c = Config::from_toml_and_env(
            "[signing]\ndomain = \"example.com\"\n\
             [[signing.keys]]\ndomain = \"Example.ORG.\"\nselector = \"new\"\n\
             [[signing.keys]]\ndomain = \"example.org\"\nselector = \"old\"\nsign = false\n\
             key_file = \"/k/old.key\"\n",
            env(&[(
                "CHMAIL_SIGNING_OWN_DOMAINS",
                "[\"partner.example\", \"example.org\"]",
            )]),
        )
        .expect("valid");
        let keys = c.signing_keys();
        assert_eq!(keys[0].key_file, PathBuf::from("data/example.org.new.key"));
        assert_eq!(keys[0].from, vec!["example.org"]);
        assert!(keys[0].sign);
        assert_eq!(keys[1].key_file, PathBuf::from("/k/old.key"));
        assert!(keys[1].from.is_empty() && !keys[1].sign);
        assert_eq!(
            c.own_domains(),
            vec!["example.com", "example.org", "partner.example"]
        );
    }

    #[test]
    fn signing_table_mistakes_are_named() {
        let bad = |table: &str| {
            Config::from_toml_and_env(table, env(&[]))
                .expect_err(table)
                .to_string()
        };
        let e = bad(
            "[[signing.keys]]\ndomain = \"a.example\"\nselector = \"s\"\n\
                     [[signing.keys]]\ndomain = \"a.example\"\nselector = \"t\"\n\
                     from = [\"*.a.example\"]\n\
                     [[signing.keys]]\ndomain = \"a.example\"\nselector = \"u\"\n\
                     from = [\"*.A.example.\"]\n",
        );
        assert!(
            e.contains("from pattern \"*.a.example\" is listed twice"),
            "{e}"
        );
        let e = bad(
            "[[signing.keys]]\ndomain = \"a.example\"\nselector = \"s\"\n\
                     [[signing.keys]]\ndomain = \"a.example\"\nselector = \"t\"\n",
        );
        assert!(e.contains("\"a.example\" is listed twice"), "{e}");
        let e = bad("[[signing.keys]]\ndomain = \"a example\"\nselector = \"s\"\n");
        assert!(
            e.contains("domain \"a example\" is not a domain name"),
            "{e}"
        );
        let e = bad("[[signing.keys]]\ndomain = \"a.example\"\nselector = \"s;1\"\n");
        assert!(e.contains("selector \"s;1\""), "{e}");
        let e = bad("[[signing.keys]]\ndomain = \"a.example\"\nselector = \"s\"\nkey = \"x\"\n");
        assert!(e.contains("key"), "{e}");
    }

    #[test]
    fn public_host_keeps_the_port_and_drops_the_path() {
        let chat = ChatConfig {
            public_url: "https://Chat.Example.com:8443/base/".into(),
            ..Default::default()
        };
        assert_eq!(chat.public_host().expect("host"), "chat.example.com:8443");
        assert_eq!(chat.public_base(), "https://Chat.Example.com:8443/base");
    }
}
