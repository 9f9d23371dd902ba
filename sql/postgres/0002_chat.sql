-- CHmail store, migration 0002 (PostgreSQL): the chat side (chatd). Times here are unix
-- MILLISECONDS (messages and rings need the order within a second); `rooms.created` stays in
-- seconds. Several chatd nodes share these tables: every write is one statement or one short
-- transaction.

-- A participant's chat state: when someone first joined as this address, the last message id it
-- has read, and whether the address was proven (a mailed code).
ALTER TABLE room_participants
    ADD COLUMN joined_at BIGINT,
    ADD COLUMN last_read BIGINT,
    ADD COLUMN verified  BOOLEAN NOT NULL DEFAULT false;

-- The history of every room: stored before it is acknowledged. `id` orders messages (writers of
-- one room serialize on the room's row, so ids also follow commit order within a room). A retry
-- with the same (room, author, client_id) finds the first copy through the UNIQUE constraint;
-- rows without a client_id never conflict (NULLs are distinct).
CREATE TABLE messages (
    id         BIGSERIAL PRIMARY KEY,
    room_id    TEXT   NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    author     TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    created_ms BIGINT NOT NULL,
    via        TEXT   NOT NULL CHECK (via IN ('web', 'mail', 'system')),
    client_id  TEXT,
    UNIQUE (room_id, author, client_id)
);
-- Paging through a room's history, and counting unread messages.
CREATE INDEX messages_room_id ON messages (room_id, id);

-- Rings (S107-S115): a recipient pressed Chat and the sender's sessions ring until one answers,
-- the sender declines, or it times out. Finished rings stay as a record.
CREATE TABLE rings (
    id         BIGSERIAL PRIMARY KEY,
    room_id    TEXT   NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    caller     TEXT   NOT NULL,
    state      TEXT   NOT NULL
        CHECK (state IN ('ringing', 'accepted', 'declined', 'timed_out', 'offline', 'cancelled')),
    attempts   BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    started_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
-- At most one ring rings per room: two nodes starting one at once converge on the same row.
CREATE UNIQUE INDEX rings_one_ringing ON rings (room_id) WHERE state = 'ringing';

-- The reminder schedule per room (S117): when the next reminder mail is due and who called; what
-- the last one covered. A node sending a reminder holds a lease (owner, until) so that no other
-- node sends it too; an expired lease (a node that died) makes the reminder claimable again.
CREATE TABLE reminders (
    room_id         TEXT   PRIMARY KEY REFERENCES rooms (id) ON DELETE CASCADE,
    due_ms          BIGINT,
    caller          TEXT,
    last_sent_ms    BIGINT,
    last_message_id BIGINT,
    sent_count      BIGINT NOT NULL DEFAULT 0 CHECK (sent_count >= 0),
    lease_owner     TEXT,
    lease_until_ms  BIGINT
);
-- Finding due reminders; rooms with nothing pending are not indexed.
CREATE INDEX reminders_due ON reminders (due_ms) WHERE due_ms IS NOT NULL;

-- Single-use sign-in links mailed to a sender (only the token's hash is stored). A used token
-- keeps its row (`used_ms` set) so that the per-login rate limit still counts it; rows are
-- pruned a day after they expire. `room_id` is only where to go after signing in (no foreign
-- key: a link to a vanished room still signs in).
CREATE TABLE signin_tokens (
    token_hash TEXT   PRIMARY KEY,
    login      TEXT   NOT NULL,
    room_id    TEXT,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    used_ms    BIGINT
);
-- The rate limit counts a login's recent tokens.
CREATE INDEX signin_tokens_login ON signin_tokens (login, created_ms);
-- Pruning.
CREATE INDEX signin_tokens_expires ON signin_tokens (expires_ms);

-- Signed-in sessions (only the hash of the cookie is stored); expired ones are pruned.
CREATE TABLE sessions (
    session_hash TEXT   PRIMARY KEY,
    login        TEXT   NOT NULL,
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_ms);
