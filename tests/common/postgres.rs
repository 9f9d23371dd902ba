//! A fresh PostgreSQL schema per test, so tests never see each other's rows.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio_postgres::{Client, NoTls};

/// The database the machine provides; `CHMAIL_TEST_POSTGRES_URL` overrides it.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Longest wait for PostgreSQL to answer a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes schema names unique within one process.
static SCHEMAS: AtomicU32 = AtomicU32::new(0);

/// A schema `t_<unique>` that is dropped (with everything in it) when this is dropped.
pub struct PgSchema {
    base: String,
    name: String,
}

impl PgSchema {
    /// The base URL: `CHMAIL_TEST_POSTGRES_URL` or [`DEFAULT_POSTGRES_URL`].
    pub fn base_url() -> String {
        std::env::var("CHMAIL_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into())
    }

    /// Creates a new empty schema.
    ///
    /// # Errors
    ///
    /// When PostgreSQL cannot be reached or refuses: the reason to skip the test.
    pub async fn create() -> Result<Self, String> {
        let base = Self::base_url();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "t_{}_{:x}_{}",
            std::process::id(),
            nanos,
            SCHEMAS.fetch_add(1, Ordering::SeqCst)
        );
        let client = connect(&base)
            .await
            .map_err(|err| format!("needs PostgreSQL at {base}: {err}"))?;
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .map_err(|err| format!("cannot create a schema in {base}: {err}"))?;
        Ok(Self { base, name })
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL whose connections use this schema: the base with
    /// `options=-csearch_path%3D<schema>` appended.
    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.base, self.name
        )
    }

    /// A client on this schema.
    ///
    /// # Panics
    ///
    /// When PostgreSQL cannot be reached (it could a moment ago).
    pub async fn client(&self) -> Client {
        connect(&self.url())
            .await
            .unwrap_or_else(|err| panic!("connect to {}: {err}", self.url()))
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread with a
        // runtime of its own.
        let (base, name) = (self.base.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = connect(&base).await.ok()?;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("note: could not drop schema {}", self.name);
        }
    }
}

/// Connects and drives the connection on a task; times out after [`CONNECT_TIMEOUT`].
async fn connect(url: &str) -> Result<Client, String> {
    let (client, connection) =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio_postgres::connect(url, NoTls))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|err| match std::error::Error::source(&err) {
                Some(cause) => format!("{err}: {cause}"),
                None => err.to_string(),
            })?;
    tokio::spawn(connection);
    Ok(client)
}
