//! The mail loop side of the PostgreSQL store: [`MailStore`] for [`PostgresStore`].
//!
//! Several chatd nodes share these rows, so each race is settled by the database: a retried
//! enqueue by the UNIQUE Message-ID; outgoing mail and notifications by `FOR UPDATE SKIP LOCKED`
//! and a lease; a token by an upsert on (room, address); code guesses by a row lock on the code.

use deadpool_postgres::GenericClient;
use tokio_postgres::{error::SqlState, Row};

use super::{
    chat::{check_owner, check_room_id, normalize_address, page, parse_stored, to_count},
    mail_loop::{
        check_code_input, check_grant, check_mail_token, clean_error, decode_headers, judge_code,
        lookup_form, lookup_pair, normalize_outgoing, CODE_SEND_KEEP_MS,
    },
    postgres::{backend, bounded, PostgresStore},
    postgres_chat::{execute, query_all, query_opt},
    CodeCheck, MailScope, MailStore, NewOutgoing, NotifyJob, NotifyState, OutgoingRecord,
    ReplyToken, Result, StoreError, Via,
};

/// The columns [`outgoing_row`] reads.
const OUTGOING_COLS: &str = "id, message_id, kind, recipient, subject, text_body, html_body,
    headers, room_id, created_ms, state, attempts, next_attempt_ms, last_error, sent_ms,
    failed_ms, lease_owner, lease_until_ms";
/// The same, qualified, for the claim (which joins another relation).
const OUTGOING_COLS_O: &str = "o.id, o.message_id, o.kind, o.recipient, o.subject, o.text_body,
    o.html_body, o.headers, o.room_id, o.created_ms, o.state, o.attempts, o.next_attempt_ms,
    o.last_error, o.sent_ms, o.failed_ms, o.lease_owner, o.lease_until_ms";
/// The columns [`reply_token_row`] reads.
const REPLY_TOKEN_COLS: &str = "token, room_id, address, created_ms, expires_ms";
/// The columns [`notify_row`] reads (qualified: the claim joins another relation).
const NOTIFY_COLS: &str = "n.room_id, n.address, n.muted, n.due_ms, n.next_due_ms,
    n.last_sent_ms, n.backoff_ms, n.last_message_id, n.sent_count, n.lease_owner,
    n.lease_until_ms";

/// Whether (room, address) is a participant; appended to an `INSERT .. SELECT` so that a write
/// for a stranger inserts nothing (`$1` room, `$2` address).
const IS_PARTICIPANT: &str =
    "EXISTS (SELECT 1 FROM room_participants WHERE room_id = $1 AND address = $2)";

/// An outgoing mail, from [`OUTGOING_COLS`].
fn outgoing_row(r: &Row) -> Result<OutgoingRecord> {
    let headers: String = r.try_get(7).map_err(backend)?;
    let state: String = r.try_get(10).map_err(backend)?;
    Ok(OutgoingRecord {
        id: r.try_get(0).map_err(backend)?,
        mail: NewOutgoing {
            message_id: r.try_get(1).map_err(backend)?,
            kind: r.try_get(2).map_err(backend)?,
            to: r.try_get(3).map_err(backend)?,
            subject: r.try_get(4).map_err(backend)?,
            text: r.try_get(5).map_err(backend)?,
            html: r.try_get(6).map_err(backend)?,
            headers: decode_headers(&headers)?,
            room_id: r.try_get(8).map_err(backend)?,
            created_ms: r.try_get(9).map_err(backend)?,
        },
        state: parse_stored(&state)?,
        attempts: to_count(r.try_get(11).map_err(backend)?)?,
        next_attempt_ms: r.try_get(12).map_err(backend)?,
        last_error: r.try_get(13).map_err(backend)?,
        sent_ms: r.try_get(14).map_err(backend)?,
        failed_ms: r.try_get(15).map_err(backend)?,
        lease_owner: r.try_get(16).map_err(backend)?,
        lease_until_ms: r.try_get(17).map_err(backend)?,
    })
}

/// A reply token, from [`REPLY_TOKEN_COLS`].
fn reply_token_row(r: &Row) -> Result<ReplyToken> {
    Ok(ReplyToken {
        token: r.try_get(0).map_err(backend)?,
        room_id: r.try_get(1).map_err(backend)?,
        address: r.try_get(2).map_err(backend)?,
        created_ms: r.try_get(3).map_err(backend)?,
        expires_ms: r.try_get(4).map_err(backend)?,
    })
}

