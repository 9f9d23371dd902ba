//! Running the milter: open the store, load the key, bind the sockets, serve until shut down.

use std::{future::Future, sync::Arc, time::Duration};

use chmail::{
    config::{Config, KeyEntry},
    header::Signer,
    store::open_store,
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tracing::{error, info, warn};

use crate::{
    callbacks::callbacks,
    drain::{ClosingListener, Transactions},
    error::{MilterError, Result},
    keys::{DnsKeys, KeySource},
    listen::MilterListener,
    metrics::{self, Metrics},
    policy::Milter,
    table::SigningTable,
};

/// How long an idle MTA connection is kept. Postfix's longest milter wait is its 300 s content
/// timeout; a connection silent for twice that is dead.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(600);

/// Serves the milter protocol on `listener` until `shutdown` completes; then closes the socket,
/// lets the mails under way finish for up to `[milter] shutdown_grace_secs`, ends the sessions
/// and returns ([`crate::drain`]).
///
/// # Errors
/// When accepting connections fails for good.
pub async fn run(
    listener: MilterListener,
    milter: Arc<Milter>,
    shutdown: impl Future + Send + 'static,
) -> std::io::Result<()> {
    let config = indymilter::Config {
        max_connections: milter.config.milter.max_connections,
        connection_timeout: CONNECTION_TIMEOUT,
        ..Default::default()
    };
    let grace = milter.config.milter.shutdown_grace();
    let transactions = Transactions::default();
    let (listener, closer) = ClosingListener::new(listener);
    let sessions_end = {
        let transactions = transactions.clone();
        async move {
            let _ = shutdown.await;
            closer.close();
            let under_way = transactions.under_way();
            info!(
                under_way,
                "milter socket closed; letting the mails under way finish"
            );
            if tokio::time::timeout(grace, transactions.finished())
                .await
                .is_err()
            {
                warn!(
                    under_way = transactions.under_way(),
                    grace_secs = grace.as_secs(),
                    "mails still under way at the end of the shutdown grace; ending their sessions"
                );
            }
        }
    };
    indymilter::run(
        listener,
        callbacks(milter, transactions),
        config,
        sessions_end,
    )
    .await
}

/// Loads the key of one entry of the signing table.
///
/// # Errors
/// [`MilterError::Key`] when it is missing or unreadable.
pub fn load_signer(entry: &KeyEntry) -> Result<Signer> {
    Signer::from_key_file(&entry.key_file, &entry.domain, &entry.selector).map_err(|e| {
        MilterError::Key {
            path: entry.key_file.clone(),
            domain: entry.domain.clone(),
            selector: entry.selector.clone(),
            cause: e.to_string(),
        }
    })
}

/// A milter started by [`start`].
pub struct Running {
    socket: String,
    metrics_addr: Option<std::net::SocketAddr>,
    milter: Arc<Milter>,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// The milter socket as an MTA names it (`inet:127.0.0.1:8890`).
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// The address of the `/metrics` endpoint, when it is on.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }

    /// The milter's shared state.
    pub fn milter(&self) -> &Arc<Milter> {
        &self.milter
    }

    /// Stops accepting, lets the sessions under way finish, and returns.
    ///
    /// # Errors
    /// When the milter had failed.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// Waits until the milter ends by itself (it only does on a fatal error).
    ///
    /// # Errors
    /// The fatal error.
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Opens the store (and migrates it), loads the signing table's keys, binds `[milter] listen` and the metrics
/// endpoint, and starts serving in the background.
///
/// # Errors
/// When any of these fails; the message says which and why.
pub async fn start(config: Config) -> Result<Running> {
    let keys = DnsKeys::new(&config.milter.resolver, config.milter.dns_timeout())?;
    start_with_keys(config, Arc::new(keys)).await
}

/// As [`start`], with public keys and host names from `keys` instead of DNS.
///
/// # Errors
/// As [`start`].
pub async fn start_with_keys(config: Config, keys: Arc<dyn KeySource>) -> Result<Running> {
    let store = open_store(&config.store_url(), config.store.pool_size).await?;
    tokio::time::timeout(config.store.timeout() * 6, store.migrate())
        .await
        .map_err(|_| {
            chmail::store::StoreError::Connect("migrating the store timed out".into())
        })??;
    let table = SigningTable::load(&config)?;
    let metrics = Arc::new(Metrics::new());
    let listener = MilterListener::bind(&config.milter.listen).await?;
    let socket = listener.socket_name();
    let (stop, stopped) = watch::channel(false);
    let metrics_addr = if config.milter.metrics_listen.is_empty() {
        None
    } else {
        let spec = config.milter.metrics_listen.clone();
        let l = TcpListener::bind(spec.as_str())
            .await
            .map_err(|source| MilterError::Bind { spec, source })?;
        let addr = l.local_addr()?;
        let mut stopped = stopped.clone();
        let m = metrics.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = metrics::serve(l, m, shutdown).await {
                error!(cause = %e, "metrics endpoint stopped");
            }
        });
        Some(addr)
    };
    let milter = Arc::new(Milter::new(config, store, table, keys, metrics)?);
    let mut stopped_milter = stopped;
    let task = tokio::spawn(run(listener, milter.clone(), async move {
        let _ = stopped_milter.wait_for(|s| *s).await;
    }));
    info!(socket = %socket, "milter listening");
    Ok(Running {
        socket,
        metrics_addr,
        milter,
        stop,
        task,
    })
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
