//! The database harness the store suites share: an SQLite file in a temporary directory, or a
//! fresh schema in a real PostgreSQL.
//!
//! PostgreSQL comes from `CHMAIL_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! each test works in its own fresh schema, dropped at the end. When PostgreSQL is unreachable the
//! PostgreSQL half is skipped with a note on stderr, except under `CI=true`, where it fails.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use chmail::{open_store, Store};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// One test's database: an SQLite file in a temporary directory, or a PostgreSQL schema.
pub struct Harness {
    /// The URL a store is opened with.
    url: String,
    /// SQLite: the directory holding the file, removed on drop.
    dir: Option<tempfile::TempDir>,
    /// PostgreSQL: the admin URL and the test's schema, dropped on drop.
    postgres: Option<(String, String)>,
}

impl Harness {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("chmail.db").display());
        Self {
            url,
            dir: Some(dir),
            postgres: None,
        }
    }

    /// A fresh schema, or `None` (after a note on stderr) when PostgreSQL is not reachable.
    pub async fn postgres() -> Option<Self> {
        let admin = std::env::var("CHMAIL_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let client = match admin_client(&admin).await {
            Ok(client) => client,
            Err(err) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("PostgreSQL not reachable at {admin} (CI=true, so this fails): {err}");
                }
                eprintln!("SKIPPED: PostgreSQL not reachable at {admin}: {err}");
                return None;
            }
        };
        let schema = unique_schema();
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("CREATE SCHEMA");
        let sep = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{sep}options=-csearch_path%3D{schema}");
        Some(Self {
            url,
            dir: None,
            postgres: Some((admin, schema)),
        })
    }

    /// A new store instance: its own pool or its own SQLite connection ("another process").
    pub async fn open(&self) -> Arc<dyn Store> {
        open_store(&self.url, 4).await.expect("open_store")
    }

    /// A new, migrated store instance.
    pub async fn fresh(&self) -> Arc<dyn Store> {
        let store = self.open().await;
        store.migrate().await.expect("migrate");
        store
    }

    /// How many rows `schema_migrations` holds, read behind the store's back.
    #[allow(dead_code)] // Only the store suite checks its migrations.
    pub async fn migrations_recorded(&self) -> i64 {
        if let Some((admin, schema)) = &self.postgres {
            let client = admin_client(admin).await.expect("admin connection");
            let row = client
                .query_one(
                    &format!("SELECT count(*) FROM {schema}.schema_migrations"),
                    &[],
                )
                .await
                .expect("count schema_migrations");
            row.get(0)
        } else {
            let conn = rusqlite::Connection::open(self.sqlite_path()).expect("open the file");
            conn.query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
                .expect("count schema_migrations")
        }
    }

    fn sqlite_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .expect("an SQLite harness")
            .path()
            .join("chmail.db")
    }
}

impl Drop for Harness {
    /// Drops the PostgreSQL schema, best effort, even when the test panicked.
    fn drop(&mut self) {
        let Some((admin, schema)) = self.postgres.take() else {
            return;
        };
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = admin_client(&admin).await.ok()?;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .ok()
            })
        });
        let _ = done.join();
    }
}

/// A plain connection for setting up and inspecting, within 5 s.
async fn admin_client(url: &str) -> Result<tokio_postgres::Client, String> {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, conn) = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "no answer within 5 s".to_owned())?
        .map_err(|e| {
            format!(
                "{e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            )
        })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A schema name no other test (of this or another suite's process) uses.
fn unique_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "t_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test per behaviour and backend: `sqlite::$name` and `postgres::$name` each run
/// `behaviour::$name(&Harness)`. The invoking file holds `mod behaviour` and `use`s [`Harness`].
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let h = super::Harness::sqlite();
                    super::behaviour::$name(&h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(h) = super::Harness::postgres().await else { return };
                    super::behaviour::$name(&h).await;
                }
            )*
        }
    };
}
