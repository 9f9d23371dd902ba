-- CHmail store, migration 0001 (SQLite): the two tables of the CHmail method, rooms and their
-- participants. Times are unix seconds. The bookkeeping table `schema_migrations` (version, name,
-- applied_at) is created by the migrator itself before this file runs.

-- The FIRST table of the method (first database, 60): login ID -> the most recent IP address and
-- hostname it was seen from. One row per login; every authenticated mail overwrites it.
CREATE TABLE logins (
    login     TEXT    PRIMARY KEY NOT NULL,
    ip        TEXT,
    hostname  TEXT,
    last_seen INTEGER NOT NULL
);

-- The SECOND table of the method (second database, 70): chat port number -> the login ID it was
-- granted to. A login holds at most one port (UNIQUE) and a port one login (PRIMARY KEY); grants
-- run in BEGIN IMMEDIATE transactions so that two processes on one file serialize.
CREATE TABLE ports (
    port       INTEGER PRIMARY KEY NOT NULL CHECK (port BETWEEN 1 AND 65535),
    login      TEXT    NOT NULL UNIQUE,
    granted_at INTEGER NOT NULL,
    last_used  INTEGER NOT NULL
);
-- Reclaiming looks for the port unused the longest.
CREATE INDEX ports_last_used ON ports (last_used, port);

-- A chat room: one per chat-capable mail, on the sender's port at the time of sending. The port is
-- kept as it was (no foreign key): a port reclaimed later does not rewrite old rooms.
CREATE TABLE rooms (
    id         TEXT    PRIMARY KEY NOT NULL,
    port       INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    login      TEXT    NOT NULL,
    message_id TEXT,
    subject    TEXT,
    created    INTEGER NOT NULL
);
CREATE INDEX rooms_login ON rooms (login);

-- Who may join a room: the mail's From, To and Cc addresses (lowercased). `position` keeps the
-- order in which they were written.
CREATE TABLE room_participants (
    room_id  TEXT    NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    address  TEXT    NOT NULL,
    role     TEXT    NOT NULL CHECK (role IN ('from', 'to', 'cc')),
    position INTEGER NOT NULL,
    PRIMARY KEY (room_id, address, role)
) WITHOUT ROWID;
