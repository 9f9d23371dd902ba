//! The mail loop side of the embedded store: [`MailStore`] for [`SqliteStore`].
//!
//! Every write runs in a `BEGIN IMMEDIATE` transaction, so that two processes on one file never
//! interleave a check and the write that depends on it (the mail is still claimed by its owner,
//! the code still has guesses left, the token is still free).

use rusqlite::{types::Type, Connection, ErrorCode, OptionalExtension, Row};

use super::{
    chat::{check_owner, check_room_id, page},
    mail_loop::{
        check_code_input, check_grant, check_mail_token, clean_error, decode_headers, judge_code,
        lookup_form, lookup_pair, normalize_outgoing, CODE_SEND_KEEP_MS,
    },
    sqlite::{backend, SqliteStore},
    sqlite_chat::{parsed, query_all, write},
    CodeCheck, MailScope, MailStore, NewOutgoing, NotifyJob, NotifyState, OutgoingRecord,
    ReplyToken, Result, StoreError, Via,
};

/// The columns [`outgoing_row`] reads.
const OUTGOING_COLS: &str = "id, message_id, kind, recipient, subject, text_body, html_body,
    headers, room_id, created_ms, state, attempts, next_attempt_ms, last_error, sent_ms,
    failed_ms, lease_owner, lease_until_ms";
/// The columns [`reply_token_row`] reads.
const REPLY_TOKEN_COLS: &str = "token, room_id, address, created_ms, expires_ms";
/// The columns [`notify_row`] reads.
const NOTIFY_COLS: &str = "room_id, address, muted, due_ms, next_due_ms, last_sent_ms, backoff_ms,
    last_message_id, sent_count, lease_owner, lease_until_ms";

/// Whether (room, address) is a participant; appended to an `INSERT .. SELECT` so that a write
/// for a stranger inserts nothing (`?1` room, `?2` address).
const IS_PARTICIPANT: &str =
    "EXISTS (SELECT 1 FROM room_participants WHERE room_id = ?1 AND address = ?2)";

/// An outgoing mail, from [`OUTGOING_COLS`].
fn outgoing_row(r: &Row<'_>) -> rusqlite::Result<OutgoingRecord> {
    let headers: String = r.get(7)?;
    let headers = decode_headers(&headers)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(7, Type::Text, Box::new(e)))?;
    Ok(OutgoingRecord {
        id: r.get(0)?,
        mail: NewOutgoing {
            message_id: r.get(1)?,
            kind: r.get(2)?,
            to: r.get(3)?,
            subject: r.get(4)?,
            text: r.get(5)?,
            html: r.get(6)?,
            headers,
            room_id: r.get(8)?,
            created_ms: r.get(9)?,
        },
        state: parsed(r, 10)?,
        attempts: r.get(11)?,
        next_attempt_ms: r.get(12)?,
        last_error: r.get(13)?,
        sent_ms: r.get(14)?,
        failed_ms: r.get(15)?,
        lease_owner: r.get(16)?,
        lease_until_ms: r.get(17)?,
    })
}

/// A reply token, from [`REPLY_TOKEN_COLS`].
fn reply_token_row(r: &Row<'_>) -> rusqlite::Result<ReplyToken> {
    Ok(ReplyToken {
        token: r.get(0)?,
        room_id: r.get(1)?,
        address: r.get(2)?,
        created_ms: r.get(3)?,
        expires_ms: r.get(4)?,
    })
}

/// A notification schedule and its lease (owner, until), from [`NOTIFY_COLS`].
fn notify_row(r: &Row<'_>) -> rusqlite::Result<(NotifyState, Option<String>, Option<i64>)> {
    Ok((
        NotifyState {
            room_id: r.get(0)?,
            address: r.get(1)?,
            muted: r.get(2)?,
            due_ms: r.get(3)?,
            next_due_ms: r.get(4)?,
            last_sent_ms: r.get(5)?,
            backoff_ms: r.get(6)?,
            last_message_id: r.get(7)?,
            sent_count: r.get(8)?,
        },
        r.get(9)?,
        r.get(10)?,
    ))
}

/// "Not a participant": a write for an address the room does not have.
fn stranger(room_id: &str, address: &str) -> StoreError {
    StoreError::Invalid(format!(
        "{address:?} is not a participant of room {room_id:?}"
    ))
}

