//! The embedded store: one SQLite file, used from blocking threads.
//!
//! SQLite calls block, so every call runs in `spawn_blocking` on the store's one connection,
//! behind a `std::sync::Mutex` that is never held across an `.await`. One connection is plenty for
//! a milter (a grant is a few index look-ups) and makes the in-memory database possible. Other
//! processes on the same file serialize through `BEGIN IMMEDIATE` and `busy_timeout`.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::{
    check_login, check_login_record, check_range, migrate, normalize_room, reclaim_cutoff,
    sort_participants, unix_now, LoginRecord, Participant, PortGrant, Result, Role, Room, Store,
    StoreError, Submission,
};
use crate::config::PortRange;

/// How long a connection waits for another process's write lock before giving up: long enough
/// for any grant, short enough to stay inside the milter's time budget.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5_000);

/// The lowest free port of `?1..=?2`: `?1` itself, or the port after the first taken port whose
/// successor is free (one ordered walk of the primary key; fast for 10k ports).
const FREE_PORT_SQL: &str = "SELECT CASE
    WHEN NOT EXISTS (SELECT 1 FROM ports WHERE port = ?1) THEN ?1
    ELSE (SELECT p.port + 1 FROM ports p
          WHERE p.port >= ?1 AND p.port < ?2
            AND NOT EXISTS (SELECT 1 FROM ports q WHERE q.port = p.port + 1)
          ORDER BY p.port LIMIT 1)
END";

/// The port of `?1..=?2` unused the longest (ties: the lowest port).
const OLDEST_PORT_SQL: &str = "SELECT port, login, last_used FROM ports
    WHERE port BETWEEN ?1 AND ?2 ORDER BY last_used, port LIMIT 1";

/// The sticky case of a grant: `?1`'s port when it lies in `?3..=?4`, its `last_used` raised to
/// `?2` (never lowered: a milter whose clock lags must not make the port look older).
const HELD_PORT_SQL: &str = "UPDATE ports SET last_used = MAX(last_used, ?2)
    WHERE login = ?1 AND port BETWEEN ?3 AND ?4
    RETURNING port, granted_at, last_used";

/// How many prepared statements the connection keeps: every statement of a mail's transaction,
/// and of chatd's busiest paths, is prepared once and reused, instead of being parsed and
/// planned on each call (rusqlite's default keeps 16).
const STATEMENT_CACHE: usize = 128;

/// First table upsert; a record older than the stored one is ignored, so the latest wins.
const UPSERT_LOGIN_SQL: &str = "INSERT INTO logins (login, ip, hostname, last_seen)
    VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (login) DO UPDATE SET
        ip = excluded.ip, hostname = excluded.hostname, last_seen = excluded.last_seen
    WHERE excluded.last_seen >= logins.last_seen";

