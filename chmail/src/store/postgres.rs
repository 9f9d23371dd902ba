//! The PostgreSQL store: a deadpool pool of tokio-postgres connections.
//!
//! A login that holds a port (ports are sticky, so nearly every mail) is served by one statement
//! that takes no lock but the rows it writes: the mail of one login never waits for another's.
//! Only granting a port (a new one or a reclaimed one) serializes, on a transaction-scoped
//! advisory lock, so milters on different hosts never hand one port to two logins; `PRIMARY KEY
//! (port)` and `UNIQUE (login)` are the safety net. Every wait is bounded: connecting, waiting for
//! a pooled connection, locks, statements, and each whole call.

use std::{error::Error as StdError, future::Future, sync::Arc, time::Duration};

use deadpool_postgres::{
    Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, Transaction,
};
use tokio_postgres::{types::ToSql, NoTls};

use super::{
    bus::{Bus, PostgresBus},
    check_login, check_login_record, check_range, migrate, normalize_room, reclaim_cutoff,
    sort_participants, unix_now, LoginRecord, Participant, PortGrant, Result, Role, Room, Store,
    StoreError, Submission,
};
use crate::config::PortRange;

/// Advisory lock key of port grants ("CHmail" + 1); any constant works as long as every milter
/// uses the same one. Only grants take it: confirming a held port does not.
const GRANT_LOCK_KEY: i64 = 0x4348_6d61_696c_0001;
/// Advisory lock key of migrations ("CHmail" + 2).
const MIGRATE_LOCK_KEY: i64 = 0x4348_6d61_696c_0002;
/// Longest wait for a TCP connection and for the pool to create, hand out or recycle one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Server-side limit on waiting for a lock (the grant lock included), in milliseconds.
const LOCK_TIMEOUT_MS: u64 = 5_000;
/// Server-side limit on one statement, in milliseconds.
const STATEMENT_TIMEOUT_MS: u64 = 10_000;
/// Client-side limit on one whole call: covers a server that stops answering mid-call.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The lowest free port of `$1..=$2` (see the SQLite twin for the reasoning).
const FREE_PORT_SQL: &str = "SELECT CASE
    WHEN NOT EXISTS (SELECT 1 FROM ports WHERE port = $1::int4) THEN $1::int4
    ELSE (SELECT p.port + 1 FROM ports p
          WHERE p.port >= $1::int4 AND p.port < $2::int4
            AND NOT EXISTS (SELECT 1 FROM ports q WHERE q.port = p.port + 1)
          ORDER BY p.port LIMIT 1)
END";

/// The port of `$1..=$2` unused the longest (ties: the lowest port).
const OLDEST_PORT_SQL: &str = "SELECT port, login, last_used FROM ports
    WHERE port BETWEEN $1 AND $2 ORDER BY last_used, port LIMIT 1";

/// The conflict clause of the first table's upsert: a record older than the stored one is
/// ignored, so the latest wins. A macro, so that both statements below are one literal each.
macro_rules! login_upsert_conflict {
    () => {
        " ON CONFLICT (login) DO UPDATE SET
            ip = excluded.ip, hostname = excluded.hostname, last_seen = excluded.last_seen
        WHERE excluded.last_seen >= logins.last_seen"
    };
}

/// First table upsert.
const UPSERT_LOGIN_SQL: &str = concat!(
    "INSERT INTO logins (login, ip, hostname, last_seen) VALUES ($1, $2, $3, $4)",
    login_upsert_conflict!()
);

/// The sticky case of a grant: `$1`'s port when it lies in `$3..=$4`, its `last_used` raised to
/// `$2` (never lowered: a milter whose clock lags must not make the port look older). It locks
/// only that row, and a reclaim that raced it re-checks `last_used` (see [`reclaim`]).
macro_rules! held_port_update {
    () => {
        "UPDATE ports SET last_used = GREATEST(last_used, $2::int8)
         WHERE login = $1::text AND port BETWEEN $3::int4 AND $4::int4
         RETURNING port, granted_at, last_used"
    };
}

/// [`Store::grant_port`]'s sticky case on its own.
const HELD_PORT_SQL: &str = held_port_update!();

