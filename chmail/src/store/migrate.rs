//! The embedded migrations: the files under `sql/postgres/` and `sql/sqlite/`, in order.
//!
//! Each backend applies the ones not yet recorded in `schema_migrations`, one transaction per
//! migration, and re-checks the record inside that transaction (under an advisory lock on
//! PostgreSQL, under `BEGIN IMMEDIATE` on SQLite) so that processes starting at once never apply
//! one twice.

/// One migration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Its number, the `NNNN` of `NNNN_name.sql`; applied in increasing order.
    pub version: i64,
    /// Its name, the `name` of `NNNN_name.sql`.
    pub name: &'static str,
    /// The SQL it runs.
    pub sql: &'static str,
}

/// The PostgreSQL migrations, in order.
pub const POSTGRES_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sql: include_str!("../../../sql/postgres/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "chat",
        sql: include_str!("../../../sql/postgres/0002_chat.sql"),
    },
    Migration {
        version: 3,
        name: "presence",
        sql: include_str!("../../../sql/postgres/0003_presence.sql"),
    },
    Migration {
        version: 4,
        name: "mail_loop",
        sql: include_str!("../../../sql/postgres/0004_mail_loop.sql"),
    },
    Migration {
        version: 5,
        name: "mall",
        sql: include_str!("../../../sql/postgres/0005_mall.sql"),
    },
    Migration {
        version: 6,
        name: "chat_page",
        sql: include_str!("../../../sql/postgres/0006_chat_page.sql"),
    },
];

/// The SQLite migrations, in order.
pub const SQLITE_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sql: include_str!("../../../sql/sqlite/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "chat",
        sql: include_str!("../../../sql/sqlite/0002_chat.sql"),
    },
    Migration {
        version: 3,
        name: "presence",
        sql: include_str!("../../../sql/sqlite/0003_presence.sql"),
    },
    Migration {
        version: 4,
        name: "mail_loop",
        sql: include_str!("../../../sql/sqlite/0004_mail_loop.sql"),
    },
    Migration {
        version: 5,
        name: "mall",
        sql: include_str!("../../../sql/sqlite/0005_mall.sql"),
    },
    Migration {
        version: 6,
        name: "chat_page",
        sql: include_str!("../../../sql/sqlite/0006_chat_page.sql"),
    },
];

/// The bookkeeping table, created before any migration runs (same shape on both backends).
pub(crate) const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT PRIMARY KEY NOT NULL,
    name       TEXT   NOT NULL,
    applied_at BIGINT NOT NULL
)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_in_strictly_increasing_order_on_both_backends() {
        for list in [POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS] {
            assert!(list.windows(2).all(|w| w[0].version < w[1].version));
            assert!(list.iter().all(|m| !m.sql.trim().is_empty()));
        }
        let names = |l: &[Migration]| l.iter().map(|m| (m.version, m.name)).collect::<Vec<_>>();
        assert_eq!(names(POSTGRES_MIGRATIONS), names(SQLITE_MIGRATIONS));
    }
}
