//! The chat side of the PostgreSQL store: [`ChatStore`] for [`PostgresStore`].
//!
//! Several chatd nodes share these rows, so each race is settled by the database: a message retry
//! by the UNIQUE (room, author, client id); two rings by the partial unique index on ringing
//! rings; a ring's answer by a compare-and-set from `ringing`; reminders by `FOR UPDATE SKIP
//! LOCKED` and a lease; a sign-in token by an `UPDATE .. WHERE used_ms IS NULL`.

use std::collections::HashSet;

use deadpool_postgres::GenericClient;
use tokio_postgres::{error::SqlState, types::ToSql, Row};

use super::{
    chat::{
        check_hash, check_node, check_owner, check_picture, check_presence, check_room_id,
        check_session, check_signin_token, normalize_address, normalize_login, normalize_message,
        page, parse_stored, presence_batch, select_online, sort_members, to_count,
        MARK_OWN_READ_SQL, ROOMS_OF_RECIPIENT_SQL, SIGNIN_TOKEN_KEEP_MS,
    },
    postgres::{backend, bounded, PostgresStore},
    Added, ChatPicture, ChatStore, Member, Message, NewMessage, Reminder, ReminderJob, Result,
    Ring, RingState, RoomSummary, Session, SigninToken, StoreError,
};

/// The columns [`member_row`] reads.
const MEMBER_COLS: &str = "room_id, address, role, position, joined_at, last_read, verified";
/// The columns [`message_row`] reads.
const MESSAGE_COLS: &str = "id, room_id, author, body, created_ms, via, client_id, picture_id";
/// The columns [`ring_row`] reads.
const RING_COLS: &str = "id, room_id, caller, state, attempts, started_ms, updated_ms";
/// The columns [`reminder_row`] reads (qualified: the claim joins another relation).
const REMINDER_COLS: &str = "r.room_id, r.due_ms, r.caller, r.last_sent_ms, r.last_message_id,
    r.sent_count, r.lease_owner, r.lease_until_ms";

/// How often [`ChatStore::start_ring`] retries when the ringing ring it collided with ended
/// before it could be read; one retry almost always suffices.
const START_RING_TRIES: usize = 3;

/// A login's rooms with the sender's unread count (see the SQLite twin for the reasoning).
const ROOMS_OF_LOGIN_SQL: &str = "SELECT r.id, r.port, r.subject, r.created,
    (SELECT COUNT(*) FROM messages m
     WHERE m.room_id = r.id
       AND m.id > COALESCE((SELECT MAX(p.last_read) FROM room_participants p
                            WHERE p.room_id = r.id AND p.role = 'from'), 0)
       AND m.author <> lower(r.login)
       AND m.author NOT IN (SELECT p.address FROM room_participants p
                            WHERE p.room_id = r.id AND p.role = 'from')),
    (SELECT MAX(m.created_ms) FROM messages m WHERE m.room_id = r.id)
    FROM rooms r WHERE r.login = $1
    ORDER BY r.created DESC, r.id DESC LIMIT $2";

/// Runs a cached statement and returns its rows.
pub(super) async fn query_all<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(backend)?;
    c.query(&stmt, params).await.map_err(backend)
}

/// Runs a cached statement and returns at most one row.
pub(super) async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(backend)?;
    c.query_opt(&stmt, params).await.map_err(backend)
}

/// Runs a cached statement and returns the number of rows it touched.
pub(super) async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64> {
    let stmt = c.prepare_cached(sql).await.map_err(backend)?;
    c.execute(&stmt, params).await.map_err(backend)
}

/// Maps a foreign key violation to "unknown room", anything else to a backend error.
pub(super) fn fk_error(room_id: &str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
    move |e| {
        if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
            StoreError::Invalid(format!("unknown room {room_id:?}"))
        } else {
            backend(e)
        }
    }
}

/// A member and its position, from [`MEMBER_COLS`].
fn member_row(r: &Row) -> Result<(Member, i64)> {
    let role: String = r.try_get(2).map_err(backend)?;
    let position: i32 = r.try_get(3).map_err(backend)?;
    Ok((
        Member {
            room_id: r.try_get(0).map_err(backend)?,
            address: r.try_get(1).map_err(backend)?,
            role: parse_stored(&role)?,
            joined_at: r.try_get(4).map_err(backend)?,
            last_read: r.try_get(5).map_err(backend)?,
            verified: r.try_get(6).map_err(backend)?,
        },
        i64::from(position),
    ))
}

