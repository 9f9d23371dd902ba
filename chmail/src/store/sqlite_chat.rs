//! The chat side of the embedded store: [`ChatStore`] for [`SqliteStore`].
//!
//! Every write runs in a `BEGIN IMMEDIATE` transaction, so that two processes on one file never
//! interleave a check and the write that depends on it (the room exists, the ring is still
//! ringing, the reminder is still unleased, the token is still unused).

use std::{collections::HashSet, str::FromStr};

use rusqlite::{types::Type, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::{
    chat::{
        check_hash, check_node, check_owner, check_picture, check_presence, check_room_id,
        check_session, check_signin_token, normalize_address, normalize_login, normalize_message,
        page, presence_batch, select_online, sort_members, MARK_OWN_READ_SQL,
        ROOMS_OF_RECIPIENT_SQL, SIGNIN_TOKEN_KEEP_MS,
    },
    sqlite::{backend, SqliteStore},
    Added, ChatPicture, ChatStore, Member, Message, NewMessage, Reminder, ReminderJob, Result,
    Ring, RingState, RoomSummary, Session, SigninToken, StoreError,
};

/// The columns [`member_row`] reads.
const MEMBER_COLS: &str = "room_id, address, role, position, joined_at, last_read, verified";
/// The columns [`message_row`] reads.
const MESSAGE_COLS: &str = "id, room_id, author, body, created_ms, via, client_id, picture_id";
/// The columns [`ring_row`] reads.
const RING_COLS: &str = "id, room_id, caller, state, attempts, started_ms, updated_ms";
/// The columns [`reminder_row`] reads.
const REMINDER_COLS: &str =
    "room_id, due_ms, caller, last_sent_ms, last_message_id, sent_count, lease_owner, lease_until_ms";

/// A login's rooms with the sender's unread count (see [`ChatStore::rooms_of_login`]): the sender
/// is the room's From address(es) and the login itself; what they read is the From row's
/// `last_read`.
const ROOMS_OF_LOGIN_SQL: &str = "SELECT r.id, r.port, r.subject, r.created,
    (SELECT COUNT(*) FROM messages m
     WHERE m.room_id = r.id
       AND m.id > COALESCE((SELECT MAX(p.last_read) FROM room_participants p
                            WHERE p.room_id = r.id AND p.role = 'from'), 0)
       AND m.author <> lower(r.login)
       AND m.author NOT IN (SELECT p.address FROM room_participants p
                            WHERE p.room_id = r.id AND p.role = 'from')),
    (SELECT MAX(m.created_ms) FROM messages m WHERE m.room_id = r.id)
    FROM rooms r WHERE r.login = ?1
    ORDER BY r.created DESC, r.id DESC LIMIT ?2";

/// Whether a login (as stored) is online at a time: some node's row for it has not expired.
const ONLINE_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM presence WHERE login = ?1 AND until_ms > ?2)";

/// Reads a stored name (role, via, ring state) into its enum.
pub(super) fn parsed<T: FromStr<Err = StoreError>>(r: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    s.parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

/// A member and its position, from [`MEMBER_COLS`].
fn member_row(r: &Row<'_>) -> rusqlite::Result<(Member, i64)> {
    Ok((
        Member {
            room_id: r.get(0)?,
            address: r.get(1)?,
            role: parsed(r, 2)?,
            joined_at: r.get(4)?,
            last_read: r.get(5)?,
            verified: r.get(6)?,
        },
        r.get(3)?,
    ))
}

/// A message, from [`MESSAGE_COLS`].
fn message_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: r.get(0)?,
        room_id: r.get(1)?,
        author: r.get(2)?,
        body: r.get(3)?,
        created_ms: r.get(4)?,
        via: parsed(r, 5)?,
        client_id: r.get(6)?,
        picture_id: r.get(7)?,
    })
}

/// A room summary, from the columns of [`ROOMS_OF_LOGIN_SQL`].
fn summary_row(r: &Row<'_>) -> rusqlite::Result<RoomSummary> {
    Ok(RoomSummary {
        room_id: r.get(0)?,
        port: r.get(1)?,
        subject: r.get(2)?,
        created: r.get(3)?,
        unread: r.get(4)?,
        last_message_ms: r.get(5)?,
    })
}