/// One whole mail of a login that holds a port in the range, in one statement (one round trip,
/// its own transaction): the sticky grant, then, only when it found the port, the first table's
/// upsert, the room on that port and its participants. Every sub-statement reads the grant
/// (`held`), so the port's row is locked before the login's, in the order the granting
/// transaction takes them. A room id that exists already fails the whole statement
/// (`rooms_pkey`), and the caller falls back to [`record_submission_granting`]. `$1` login, `$2`
/// now, `$3..=$4` the range, `$5` ip, `$6` hostname, `$7` room id, `$8` Message-ID, `$9`
/// subject, `$10`/`$11`/`$12` the participants' addresses, roles and names, `$13` the opening.
const HELD_SUBMISSION_SQL: &str = concat!(
    "WITH held AS (",
    held_port_update!(),
    "), seen AS (
        INSERT INTO logins (login, ip, hostname, last_seen)
        SELECT $1::text, $5::text, $6::text, $2::int8 FROM held",
    login_upsert_conflict!(),
    "), room AS (
        INSERT INTO rooms (id, port, login, message_id, subject, created, opening)
        SELECT $7::text, port, $1::text, $8::text, $9::text, $2::int8, $13::text FROM held
        RETURNING id
    ), participants AS (
        INSERT INTO room_participants (room_id, address, role, position, name)
        SELECT room.id, t.a, t.r, (t.n - 1)::int4, t.nm
        FROM room, UNNEST($10::text[], $11::text[], $12::text[])
            WITH ORDINALITY AS t(a, r, nm, n)
    )
    SELECT port, granted_at, last_used FROM held"
);

/// The PostgreSQL implementation of [`Store`].
pub(crate) struct PostgresStore {
    pool: Pool,
    /// The connection settings, for the fan-out bus's own listening connection.
    config: tokio_postgres::Config,
}

impl PostgresStore {
    /// Builds the pool for `url` (`postgres://` or `postgresql://`); connects lazily.
    pub(crate) fn open(url: &str, pool_size: usize) -> Result<Self> {
        // The URL may hold a password: name the problem, never echo the URL.
        let mut cfg: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            StoreError::Url(format!(
                "cannot parse the PostgreSQL URL ({}); expected postgres://USER[:PASSWORD]@HOST[:PORT]/DB",
                describe(&e)
            ))
        })?;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(CONNECT_TIMEOUT);
        }
        if cfg.get_application_name().is_none() {
            cfg.application_name("chmail");
        }
        // Ours first, so that options given in the URL override them.
        let options = format!(
            "-c lock_timeout={LOCK_TIMEOUT_MS} -c statement_timeout={STATEMENT_TIMEOUT_MS} {}",
            cfg.get_options().unwrap_or_default()
        );
        cfg.options(options.trim_end());
        let manager = Manager::from_config(
            cfg.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Connect(format!("cannot build the PostgreSQL pool: {e}")))?;
        Ok(Self { pool, config: cfg })
    }

    /// A pooled connection.
    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object> {
        pooled(&self.pool).await
    }
}

/// A connection from `pool`, with the store's errors.
pub(super) async fn pooled(pool: &Pool) -> Result<deadpool_postgres::Object> {
    pool.get().await.map_err(|e| match e {
        PoolError::Backend(e) => StoreError::Connect(describe(&e)),
        PoolError::Timeout(what) => StoreError::Connect(format!(
            "no PostgreSQL connection within {} s ({what:?})",
            CONNECT_TIMEOUT.as_secs()
        )),
        other => StoreError::Connect(other.to_string()),
    })
}

/// An error with its causes, which tokio-postgres keeps out of its `Display`.
pub(super) fn describe(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A failed query.
pub(super) fn backend(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(describe(&e))
}

/// Runs one whole call within [`CALL_TIMEOUT`].
pub(super) async fn bounded<T>(call: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| {
            StoreError::Backend(format!(
                "PostgreSQL did not answer within {} s",
                CALL_TIMEOUT.as_secs()
            ))
        })?
}

/// A port as read from the database.
fn to_port(port: i32) -> Result<u16> {
    u16::try_from(port)
        .map_err(|_| StoreError::Backend(format!("port {port} in the database is not a port")))
}