/// A message, from [`MESSAGE_COLS`].
fn message_row(r: &Row) -> Result<Message> {
    let via: String = r.try_get(5).map_err(backend)?;
    Ok(Message {
        id: r.try_get(0).map_err(backend)?,
        room_id: r.try_get(1).map_err(backend)?,
        author: r.try_get(2).map_err(backend)?,
        body: r.try_get(3).map_err(backend)?,
        created_ms: r.try_get(4).map_err(backend)?,
        via: parse_stored(&via)?,
        client_id: r.try_get(6).map_err(backend)?,
        picture_id: r.try_get(7).map_err(backend)?,
    })
}

/// A room summary, from the columns of [`ROOMS_OF_LOGIN_SQL`].
fn summary_row(r: &Row) -> Result<RoomSummary> {
    let port: i32 = r.try_get(1).map_err(backend)?;
    Ok(RoomSummary {
        room_id: r.try_get(0).map_err(backend)?,
        port: u16::try_from(port).map_err(|_| {
            StoreError::Backend(format!("port {port} in the database is not a port"))
        })?,
        subject: r.try_get(2).map_err(backend)?,
        created: r.try_get(3).map_err(backend)?,
        unread: r.try_get(4).map_err(backend)?,
        last_message_ms: r.try_get(5).map_err(backend)?,
    })
}

/// A ring, from [`RING_COLS`].
fn ring_row(r: &Row) -> Result<Ring> {
    let state: String = r.try_get(3).map_err(backend)?;
    Ok(Ring {
        id: r.try_get(0).map_err(backend)?,
        room_id: r.try_get(1).map_err(backend)?,
        caller: r.try_get(2).map_err(backend)?,
        state: parse_stored(&state)?,
        attempts: to_count(r.try_get(4).map_err(backend)?)?,
        started_ms: r.try_get(5).map_err(backend)?,
        updated_ms: r.try_get(6).map_err(backend)?,
    })
}

/// A reminder and its lease (owner, until), from [`REMINDER_COLS`].
fn reminder_row(r: &Row) -> Result<(Reminder, Option<String>, Option<i64>)> {
    Ok((
        Reminder {
            room_id: r.try_get(0).map_err(backend)?,
            due_ms: r.try_get(1).map_err(backend)?,
            caller: r.try_get(2).map_err(backend)?,
            last_sent_ms: r.try_get(3).map_err(backend)?,
            last_message_id: r.try_get(4).map_err(backend)?,
            sent_count: to_count(r.try_get(5).map_err(backend)?)?,
        },
        r.try_get(6).map_err(backend)?,
        r.try_get(7).map_err(backend)?,
    ))
}

#[async_trait::async_trait]
impl ChatStore for PostgresStore {
    async fn join_room(&self, room_id: &str, address: &str, now_ms: i64) -> Result<Option<Member>> {
        // An id or address the store could not hold is no participant.
        let Ok(address) = normalize_address("address", address) else {
            return Ok(None);
        };
        if check_room_id(room_id).is_err() {
            return Ok(None);
        }
        bounded(async {
            let client = self.client().await?;
            let rows = query_all(
                &client,
                &format!(
                    "UPDATE room_participants SET joined_at = COALESCE(joined_at, $3)
                     WHERE room_id = $1 AND address = $2 RETURNING {MEMBER_COLS}"
                ),
                &[&room_id, &address, &now_ms],
            )
            .await?;
            let rows = rows.iter().map(member_row).collect::<Result<Vec<_>>>()?;
            Ok(sort_members(rows).into_iter().next())
        })
        .await
    }

    async fn members(&self, room_id: &str) -> Result<Vec<Member>> {
        if check_room_id(room_id).is_err() {
            return Ok(Vec::new());
        }
        bounded(async {
            let client = self.client().await?;
            let rows = query_all(
                &client,
                &format!("SELECT {MEMBER_COLS} FROM room_participants WHERE room_id = $1"),
                &[&room_id],
            )
            .await?;
            let rows = rows.iter().map(member_row).collect::<Result<Vec<_>>>()?;
            Ok(sort_members(rows))
        })
        .await
    }

