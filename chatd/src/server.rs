//! The router and the running server: bind `[chat] listen`, serve pages and WebSockets
//! ([`crate::http`]; over HTTPS when `[chat] tls_cert` is set), run the reminder worker, the outbox's delivery worker
//! and the fan-out to the other nodes (PostgreSQL), take replies by mail on `[reply] listen`
//! (with STARTTLS when `[reply] tls_cert` is set), serve the Prometheus metrics on `[chat]
//! metrics_listen`, reload the certificates on SIGHUP, stop cleanly.

use std::{net::SocketAddr, sync::Arc};

use axum::Router;
use chmail::{store::open_store, Config};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use crate::{
    mail::MailSender,
    state::AppState,
    tls::{Tls, TlsError, TlsFiles},
};

/// Errors starting chatd.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] chmail::config::ConfigError),
    /// The store could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] chmail::store::StoreError),
    /// A certificate or key of `[chat]` or `[reply]` cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The HTTP, the metrics or the reply socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// `[chat] listen`, `[chat] metrics_listen` or `[reply] listen`.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Every route of chatd over `state`. Unknown paths get the same page as an unknown room, and
/// every response the security headers of [`crate::web::security_headers`].
pub fn app(state: AppState) -> Router {
    let mall = if state.config.mall.enabled {
        crate::mall::routes()
    } else {
        Router::new()
    };
    crate::web::routes()
        .merge(mall)
        .merge(crate::web::pictures::routes(&state))
        .merge(crate::ws::routes())
        .fallback(crate::web::not_found)
        .layer(axum::middleware::map_response(crate::web::security_headers))
        .with_state(state)
}

/// A chatd started by [`start`].
pub struct Running {
    addr: SocketAddr,
    reply_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    https: bool,
    tls: Vec<Tls>,
    state: AppState,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// The address chatd listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the reply listener takes SMTP on; `None` when `[reply] listen` is empty.
    pub fn reply_addr(&self) -> Option<SocketAddr> {
        self.reply_addr
    }

    /// The address of the `/metrics` endpoint; `None` when `[chat] metrics_listen` is empty.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Whether `[chat] listen` serves HTTPS.
    pub fn https(&self) -> bool {
        self.https
    }

    /// Reads every certificate and key again (`[chat]` and `[reply]`); connections from now on
    /// get the new ones. A pair that fails to load is logged and keeps the one in use.
    ///
    /// # Errors
    /// The first pair that failed, after trying all.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        let mut first = None;
        for tls in &self.tls {
            let section = tls.files().section;
            match tls.reload() {
                Ok(()) => info!(section, "TLS certificate reloaded"),
                Err(e) => {
                    warn!(section, cause = %e, "TLS certificate not reloaded; the old one stays");
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The shared state (for tests and the admin commands).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops accepting, ends the connections and the background tasks, and returns when they are
    /// done.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.state.hub.close_all();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Opens the store named by the config (and migrates it), then starts chatd on `[chat] listen`.
///
/// # Errors
/// When the store or the socket cannot be opened.
pub async fn start(config: Config, mailer: Arc<dyn MailSender>) -> Result<Running, StartError> {
    let store = open_store(&config.store_url(), config.store.pool_size).await?;
    store.migrate().await?;
    start_with_store(config, store, mailer).await
}

/// Starts chatd over an open, migrated store.
///
/// # Errors
/// When the socket cannot be bound or the config is wrong.
pub async fn start_with_store(
    config: Config,
    store: Arc<dyn chmail::Store>,
    mailer: Arc<dyn MailSender>,
) -> Result<Running, StartError> {
    start_with_state(AppState::new(config, store, mailer)?).await
}

/// Starts chatd over a built state (a test can change its limits first).
///
/// # Errors
/// When a certificate or key cannot be used, or a socket cannot be bound.
pub async fn start_with_state(state: AppState) -> Result<Running, StartError> {
    let config = &state.config;
    let https = TlsFiles::chat(config)
        .map(|files| Tls::load(files, crate::tls::https::ALPN))
        .transpose()?;
    let starttls = TlsFiles::reply(config)
        .map(|files| Tls::load(files, &[]))
        .transpose()?;
    let addr = config.chat.listen.clone();
    let listener = TcpListener::bind(addr.as_str())
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.chat.listen.clone(),
        source,
    })?;
    let reply = bind_reply(config).await?;
    let metrics = bind_optional(&config.chat.metrics_listen).await?;
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut metrics_addr = None;
    if let Some((listener, addr)) = metrics {
        info!(addr = %addr, "metrics endpoint listening");
        metrics_addr = Some(addr);
        let metrics = state.metrics.clone();
        tasks.push(tokio::spawn(crate::metrics::serve(
            listener,
            metrics,
            stopped.clone(),
        )));
    }
    let router = app(state.clone());
    let router = if https.is_some() {
        router.layer(axum::middleware::map_response(crate::web::strict_transport))
    } else {
        router
    };
    {
        let tls = https.clone();
        let limits = state.http_limits.clone();
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            crate::http::serve(listener, tls.as_ref(), router, limits, stopped).await;
        }));
    }
    tasks.extend(crate::fanout::start(&state, &stopped).await);
    tasks.push(tokio::spawn(crate::reminder::run_worker(
        state.clone(),
        stopped.clone(),
    )));
    tasks.push(tokio::spawn(crate::outbox::run_delivery(
        state.clone(),
        stopped.clone(),
    )));
    tasks.push(tokio::spawn(crate::notify::run_worker(
        state.clone(),
        stopped.clone(),
    )));
    tasks.push(tokio::spawn(crate::ringer::run_sweeper(
        state.clone(),
        stopped.clone(),
    )));
    tasks.push(tokio::spawn(crate::presence::run_heartbeat(
        state.clone(),
        stopped.clone(),
    )));
    if state.config.mall.enabled {
        tasks.push(tokio::spawn(crate::mall::promotion::run_worker(
            state.clone(),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(crate::mall::housekeeping::run(
            state.clone(),
            stopped.clone(),
        )));
    }
    let mut reply_addr = None;
    if let Some((listener, addr)) = reply {
        info!(
            addr = %addr,
            domain = %state.config.reply_domain(),
            starttls = starttls.is_some(),
            "reply listener listening"
        );
        reply_addr = Some(addr);
        tasks.push(tokio::spawn(crate::reply::listener::run(
            listener,
            state.clone(),
            starttls.clone(),
            stopped.clone(),
        )));
    }
    info!(addr = %local, https = https.is_some(), url = %state.base_url(), "chatd listening");
    Ok(Running {
        addr: local,
        reply_addr,
        metrics_addr,
        https: https.is_some(),
        tls: https.into_iter().chain(starttls).collect(),
        state,
        stop,
        tasks,
    })
}

/// Turns Nagle's algorithm off on an accepted connection (`TCP_NODELAY`), as every listener of
/// chatd does: its answers are small writes (a WebSocket frame, an SMTP reply, the last part of a
/// page) that must leave at once instead of waiting for the client's delayed ACK of the previous
/// one (up to 40 ms on Linux). Best effort: a socket that refuses it still works, only slower.
pub(crate) fn no_delay(stream: &mut TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(cause = %e, "cannot set TCP_NODELAY");
    }
}