/// Runs a cached statement and returns at most one row.
async fn query_opt(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<tokio_postgres::Row>> {
    let stmt = tx.prepare_cached(sql).await.map_err(backend)?;
    tx.query_opt(&stmt, params).await.map_err(backend)
}

/// Runs a cached statement and returns the number of rows it touched.
async fn execute(tx: &Transaction<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
    let stmt = tx.prepare_cached(sql).await.map_err(backend)?;
    tx.execute(&stmt, params).await.map_err(backend)
}

/// Reads one `ports` row: (port, login, granted_at, last_used).
fn grant_from_row(row: &tokio_postgres::Row) -> Result<PortGrant> {
    Ok(PortGrant {
        port: to_port(row.try_get(0).map_err(backend)?)?,
        login: row.try_get(1).map_err(backend)?,
        granted_at: row.try_get(2).map_err(backend)?,
        last_used: row.try_get(3).map_err(backend)?,
        fresh: false,
        reclaimed_from: None,
    })
}

/// Takes the grant lock until the end of the transaction: first thing in every transaction that
/// grants, so that no row lock is ever held while waiting for it.
async fn lock_grants(tx: &Transaction<'_>) -> Result<()> {
    execute(tx, "SELECT pg_advisory_xact_lock($1)", &[&GRANT_LOCK_KEY]).await?;
    Ok(())
}

/// The grant of a login that holds its port, from a row of [`HELD_PORT_SQL`] or
/// [`HELD_SUBMISSION_SQL`]: (port, granted_at, last_used).
fn held_grant(row: &tokio_postgres::Row, login: &str) -> Result<PortGrant> {
    Ok(PortGrant {
        port: to_port(row.try_get(0).map_err(backend)?)?,
        login: login.to_owned(),
        granted_at: row.try_get(1).map_err(backend)?,
        last_used: row.try_get(2).map_err(backend)?,
        fresh: false,
        reclaimed_from: None,
    })
}

/// The grant, inside a transaction that holds the grant lock (see [`Store::grant_port`]). Only
/// such transactions change who holds a port; meanwhile a mail of a port's holder may still
/// raise its `last_used` ([`HELD_SUBMISSION_SQL`] takes no lock), which [`reclaim`] allows for.
async fn grant_in(
    tx: &Transaction<'_>,
    login: &str,
    ports: PortRange,
    reclaim_after: Duration,
    now: i64,
) -> Result<PortGrant> {
    let (first, last) = (i32::from(ports.first), i32::from(ports.last));
    // Again under the lock: another grant for this login may have been first.
    if let Some(row) = query_opt(tx, HELD_PORT_SQL, &[&login, &now, &first, &last]).await? {
        return held_grant(&row, login);
    }
    if let Some(row) = query_opt(
        tx,
        "DELETE FROM ports WHERE login = $1 RETURNING port",
        &[&login],
    )
    .await?
    {
        let port: i32 = row.try_get(0).map_err(backend)?;
        tracing::debug!(login, port, range = %ports, "port outside the range, granting a new one");
    }

    let free: Option<i32> = query_opt(tx, FREE_PORT_SQL, &[&first, &last])
        .await?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(backend)?
        .flatten();
    if let Some(port) = free {
        execute(
            tx,
            "INSERT INTO ports (port, login, granted_at, last_used) VALUES ($1, $2, $3, $3)",
            &[&port, &login, &now],
        )
        .await?;
        return Ok(PortGrant {
            port: to_port(port)?,
            login: login.to_owned(),
            granted_at: now,
            last_used: now,
            fresh: true,
            reclaimed_from: None,
        });
    }
    reclaim(tx, login, ports, reclaim_after, now).await
}

/// Reclaims the port of a full range unused the longest, when it is old enough; inside a
/// transaction that holds the grant lock. Its holder's mail may raise its `last_used` between
/// the look-up and the update: the update waits for that mail's row lock and re-checks the row,
/// and on a miss the next port unused the longest is looked up (each miss leaves a port just
/// used, so this ends).
async fn reclaim(
    tx: &Transaction<'_>,
    login: &str,
    ports: PortRange,
    reclaim_after: Duration,
    now: i64,
) -> Result<PortGrant> {
    let (first, last) = (i32::from(ports.first), i32::from(ports.last));
    let cutoff = reclaim_cutoff(now, reclaim_after);
    loop {
        let Some(row) = query_opt(tx, OLDEST_PORT_SQL, &[&first, &last]).await? else {
            return Err(StoreError::PortsExhausted { range: ports });
        };
        let port: i32 = row.try_get(0).map_err(backend)?;
        let owner: String = row.try_get(1).map_err(backend)?;
        let last_used: i64 = row.try_get(2).map_err(backend)?;
        if last_used > cutoff {
            return Err(StoreError::PortsExhausted { range: ports });
        }
        let taken = execute(
            tx,
            "UPDATE ports SET login = $2, granted_at = $3, last_used = $3
             WHERE port = $1 AND login = $4 AND last_used <= $5",
            &[&port, &login, &now, &owner, &cutoff],
        )
        .await?;
        if taken == 0 {
            tracing::debug!(login, port, owner = %owner, "port used while being reclaimed, looking again");
            continue;
        }
        tracing::info!(login, port, from = %owner, last_used, "chat port reclaimed");
        return Ok(PortGrant {
            port: to_port(port)?,
            login: login.to_owned(),
            granted_at: now,
            last_used: now,
            fresh: true,
            reclaimed_from: Some(owner),
        });
    }
}

/// One mail of a login that holds a port, in one statement ([`HELD_SUBMISSION_SQL`]): the
/// grant, or `None` when nothing was written: the login holds no port in the range, or the
/// room id exists already (a retried mail, or another login's room).
async fn submit_held(
    client: &deadpool_postgres::Object,
    sub: &Submission,
    room: &Room,
) -> Result<Option<PortGrant>> {
    let (first, last) = (i32::from(sub.ports.first), i32::from(sub.ports.last));
    let Columns {
        addresses,
        roles,
        names,
    } = columns(room);
    let stmt = client
        .prepare_cached(HELD_SUBMISSION_SQL)
        .await
        .map_err(backend)?;
    let params: [&(dyn ToSql + Sync); 13] = [
        &sub.login,
        &sub.now,
        &first,
        &last,
        &sub.ip,
        &sub.hostname,
        &room.id,
        &room.message_id,
        &room.subject,
        &addresses,
        &roles,
        &names,
        &room.opening,
    ];
    match client.query_opt(&stmt, &params).await {
        Ok(row) => row.map(|row| held_grant(&row, &sub.login)).transpose(),
        Err(e) if is_room_id_taken(&e) => Ok(None),
        Err(e) => Err(backend(e)),
    }
}

/// Whether `e` is the unique violation of an existing room id.
fn is_room_id_taken(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            && db.constraint() == Some("rooms_pkey")
    })
}