/// A notification schedule and its lease (owner, until), from [`NOTIFY_COLS`].
fn notify_row(r: &Row) -> Result<(NotifyState, Option<String>, Option<i64>)> {
    Ok((
        NotifyState {
            room_id: r.try_get(0).map_err(backend)?,
            address: r.try_get(1).map_err(backend)?,
            muted: r.try_get(2).map_err(backend)?,
            due_ms: r.try_get(3).map_err(backend)?,
            next_due_ms: r.try_get(4).map_err(backend)?,
            last_sent_ms: r.try_get(5).map_err(backend)?,
            backoff_ms: r.try_get(6).map_err(backend)?,
            last_message_id: r.try_get(7).map_err(backend)?,
            sent_count: to_count(r.try_get(8).map_err(backend)?)?,
        },
        r.try_get(9).map_err(backend)?,
        r.try_get(10).map_err(backend)?,
    ))
}

/// "Not a participant": a write for an address the room does not have.
fn stranger(room_id: &str, address: &str) -> StoreError {
    StoreError::Invalid(format!(
        "{address:?} is not a participant of room {room_id:?}"
    ))
}

/// Maps a uniqueness violation to "the token is taken", a foreign key violation (the room was
/// deleted meanwhile) to "unknown room", anything else to a backend error.
fn write_error<'a>(
    what: &'static str,
    room_id: &'a str,
) -> impl Fn(tokio_postgres::Error) -> StoreError + 'a {
    move |e| match e.code() {
        Some(&SqlState::UNIQUE_VIOLATION) => {
            StoreError::Invalid(format!("{what} is already another participant's"))
        }
        Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
            StoreError::Invalid(format!("unknown room {room_id:?}"))
        }
        _ => backend(e),
    }
}

/// Runs a prepared-and-cached statement that returns at most one row, mapping errors with `map`.
async fn query_opt_with<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    map: impl Fn(tokio_postgres::Error) -> StoreError,
) -> Result<Option<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(backend)?;
    c.query_opt(&stmt, params).await.map_err(map)
}

/// Reads one COUNT(*).
async fn count<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u32> {
    let row = query_opt(c, sql, params)
        .await?
        .ok_or_else(|| StoreError::Backend("COUNT returned no row".into()))?;
    to_count(row.try_get(0).map_err(backend)?)
}