/// Binds `[reply] listen`, unless it is empty (replies by mail off).
async fn bind_reply(config: &Config) -> Result<Option<(TcpListener, SocketAddr)>, StartError> {
    bind_optional(&config.reply.listen).await
}

/// Binds `addr`, unless it is empty (that listener is off).
async fn bind_optional(addr: &str) -> Result<Option<(TcpListener, SocketAddr)>, StartError> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Ok(None);
    }
    let bind_error = |source| StartError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok(Some((listener, local)))
}

/// Runs chatd until SIGINT or SIGTERM, sending mail through `[smtp] relay`.
///
/// # Errors
/// When it cannot start.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let mailer = Arc::new(crate::mail::SmtpSender::new(&config));
    let running = start(config, mailer).await?;
    run_until_shutdown(&running).await;
    info!("shutting down");
    running.stop().await;
    Ok(())
}

/// Waits for SIGINT or SIGTERM; meanwhile each SIGHUP reloads the TLS certificates when chatd
/// serves TLS (a renewed certificate without a restart), and is only logged otherwise, so that
/// `systemctl reload chatd` never stops a server that has nothing to reload.
async fn run_until_shutdown(running: &Running) {
    let shutdown = chmail_milter::server::shutdown_signal();
    tokio::pin!(shutdown);
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(e) => {
            warn!(cause = %e, "no SIGHUP handler: certificates reload on restart only");
            return shutdown.await;
        }
    };
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            Some(()) = hangup.recv() => {
                if running.tls.is_empty() {
                    info!("SIGHUP: no TLS certificates to reload");
                } else {
                    info!("SIGHUP: reloading the TLS certificates");
                    // Each failure was logged; the certificates in use stay.
                    let _ = running.reload_tls();
                }
            }
        }
    }
}

/// The laptop path: the milter and chatd in one process on the embedded store; creates a signing
/// key if there is none and prints the Postfix and DNS lines and the chat address. With `demo`,
/// a mall without companies gets the demo data ([`crate::mall::demo`]) and the console says
/// where to look and how to sign in.
///
/// # Errors
/// When either part cannot start, or the demo data cannot be stored.
pub async fn quickstart(config: Config, demo: bool) -> anyhow::Result<()> {
    let text = chmail_milter::commands::prepare(&config)?;
    let milter = chmail_milter::start(config.clone()).await?;
    let mailer = Arc::new(crate::mail::SmtpSender::new(&config));
    let chat = start(config, mailer).await?;
    println!(
        "{text}\nChat server on {scheme}://{addr} (public URL {url}).\n",
        scheme = if chat.https() { "https" } else { "http" },
        addr = chat.addr(),
        url = chat.state().base_url()
    );
    if demo {
        let state = chat.state();
        let report = crate::mall::demo::load_if_empty(
            &*state.store,
            state.config.mall.max_picture_bytes,
            state.clock.now_ms(),
        )
        .await?;
        println!(
            "{}",
            crate::mall::demo::console_text(report.as_ref(), state.base_url())
        );
    }
    run_until_shutdown(&chat).await;
    info!("shutting down");
    chat.stop().await;
    milter.stop().await?;
    Ok(())
}
