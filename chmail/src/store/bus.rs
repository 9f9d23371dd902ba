//! The fan-out bus: how chatd nodes that share one PostgreSQL pass live frames to each other,
//! over PostgreSQL's own LISTEN/NOTIFY (an existing engine, not a home-made one).
//!
//! [`Bus::publish`] sends payloads through the store's pool with `pg_notify`, in order, several
//! in one statement; [`Bus::listen`] opens a dedicated connection (not from the pool: a pooled
//! connection is handed to others and its notifications would go with it) that `LISTEN`s. Every
//! node's notifications reach every node, its own included; the payload says who sent it.
//!
//! The channel is `chmail_fanout`, or `chmail_fanout_<hash of the schema>` when the store lives
//! in a schema other than `public`: NOTIFY is per database, and two installations (or two test
//! runs) in separate schemas of one database must not hear each other.
//!
//! SQLite has no bus ([`super::Store::bus`] is `None`): one process per SQLite file, so there is
//! nobody to tell.

use std::{
    future::poll_fn,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use deadpool_postgres::Pool;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::{debug, warn};

use super::{Result, StoreError};

/// The largest payload, in bytes, that PostgreSQL's NOTIFY takes: it refuses 8000 and more.
pub const MAX_PAYLOAD_BYTES: usize = 7_999;

/// Longest wait for the listening connection to connect and to answer a statement.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The channel of this store's schema (see the module doc). Every node computes the same name.
const CHANNEL_SQL: &str = "SELECT CASE WHEN coalesce(current_schema(), 'public') = 'public'
    THEN 'chmail_fanout' ELSE 'chmail_fanout_' || left(md5(current_schema()), 16) END";

/// Notifies every payload on the channel, in array order, in one statement (one transaction:
/// the listeners get them together and in this order).
const PUBLISH_SQL: &str =
    "SELECT pg_notify(CASE WHEN coalesce(current_schema(), 'public') = 'public'
    THEN 'chmail_fanout' ELSE 'chmail_fanout_' || left(md5(current_schema()), 16) END, p)
    FROM unnest($1::text[]) AS p";

/// A fan-out bus between the processes that share a database.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends `payloads`, in order, to every listener (the sender's own included).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when a payload is over [`MAX_PAYLOAD_BYTES`] (nothing is sent);
    /// otherwise a connection or backend error.
    async fn publish(&self, payloads: &[String]) -> Result<()>;

    /// Opens a dedicated connection that listens, named `name` in `pg_stat_activity`; at most
    /// `queue` payloads wait for [`Listener::next`], more are dropped and counted
    /// ([`Listener::dropped`]): a slow reader never stalls the connection.
    ///
    /// # Errors
    /// When the database cannot be reached within a few seconds.
    async fn listen(&self, name: &str, queue: usize) -> Result<Listener>;
}

/// One listening connection. Dropping it closes the connection.
pub struct Listener {
    rx: mpsc::Receiver<String>,
    client: tokio_postgres::Client,
    dropped: Arc<AtomicU64>,
    driver: JoinHandle<()>,
    channel: String,
}

impl Listener {
    /// The next payload, in the order the database delivered them; `None` once the connection
    /// is lost (listen again).
    pub async fn next(&mut self) -> Option<String> {
        self.rx.recv().await
    }

    /// Checks that the connection still answers (a dead peer can look idle for a long time).
    ///
    /// # Errors
    /// When it does not answer within a few seconds.
    pub async fn check(&self) -> Result<()> {
        match tokio::time::timeout(LISTEN_TIMEOUT, self.client.simple_query("SELECT 1")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Connect(super::postgres::describe(&e))),
            Err(_) => Err(StoreError::Connect(
                "the listening connection did not answer".into(),
            )),
        }
    }

    /// How many payloads were dropped so far because the reader did not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The channel listened to.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The PostgreSQL bus: publishes through the store's pool, listens on its own connection.
pub(super) struct PostgresBus {
    pub(super) pool: Pool,
    pub(super) config: tokio_postgres::Config,
}

#[async_trait::async_trait]
impl Bus for PostgresBus {
    async fn publish(&self, payloads: &[String]) -> Result<()> {
        if payloads.is_empty() {
            return Ok(());
        }
        if let Some(big) = payloads.iter().find(|p| p.len() > MAX_PAYLOAD_BYTES) {
            return Err(StoreError::Invalid(format!(
                "a fan-out payload of {} bytes is over {MAX_PAYLOAD_BYTES}",
                big.len()
            )));
        }
        super::postgres::bounded(async {
            let client = super::postgres::pooled(&self.pool).await?;
            let stmt = client
                .prepare_cached(PUBLISH_SQL)
                .await
                .map_err(super::postgres::backend)?;
            client
                .execute(&stmt, &[&payloads])
                .await
                .map_err(super::postgres::backend)?;
            Ok(())
        })
        .await
    }

    async fn listen(&self, name: &str, queue: usize) -> Result<Listener> {
        let mut config = self.config.clone();
        config.application_name(name);
        let connect = config.connect(NoTls);
        let (client, mut connection) = tokio::time::timeout(LISTEN_TIMEOUT, connect)
            .await
            .map_err(|_| StoreError::Connect("PostgreSQL did not answer in time".into()))?
            .map_err(|e| StoreError::Connect(super::postgres::describe(&e)))?;
        let (tx, rx) = mpsc::channel(queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        // The connection is driven here: it answers the client's statements and yields the
        // notifications. It never waits for the reader: a full queue drops the payload.
        let driver = tokio::spawn(async move {
            loop {
                match poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        match tx.try_send(n.payload().to_owned()) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => return,
                        }
                    }
                    Some(Ok(AsyncMessage::Notice(notice))) => {
                        debug!(notice = %notice.message(), "PostgreSQL notice on the fan-out connection");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        warn!(cause = %super::postgres::describe(&e), "fan-out connection lost");
                        return;
                    }
                    None => return,
                }
            }
        });
        let setup = async {
            let row = client.query_one(CHANNEL_SQL, &[]).await?;
            let channel: String = row.try_get(0)?;
            // The name is ours: letters, digits and `_` only, so quoting it is enough.
            client
                .batch_execute(&format!("LISTEN \"{channel}\""))
                .await?;
            Ok::<_, tokio_postgres::Error>(channel)
        };
        let channel = match tokio::time::timeout(LISTEN_TIMEOUT, setup).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => {
                driver.abort();
                return Err(StoreError::Connect(super::postgres::describe(&e)));
            }
            Err(_) => {
                driver.abort();
                return Err(StoreError::Connect("LISTEN did not finish in time".into()));
            }
        };
        Ok(Listener {
            rx,
            client,
            dropped,
            driver,
            channel,
        })
    }
}