    async fn mark_read(&self, room_id: &str, address: &str, message_id: i64) -> Result<()> {
        let Ok(address) = normalize_address("address", address) else {
            return Ok(());
        };
        if check_room_id(room_id).is_err() {
            return Ok(());
        }
        bounded(async {
            let client = self.client().await?;
            execute(
                &client,
                "UPDATE room_participants
                 SET last_read = CASE WHEN last_read IS NULL OR last_read < $3 THEN $3
                                      ELSE last_read END
                 WHERE room_id = $1 AND address = $2",
                &[&room_id, &address, &message_id],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn add_message(&self, message: &NewMessage) -> Result<Added> {
        let m = normalize_message(message)?;
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            // Writers of one room take turns on its row, so a room's ids also follow commit
            // order: a reader that has seen id N never later finds a smaller one appear
            // (messages_after stays gapless across nodes). NO KEY: foreign key checks from
            // other tables are not blocked.
            if query_opt(
                &tx,
                "SELECT 1 FROM rooms WHERE id = $1 FOR NO KEY UPDATE",
                &[&m.room_id],
            )
            .await?
            .is_none()
            {
                return Err(StoreError::Invalid(format!("unknown room {:?}", m.room_id)));
            }
            if let Some(picture) = m.picture_id {
                let found = query_opt(
                    &tx,
                    "SELECT 1 FROM chat_pictures WHERE id = $1 AND room_id = $2",
                    &[&picture, &m.room_id],
                )
                .await?;
                if found.is_none() {
                    return Err(StoreError::Invalid(format!(
                        "no picture {picture} in this room"
                    )));
                }
            }
            let inserted = query_opt(
                &tx,
                &format!(
                    "INSERT INTO messages
                         (room_id, author, body, created_ms, via, client_id, picture_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (room_id, author, client_id) DO NOTHING
                     RETURNING {MESSAGE_COLS}"
                ),
                &[
                    &m.room_id,
                    &m.author,
                    &m.body,
                    &m.created_ms,
                    &m.via.as_str(),
                    &m.client_id,
                    &m.picture_id,
                ],
            )
            .await?;
            let (row, inserted) = match inserted {
                Some(row) => (row, true),
                // A retry: the first copy, unchanged (committed: its writer held the room).
                None => (
                    query_opt(
                        &tx,
                        &format!(
                            "SELECT {MESSAGE_COLS} FROM messages
                         WHERE room_id = $1 AND author = $2 AND client_id = $3"
                        ),
                        &[&m.room_id, &m.author, &m.client_id],
                    )
                    .await?
                    .ok_or_else(|| StoreError::Backend("a conflicting message vanished".into()))?,
                    false,
                ),
            };
            let message = message_row(&row)?;
            if inserted && !message.author.is_empty() {
                execute(
                    &tx,
                    MARK_OWN_READ_SQL,
                    &[&message.id, &message.room_id, &message.author],
                )
                .await?;
            }
            tx.commit().await.map_err(backend)?;
            Ok(Added { message, inserted })
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
        bounded(async {
            let client = self.client().await?;
            let row = query_opt(
                &client,
                "INSERT INTO chat_pictures (room_id, content_type, bytes, created_ms)
                 SELECT id, $2, $3, $4 FROM rooms WHERE id = $1
                 RETURNING id",
                &[&room_id, &content_type, &bytes, &now_ms],
            )
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("unknown room {room_id:?}")))?;
            row.try_get(0).map_err(backend)
        })
        .await
    }

    async fn chat_picture(&self, room_id: &str, id: i64) -> Result<Option<ChatPicture>> {
        bounded(async {
            let client = self.client().await?;
            let row = query_opt(
                &client,
                "SELECT content_type, bytes FROM chat_pictures WHERE id = $1 AND room_id = $2",
                &[&id, &room_id],
            )
            .await?;
            row.map(|r| {
                Ok(ChatPicture {
                    content_type: r.try_get(0).map_err(backend)?,
                    bytes: r.try_get(1).map_err(backend)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn messages(
        &self,
        room_id: &str,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        if check_room_id(room_id).is_err() {
            return Ok(Vec::new());
        }
        let before = before_id.unwrap_or(i64::MAX);
        bounded(async {
            let client = self.client().await?;
            let rows = query_all(
                &client,
                &format!(
                    "SELECT {MESSAGE_COLS} FROM messages WHERE room_id = $1 AND id < $2
                     ORDER BY id DESC LIMIT $3"
                ),
                &[&room_id, &before, &page(limit)],
            )
            .await?;
            let mut messages = rows.iter().map(message_row).collect::<Result<Vec<_>>>()?;
            messages.reverse();
            Ok(messages)
        })
        .await
    }

    async fn messages_after(
        &self,
        room_id: &str,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Message>> {
        if check_room_id(room_id).is_err() {
            return Ok(Vec::new());
        }
        bounded(async {
            let client = self.client().await?;
            let rows = query_all(
                &client,
                &format!(
                    "SELECT {MESSAGE_COLS} FROM messages WHERE room_id = $1 AND id > $2
                     ORDER BY id LIMIT $3"
                ),
                &[&room_id, &after_id, &page(limit)],
            )
            .await?;
            rows.iter().map(message_row).collect()
        })
        .await
    }

    async fn rooms_of_login(&self, login: &str, limit: u32) -> Result<Vec<RoomSummary>> {
        if super::check_login(login).is_err() {
            return Ok(Vec::new());
        }
        bounded(async {
            let client = self.client().await?;
            let rows = query_all(&client, ROOMS_OF_LOGIN_SQL, &[&login, &page(limit)]).await?;
            rows.iter().map(summary_row).collect()
        })
        .await
    }

    async fn rooms_of_recipient(&self, address: &str, limit: u32) -> Result<Vec<RoomSummary>> {
        let Ok(address) = normalize_address("address", address) else {
            return Ok(Vec::new());
        };
        bounded(async {
            let client = self.client().await?;
            let rows =
                query_all(&client, ROOMS_OF_RECIPIENT_SQL, &[&address, &page(limit)]).await?;
            rows.iter().map(summary_row).collect()
        })
        .await
    }

    async fn start_ring(&self, room_id: &str, caller: &str, now_ms: i64) -> Result<Ring> {
        check_room_id(room_id)?;
        let caller = normalize_address("caller", caller)?;
        bounded(async {
            let client = self.client().await?;
            let insert = client
                .prepare_cached(&format!(
                    "INSERT INTO rings (room_id, caller, state, attempts, started_ms, updated_ms)
                     VALUES ($1, $2, 'ringing', 0, $3, $3)
                     ON CONFLICT (room_id) WHERE state = 'ringing' DO NOTHING
                     RETURNING {RING_COLS}"
                ))
                .await
                .map_err(backend)?;
            for _ in 0..START_RING_TRIES {
                let inserted = client
                    .query_opt(&insert, &[&room_id, &caller, &now_ms])
                    .await
                    .map_err(fk_error(room_id))?;
                if let Some(row) = inserted {
                    return ring_row(&row);
                }
                // Another node's ring is ringing: that one it is, unless it ended meanwhile.
                let ringing = query_opt(
                    &client,
                    &format!(
                        "SELECT {RING_COLS} FROM rings WHERE room_id = $1 AND state = 'ringing'"
                    ),
                    &[&room_id],
                )
                .await?;
                if let Some(row) = ringing {
                    return ring_row(&row);
                }
            }
            Err(StoreError::Backend(format!(
                "the ring in room {room_id:?} kept changing; gave up after {START_RING_TRIES} tries"
            )))
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
        bounded(async {
            let client = self.client().await?;
            query_opt(
                &client,
                &format!(
                    "UPDATE rings SET state = $2, attempts = $3, updated_ms = $4
                     WHERE id = $1 AND state = 'ringing' RETURNING {RING_COLS}"
                ),
                &[&ring_id, &state.as_str(), &i64::from(attempts), &now_ms],
            )
            .await?
            .as_ref()
            .map(ring_row)
            .transpose()
        })
        .await
    }

    async fn active_ring(&self, room_id: &str) -> Result<Option<Ring>> {
        if check_room_id(room_id).is_err() {
            return Ok(None);
        }
        bounded(async {
            let client = self.client().await?;
            query_opt(
                &client,
                &format!("SELECT {RING_COLS} FROM rings WHERE room_id = $1 AND state = 'ringing'"),
                &[&room_id],
            )
            .await?
            .as_ref()
            .map(ring_row)
            .transpose()
        })
        .await
    }

    async fn orphaned_rings(&self, started_before_ms: i64, limit: u32) -> Result<Vec<Ring>> {
        bounded(async {
            let client = self.client().await?;
            let rows = query_all(
                &client,
                &format!(
                    "SELECT {RING_COLS} FROM rings WHERE state = 'ringing' AND started_ms <= $1
                     ORDER BY started_ms, id LIMIT $2"
                ),
                &[&started_before_ms, &page(limit)],
            )
            .await?;
            rows.iter().map(ring_row).collect()
        })
        .await
    }

    async fn schedule_reminder(&self, room_id: &str, caller: &str, due_ms: i64) -> Result<()> {
        check_room_id(room_id)?;
        let caller = normalize_address("caller", caller)?;
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO reminders (room_id, due_ms, caller) VALUES ($1, $2, $3)
                     ON CONFLICT (room_id) DO UPDATE SET
                         caller = CASE WHEN reminders.due_ms IS NULL THEN excluded.caller
                                       ELSE reminders.caller END,
                         due_ms = CASE WHEN reminders.due_ms IS NULL
                                         OR excluded.due_ms < reminders.due_ms
                                       THEN excluded.due_ms ELSE reminders.due_ms END",
                )
                .await
                .map_err(backend)?;
            client
                .execute(&stmt, &[&room_id, &due_ms, &caller])
                .await
                .map_err(fk_error(room_id))?;
            Ok(())
        })
        .await
    }

    async fn reminder(&self, room_id: &str) -> Result<Option<Reminder>> {
        if check_room_id(room_id).is_err() {
            return Ok(None);
        }
        bounded(async {
            let client = self.client().await?;
            let row = query_opt(
                &client,
                &format!("SELECT {REMINDER_COLS} FROM reminders r WHERE r.room_id = $1"),
                &[&room_id],
            )
            .await?;
            Ok(row
                .as_ref()
                .map(reminder_row)
                .transpose()?
                .map(|(reminder, _, _)| reminder))
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
        let until = now_ms.saturating_add(lease_ms);
        bounded(async {
            let client = self.client().await?;
            // SKIP LOCKED: rows another node is claiming right now are its; a row whose claim
            // committed after this statement began is re-checked against the lease and left out.
            let rows = query_all(
                &client,
                &format!(
                    "WITH due AS (
                         SELECT room_id FROM reminders
                         WHERE due_ms <= $3 AND (lease_until_ms IS NULL OR lease_until_ms < $3)
                         ORDER BY due_ms, room_id LIMIT $4
                         FOR UPDATE SKIP LOCKED)
                     UPDATE reminders r SET lease_owner = $1, lease_until_ms = $2
                     FROM due WHERE r.room_id = due.room_id
                     RETURNING {REMINDER_COLS}"
                ),
                &[&owner, &until, &now_ms, &page(limit)],
            )
            .await?;
            let mut jobs = Vec::with_capacity(rows.len());
            for row in &rows {
                let (reminder, owner, until) = reminder_row(row)?;
                jobs.push(ReminderJob {
                    reminder,
                    owner: owner.unwrap_or_default(),
                    lease_until_ms: until.unwrap_or_default(),
                });
            }
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
        if check_room_id(room_id).is_err() || owner.is_empty() {
            return Ok(false);
        }
        bounded(async {
            let client = self.client().await?;
            let changed = execute(
                &client,
                "UPDATE reminders SET last_sent_ms = $3,
                     last_message_id = COALESCE($4, last_message_id),
                     sent_count = sent_count + 1,
                     due_ms = NULL, lease_owner = NULL, lease_until_ms = NULL
                 WHERE room_id = $1 AND lease_owner = $2",
                &[&room_id, &owner, &sent_ms, &last_message_id],
            )
            .await?;
            Ok(changed == 1)
        })
        .await
    }

    async fn create_signin_token(&self, token_hash: &str, token: &SigninToken) -> Result<()> {
        check_signin_token(token_hash, token)?;
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            // Opportunistic pruning: rows past any rate-limit window.
            execute(
                &tx,
                "DELETE FROM signin_tokens WHERE expires_ms < $1",
                &[&token.created_ms.saturating_sub(SIGNIN_TOKEN_KEEP_MS)],
            )
            .await?;
            execute(
                &tx,
                "INSERT INTO signin_tokens (token_hash, login, room_id, created_ms, expires_ms)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &token_hash,
                    &token.login,
                    &token.room_id,
                    &token.created_ms,
                    &token.expires_ms,
                ],
            )
            .await?;
            tx.commit().await.map_err(backend)
        })
        .await
    }

    async fn count_signin_tokens(&self, login: &str, since_ms: i64) -> Result<u32> {
        if super::check_login(login).is_err() {
            return Ok(0);
        }
        bounded(async {
            let client = self.client().await?;
            let row = query_opt(
                &client,
                "SELECT COUNT(*) FROM signin_tokens WHERE login = $1 AND created_ms >= $2",
                &[&login, &since_ms],
            )
            .await?
            .ok_or_else(|| StoreError::Backend("COUNT returned no row".into()))?;
            to_count(row.try_get(0).map_err(backend)?)
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
        bounded(async {
            let client = self.client().await?;
            let Some(row) = query_opt(
                &client,
                "UPDATE signin_tokens SET used_ms = $2
                 WHERE token_hash = $1 AND used_ms IS NULL AND expires_ms > $2
                 RETURNING login, room_id, created_ms, expires_ms",
                &[&token_hash, &now_ms],
            )
            .await?
            else {
                return Ok(None);
            };
            Ok(Some(SigninToken {
                login: row.try_get(0).map_err(backend)?,
                room_id: row.try_get(1).map_err(backend)?,
                created_ms: row.try_get(2).map_err(backend)?,
                expires_ms: row.try_get(3).map_err(backend)?,
            }))
        })
        .await
    }

    async fn create_session(&self, session_hash: &str, session: &Session) -> Result<()> {
        check_session(session_hash, session)?;
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            execute(
                &tx,
                "DELETE FROM sessions WHERE expires_ms <= $1",
                &[&session.created_ms],
            )
            .await?;
            execute(
                &tx,
                "INSERT INTO sessions (session_hash, login, created_ms, expires_ms)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &session_hash,
                    &session.login,
                    &session.created_ms,
                    &session.expires_ms,
                ],
            )
            .await?;
            tx.commit().await.map_err(backend)
        })
        .await
    }

    async fn session(&self, session_hash: &str, now_ms: i64) -> Result<Option<Session>> {
        if check_hash("session hash", session_hash).is_err() {
            return Ok(None);
        }
        bounded(async {
            let client = self.client().await?;
            let Some(row) = query_opt(
                &client,
                "SELECT login, created_ms, expires_ms FROM sessions
                 WHERE session_hash = $1 AND expires_ms > $2",
                &[&session_hash, &now_ms],
            )
            .await?
            else {
                return Ok(None);
            };
            Ok(Some(Session {
                login: row.try_get(0).map_err(backend)?,
                created_ms: row.try_get(1).map_err(backend)?,
                expires_ms: row.try_get(2).map_err(backend)?,
            }))
        })
        .await
    }

    async fn delete_session(&self, session_hash: &str) -> Result<()> {
        if check_hash("session hash", session_hash).is_err() {
            return Ok(());
        }
        bounded(async {
            let client = self.client().await?;
            execute(
                &client,
                "DELETE FROM sessions WHERE session_hash = $1",
                &[&session_hash],
            )
            .await?;
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
        bounded(async {
            let client = self.client().await?;
            execute(
                &client,
                "INSERT INTO presence (login, node, connections, until_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (login, node) DO UPDATE SET
                     connections = excluded.connections, until_ms = excluded.until_ms",
                &[&login, &node, &connections, &until_ms],
            )
            .await?;
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
        bounded(async {
            let client = self.client().await?;
            execute(
                &client,
                "DELETE FROM presence WHERE login = $1 AND node = $2",
                &[&login, &node],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn online(&self, login: &str, now_ms: i64) -> Result<bool> {
        let Ok(login) = normalize_login(login) else {
            return Ok(false);
        };
        bounded(async {
            let client = self.client().await?;
            let row = query_opt(
                &client,
                "SELECT EXISTS (SELECT 1 FROM presence WHERE login = $1 AND until_ms > $2)",
                &[&login, &now_ms],
            )
            .await?
            .ok_or_else(|| StoreError::Backend("EXISTS returned no row".into()))?;
            row.try_get(0).map_err(backend)
        })
        .await
    }

    async fn online_logins(&self, logins: &[String], now_ms: i64) -> Result<Vec<String>> {
        let batch = presence_batch(logins)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        bounded(async {
            let client = self.client().await?;
            let rows = query_all(
                &client,
                "SELECT DISTINCT login FROM presence WHERE login = ANY ($1) AND until_ms > $2",
                &[&batch, &now_ms],
            )
            .await?;
            let online = rows
                .iter()
                .map(|r| r.try_get(0).map_err(backend))
                .collect::<Result<HashSet<String>>>()?;
            Ok(select_online(logins, &online))
        })
        .await
    }

    async fn prune_presence(&self, now_ms: i64) -> Result<u64> {
        bounded(async {
            let client = self.client().await?;
            execute(
                &client,
                "DELETE FROM presence WHERE until_ms <= $1",
                &[&now_ms],
            )
            .await
        })
        .await
    }
}