/// Maps a uniqueness violation to "the token is taken", anything else to a backend error.
fn token_taken(what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation => {
            StoreError::Invalid(format!("{what} is already another participant's"))
        }
        _ => backend(e),
    }
}

/// Reads one COUNT(*).
fn count<P: rusqlite::Params>(c: &Connection, sql: &str, params: P) -> Result<u32> {
    c.query_row(sql, params, |r| r.get(0)).map_err(backend)
}

#[async_trait::async_trait]
impl MailStore for SqliteStore {
    async fn enqueue_mail(&self, mail: &NewOutgoing) -> Result<(i64, bool)> {
        let (m, headers) = normalize_outgoing(mail)?;
        self.run(move |c| {
            write(c, |tx| {
                let inserted: Option<i64> = tx
                    .query_row(
                        "INSERT INTO outgoing_mail (message_id, kind, recipient, subject,
                             text_body, html_body, headers, room_id, created_ms, next_attempt_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
                         ON CONFLICT (message_id) DO NOTHING RETURNING id",
                        (
                            &m.message_id,
                            &m.kind,
                            &m.to,
                            &m.subject,
                            &m.text,
                            &m.html,
                            &headers,
                            &m.room_id,
                            m.created_ms,
                        ),
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                if let Some(id) = inserted {
                    return Ok((id, true));
                }
                let id = tx
                    .query_row(
                        "SELECT id FROM outgoing_mail WHERE message_id = ?1",
                        [&m.message_id],
                        |r| r.get(0),
                    )
                    .map_err(backend)?;
                Ok((id, false))
            })
        })
        .await
    }

    async fn claim_mail(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutgoingRecord>> {
        check_owner(owner)?;
        let owner = owner.to_owned();
        let until = now_ms.saturating_add(lease_ms);
        self.run(move |c| {
            let mut mails = write(c, |tx| {
                query_all(
                    tx,
                    &format!(
                        "UPDATE outgoing_mail SET lease_owner = ?1, lease_until_ms = ?2
                         WHERE id IN (
                             SELECT id FROM outgoing_mail
                             WHERE state = 'queued' AND next_attempt_ms <= ?3
                               AND (lease_until_ms IS NULL OR lease_until_ms < ?3)
                             ORDER BY next_attempt_ms, id LIMIT ?4)
                         RETURNING {OUTGOING_COLS}"
                    ),
                    (&owner, until, now_ms, page(limit)),
                    outgoing_row,
                )
            })?;
            // RETURNING follows no ORDER BY: the longest waiting first.
            mails.sort_by_key(|m| (m.next_attempt_ms, m.id));
            Ok(mails)
        })
        .await
    }

    async fn mail_sent(&self, id: i64, owner: &str, now_ms: i64) -> Result<bool> {
        let owner = owner.to_owned();
        self.run(move |c| {
            let changed = write(c, |tx| {
                tx.execute(
                    "UPDATE outgoing_mail SET state = 'sent', sent_ms = ?3,
                         lease_owner = NULL, lease_until_ms = NULL
                     WHERE id = ?1 AND state = 'queued' AND lease_owner = ?2",
                    (id, &owner, now_ms),
                )
                .map_err(backend)
            })?;
            Ok(changed == 1)
        })
        .await
    }

    async fn mail_failed(
        &self,
        id: i64,
        owner: &str,
        now_ms: i64,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<bool> {
        let (owner, error) = (owner.to_owned(), clean_error(error));
        self.run(move |c| {
            let changed = write(c, |tx| {
                tx.execute(
                    "UPDATE outgoing_mail SET attempts = attempts + 1, last_error = ?4,
                         state = CASE WHEN ?5 IS NULL THEN 'failed' ELSE 'queued' END,
                         failed_ms = CASE WHEN ?5 IS NULL THEN ?3 ELSE NULL END,
                         next_attempt_ms = COALESCE(?5, next_attempt_ms),
                         lease_owner = NULL, lease_until_ms = NULL
                     WHERE id = ?1 AND state = 'queued' AND lease_owner = ?2",
                    (id, &owner, now_ms, &error, retry_at_ms),
                )
                .map_err(backend)
            })?;
            Ok(changed == 1)
        })
        .await
    }

    async fn outgoing(&self, id: i64) -> Result<Option<OutgoingRecord>> {
        self.run(move |c| {
            c.query_row(
                &format!("SELECT {OUTGOING_COLS} FROM outgoing_mail WHERE id = ?1"),
                [id],
                outgoing_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn outgoing_by_message_id(&self, message_id: &str) -> Result<Option<OutgoingRecord>> {
        let message_id = message_id.to_owned();
        self.run(move |c| {
            c.query_row(
                &format!("SELECT {OUTGOING_COLS} FROM outgoing_mail WHERE message_id = ?1"),
                [&message_id],
                outgoing_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn failed_mail(&self, scope: MailScope<'_>, limit: u32) -> Result<Vec<OutgoingRecord>> {
        let (column, value) = match scope {
            MailScope::Room(room_id) => ("room_id", room_id.to_owned()),
            MailScope::Recipient(to) => ("recipient", to.trim().to_lowercase()),
        };
        self.run(move |c| {
            query_all(
                c,
                &format!(
                    "SELECT {OUTGOING_COLS} FROM outgoing_mail
                     WHERE state = 'failed' AND {column} = ?1
                     ORDER BY failed_ms DESC, id DESC LIMIT ?2"
                ),
                (&value, page(limit)),
                outgoing_row,
            )
        })
        .await
    }

    async fn prune_mail(&self, before_ms: i64) -> Result<u64> {
        self.run(move |c| {
            let deleted = write(c, |tx| {
                tx.execute(
                    "DELETE FROM outgoing_mail
                     WHERE (state = 'sent' AND sent_ms < ?1)
                        OR (state = 'failed' AND failed_ms < ?1)",
                    [before_ms],
                )
                .map_err(backend)
            })?;
            Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn queued_mail_count(&self) -> Result<u32> {
        self.run(|c| {
            count(
                c,
                "SELECT COUNT(*) FROM outgoing_mail WHERE state = 'queued'",
                [],
            )
        })
        .await
    }

    async fn reply_token(
        &self,
        room_id: &str,
        address: &str,
        candidate: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<ReplyToken> {
        let address = check_grant(room_id, address, now_ms, expires_ms)?;
        check_mail_token("reply token", candidate)?;
        let (room_id, candidate) = (room_id.to_owned(), candidate.to_owned());
        self.run(move |c| {
            write(c, |tx| {
                tx.execute("DELETE FROM reply_tokens WHERE expires_ms <= ?1", [now_ms])
                    .map_err(backend)?;
                tx.query_row(
                    &format!(
                        "INSERT INTO reply_tokens (room_id, address, token, created_ms, expires_ms)
                         SELECT ?1, ?2, ?3, ?4, ?5 WHERE {IS_PARTICIPANT}
                         ON CONFLICT (room_id, address) DO UPDATE SET
                             expires_ms = max(reply_tokens.expires_ms, excluded.expires_ms)
                         RETURNING {REPLY_TOKEN_COLS}"
                    ),
                    (&room_id, &address, &candidate, now_ms, expires_ms),
                    reply_token_row,
                )
                .optional()
                .map_err(token_taken("reply token"))?
                .ok_or_else(|| stranger(&room_id, &address))
            })
        })
        .await
    }

    async fn lookup_reply_token(&self, token: &str, now_ms: i64) -> Result<Option<ReplyToken>> {
        let Some(token) = lookup_form(token) else {
            return Ok(None);
        };
        self.run(move |c| {
            c.query_row(
                &format!(
                    "SELECT {REPLY_TOKEN_COLS} FROM reply_tokens
                     WHERE token = ?1 AND expires_ms > ?2"
                ),
                (&token, now_ms),
                reply_token_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn count_messages(
        &self,
        room_id: &str,
        author: &str,
        via: Via,
        since_ms: i64,
    ) -> Result<u32> {
        // Authors are stored as addresses are (system messages: empty).
        let (room_id, author) = (room_id.to_owned(), author.trim().to_lowercase());
        self.run(move |c| {
            count(
                c,
                "SELECT COUNT(*) FROM messages
                 WHERE room_id = ?1 AND author = ?2 AND via = ?3 AND created_ms >= ?4",
                (&room_id, &author, via.as_str(), since_ms),
            )
        })
        .await
    }

    async fn create_code(
        &self,
        room_id: &str,
        address: &str,
        code_hash: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<()> {
        let address = check_code_input(room_id, address, code_hash, now_ms, expires_ms)?;
        let (room_id, hash) = (room_id.to_owned(), code_hash.to_owned());
        self.run(move |c| {
            write(c, |tx| {
                let stored = tx
                    .execute(
                        &format!(
                            "INSERT INTO address_codes
                                 (room_id, address, code_hash, created_ms, expires_ms, attempts)
                             SELECT ?1, ?2, ?3, ?4, ?5, 0 WHERE {IS_PARTICIPANT}
                             ON CONFLICT (room_id, address) DO UPDATE SET
                                 code_hash = excluded.code_hash, created_ms = excluded.created_ms,
                                 expires_ms = excluded.expires_ms, attempts = 0"
                        ),
                        (&room_id, &address, &hash, now_ms, expires_ms),
                    )
                    .map_err(backend)?;
                if stored == 0 {
                    return Err(stranger(&room_id, &address));
                }
                // Opportunistic pruning: sends past any rate-limit window.
                tx.execute(
                    "DELETE FROM code_sends WHERE sent_ms < ?1",
                    [now_ms.saturating_sub(CODE_SEND_KEEP_MS)],
                )
                .map_err(backend)?;
                tx.execute(
                    "INSERT INTO code_sends (room_id, address, sent_ms) VALUES (?1, ?2, ?3)",
                    (&room_id, &address, now_ms),
                )
                .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn count_codes(&self, room_id: &str, address: &str, since_ms: i64) -> Result<u32> {
        let Some(address) = lookup_pair(room_id, address) else {
            return Ok(0);
        };
        let room_id = room_id.to_owned();
        self.run(move |c| {
            count(
                c,
                "SELECT COUNT(*) FROM code_sends
                 WHERE room_id = ?1 AND address = ?2 AND sent_ms >= ?3",
                (&room_id, &address, since_ms),
            )
        })
        .await
    }

    async fn check_code(
        &self,
        room_id: &str,
        address: &str,
        code_hash: &str,
        now_ms: i64,
        max_attempts: u32,
    ) -> Result<CodeCheck> {
        let Some(address) = lookup_pair(room_id, address) else {
            return Ok(CodeCheck::NoCode);
        };
        let (room_id, guess) = (room_id.to_owned(), code_hash.to_owned());
        self.run(move |c| {
            write(c, |tx| {
                let stored: Option<(String, i64, i64)> = tx
                    .query_row(
                        "SELECT code_hash, expires_ms, attempts FROM address_codes
                         WHERE room_id = ?1 AND address = ?2",
                        (&room_id, &address),
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                    .map_err(backend)?;
                let Some((hash, expires_ms, attempts)) = stored else {
                    return Ok(CodeCheck::NoCode);
                };
                let verdict = judge_code(&hash, expires_ms, attempts, &guess, now_ms, max_attempts);
                match verdict {
                    CodeCheck::Verified => {
                        tx.execute(
                            "UPDATE room_participants SET verified = 1
                             WHERE room_id = ?1 AND address = ?2",
                            (&room_id, &address),
                        )
                        .map_err(backend)?;
                        tx.execute(
                            "DELETE FROM address_codes WHERE room_id = ?1 AND address = ?2",
                            (&room_id, &address),
                        )
                        .map_err(backend)?;
                    }
                    CodeCheck::Wrong { .. } => {
                        tx.execute(
                            "UPDATE address_codes SET attempts = attempts + 1
                             WHERE room_id = ?1 AND address = ?2",
                            (&room_id, &address),
                        )
                        .map_err(backend)?;
                    }
                    CodeCheck::Expired | CodeCheck::NoCode | CodeCheck::Locked => {}
                }
                Ok(verdict)
            })
        })
        .await
    }

    async fn is_verified(&self, room_id: &str, address: &str) -> Result<bool> {
        let Some(address) = lookup_pair(room_id, address) else {
            return Ok(false);
        };
        let room_id = room_id.to_owned();
        self.run(move |c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM room_participants
                                WHERE room_id = ?1 AND address = ?2 AND verified = 1)",
                (&room_id, &address),
                |r| r.get(0),
            )
            .map_err(backend)
        })
        .await
    }

    async fn prove_address(&self, room_id: &str, address: &str) -> Result<bool> {
        let Some(address) = lookup_pair(room_id, address) else {
            return Ok(false);
        };
        let room_id = room_id.to_owned();
        self.run(move |c| {
            let changed = c
                .execute(
                    "UPDATE room_participants SET verified = 1
                     WHERE room_id = ?1 AND address = ?2 AND role <> 'from' AND verified = 0",
                    (&room_id, &address),
                )
                .map_err(backend)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn schedule_notification(
        &self,
        room_id: &str,
        address: &str,
        due_ms: i64,
    ) -> Result<bool> {
        check_room_id(room_id)?;
        let address = super::chat::normalize_address("address", address)?;
        let room_id = room_id.to_owned();
        self.run(move |c| {
            write(c, |tx| {
                let muted: Option<bool> = tx
                    .query_row(
                        &format!(
                            "INSERT INTO notify_state (room_id, address, due_ms)
                             SELECT ?1, ?2, ?3 WHERE {IS_PARTICIPANT}
                             ON CONFLICT (room_id, address) DO UPDATE SET
                                 due_ms = CASE
                                     WHEN notify_state.muted OR notify_state.lease_owner IS NOT NULL
                                         THEN notify_state.due_ms
                                     WHEN notify_state.due_ms IS NULL
                                       OR excluded.due_ms < notify_state.due_ms
                                         THEN excluded.due_ms
                                     ELSE notify_state.due_ms END,
                                 next_due_ms = CASE
                                     WHEN notify_state.muted OR notify_state.lease_owner IS NULL
                                         THEN notify_state.next_due_ms
                                     WHEN notify_state.next_due_ms IS NULL
                                       OR excluded.due_ms < notify_state.next_due_ms
                                         THEN excluded.due_ms
                                     ELSE notify_state.next_due_ms END
                             RETURNING muted"
                        ),
                        (&room_id, &address, due_ms),
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                muted
                    .map(|muted| !muted)
                    .ok_or_else(|| stranger(&room_id, &address))
            })
        })
        .await
    }

    async fn notify_state(&self, room_id: &str, address: &str) -> Result<Option<NotifyState>> {
        let Some(address) = lookup_pair(room_id, address) else {
            return Ok(None);
        };
        let room_id = room_id.to_owned();
        self.run(move |c| {
            let row = c
                .query_row(
                    &format!(
                        "SELECT {NOTIFY_COLS} FROM notify_state
                         WHERE room_id = ?1 AND address = ?2"
                    ),
                    (&room_id, &address),
                    notify_row,
                )
                .optional()
                .map_err(backend)?;
            Ok(row.map(|(state, _, _)| state))
        })
        .await
    }

    async fn claim_notifications(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<NotifyJob>> {
        check_owner(owner)?;
        let owner = owner.to_owned();
        let until = now_ms.saturating_add(lease_ms);
        self.run(move |c| {
            let rows = write(c, |tx| {
                query_all(
                    tx,
                    &format!(
                        "UPDATE notify_state SET lease_owner = ?1, lease_until_ms = ?2
                         WHERE (room_id, address) IN (
                             SELECT room_id, address FROM notify_state
                             WHERE due_ms <= ?3 AND muted = 0
                               AND (lease_until_ms IS NULL OR lease_until_ms < ?3)
                             ORDER BY due_ms, room_id, address LIMIT ?4)
                         RETURNING {NOTIFY_COLS}"
                    ),
                    (&owner, until, now_ms, page(limit)),
                    notify_row,
                )
            })?;
            let mut jobs: Vec<NotifyJob> = rows
                .into_iter()
                .map(|(state, owner, until)| NotifyJob {
                    state,
                    owner: owner.unwrap_or_default(),
                    lease_until_ms: until.unwrap_or_default(),
                })
                .collect();
            // RETURNING follows no ORDER BY: the most overdue first.
            jobs.sort_by(|a, b| {
                (a.state.due_ms, &a.state.room_id, &a.state.address).cmp(&(
                    b.state.due_ms,
                    &b.state.room_id,
                    &b.state.address,
                ))
            });
            Ok(jobs)
        })
        .await
    }

    async fn finish_notification(
        &self,
        room_id: &str,
        address: &str,
        owner: &str,
        sent_ms: i64,
        last_message_id: Option<i64>,
        next_backoff_ms: i64,
    ) -> Result<bool> {
        let Some(address) = lookup_pair(room_id, address) else {
            return Ok(false);
        };
        let (room_id, owner) = (room_id.to_owned(), owner.to_owned());
        self.run(move |c| {
            let changed = write(c, |tx| {
                tx.execute(
                    "UPDATE notify_state SET last_sent_ms = ?4,
                         last_message_id = COALESCE(?5, last_message_id),
                         backoff_ms = ?6, sent_count = sent_count + 1,
                         due_ms = next_due_ms, next_due_ms = NULL,
                         lease_owner = NULL, lease_until_ms = NULL
                     WHERE room_id = ?1 AND address = ?2 AND lease_owner = ?3",
                    (
                        &room_id,
                        &address,
                        &owner,
                        sent_ms,
                        last_message_id,
                        next_backoff_ms,
                    ),
                )
                .map_err(backend)
            })?;
            Ok(changed == 1)
        })
        .await
    }

    async fn skip_notification(&self, room_id: &str, address: &str, owner: &str) -> Result<bool> {
        let Some(address) = lookup_pair(room_id, address) else {
            return Ok(false);
        };
        let (room_id, owner) = (room_id.to_owned(), owner.to_owned());
        self.run(move |c| {
            let changed = write(c, |tx| {
                tx.execute(
                    "UPDATE notify_state SET due_ms = next_due_ms, next_due_ms = NULL,
                         lease_owner = NULL, lease_until_ms = NULL
                     WHERE room_id = ?1 AND address = ?2 AND lease_owner = ?3",
                    (&room_id, &address, &owner),
                )
                .map_err(backend)
            })?;
            Ok(changed == 1)
        })
        .await
    }

    async fn set_muted(&self, room_id: &str, address: &str, muted: bool) -> Result<()> {
        check_room_id(room_id)?;
        let address = super::chat::normalize_address("address", address)?;
        let room_id = room_id.to_owned();
        self.run(move |c| {
            write(c, |tx| {
                let stored = tx
                    .execute(
                        &format!(
                            "INSERT INTO notify_state (room_id, address, muted)
                             SELECT ?1, ?2, ?3 WHERE {IS_PARTICIPANT}
                             ON CONFLICT (room_id, address) DO UPDATE SET
                                 muted = excluded.muted,
                                 due_ms = CASE WHEN excluded.muted THEN NULL
                                               ELSE notify_state.due_ms END,
                                 next_due_ms = CASE WHEN excluded.muted THEN NULL
                                                    ELSE notify_state.next_due_ms END"
                        ),
                        (&room_id, &address, muted),
                    )
                    .map_err(backend)?;
                if stored == 0 {
                    return Err(stranger(&room_id, &address));
                }
                Ok(())
            })
        })
        .await
    }

    async fn unsubscribe_token(
        &self,
        room_id: &str,
        address: &str,
        candidate: &str,
    ) -> Result<String> {
        check_room_id(room_id)?;
        let address = super::chat::normalize_address("address", address)?;
        check_mail_token("unsubscribe token", candidate)?;
        let (room_id, candidate) = (room_id.to_owned(), candidate.to_owned());
        self.run(move |c| {
            write(c, |tx| {
                tx.query_row(
                    &format!(
                        "INSERT INTO notify_state (room_id, address, unsubscribe_token)
                         SELECT ?1, ?2, ?3 WHERE {IS_PARTICIPANT}
                         ON CONFLICT (room_id, address) DO UPDATE SET
                             unsubscribe_token = COALESCE(notify_state.unsubscribe_token,
                                                          excluded.unsubscribe_token)
                         RETURNING unsubscribe_token"
                    ),
                    (&room_id, &address, &candidate),
                    |r| r.get(0),
                )
                .optional()
                .map_err(token_taken("unsubscribe token"))?
                .ok_or_else(|| stranger(&room_id, &address))
            })
        })
        .await
    }

    async fn lookup_unsubscribe(&self, token: &str) -> Result<Option<(String, String)>> {
        let Some(token) = lookup_form(token) else {
            return Ok(None);
        };
        self.run(move |c| {
            c.query_row(
                "SELECT room_id, address FROM notify_state WHERE unsubscribe_token = ?1",
                [&token],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(backend)
        })
        .await
    }
}
