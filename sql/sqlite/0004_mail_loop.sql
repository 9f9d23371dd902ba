-- CHmail store, migration 0004 (SQLite): the mail loop (chatd). Outgoing mail is queued here
-- before it is sent, replies by mail are matched to a room and a participant by a token, an
-- address can be proven with a mailed code, and participants who are not there get notified.
-- Times are unix MILLISECONDS. Tokens and codes are chatd's: the store never makes randomness.

-- The outbox: every mail chatd sends (reminders, notifications, codes, sign-in links, ...). A
-- mail is queued, claimed by one chatd process with a lease (owner, until), and then either sent,
-- queued again for a retry after a temporary failure (`attempts` + 1, `next_attempt_ms`), or
-- failed for good (kept to be shown). `message_id` (without <>) is the mail's Message-ID in every
-- attempt: queuing is idempotent on it, and a mail sent again after a crash between sending and
-- recording is the same mail to the recipient. `headers` holds the extra header fields as
-- `Name: value` lines joined by LF (checked to hold no line breaks of their own). `room_id` has
-- no foreign key: the outbox is a log, and a mail about a vanished room still shows how it went.
CREATE TABLE outgoing_mail (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id      TEXT   NOT NULL UNIQUE,
    kind            TEXT   NOT NULL,
    recipient       TEXT   NOT NULL,
    subject         TEXT   NOT NULL,
    text_body       TEXT   NOT NULL,
    html_body       TEXT,
    headers         TEXT   NOT NULL DEFAULT '',
    room_id         TEXT,
    created_ms      INTEGER NOT NULL,
    state           TEXT   NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,
    sent_ms         INTEGER,
    failed_ms       INTEGER,
    lease_owner     TEXT,
    lease_until_ms  INTEGER
);
-- Claiming due mail: only queued rows are indexed, so sent history costs the claim nothing.
CREATE INDEX outgoing_mail_queued ON outgoing_mail (next_attempt_ms, id) WHERE state = 'queued';
-- Showing permanent failures in a room and per recipient; pruning old failures.
CREATE INDEX outgoing_mail_failed_room ON outgoing_mail (room_id, failed_ms)
    WHERE state = 'failed';
CREATE INDEX outgoing_mail_failed_recipient ON outgoing_mail (recipient, failed_ms)
    WHERE state = 'failed';
CREATE INDEX outgoing_mail_failed ON outgoing_mail (failed_ms) WHERE state = 'failed';
-- Pruning old sent mail.
CREATE INDEX outgoing_mail_sent ON outgoing_mail (sent_ms) WHERE state = 'sent';

-- Reply-by-mail tokens: the local part of the reply address of the mails to one participant
-- about one room (lowercase base32, at least 128 random bits). A reply is accepted only with an
-- unexpired token and only from the token's address. One token per (room, address): a new one
-- replaces it only once it expired; expired rows are deleted as new tokens are asked for.
CREATE TABLE reply_tokens (
    token      TEXT   PRIMARY KEY NOT NULL,
    room_id    TEXT   NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    address    TEXT   NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    UNIQUE (room_id, address)
);
-- Pruning.
CREATE INDEX reply_tokens_expires ON reply_tokens (expires_ms);

-- The code mailed to prove an address in a room (only chatd's keyed hash of it): one per
-- (room, address), replaced by the next one asked for; `attempts` counts wrong guesses, so that
-- a code locks after chatd's limit. A right guess sets room_participants.verified and deletes it.
CREATE TABLE address_codes (
    room_id    TEXT   NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    address    TEXT   NOT NULL,
    code_hash  TEXT   NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    PRIMARY KEY (room_id, address)
);

-- One row per code sent, for the rate limit on sends; pruned a day after (longer than any window).
CREATE TABLE code_sends (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id TEXT   NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    address TEXT   NOT NULL,
    sent_ms INTEGER NOT NULL
);
-- Counting one address's recent sends.
CREATE INDEX code_sends_address ON code_sends (room_id, address, sent_ms);
-- Pruning.
CREATE INDEX code_sends_sent ON code_sends (sent_ms);

-- The notification schedule of one participant of one room: whether they muted it, when the
-- pending notification is due, a request that came while the pending one was being sent
-- (`next_due_ms`, due once that send finishes), what the last notification covered, and chatd's
-- backoff. A process sending a notification holds a lease (owner, until), as with reminders.
-- `unsubscribe_token` (lowercase base32, never expires) is the one-click List-Unsubscribe link.
CREATE TABLE notify_state (
    room_id           TEXT    NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    address           TEXT    NOT NULL,
    muted             INTEGER NOT NULL DEFAULT 0 CHECK (muted IN (0, 1)),
    due_ms            INTEGER,
    next_due_ms       INTEGER,
    last_sent_ms      INTEGER,
    backoff_ms        INTEGER NOT NULL DEFAULT 0,
    last_message_id   INTEGER,
    sent_count        INTEGER NOT NULL DEFAULT 0 CHECK (sent_count >= 0),
    lease_owner       TEXT,
    lease_until_ms    INTEGER,
    unsubscribe_token TEXT    UNIQUE,
    PRIMARY KEY (room_id, address)
);
-- Finding due notifications; rows with nothing pending, or muted, are not indexed.
CREATE INDEX notify_state_due ON notify_state (due_ms) WHERE due_ms IS NOT NULL AND muted = 0;

-- Rate limits count one author's recent messages in a room (replies by mail, chat).
CREATE INDEX messages_author ON messages (room_id, author, created_ms);