/// A ring, from [`RING_COLS`].
fn ring_row(r: &Row<'_>) -> rusqlite::Result<Ring> {
    Ok(Ring {
        id: r.get(0)?,
        room_id: r.get(1)?,
        caller: r.get(2)?,
        state: parsed(r, 3)?,
        attempts: r.get(4)?,
        started_ms: r.get(5)?,
        updated_ms: r.get(6)?,
    })
}

/// A reminder and its lease (owner, until), from [`REMINDER_COLS`].
fn reminder_row(r: &Row<'_>) -> rusqlite::Result<(Reminder, Option<String>, Option<i64>)> {
    Ok((
        Reminder {
            room_id: r.get(0)?,
            due_ms: r.get(1)?,
            caller: r.get(2)?,
            last_sent_ms: r.get(3)?,
            last_message_id: r.get(4)?,
            sent_count: r.get(5)?,
        },
        r.get(6)?,
        r.get(7)?,
    ))
}

/// Runs a query and collects its rows.
pub(super) fn query_all<T, P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
    row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = c.prepare_cached(sql).map_err(backend)?;
    let rows = stmt.query_map(params, row).map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<T>>>().map_err(backend)
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction and commits it.
pub(super) fn write<T>(
    c: &mut Connection,
    f: impl FnOnce(&Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    let value = f(&tx)?;
    tx.commit().map_err(backend)?;
    Ok(value)
}

/// Fails with [`StoreError::Invalid`] unless room `room_id` exists.
fn require_room(tx: &Connection, room_id: &str) -> Result<()> {
    let exists: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM rooms WHERE id = ?1)",
            [room_id],
            |r| r.get(0),
        )
        .map_err(backend)?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("unknown room {room_id:?}")))
    }
}

/// [`StoreError::Invalid`] unless picture `id` belongs to `room_id`.
fn require_picture(tx: &Connection, room_id: &str, id: i64) -> Result<()> {
    let exists: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM chat_pictures WHERE id = ?1 AND room_id = ?2)",
            (id, room_id),
            |r| r.get(0),
        )
        .map_err(backend)?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("no picture {id} in this room")))
    }
}

#[async_trait::async_trait]
impl ChatStore for SqliteStore {
    async fn join_room(&self, room_id: &str, address: &str, now_ms: i64) -> Result<Option<Member>> {
        // An id or address the store could not hold is no participant.
        let Ok(address) = normalize_address("address", address) else {
            return Ok(None);
        };
        if check_room_id(room_id).is_err() {
            return Ok(None);
        }
        let room_id = room_id.to_owned();
        self.run(move |c| {
            let rows = write(c, |tx| {
                query_all(
                    tx,
                    &format!(
                        "UPDATE room_participants SET joined_at = COALESCE(joined_at, ?3)
                         WHERE room_id = ?1 AND address = ?2 RETURNING {MEMBER_COLS}"
                    ),
                    (&room_id, &address, now_ms),
                    member_row,
                )
            })?;
            Ok(sort_members(rows).into_iter().next())
        })
        .await
    }

    async fn members(&self, room_id: &str) -> Result<Vec<Member>> {
        let room_id = room_id.to_owned();
        self.run(move |c| {
            let rows = query_all(
                c,
                &format!("SELECT {MEMBER_COLS} FROM room_participants WHERE room_id = ?1"),
                [&room_id],
                member_row,
            )?;
            Ok(sort_members(rows))
        })
        .await
    }

    async fn mark_read(&self, room_id: &str, address: &str, message_id: i64) -> Result<()> {
        let Ok(address) = normalize_address("address", address) else {
            return Ok(());
        };
        let room_id = room_id.to_owned();
        self.run(move |c| {
            write(c, |tx| {
                tx.execute(
                    "UPDATE room_participants
                     SET last_read = CASE WHEN last_read IS NULL OR last_read < ?3 THEN ?3
                                          ELSE last_read END
                     WHERE room_id = ?1 AND address = ?2",
                    (&room_id, &address, message_id),
                )
                .map_err(backend)
            })?;
            Ok(())
        })
        .await
    }

