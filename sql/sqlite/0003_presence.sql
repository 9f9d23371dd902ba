-- CHmail store, migration 0003 (SQLite): presence, so that several chatd processes (and the
-- admin commands) can tell whether a login is online. Times are unix MILLISECONDS.

-- One row per (login, node): how many connections the login has on that chatd process, and until
-- when the row counts. A login is online while some node's row for it has until_ms > now. Each
-- node refreshes its rows on a heartbeat, so a row expires by itself when its node dies; a row
-- with 0 connections and until_ms in the future is the grace period after the last connection
-- closed. `login` is stored trimmed and lowercased. Expired rows are pruned.
CREATE TABLE presence (
    login       TEXT    NOT NULL,
    node        TEXT    NOT NULL,
    connections INTEGER NOT NULL CHECK (connections >= 0),
    until_ms    INTEGER NOT NULL,
    PRIMARY KEY (login, node)
);
-- Pruning.
CREATE INDEX presence_until ON presence (until_ms);
