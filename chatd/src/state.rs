//! [`AppState`]: what every handler and background task shares. Cheap to clone.

use std::sync::Arc;

use chmail::{config::ConfigError, store::Store, Config};
use chmail_milter::table::SigningTable;
use tokio::sync::Notify;
use tracing::warn;

use crate::{
    clock::Clock, codes::CodeLocks, error::AppError, http::HttpLimits, hub::Hub, limit::ChatLimits,
    mail::MailSender, metrics::Metrics, presence::Presence, reply::listener::ReplyLimits,
    ringer::Ringer, ws::capacity::Capacity,
};

/// The shared state of one chatd process.
#[derive(Clone)]
pub struct AppState {
    /// The whole configuration.
    pub config: Arc<Config>,
    /// The store (rooms, messages, rings, reminders, sessions).
    pub store: Arc<dyn Store>,
    /// Wall-clock milliseconds that follow tokio's clock.
    pub clock: Clock,
    /// Fan-out of frames to the connections of each room.
    pub hub: Arc<Hub>,
    /// Who is online.
    pub presence: Arc<Presence>,
    /// The rings under way.
    pub ringer: Arc<Ringer>,
    /// Where outgoing mail goes (the outbox's delivery worker sends through it).
    pub mailer: Arc<dyn MailSender>,
    /// Wakes the outbox's delivery worker when a mail was queued, so it does not wait for its
    /// next tick ([`crate::outbox`]).
    pub mail_queued: Arc<Notify>,
    /// A random id of this process: the owner name of the jobs it claims.
    pub node: Arc<str>,
    /// The Origin that browsers send for our pages (`https://chat.example.com`), from
    /// `[chat] public_url`.
    pub origin: Arc<str>,
    /// Message and ring limits per client network and per identity, shared by all connections.
    pub limits: Arc<ChatLimits>,
    /// How many WebSocket connections the process and one client network may hold. A field, so
    /// that a test can start chatd with a small budget.
    pub capacity: Arc<Capacity>,
    /// The bounds of the HTTP(S) connections on `[chat] listen` ([`crate::http`]). A field, so
    /// that a test can shrink them.
    pub http_limits: HttpLimits,
    /// The bounds of the SMTP connections on `[reply] listen` ([`crate::reply::listener`]).
    pub reply_limits: ReplyLimits,
    /// One code request at a time per room and address ([`crate::codes`]).
    pub code_locks: Arc<CodeLocks>,
    /// Our signing keys, for the chat-capable mails chatd sends itself (the mall's inquiries and
    /// promotions). Empty when the keys cannot be read: those mails then fail with a clear error.
    pub signing: Arc<SigningTable>,
    /// The process's Prometheus metrics, served on `[chat] metrics_listen`.
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// Builds the state over `store`, sending mail through `mailer`.
    ///
    /// # Errors
    /// When `[chat] public_url` is not a usable URL.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        mailer: Arc<dyn MailSender>,
    ) -> Result<Self, ConfigError> {
        let host = config.chat.public_host()?;
        let scheme = if config.chat.public_url.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        let origin: Arc<str> = format!("{scheme}://{host}").into();
        let mut node = [0u8; 8];
        // Only names this process's job claims; an unavailable RNG leaves zeros, still valid.
        let _ = getrandom::fill(&mut node);
        let node: String = node.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            hub: Arc::new(Hub::new(&config.chat)),
            presence: Arc::new(Presence::new(&config.chat)),
            ringer: Arc::new(Ringer::new()),
            limits: Arc::new(ChatLimits::new(&config.chat)),
            capacity: Arc::new(Capacity::default()),
            http_limits: HttpLimits::default(),
            reply_limits: ReplyLimits::default(),
            code_locks: Arc::new(CodeLocks::default()),
            signing: Arc::new(load_signing(&config)),
            metrics: Arc::new(Metrics::new()),
            config: Arc::new(config),
            store,
            clock: Clock::new(),
            mailer,
            mail_queued: Arc::new(Notify::new()),
            node: node.into(),
            origin,
        })
    }

    /// Runs a store call under `[store] timeout_ms`: every wait on the store is bounded.
    ///
    /// # Errors
    /// The store's error, or [`AppError::Internal`] when the call timed out.
    pub async fn store_call<T>(
        &self,
        call: impl std::future::Future<Output = chmail::store::Result<T>>,
    ) -> Result<T, AppError> {
        match tokio::time::timeout(self.config.store.timeout(), call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(AppError::Internal("store call timed out".into())),
        }
    }

    /// The public base URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.config.chat.public_base()
    }
}

/// The signing table of the config, or an empty one (with a warning) when a key cannot be read:
/// chatd serves chats without keys; only the mails it would sign need them.
fn load_signing(config: &Config) -> SigningTable {
    SigningTable::load(config).unwrap_or_else(|e| {
        warn!(cause = %e, "signing keys not readable: the mall cannot send inquiries or promotions");
        SigningTable::default()
    })
}