/// The SQLite implementation of [`Store`].
pub(crate) struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating it and its parent directory) the file at `path`.
    pub(crate) async fn open_file(path: PathBuf) -> Result<Self> {
        let conn = blocking(move || {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Connect(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            let conn = Connection::open(&path).map_err(|e| {
                StoreError::Connect(format!("cannot open SQLite file {}: {e}", path.display()))
            })?;
            check_writable(&conn, &path)?;
            configure(&conn, &format!("SQLite file {}", path.display()))?;
            Ok(conn)
        })
        .await?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Opens a private in-memory database.
    pub(crate) async fn open_memory() -> Result<Self> {
        let conn = blocking(|| {
            let conn = Connection::open_in_memory()
                .map_err(|e| StoreError::Connect(format!("cannot open SQLite in memory: {e}")))?;
            configure(&conn, "SQLite in memory")?;
            Ok(conn)
        })
        .await?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection in a blocking thread.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        blocking(move || {
            // A panic in another call cannot leave a transaction open (rusqlite rolls back on
            // drop), so a poisoned lock still guards a usable connection.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
    }
}

/// Runs `f` on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("SQLite task failed: {e}")))?
}

/// The pragmas every connection needs: wait for other writers, WAL so readers never block the
/// writer, foreign keys (off by default in SQLite), and NORMAL sync (safe with WAL).
fn configure(conn: &Connection, what: &str) -> Result<()> {
    let connect = |e: rusqlite::Error| {
        StoreError::Connect(format!("{what}: cannot set it up: {e}{}", access_hint(&e)))
    };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(connect)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(connect)?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        return Err(StoreError::Connect(format!(
            "{what}: SQLite refused WAL mode (journal_mode is {mode})"
        )));
    }
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
        .map_err(connect)
}

/// What the service needs of the file system to write the store.
const ACCESS_NEEDED: &str = "the service's user needs write access to the file and to its \
    directory, where SQLite keeps the -wal and -shm files next to it";

/// Refuses a file that SQLite could open only for reading (it falls back to that silently when
/// the file is not writable): every write would fail later, far from the cause.
fn check_writable(conn: &Connection, path: &Path) -> Result<()> {
    let read_only = conn
        .is_readonly(rusqlite::MAIN_DB)
        .map_err(|e| StoreError::Connect(format!("SQLite file {}: {e}", path.display())))?;
    if read_only {
        return Err(StoreError::Connect(format!(
            "SQLite file {}: it can only be read, not written ({ACCESS_NEEDED})",
            path.display()
        )));
    }
    Ok(())
}

/// The hint for an error that comes from the file system's permissions, else nothing.
fn access_hint(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(
            rusqlite::ErrorCode::ReadOnly
            | rusqlite::ErrorCode::CannotOpen
            | rusqlite::ErrorCode::PermissionDenied,
        ) => format!(" ({ACCESS_NEEDED})"),
        _ => String::new(),
    }
}

/// A failed query.
pub(super) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A port as read from the database.
fn to_port(port: i64) -> Result<u16> {
    u16::try_from(port)
        .map_err(|_| StoreError::Backend(format!("port {port} in the database is not a port")))
}