#[async_trait::async_trait]
impl MailStore for PostgresStore {
    async fn enqueue_mail(&self, mail: &NewOutgoing) -> Result<(i64, bool)> {
        let (m, headers) = normalize_outgoing(mail)?;
        bounded(async {
            let client = self.client().await?;
            let inserted = query_opt(
                &client,
                "INSERT INTO outgoing_mail (message_id, kind, recipient, subject, text_body,
                     html_body, headers, room_id, created_ms, next_attempt_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
                 ON CONFLICT (message_id) DO NOTHING RETURNING id",
                &[
                    &m.message_id,
                    &m.kind,
                    &m.to,
                    &m.subject,
                    &m.text,
                    &m.html,
                    &headers,
                    &m.room_id,
                    &m.created_ms,
                ],
            )
            .await?;
            if let Some(row) = inserted {
                return Ok((row.try_get(0).map_err(backend)?, true));
            }
            // The first copy; committed, or the insert above would have waited for it.
            let row = query_opt(
                &client,
                "SELECT id FROM outgoing_mail WHERE message_id = $1",
                &[&m.message_id],
            )
            .await?
            .ok_or_else(|| StoreError::Backend("a conflicting outgoing mail vanished".into()))?;
            Ok((row.try_get(0).map_err(backend)?, false))
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
        let until = now_ms.saturating_add(lease_ms);
        bounded(async {
            let client = self.client().await?;
            // SKIP LOCKED: rows another node is claiming right now are its; a row whose claim
            // committed after this statement began is re-checked against the lease and left out.
            let rows = query_all(
                &client,
                &format!(
                    "WITH due AS (
                         SELECT id FROM outgoing_mail
                         WHERE state = 'queued' AND next_attempt_ms <= $3
                           AND (lease_until_ms IS NULL OR lease_until_ms < $3)
                         ORDER BY next_attempt_ms, id LIMIT $4
                         FOR UPDATE SKIP LOCKED)
                     UPDATE outgoing_mail o SET lease_owner = $1, lease_until_ms = $2
                     FROM due WHERE o.id = due.id
                     RETURNING {OUTGOING_COLS_O}"
                ),
                &[&owner, &until, &now_ms, &page(limit)],
            )
            .await?;
            let mut mails = rows.iter().map(outgoing_row).collect::<Result<Vec<_>>>()?;
            // RETURNING follows no ORDER BY: the longest waiting first.
            mails.sort_by_key(|m| (m.next_attempt_ms, m.id));
            Ok(mails)
        })
        .await
    }

    async fn mail_sent(&self, id: i64, owner: &str, now_ms: i64) -> Result<bool> {
        bounded(async {
            let client = self.client().await?;
            let changed = execute(
                &client,
                "UPDATE outgoing_mail SET state = 'sent', sent_ms = $3,
                     lease_owner = NULL, lease_until_ms = NULL
                 WHERE id = $1 AND state = 'queued' AND lease_owner = $2",
                &[&id, &owner, &now_ms],
            )
            .await?;
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
        let error = clean_error(error);
        bounded(async {
            let client = self.client().await?;
            let changed = execute(
                &client,
                "UPDATE outgoing_mail SET attempts = attempts + 1, last_error = $4,
                     state = CASE WHEN $5::BIGINT IS NULL THEN 'failed' ELSE 'queued' END,
                     failed_ms = CASE WHEN $5::BIGINT IS NULL THEN $3::BIGINT ELSE NULL END,
                     next_attempt_ms = COALESCE($5::BIGINT, next_attempt_ms),
                     lease_owner = NULL, lease_until_ms = NULL
                 WHERE id = $1 AND state = 'queued' AND lease_owner = $2",
                &[&id, &owner, &now_ms, &error, &retry_at_ms],
            )
            .await?;
            Ok(changed == 1)
        })
        .await
    }

    async fn outgoing(&self, id: i64) -> Result<Option<OutgoingRecord>> {
        bounded(async {
            let client = self.client().await?;
            query_opt(
                &client,
                &format!("SELECT {OUTGOING_COLS} FROM outgoing_mail WHERE id = $1"),
                &[&id],
            )
            .await?
            .as_ref()
            .map(outgoing_row)
            .transpose()
        })
        .await
    }

    async fn outgoing_by_message_id(&self, message_id: &str) -> Result<Option<OutgoingRecord>> {
        bounded(async {
            let client = self.client().await?;
            query_opt(
                &client,
                &format!("SELECT {OUTGOING_COLS} FROM outgoing_mail WHERE message_id = $1"),
                &[&message_id],
            )
            .await?
            .as_ref()
            .map(outgoing_row)
            .transpose()
        })
        .await
    }

    async fn failed_mail(&self, scope: MailScope<'_>, limit: u32) -> Result<Vec<OutgoingRecord>> {
        let (column, value) = match scope {
            MailScope::Room(room_id) => ("room_id", room_id.to_owned()),
            MailScope::Recipient(to) => ("recipient", to.trim().to_lowercase()),
        };
        bounded(async {
            let client = self.client().await?;
            let rows = query_all(
                &client,
                &format!(
                    "SELECT {OUTGOING_COLS} FROM outgoing_mail
                     WHERE state = 'failed' AND {column} = $1
                     ORDER BY failed_ms DESC, id DESC LIMIT $2"
                ),
                &[&value, &page(limit)],
            )
            .await?;
            rows.iter().map(outgoing_row).collect()
        })
        .await
    }

    async fn prune_mail(&self, before_ms: i64) -> Result<u64> {
        bounded(async {
            let client = self.client().await?;
            execute(
                &client,
                "DELETE FROM outgoing_mail
                 WHERE (state = 'sent' AND sent_ms < $1) OR (state = 'failed' AND failed_ms < $1)",
                &[&before_ms],
            )
            .await
        })
        .await
    }

    async fn queued_mail_count(&self) -> Result<u32> {
        bounded(async {
            let client = self.client().await?;
            count(
                &client,
                "SELECT COUNT(*) FROM outgoing_mail WHERE state = 'queued'",
                &[],
            )
            .await
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
        bounded(async {
            let client = self.client().await?;
            // Pruning on its own (autocommit), so that the upsert below locks one row only.
            execute(
                &client,
                "DELETE FROM reply_tokens WHERE expires_ms <= $1",
                &[&now_ms],
            )
            .await?;
            // A stored token that expired meanwhile is replaced in the same statement.
            let row = query_opt_with(
                &client,
                &format!(
                    "INSERT INTO reply_tokens (room_id, address, token, created_ms, expires_ms)
                     SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BIGINT, $5::BIGINT
                     WHERE {IS_PARTICIPANT}
                     ON CONFLICT (room_id, address) DO UPDATE SET
                         token = CASE WHEN reply_tokens.expires_ms <= $4 THEN excluded.token
                                      ELSE reply_tokens.token END,
                         created_ms = CASE WHEN reply_tokens.expires_ms <= $4
                                           THEN excluded.created_ms
                                           ELSE reply_tokens.created_ms END,
                         expires_ms = CASE WHEN reply_tokens.expires_ms <= $4
                                           THEN excluded.expires_ms
                                           ELSE GREATEST(reply_tokens.expires_ms,
                                                         excluded.expires_ms) END
                     RETURNING {REPLY_TOKEN_COLS}"
                ),
                &[&room_id, &address, &candidate, &now_ms, &expires_ms],
                write_error("reply token", room_id),
            )
            .await?;
            row.as_ref()
                .map(reply_token_row)
                .transpose()?
                .ok_or_else(|| stranger(room_id, &address))
        })
        .await
    }

    async fn lookup_reply_token(&self, token: &str, now_ms: i64) -> Result<Option<ReplyToken>> {
        let Some(token) = lookup_form(token) else {
            return Ok(None);
        };
        bounded(async {
            let client = self.client().await?;
            query_opt(
                &client,
                &format!(
                    "SELECT {REPLY_TOKEN_COLS} FROM reply_tokens
                     WHERE token = $1 AND expires_ms > $2"
                ),
                &[&token, &now_ms],
            )
            .await?
            .as_ref()
            .map(reply_token_row)
            .transpose()
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
        let author = author.trim().to_lowercase();
        bounded(async {
            let client = self.client().await?;
            count(
                &client,
                "SELECT COUNT(*) FROM messages
                 WHERE room_id = $1 AND author = $2 AND via = $3 AND created_ms >= $4",
                &[&room_id, &author, &via.as_str(), &since_ms],
            )
            .await
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
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            let stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO address_codes
                         (room_id, address, code_hash, created_ms, expires_ms, attempts)
                     SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BIGINT, $5::BIGINT, 0
                     WHERE {IS_PARTICIPANT}
                     ON CONFLICT (room_id, address) DO UPDATE SET
                         code_hash = excluded.code_hash, created_ms = excluded.created_ms,
                         expires_ms = excluded.expires_ms, attempts = 0"
                ))
                .await
                .map_err(backend)?;
            let stored = tx
                .execute(
                    &stmt,
                    &[&room_id, &address, &code_hash, &now_ms, &expires_ms],
                )
                .await
                .map_err(write_error("code", room_id))?;
            if stored == 0 {
                return Err(stranger(room_id, &address));
            }
            // Opportunistic pruning: sends past any rate-limit window.
            execute(
                &tx,
                "DELETE FROM code_sends WHERE sent_ms < $1",
                &[&now_ms.saturating_sub(CODE_SEND_KEEP_MS)],
            )
            .await?;
            execute(
                &tx,
                "INSERT INTO code_sends (room_id, address, sent_ms) VALUES ($1, $2, $3)",
                &[&room_id, &address, &now_ms],
            )
            .await?;
            tx.commit().await.map_err(backend)
        })
        .await
    }

    async fn count_codes(&self, room_id: &str, address: &str, since_ms: i64) -> Result<u32> {
        let Some(address) = lookup_pair(room_id, address) else {
            return Ok(0);
        };
        bounded(async {
            let client = self.client().await?;
            count(
                &client,
                "SELECT COUNT(*) FROM code_sends
                 WHERE room_id = $1 AND address = $2 AND sent_ms >= $3",
                &[&room_id, &address, &since_ms],
            )
            .await
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
        bounded(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(backend)?;
            // The row lock makes concurrent guesses take turns: each sees the attempts of the
            // ones before it.
            let Some(row) = query_opt(
                &tx,
                "SELECT code_hash, expires_ms, attempts FROM address_codes
                 WHERE room_id = $1 AND address = $2 FOR UPDATE",
                &[&room_id, &address],
            )
            .await?
            else {
                return Ok(CodeCheck::NoCode);
            };
            let hash: String = row.try_get(0).map_err(backend)?;
            let expires_ms: i64 = row.try_get(1).map_err(backend)?;
            let attempts: i64 = row.try_get(2).map_err(backend)?;
            let verdict = judge_code(&hash, expires_ms, attempts, code_hash, now_ms, max_attempts);
            match verdict {
                CodeCheck::Verified => {
                    execute(
                        &tx,
                        "UPDATE room_participants SET verified = true
                         WHERE room_id = $1 AND address = $2",
                        &[&room_id, &address],
                    )
                    .await?;
                    execute(
                        &tx,
                        "DELETE FROM address_codes WHERE room_id = $1 AND address = $2",
                        &[&room_id, &address],
                    )
                    .await?;
                }
                CodeCheck::Wrong { .. } => {
                    execute(
                        &tx,
                        "UPDATE address_codes SET attempts = attempts + 1
                         WHERE room_id = $1 AND address = $2",
                        &[&room_id, &address],
                    )
                    .await?;
                }
                CodeCheck::Expired | CodeCheck::NoCode | CodeCheck::Locked => {}
            }
            tx.commit().await.map_err(backend)?;
            Ok(verdict)
        })
        .await
    }

    async fn is_verified(&self, room_id: &str, address: &str) -> Result<bool> {
        let Some(address) = lookup_pair(room_id, address) else {
            return Ok(false);
        };
        bounded(async {
            let client = self.client().await?;
            let row = query_opt(
                &client,
                "SELECT EXISTS (SELECT 1 FROM room_participants
                                WHERE room_id = $1 AND address = $2 AND verified)",
                &[&room_id, &address],
            )
            .await?
            .ok_or_else(|| StoreError::Backend("EXISTS returned no row".into()))?;
            row.try_get(0).map_err(backend)
        })
        .await
    }

    async fn prove_address(&self, room_id: &str, address: &str) -> Result<bool> {
        let Some(address) = lookup_pair(room_id, address) else {
            return Ok(false);
        };
        bounded(async {
            let client = self.client().await?;
            let changed = execute(
                &client,
                "UPDATE room_participants SET verified = true
                 WHERE room_id = $1 AND address = $2 AND role <> 'from' AND NOT verified",
                &[&room_id, &address],
            )
            .await?;
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
        let address = normalize_address("address", address)?;
        bounded(async {
            let client = self.client().await?;
            let row = query_opt_with(
                &client,
                &format!(
                    "INSERT INTO notify_state AS n (room_id, address, due_ms)
                     SELECT $1::TEXT, $2::TEXT, $3::BIGINT WHERE {IS_PARTICIPANT}
                     ON CONFLICT (room_id, address) DO UPDATE SET
                         due_ms = CASE
                             WHEN n.muted OR n.lease_owner IS NOT NULL THEN n.due_ms
                             WHEN n.due_ms IS NULL OR excluded.due_ms < n.due_ms
                                 THEN excluded.due_ms
                             ELSE n.due_ms END,
                         next_due_ms = CASE
                             WHEN n.muted OR n.lease_owner IS NULL THEN n.next_due_ms
                             WHEN n.next_due_ms IS NULL OR excluded.due_ms < n.next_due_ms
                                 THEN excluded.due_ms
                             ELSE n.next_due_ms END
                     RETURNING n.muted"
                ),
                &[&room_id, &address, &due_ms],
                write_error("notification", room_id),
            )
            .await?;
            match row {
                Some(row) => Ok(!row.try_get::<_, bool>(0).map_err(backend)?),
                None => Err(stranger(room_id, &address)),
            }
        })
        .await
    }

    async fn notify_state(&self, room_id: &str, address: &str) -> Result<Option<NotifyState>> {
        let Some(address) = lookup_pair(room_id, address) else {
            return Ok(None);
        };
        bounded(async {
            let client = self.client().await?;
            let row = query_opt(
                &client,
                &format!(
                    "SELECT {NOTIFY_COLS} FROM notify_state n
                     WHERE n.room_id = $1 AND n.address = $2"
                ),
                &[&room_id, &address],
            )
            .await?;
            Ok(row
                .as_ref()
                .map(notify_row)
                .transpose()?
                .map(|(state, _, _)| state))
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
        let until = now_ms.saturating_add(lease_ms);
        bounded(async {
            let client = self.client().await?;
            let rows = query_all(
                &client,
                &format!(
                    "WITH due AS (
                         SELECT room_id, address FROM notify_state
                         WHERE due_ms <= $3 AND NOT muted
                           AND (lease_until_ms IS NULL OR lease_until_ms < $3)
                         ORDER BY due_ms, room_id, address LIMIT $4
                         FOR UPDATE SKIP LOCKED)
                     UPDATE notify_state n SET lease_owner = $1, lease_until_ms = $2
                     FROM due WHERE n.room_id = due.room_id AND n.address = due.address
                     RETURNING {NOTIFY_COLS}"
                ),
                &[&owner, &until, &now_ms, &page(limit)],
            )
            .await?;
            let mut jobs = Vec::with_capacity(rows.len());
            for row in &rows {
                let (state, owner, until) = notify_row(row)?;
                jobs.push(NotifyJob {
                    state,
                    owner: owner.unwrap_or_default(),
                    lease_until_ms: until.unwrap_or_default(),
                });
            }
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
        bounded(async {
            let client = self.client().await?;
            let changed = execute(
                &client,
                "UPDATE notify_state SET last_sent_ms = $4,
                     last_message_id = COALESCE($5, last_message_id),
                     backoff_ms = $6, sent_count = sent_count + 1,
                     due_ms = next_due_ms, next_due_ms = NULL,
                     lease_owner = NULL, lease_until_ms = NULL
                 WHERE room_id = $1 AND address = $2 AND lease_owner = $3",
                &[
                    &room_id,
                    &address,
                    &owner,
                    &sent_ms,
                    &last_message_id,
                    &next_backoff_ms,
                ],
            )
            .await?;
            Ok(changed == 1)
        })
        .await
    }

    async fn skip_notification(&self, room_id: &str, address: &str, owner: &str) -> Result<bool> {
        let Some(address) = lookup_pair(room_id, address) else {
            return Ok(false);
        };
        bounded(async {
            let client = self.client().await?;
            let changed = execute(
                &client,
                "UPDATE notify_state SET due_ms = next_due_ms, next_due_ms = NULL,
                     lease_owner = NULL, lease_until_ms = NULL
                 WHERE room_id = $1 AND address = $2 AND lease_owner = $3",
                &[&room_id, &address, &owner],
            )
            .await?;
            Ok(changed == 1)
        })
        .await
    }

    async fn set_muted(&self, room_id: &str, address: &str, muted: bool) -> Result<()> {
        check_room_id(room_id)?;
        let address = normalize_address("address", address)?;
        bounded(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&format!(
                    "INSERT INTO notify_state AS n (room_id, address, muted)
                     SELECT $1::TEXT, $2::TEXT, $3::BOOLEAN WHERE {IS_PARTICIPANT}
                     ON CONFLICT (room_id, address) DO UPDATE SET
                         muted = excluded.muted,
                         due_ms = CASE WHEN excluded.muted THEN NULL ELSE n.due_ms END,
                         next_due_ms = CASE WHEN excluded.muted THEN NULL ELSE n.next_due_ms END"
                ))
                .await
                .map_err(backend)?;
            let stored = client
                .execute(&stmt, &[&room_id, &address, &muted])
                .await
                .map_err(write_error("notification", room_id))?;
            if stored == 0 {
                return Err(stranger(room_id, &address));
            }
            Ok(())
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
        let address = normalize_address("address", address)?;
        check_mail_token("unsubscribe token", candidate)?;
        bounded(async {
            let client = self.client().await?;
            let row = query_opt_with(
                &client,
                &format!(
                    "INSERT INTO notify_state AS n (room_id, address, unsubscribe_token)
                     SELECT $1::TEXT, $2::TEXT, $3::TEXT WHERE {IS_PARTICIPANT}
                     ON CONFLICT (room_id, address) DO UPDATE SET
                         unsubscribe_token = COALESCE(n.unsubscribe_token,
                                                      excluded.unsubscribe_token)
                     RETURNING n.unsubscribe_token"
                ),
                &[&room_id, &address, &candidate],
                write_error("unsubscribe token", room_id),
            )
            .await?;
            match row {
                Some(row) => row.try_get(0).map_err(backend),
                None => Err(stranger(room_id, &address)),
            }
        })
        .await
    }

    async fn lookup_unsubscribe(&self, token: &str) -> Result<Option<(String, String)>> {
        let Some(token) = lookup_form(token) else {
            return Ok(None);
        };
        bounded(async {
            let client = self.client().await?;
            let row = query_opt(
                &client,
                "SELECT room_id, address FROM notify_state WHERE unsubscribe_token = $1",
                &[&token],
            )
            .await?;
            row.map(|r| {
                Ok((
                    r.try_get(0).map_err(backend)?,
                    r.try_get(1).map_err(backend)?,
                ))
            })
            .transpose()
        })
        .await
    }
}