/// One mail that needs a grant (or whose room id exists already), in one transaction that holds
/// the grant lock: the grant first, then the first table and the room, so that its row locks are
/// taken in the order of [`HELD_SUBMISSION_SQL`].
async fn submit_granting(
    client: &mut deadpool_postgres::Object,
    sub: &Submission,
    mut room: Room,
) -> Result<PortGrant> {
    let tx = client.transaction().await.map_err(backend)?;
    lock_grants(&tx).await?;
    let grant = grant_in(&tx, &sub.login, sub.ports, sub.reclaim_after, sub.now).await?;
    execute(
        &tx,
        UPSERT_LOGIN_SQL,
        &[&sub.login, &sub.ip, &sub.hostname, &sub.now],
    )
    .await?;
    room.port = grant.port;
    create_room_in(&tx, &room).await?;
    tx.commit().await.map_err(backend)?;
    Ok(grant)
}

/// Inserts a normalized room and its participants in one statement each (see
/// [`Store::create_room`]).
async fn create_room_in(tx: &Transaction<'_>, room: &Room) -> Result<()> {
    let port = i32::from(room.port);
    let inserted = execute(
        tx,
        "INSERT INTO rooms (id, port, login, message_id, subject, created, opening)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        &[
            &room.id,
            &port,
            &room.login,
            &room.message_id,
            &room.subject,
            &room.created,
            &room.opening,
        ],
    )
    .await?;
    let mut next: i32 = 0;
    if inserted == 0 {
        let row = query_opt(
            tx,
            "SELECT r.login, (SELECT COALESCE(MAX(position) + 1, 0) FROM room_participants
                              WHERE room_id = r.id)
             FROM rooms r WHERE r.id = $1",
            &[&room.id],
        )
        .await?
        .ok_or_else(|| StoreError::Backend(format!("room {:?} vanished", room.id)))?;
        let owner: String = row.try_get(0).map_err(backend)?;
        if owner != room.login {
            return Err(StoreError::Invalid(format!(
                "room id {:?} belongs to another login",
                room.id
            )));
        }
        next = row.try_get(1).map_err(backend)?;
    }
    if room.participants.is_empty() {
        return Ok(());
    }
    let Columns {
        addresses,
        roles,
        names,
    } = columns(room);
    execute(
        tx,
        "INSERT INTO room_participants (room_id, address, role, position, name)
         SELECT $1, a, r, $4::int4 + (n - 1)::int4, nm
         FROM UNNEST($2::text[], $3::text[], $5::text[]) WITH ORDINALITY AS t(a, r, nm, n)
         ON CONFLICT DO NOTHING",
        &[&room.id, &addresses, &roles, &next, &names],
    )
    .await?;
    Ok(())
}