    async fn add_message(&self, message: &NewMessage) -> Result<Added> {
        let m = normalize_message(message)?;
        self.run(move |c| {
            write(c, |tx| {
                require_room(tx, &m.room_id)?;
                if let Some(picture) = m.picture_id {
                    require_picture(tx, &m.room_id, picture)?;
                }
                let inserted = tx
                    .query_row(
                        &format!(
                            "INSERT INTO messages
                                 (room_id, author, body, created_ms, via, client_id, picture_id)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                             ON CONFLICT (room_id, author, client_id) DO NOTHING
                             RETURNING {MESSAGE_COLS}"
                        ),
                        (
                            &m.room_id,
                            &m.author,
                            &m.body,
                            m.created_ms,
                            m.via.as_str(),
                            &m.client_id,
                            m.picture_id,
                        ),
                        message_row,
                    )
                    .optional()
                    .map_err(backend)?;
                if let Some(message) = inserted {
                    if !message.author.is_empty() {
                        tx.prepare_cached(MARK_OWN_READ_SQL)
                            .map_err(backend)?
                            .execute((message.id, &message.room_id, &message.author))
                            .map_err(backend)?;
                    }
                    return Ok(Added {
                        message,
                        inserted: true,
                    });
                }
                // A retry: the first copy, unchanged.
                let message = tx
                    .query_row(
                        &format!(
                            "SELECT {MESSAGE_COLS} FROM messages
                             WHERE room_id = ?1 AND author = ?2 AND client_id = ?3"
                        ),
                        (&m.room_id, &m.author, &m.client_id),
                        message_row,
                    )
                    .map_err(backend)?;
                Ok(Added {
                    message,
                    inserted: false,
                })
            })
        })
        .await
    }

    async fn add_chat_picture(
        &self,
        room_id: &str,
        content_type: &str,
        bytes: &[u8],
        now_ms: i64,
    ) -> Result<i64> {
        check_picture(room_id, content_type, bytes)?;
        let (room_id, content_type, bytes) =
            (room_id.to_owned(), content_type.to_owned(), bytes.to_vec());
        self.run(move |c| {
            write(c, |tx| {
                require_room(tx, &room_id)?;
                tx.query_row(
                    "INSERT INTO chat_pictures (room_id, content_type, bytes, created_ms)
                     VALUES (?1, ?2, ?3, ?4) RETURNING id",
                    (&room_id, &content_type, &bytes, now_ms),
                    |r| r.get(0),
                )
                .map_err(backend)
            })
        })
        .await
    }