/// Reads one `ports` row: (port, login, granted_at, last_used).
fn read_grant(
    conn: &Connection,
    sql: &str,
    key: &dyn rusqlite::ToSql,
) -> Result<Option<PortGrant>> {
    let row = conn
        .query_row(sql, [key], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()
        .map_err(backend)?;
    row.map(|(port, login, granted_at, last_used)| {
        Ok(PortGrant {
            port: to_port(port)?,
            login,
            granted_at,
            last_used,
            fresh: false,
            reclaimed_from: None,
        })
    })
    .transpose()
}

/// The grant, inside a `BEGIN IMMEDIATE` transaction (see [`Store::grant_port`]). Every
/// statement is prepared once per connection.
fn grant_in(
    tx: &Connection,
    login: &str,
    ports: PortRange,
    reclaim_after: Duration,
    now: i64,
) -> Result<PortGrant> {
    let (first, last) = (i64::from(ports.first), i64::from(ports.last));
    let held = tx
        .prepare_cached(HELD_PORT_SQL)
        .map_err(backend)?
        .query_row((login, now, first, last), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .optional()
        .map_err(backend)?;
    if let Some((port, granted_at, last_used)) = held {
        return Ok(PortGrant {
            port: to_port(port)?,
            login: login.to_owned(),
            granted_at,
            last_used,
            fresh: false,
            reclaimed_from: None,
        });
    }
    let left: Option<i64> = tx
        .prepare_cached("DELETE FROM ports WHERE login = ?1 RETURNING port")
        .map_err(backend)?
        .query_row([login], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    if let Some(port) = left {
        tracing::debug!(login, port, range = %ports, "port outside the range, granting a new one");
    }

    let free: Option<i64> = tx
        .prepare_cached(FREE_PORT_SQL)
        .map_err(backend)?
        .query_row((first, last), |r| r.get(0))
        .map_err(backend)?;
    if let Some(port) = free {
        tx.prepare_cached(
            "INSERT INTO ports (port, login, granted_at, last_used) VALUES (?1, ?2, ?3, ?3)",
        )
        .map_err(backend)?
        .execute((port, login, now))
        .map_err(backend)?;
        return Ok(PortGrant {
            port: to_port(port)?,
            login: login.to_owned(),
            granted_at: now,
            last_used: now,
            fresh: true,
            reclaimed_from: None,
        });
    }

    let oldest = tx
        .prepare_cached(OLDEST_PORT_SQL)
        .map_err(backend)?
        .query_row((first, last), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .optional()
        .map_err(backend)?;
    match oldest {
        Some((port, owner, last_used)) if last_used <= reclaim_cutoff(now, reclaim_after) => {
            tx.prepare_cached(
                "UPDATE ports SET login = ?2, granted_at = ?3, last_used = ?3 WHERE port = ?1",
            )
            .map_err(backend)?
            .execute((port, login, now))
            .map_err(backend)?;
            tracing::info!(login, port, from = %owner, last_used, "chat port reclaimed");
            Ok(PortGrant {
                port: to_port(port)?,
                login: login.to_owned(),
                granted_at: now,
                last_used: now,
                fresh: true,
                reclaimed_from: Some(owner),
            })
        }
        _ => Err(StoreError::PortsExhausted { range: ports }),
    }
}

/// Inserts a normalized room and its participants (see [`Store::create_room`]).
fn create_room_in(tx: &Connection, room: &Room) -> Result<()> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO rooms (id, port, login, message_id, subject, created, opening)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
        )
        .map_err(backend)?
        .execute((
            &room.id,
            room.port,
            &room.login,
            &room.message_id,
            &room.subject,
            room.created,
            &room.opening,
        ))
        .map_err(backend)?;
    let mut next: i64 = 0;
    if inserted == 0 {
        let owner: String = tx
            .query_row("SELECT login FROM rooms WHERE id = ?1", [&room.id], |r| {
                r.get(0)
            })
            .map_err(backend)?;
        if owner != room.login {
            return Err(StoreError::Invalid(format!(
                "room id {:?} belongs to another login",
                room.id
            )));
        }
        next = tx
            .query_row(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM room_participants WHERE room_id = ?1",
                [&room.id],
                |r| r.get(0),
            )
            .map_err(backend)?;
    }
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO room_participants (room_id, address, role, position, name)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )
        .map_err(backend)?;
    for p in &room.participants {
        insert
            .execute((&room.id, &p.address, p.role.as_str(), next, &p.name))
            .map_err(backend)?;
        next += 1;
    }
    Ok(())
}

/// Applies the SQLite migrations (see [`Store::migrate`]).
fn migrate_all(conn: &mut Connection) -> Result<()> {
    for m in migrate::SQLITE_MIGRATIONS {
        let label = format!("{:04}_{}", m.version, m.name);
        let fail = |e: rusqlite::Error| StoreError::Migrate(format!("{label}: {e}"));
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute_batch(migrate::CREATE_SCHEMA_MIGRATIONS)
            .map_err(fail)?;
        let done: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
                [m.version],
                |r| r.get(0),
            )
            .map_err(fail)?;
        if !done {
            tx.execute_batch(m.sql).map_err(fail)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                (m.version, m.name, unix_now()),
            )
            .map_err(fail)?;
            tracing::info!(migration = %label, "SQLite migration applied");
        }
        tx.commit().map_err(fail)?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<()> {
        self.run(migrate_all).await
    }

    async fn ping(&self) -> Result<()> {
        self.run(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|e| StoreError::Connect(e.to_string()))
        })
        .await
    }

    async fn record_login(
        &self,
        login: &str,
        ip: Option<&str>,
        hostname: Option<&str>,
        now: i64,
    ) -> Result<()> {
        check_login_record(login, ip, hostname)?;
        let (login, ip, hostname) = (
            login.to_owned(),
            ip.map(str::to_owned),
            hostname.map(str::to_owned),
        );
        self.run(move |c| {
            c.execute(UPSERT_LOGIN_SQL, (login, ip, hostname, now))
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn login(&self, login: &str) -> Result<Option<LoginRecord>> {
        let login = login.to_owned();
        self.run(move |c| {
            c.query_row(
                "SELECT login, ip, hostname, last_seen FROM logins WHERE login = ?1",
                [login],
                |r| {
                    Ok(LoginRecord {
                        login: r.get(0)?,
                        ip: r.get(1)?,
                        hostname: r.get(2)?,
                        last_seen: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn grant_port(
        &self,
        login: &str,
        ports: PortRange,
        reclaim_after: Duration,
        now: i64,
    ) -> Result<PortGrant> {
        check_login(login)?;
        check_range(ports)?;
        let login = login.to_owned();
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let grant = grant_in(&tx, &login, ports, reclaim_after, now)?;
            tx.commit().map_err(backend)?;
            Ok(grant)
        })
        .await
    }

    async fn port_owner(&self, port: u16) -> Result<Option<PortGrant>> {
        self.run(move |c| {
            read_grant(
                c,
                "SELECT port, login, granted_at, last_used FROM ports WHERE port = ?1",
                &port,
            )
        })
        .await
    }

    async fn port_of(&self, login: &str) -> Result<Option<PortGrant>> {
        let login = login.to_owned();
        self.run(move |c| {
            read_grant(
                c,
                "SELECT port, login, granted_at, last_used FROM ports WHERE login = ?1",
                &login,
            )
        })
        .await
    }

    async fn create_room(&self, room: &Room) -> Result<()> {
        let room = normalize_room(room)?;
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            create_room_in(&tx, &room)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn room(&self, id: &str) -> Result<Option<Room>> {
        let id = id.to_owned();
        self.run(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let room = tx
                .query_row(
                    "SELECT id, port, login, message_id, subject, created, opening
                     FROM rooms WHERE id = ?1",
                    [&id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, Option<String>>(6)?,
                        ))
                    },
                )
                .optional()
                .map_err(backend)?;
            let Some((id, port, login, message_id, subject, created, opening)) = room else {
                return Ok(None);
            };
            let mut stmt = tx
                .prepare_cached(
                    "SELECT address, role, position, name FROM room_participants
                     WHERE room_id = ?1",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([&id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .map_err(backend)?;
            let mut parts = Vec::new();
            for row in rows {
                let (address, role, position, name) = row.map_err(backend)?;
                let role: Role = role
                    .parse()
                    .map_err(|e: StoreError| StoreError::Backend(e.to_string()))?;
                parts.push((
                    position,
                    Participant {
                        address,
                        role,
                        name,
                    },
                ));
            }
            sort_participants(&mut parts);
            Ok(Some(Room {
                id,
                port: to_port(port)?,
                login,
                message_id,
                subject,
                created,
                participants: parts.into_iter().map(|(_, p)| p).collect(),
                opening,
            }))
        })
        .await
    }

    async fn record_submission(&self, sub: &Submission) -> Result<PortGrant> {
        check_login_record(&sub.login, sub.ip.as_deref(), sub.hostname.as_deref())?;
        check_range(sub.ports)?;
        // Validated before the transaction; the port is filled in once granted.
        let mut room = normalize_room(&sub.room(sub.ports.first))?;
        let sub = sub.clone();
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            tx.prepare_cached(UPSERT_LOGIN_SQL)
                .map_err(backend)?
                .execute((&sub.login, &sub.ip, &sub.hostname, sub.now))
                .map_err(backend)?;
            let grant = grant_in(&tx, &sub.login, sub.ports, sub.reclaim_after, sub.now)?;
            room.port = grant.port;
            create_room_in(&tx, &room)?;
            tx.commit().map_err(backend)?;
            Ok(grant)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::OpenFlags;

    use super::*;

    #[test]
    fn a_file_sqlite_can_only_read_is_refused_with_its_path_and_the_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chmail.db");
        Connection::open(&path)
            .and_then(|c| c.execute_batch("CREATE TABLE t (x)"))
            .expect("a store file");
        // What SQLite falls back to for a file the user may not write.
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("opened for reading");
        let e = check_writable(&conn, &path)
            .expect_err("refused")
            .to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(
            e.contains("can only be read") && e.contains("write access"),
            "{e}"
        );
        let e = configure(&conn, &format!("SQLite file {}", path.display()))
            .expect_err("WAL cannot be set on a read-only file")
            .to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        let writable = Connection::open(&path).expect("opened");
        assert!(check_writable(&writable, &path).is_ok());
    }
}