/// A room's participants as the parallel arrays that `UNNEST` reads.
struct Columns<'a> {
    addresses: Vec<&'a str>,
    roles: Vec<&'a str>,
    names: Vec<Option<&'a str>>,
}

fn columns(room: &Room) -> Columns<'_> {
    let p = &room.participants;
    Columns {
        addresses: p.iter().map(|p| p.address.as_str()).collect(),
        roles: p.iter().map(|p| p.role.as_str()).collect(),
        names: p.iter().map(|p| p.name.as_deref()).collect(),
    }
}

/// Applies the PostgreSQL migrations (see [`Store::migrate`]).
async fn migrate_all(client: &mut deadpool_postgres::Object) -> Result<()> {
    let bookkeeping = |e: tokio_postgres::Error| {
        StoreError::Migrate(format!("schema_migrations: {}", describe(&e)))
    };
    let tx = client.transaction().await.map_err(bookkeeping)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK_KEY])
        .await
        .map_err(bookkeeping)?;
    tx.batch_execute(migrate::CREATE_SCHEMA_MIGRATIONS)
        .await
        .map_err(bookkeeping)?;
    tx.commit().await.map_err(bookkeeping)?;

    for m in migrate::POSTGRES_MIGRATIONS {
        let label = format!("{:04}_{}", m.version, m.name);
        let fail =
            |e: tokio_postgres::Error| StoreError::Migrate(format!("{label}: {}", describe(&e)));
        let tx = client.transaction().await.map_err(fail)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK_KEY])
            .await
            .map_err(fail)?;
        let done: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)",
                &[&m.version],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(fail)?;
        if !done {
            tx.batch_execute(m.sql).await.map_err(fail)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &unix_now()],
            )
            .await
            .map_err(fail)?;
            tracing::info!(migration = %label, "PostgreSQL migration applied");
        }
        tx.commit().await.map_err(fail)?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn bus(&self) -> Option<Arc<dyn Bus>> {
        Some(Arc::new(PostgresBus {
            pool: self.pool.clone(),
            config: self.config.clone(),
        }))
    }

    async fn migrate(&self) -> Result<()> {
        bounded(async {
            let mut client = self.client().await?;
            migrate_all(&mut client).await
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        bounded(async {
            let client = self.client().await?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| StoreError::Connect(describe(&e)))?;
            Ok(())
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
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(UPSERT_LOGIN_SQL)
                .await
                .map_err(backend)?;
            client
                .execute(&stmt, &[&login, &ip, &hostname, &now])
                .await
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn login(&self, login: &str) -> Result<Option<LoginRecord>> {
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT login, ip, hostname, last_seen FROM logins WHERE login = $1",
                )
                .await
                .map_err(backend)?;
            let Some(row) = client.query_opt(&stmt, &[&login]).await.map_err(backend)? else {
                return Ok(None);
            };
            Ok(Some(LoginRecord {
                login: row.try_get(0).map_err(backend)?,
                ip: row.try_get(1).map_err(backend)?,
                hostname: row.try_get(2).map_err(backend)?,
                last_seen: row.try_get(3).map_err(backend)?,
            }))
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
        bounded(async {
            let mut client = self.client().await?;
            let stmt = client
                .prepare_cached(HELD_PORT_SQL)
                .await
                .map_err(backend)?;
            let (first, last) = (i32::from(ports.first), i32::from(ports.last));
            let held = client
                .query_opt(&stmt, &[&login, &now, &first, &last])
                .await
                .map_err(backend)?;
            if let Some(row) = held {
                return held_grant(&row, login);
            }
            let tx = client.transaction().await.map_err(backend)?;
            lock_grants(&tx).await?;
            let grant = grant_in(&tx, login, ports, reclaim_after, now).await?;
            tx.commit().await.map_err(backend)?;
            Ok(grant)
        })
        .await
    }

    async fn port_owner(&self, port: u16) -> Result<Option<PortGrant>> {
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT port, login, granted_at, last_used FROM ports WHERE port = $1",
                )
                .await
                .map_err(backend)?;
            let port = i32::from(port);
            client
                .query_opt(&stmt, &[&port])
                .await
                .map_err(backend)?
                .map(|row| grant_from_row(&row))
                .transpose()
        })
        .await
    }

    async fn port_of(&self, login: &str) -> Result<Option<PortGrant>> {
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT port, login, granted_at, last_used FROM ports WHERE login = $1",
                )
                .await
                .map_err(backend)?;
            client
                .query_opt(&stmt, &[&login])
                .await
                .map_err(backend)?
                .map(|row| grant_from_row(&row))
                .transpose()
        })
        .await
    }

    async fn create_room(&self, room: &Room) -> Result<()> {
        let room = normalize_room(room)?;
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            create_room_in(&tx, &room).await?;
            tx.commit().await.map_err(backend)
        })
        .await
    }

    async fn room(&self, id: &str) -> Result<Option<Room>> {
        bounded(async {
            let mut client = self.client().await?;
            // REPEATABLE READ: the room and its participants from one snapshot.
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(backend)?;
            let Some(row) = query_opt(
                &tx,
                "SELECT id, port, login, message_id, subject, created, opening
                 FROM rooms WHERE id = $1",
                &[&id],
            )
            .await?
            else {
                return Ok(None);
            };
            let stmt = tx
                .prepare_cached(
                    "SELECT address, role, position, name FROM room_participants
                     WHERE room_id = $1",
                )
                .await
                .map_err(backend)?;
            let rows = tx.query(&stmt, &[&id]).await.map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            let mut parts = Vec::with_capacity(rows.len());
            for r in rows {
                let address: String = r.try_get(0).map_err(backend)?;
                let role: String = r.try_get(1).map_err(backend)?;
                let position: i32 = r.try_get(2).map_err(backend)?;
                let name: Option<String> = r.try_get(3).map_err(backend)?;
                let role: Role = role
                    .parse()
                    .map_err(|e: StoreError| StoreError::Backend(e.to_string()))?;
                parts.push((
                    i64::from(position),
                    Participant {
                        address,
                        role,
                        name,
                    },
                ));
            }
            sort_participants(&mut parts);
            Ok(Some(Room {
                id: row.try_get(0).map_err(backend)?,
                port: to_port(row.try_get(1).map_err(backend)?)?,
                login: row.try_get(2).map_err(backend)?,
                message_id: row.try_get(3).map_err(backend)?,
                subject: row.try_get(4).map_err(backend)?,
                created: row.try_get(5).map_err(backend)?,
                participants: parts.into_iter().map(|(_, p)| p).collect(),
                opening: row.try_get(6).map_err(backend)?,
            }))
        })
        .await
    }

    async fn record_submission(&self, sub: &Submission) -> Result<PortGrant> {
        check_login_record(&sub.login, sub.ip.as_deref(), sub.hostname.as_deref())?;
        check_range(sub.ports)?;
        // Validated before writing; the port is filled in once granted.
        let room = normalize_room(&sub.room(sub.ports.first))?;
        bounded(async {
            let mut client = self.client().await?;
            if let Some(grant) = submit_held(&client, sub, &room).await? {
                return Ok(grant);
            }
            submit_granting(&mut client, sub, room).await
        })
        .await
    }
}