    async fn chat_picture(&self, room_id: &str, id: i64) -> Result<Option<ChatPicture>> {
        let room_id = room_id.to_owned();
        self.run(move |c| {
            c.query_row(
                "SELECT content_type, bytes FROM chat_pictures WHERE id = ?1 AND room_id = ?2",
                (id, &room_id),
                |r| {
                    Ok(ChatPicture {
                        content_type: r.get(0)?,
                        bytes: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn messages(
        &self,
        room_id: &str,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let room_id = room_id.to_owned();
        let before = before_id.unwrap_or(i64::MAX);
        self.run(move |c| {
            let mut page_rows = query_all(
                c,
                &format!(
                    "SELECT {MESSAGE_COLS} FROM messages WHERE room_id = ?1 AND id < ?2
                     ORDER BY id DESC LIMIT ?3"
                ),
                (&room_id, before, page(limit)),
                message_row,
            )?;
            page_rows.reverse();
            Ok(page_rows)
        })
        .await
    }

    async fn messages_after(
        &self,
        room_id: &str,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let room_id = room_id.to_owned();
        self.run(move |c| {
            query_all(
                c,
                &format!(
                    "SELECT {MESSAGE_COLS} FROM messages WHERE room_id = ?1 AND id > ?2
                     ORDER BY id LIMIT ?3"
                ),
                (&room_id, after_id, page(limit)),
                message_row,
            )
        })
        .await
    }

    async fn rooms_of_login(&self, login: &str, limit: u32) -> Result<Vec<RoomSummary>> {
        let login = login.to_owned();
        self.run(move |c| query_all(c, ROOMS_OF_LOGIN_SQL, (&login, page(limit)), summary_row))
            .await
    }

    async fn rooms_of_recipient(&self, address: &str, limit: u32) -> Result<Vec<RoomSummary>> {
        let Ok(address) = normalize_address("address", address) else {
            return Ok(Vec::new());
        };
        self.run(move |c| {
            query_all(
                c,
                ROOMS_OF_RECIPIENT_SQL,
                (&address, page(limit)),
                summary_row,
            )
        })
        .await
    }

    async fn start_ring(&self, room_id: &str, caller: &str, now_ms: i64) -> Result<Ring> {
        check_room_id(room_id)?;
        let caller = normalize_address("caller", caller)?;
        let room_id = room_id.to_owned();
        self.run(move |c| {
            write(c, |tx| {
                require_room(tx, &room_id)?;
                let ringing = tx
                    .query_row(
                        &format!(
                            "SELECT {RING_COLS} FROM rings WHERE room_id = ?1 AND state = 'ringing'"
                        ),
                        [&room_id],
                        ring_row,
                    )
                    .optional()
                    .map_err(backend)?;
                if let Some(ring) = ringing {
                    return Ok(ring);
                }
                tx.query_row(
                    &format!(
                        "INSERT INTO rings (room_id, caller, state, attempts, started_ms, updated_ms)
                         VALUES (?1, ?2, 'ringing', 0, ?3, ?3) RETURNING {RING_COLS}"
                    ),
                    (&room_id, &caller, now_ms),
                    ring_row,
                )
                .map_err(backend)
            })
        })
        .await
    }

    async fn update_ring(
        &self,
        ring_id: i64,
        state: RingState,
        attempts: u32,
        now_ms: i64,
    ) -> Result<Option<Ring>> {
        self.run(move |c| {
            write(c, |tx| {
                tx.query_row(
                    &format!(
                        "UPDATE rings SET state = ?2, attempts = ?3, updated_ms = ?4
                         WHERE id = ?1 AND state = 'ringing' RETURNING {RING_COLS}"
                    ),
                    (ring_id, state.as_str(), attempts, now_ms),
                    ring_row,
                )
                .optional()
                .map_err(backend)
            })
        })
        .await
    }

    async fn active_ring(&self, room_id: &str) -> Result<Option<Ring>> {
        let room_id = room_id.to_owned();
        self.run(move |c| {
            c.query_row(
                &format!("SELECT {RING_COLS} FROM rings WHERE room_id = ?1 AND state = 'ringing'"),
                [&room_id],
                ring_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn orphaned_rings(&self, started_before_ms: i64, limit: u32) -> Result<Vec<Ring>> {
        self.run(move |c| {
            query_all(
                c,
                &format!(
                    "SELECT {RING_COLS} FROM rings WHERE state = 'ringing' AND started_ms <= ?1
                     ORDER BY started_ms, id LIMIT ?2"
                ),
                (started_before_ms, page(limit)),
                ring_row,
            )
        })
        .await
    }

    async fn schedule_reminder(&self, room_id: &str, caller: &str, due_ms: i64) -> Result<()> {
        check_room_id(room_id)?;
        let caller = normalize_address("caller", caller)?;
        let room_id = room_id.to_owned();
        self.run(move |c| {
            write(c, |tx| {
                require_room(tx, &room_id)?;
                tx.execute(
                    "INSERT INTO reminders (room_id, due_ms, caller) VALUES (?1, ?2, ?3)
                     ON CONFLICT (room_id) DO UPDATE SET
                         caller = CASE WHEN reminders.due_ms IS NULL THEN excluded.caller
                                       ELSE reminders.caller END,
                         due_ms = CASE WHEN reminders.due_ms IS NULL
                                         OR excluded.due_ms < reminders.due_ms
                                       THEN excluded.due_ms ELSE reminders.due_ms END",
                    (&room_id, due_ms, &caller),
                )
                .map_err(backend)
            })?;
            Ok(())
        })
        .await
    }

    async fn reminder(&self, room_id: &str) -> Result<Option<Reminder>> {
        let room_id = room_id.to_owned();
        self.run(move |c| {
            let row = c
                .query_row(
                    &format!("SELECT {REMINDER_COLS} FROM reminders WHERE room_id = ?1"),
                    [&room_id],
                    reminder_row,
                )
                .optional()
                .map_err(backend)?;
            Ok(row.map(|(reminder, _, _)| reminder))
        })
        .await
    }

    async fn claim_reminders(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<ReminderJob>> {
        check_owner(owner)?;
        let owner = owner.to_owned();
        let until = now_ms.saturating_add(lease_ms);
        self.run(move |c| {
            let rows = write(c, |tx| {
                query_all(
                    tx,
                    &format!(
                        "UPDATE reminders SET lease_owner = ?1, lease_until_ms = ?2
                         WHERE room_id IN (
                             SELECT room_id FROM reminders
                             WHERE due_ms <= ?3 AND (lease_until_ms IS NULL OR lease_until_ms < ?3)
                             ORDER BY due_ms, room_id LIMIT ?4)
                         RETURNING {REMINDER_COLS}"
                    ),
                    (&owner, until, now_ms, page(limit)),
                    reminder_row,
                )
            })?;
            let mut jobs: Vec<ReminderJob> = rows
                .into_iter()
                .map(|(reminder, owner, until)| ReminderJob {
                    reminder,
                    owner: owner.unwrap_or_default(),
                    lease_until_ms: until.unwrap_or_default(),
                })
                .collect();
            // RETURNING follows no ORDER BY: the most overdue first.
            jobs.sort_by(|a, b| {
                (a.reminder.due_ms, &a.reminder.room_id)
                    .cmp(&(b.reminder.due_ms, &b.reminder.room_id))
            });
            Ok(jobs)
        })
        .await
    }

    async fn finish_reminder(
        &self,
        room_id: &str,
        owner: &str,
        sent_ms: i64,
        last_message_id: Option<i64>,
    ) -> Result<bool> {
        let (room_id, owner) = (room_id.to_owned(), owner.to_owned());
        self.run(move |c| {
            let changed = write(c, |tx| {
                tx.execute(
                    "UPDATE reminders SET last_sent_ms = ?3,
                         last_message_id = COALESCE(?4, last_message_id),
                         sent_count = sent_count + 1,
                         due_ms = NULL, lease_owner = NULL, lease_until_ms = NULL
                     WHERE room_id = ?1 AND lease_owner = ?2",
                    (&room_id, &owner, sent_ms, last_message_id),
                )
                .map_err(backend)
            })?;
            Ok(changed == 1)
        })
        .await
    }

    async fn create_signin_token(&self, token_hash: &str, token: &SigninToken) -> Result<()> {
        check_signin_token(token_hash, token)?;
        let (hash, t) = (token_hash.to_owned(), token.clone());
        self.run(move |c| {
            write(c, |tx| {
                // Opportunistic pruning: rows past any rate-limit window.
                tx.execute(
                    "DELETE FROM signin_tokens WHERE expires_ms < ?1",
                    [t.created_ms.saturating_sub(SIGNIN_TOKEN_KEEP_MS)],
                )
                .map_err(backend)?;
                tx.execute(
                    "INSERT INTO signin_tokens (token_hash, login, room_id, created_ms, expires_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    (&hash, &t.login, &t.room_id, t.created_ms, t.expires_ms),
                )
                .map_err(backend)
            })?;
            Ok(())
        })
        .await
    }

    async fn count_signin_tokens(&self, login: &str, since_ms: i64) -> Result<u32> {
        let login = login.to_owned();
        self.run(move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM signin_tokens WHERE login = ?1 AND created_ms >= ?2",
                (&login, since_ms),
                |r| r.get(0),
            )
            .map_err(backend)
        })
        .await
    }

    async fn consume_signin_token(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<SigninToken>> {
        if check_hash("token hash", token_hash).is_err() {
            return Ok(None);
        }
        let hash = token_hash.to_owned();
        self.run(move |c| {
            write(c, |tx| {
                tx.query_row(
                    "UPDATE signin_tokens SET used_ms = ?2
                     WHERE token_hash = ?1 AND used_ms IS NULL AND expires_ms > ?2
                     RETURNING login, room_id, created_ms, expires_ms",
                    (&hash, now_ms),
                    |r| {
                        Ok(SigninToken {
                            login: r.get(0)?,
                            room_id: r.get(1)?,
                            created_ms: r.get(2)?,
                            expires_ms: r.get(3)?,
                        })
                    },
                )
                .optional()
                .map_err(backend)
            })
        })
        .await
    }

    async fn create_session(&self, session_hash: &str, session: &Session) -> Result<()> {
        check_session(session_hash, session)?;
        let (hash, s) = (session_hash.to_owned(), session.clone());
        self.run(move |c| {
            write(c, |tx| {
                tx.execute(
                    "DELETE FROM sessions WHERE expires_ms <= ?1",
                    [s.created_ms],
                )
                .map_err(backend)?;
                tx.execute(
                    "INSERT INTO sessions (session_hash, login, created_ms, expires_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                    (&hash, &s.login, s.created_ms, s.expires_ms),
                )
                .map_err(backend)
            })?;
            Ok(())
        })
        .await
    }

    async fn session(&self, session_hash: &str, now_ms: i64) -> Result<Option<Session>> {
        let hash = session_hash.to_owned();
        self.run(move |c| {
            c.query_row(
                "SELECT login, created_ms, expires_ms FROM sessions
                 WHERE session_hash = ?1 AND expires_ms > ?2",
                (&hash, now_ms),
                |r| {
                    Ok(Session {
                        login: r.get(0)?,
                        created_ms: r.get(1)?,
                        expires_ms: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn delete_session(&self, session_hash: &str) -> Result<()> {
        let hash = session_hash.to_owned();
        self.run(move |c| {
            write(c, |tx| {
                tx.execute("DELETE FROM sessions WHERE session_hash = ?1", [&hash])
                    .map_err(backend)
            })?;
            Ok(())
        })
        .await
    }

    async fn set_presence(
        &self,
        login: &str,
        node: &str,
        connections: u32,
        until_ms: i64,
    ) -> Result<()> {
        let (login, connections) = check_presence(login, node, connections)?;
        let node = node.to_owned();
        self.run(move |c| {
            write(c, |tx| {
                tx.execute(
                    "INSERT INTO presence (login, node, connections, until_ms)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (login, node) DO UPDATE SET
                         connections = excluded.connections, until_ms = excluded.until_ms",
                    (&login, &node, connections, until_ms),
                )
                .map_err(backend)
            })?;
            Ok(())
        })
        .await
    }

    async fn clear_presence(&self, login: &str, node: &str) -> Result<()> {
        // A login or node the store could not hold has no row.
        let Ok(login) = normalize_login(login) else {
            return Ok(());
        };
        if check_node(node).is_err() {
            return Ok(());
        }
        let node = node.to_owned();
        self.run(move |c| {
            write(c, |tx| {
                tx.execute(
                    "DELETE FROM presence WHERE login = ?1 AND node = ?2",
                    (&login, &node),
                )
                .map_err(backend)
            })?;
            Ok(())
        })
        .await
    }

    async fn online(&self, login: &str, now_ms: i64) -> Result<bool> {
        let Ok(login) = normalize_login(login) else {
            return Ok(false);
        };
        self.run(move |c| {
            c.query_row(ONLINE_SQL, (&login, now_ms), |r| r.get(0))
                .map_err(backend)
        })
        .await
    }

    async fn online_logins(&self, logins: &[String], now_ms: i64) -> Result<Vec<String>> {
        let batch = presence_batch(logins)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let online = self
            .run(move |c| {
                // One read transaction: one snapshot, one lock for the whole batch; each login is
                // a lookup on the primary key.
                let tx = c.transaction().map_err(backend)?;
                let mut online = HashSet::new();
                {
                    let mut stmt = tx.prepare_cached(ONLINE_SQL).map_err(backend)?;
                    for login in batch {
                        let is_online: bool = stmt
                            .query_row((&login, now_ms), |r| r.get(0))
                            .map_err(backend)?;
                        if is_online {
                            online.insert(login);
                        }
                    }
                }
                tx.commit().map_err(backend)?;
                Ok(online)
            })
            .await?;
        Ok(select_online(logins, &online))
    }

    async fn prune_presence(&self, now_ms: i64) -> Result<u64> {
        self.run(move |c| {
            let deleted = write(c, |tx| {
                tx.execute("DELETE FROM presence WHERE until_ms <= ?1", [now_ms])
                    .map_err(backend)
            })?;
            Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
        })
        .await
    }
}
