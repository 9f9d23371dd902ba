//! The outbox: every mail chatd sends (reminders, sign-in links, and the notifications and codes
//! of the mail loop) is queued in the store first ([`queue`]) and delivered by a worker
//! ([`run_delivery`]), so that delivery neither loses nor repeats a mail.
//!
//! - Not lost: a queued mail survives a restart; a temporary failure (4xx, a relay that is down or
//!   slow) is retried `[smtp] retry_initial_secs` later, twice as long after each failure up to
//!   [`MAX_RETRY_DELAY`], until the mail is `[smtp] give_up_hours` old; then, or at once on a
//!   permanent failure (5xx, a malformed address), it is recorded as failed, logged and shown
//!   (`chatd show-room`, the sender's `/me`).
//! - Not repeated: each mail has a stable Message-ID, queued once (the store ignores a second
//!   enqueue of the same id). A worker claims a mail with a lease that outlasts its SMTP attempts;
//!   a process that dies between the relay's answer and recording it leaves the lease to run out,
//!   and the mail is sent once more, with the same Message-ID, so the receiving side can tell.

use crate::room_tag::room_tag;
use std::time::Duration;

use chmail::store::{NewOutgoing, OutgoingRecord};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::{
    clock::ms,
    error::AppError,
    mail::{MailError, OutgoingMail},
    state::AppState,
};

/// How often the worker looks for due mails when nobody wakes it: the retry times are in the
/// store, and another process may have queued mail.
pub const TICK: Duration = Duration::from_secs(1);

/// Most mails claimed at once; the worker claims again at once when it got that many.
pub const BATCH: u32 = 5;

/// Time a claim allows beyond the SMTP attempts of its batch, for the store calls around them.
pub const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// The longest wait between two attempts at a mail: the doubling stops here, so a relay that
/// comes back after a long outage gets the mail within the hour.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3_600);

/// How long sent and failed mails stay in the outbox (shown, and deduplicated by Message-ID):
/// far longer than any retry of an enqueue can come late.
pub const KEEP: Duration = Duration::from_secs(30 * 24 * 3_600);

/// How often the worker prunes the outbox of mails older than [`KEEP`].
pub const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// How often the worker counts the queued mails for the `chatd_outbox_backlog` gauge: about a
/// scrape interval, so the count (one query on an index) costs the store next to nothing.
pub const BACKLOG_EVERY: Duration = Duration::from_secs(15);

/// Queues `mail` of `kind` (see [`chmail::store::kind`]), about `room_id` if any, and wakes the
/// delivery worker. Returns `false` when a mail with its Message-ID was queued before (it is not
/// queued again: composing a mail twice, after a crash, sends it once).
///
/// # Errors
/// When the store refuses the mail (malformed) or fails.
pub async fn queue(
    state: &AppState,
    mail: &OutgoingMail,
    kind: &str,
    room_id: Option<&str>,
) -> Result<bool, AppError> {
    let new = NewOutgoing {
        message_id: mail.message_id.clone(),
        kind: kind.to_owned(),
        to: mail.to.clone(),
        subject: mail.subject.clone(),
        text: mail.text.clone(),
        html: mail.html.clone(),
        headers: mail.headers.clone(),
        room_id: room_id.map(str::to_owned),
        created_ms: state.clock.now_ms(),
    };
    let (id, fresh) = state.store_call(state.store.enqueue_mail(&new)).await?;
    if fresh {
        debug!(id, kind, message_id = %mail.message_id, "mail queued");
        state.metrics.mail_queued(kind);
        state.mail_queued.notify_one();
    } else {
        debug!(id, kind, message_id = %mail.message_id, "mail was queued before");
    }
    Ok(fresh)
}

/// The lease of one claim: every mail of a batch may take the whole `[smtp] timeout_ms`.
pub fn lease(config: &chmail::Config) -> Duration {
    config.smtp.timeout() * BATCH + LEASE_MARGIN
}

/// When to try again after the `attempts`-th failure (1 for the first) at `now_ms`: `[smtp]
/// retry_initial_secs`, doubled for each earlier failure, at most [`MAX_RETRY_DELAY`], and no
/// later than the give-up time (`created_ms` plus `[smtp] give_up_hours`, so the last attempt
/// falls on it). `None` when that time has come: the mail has failed for good.
pub fn retry_at(
    config: &chmail::Config,
    created_ms: i64,
    attempts: u32,
    now_ms: i64,
) -> Option<i64> {
    let give_up = created_ms.saturating_add(ms(config.smtp.give_up_after()));
    if now_ms >= give_up {
        return None;
    }
    let doublings = attempts.saturating_sub(1);
    let factor = 1i64
        .checked_shl(doublings)
        .filter(|f| *f > 0)
        .unwrap_or(i64::MAX);
    let delay = ms(config.smtp.retry_initial())
        .saturating_mul(factor)
        .min(ms(MAX_RETRY_DELAY));
    Some(now_ms.saturating_add(delay).min(give_up))
}

/// Delivers queued mail until `shutdown` turns true: every [`TICK`], and at once when
/// [`queue`] wakes it. Stops promptly, even mid-mail: a mail whose attempt was cut off keeps its
/// lease and is sent after it runs out (at most once more, with the same Message-ID).
pub async fn run_delivery(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned_ms: Option<i64> = None;
    let mut counted_ms: Option<i64> = None;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
            () = state.mail_queued.notified() => {}
        }
        let now = state.clock.now_ms();
        if pruned_ms.is_none_or(|t| now.saturating_sub(t) >= ms(PRUNE_EVERY)) {
            pruned_ms = Some(now);
            prune(&state, now).await;
        }
        if counted_ms.is_none_or(|t| now.saturating_sub(t) >= ms(BACKLOG_EVERY)) {
            counted_ms = Some(now);
            count_backlog(&state).await;
        }
        loop {
            let now = state.clock.now_ms();
            let claim = state
                .store
                .claim_mail(&state.node, now, ms(lease(&state.config)), BATCH);
            let batch = match state.store_call(claim).await {
                Ok(batch) => batch,
                Err(e) => {
                    warn!(cause = %e, "claiming outgoing mail failed");
                    break;
                }
            };
            let full = batch.len() >= BATCH as usize;
            for record in batch {
                if !deliver(&state, record, &mut shutdown).await {
                    return;
                }
            }
            if !full {
                break;
            }
        }
    }
}

/// Deletes the sent and failed mails older than [`KEEP`].
async fn prune(state: &AppState, now: i64) {
    let before = now.saturating_sub(ms(KEEP));
    match state.store_call(state.store.prune_mail(before)).await {
        Ok(0) => {}
        Ok(n) => debug!(deleted = n, "old outgoing mail pruned"),
        Err(e) => warn!(cause = %e, "pruning outgoing mail failed"),
    }
}

/// Sets the backlog gauge to the number of queued mails (of every node: they share the store).
async fn count_backlog(state: &AppState) {
    match state.store_call(state.store.queued_mail_count()).await {
        Ok(n) => state.metrics.set_backlog(n),
        Err(e) => debug!(cause = %e, "outgoing mail not counted"),
    }
}

/// One attempt at a claimed mail, recorded. `false` when shutdown cut it off.
async fn deliver(
    state: &AppState,
    record: OutgoingRecord,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let timeout = state.config.smtp.timeout();
    let lease_until = record.lease_until_ms.unwrap_or(i64::MIN);
    if state.clock.now_ms().saturating_add(ms(timeout)) > lease_until {
        // An attempt begun now could outlive our claim and overlap another process's: leave the
        // mail to whoever claims it after the lease.
        debug!(id = record.id, "outgoing mail left for a new claim");
        return true;
    }
    let mail = OutgoingMail {
        to: record.mail.to.clone(),
        subject: record.mail.subject.clone(),
        text: record.mail.text.clone(),
        html: record.mail.html.clone(),
        message_id: record.mail.message_id.clone(),
        headers: record.mail.headers.clone(),
    };
    let attempt = async {
        match tokio::time::timeout(timeout, state.mailer.send(&mail)).await {
            Ok(result) => result,
            Err(_) => Err(MailError::Temporary(format!(
                "the relay did not answer within {} ms",
                timeout.as_millis()
            ))),
        }
    };
    let result = tokio::select! {
        _ = shutdown.wait_for(|s| *s) => return false,
        result = attempt => result,
    };
    if let Err(e) = record_attempt(state, &record, result).await {
        warn!(id = record.id, cause = %e, "outgoing mail attempt not recorded; it is tried again after the lease");
    }
    true
}

/// Records the relay's answer to an attempt at `record`.
async fn record_attempt(
    state: &AppState,
    record: &OutgoingRecord,
    result: Result<(), MailError>,
) -> Result<(), AppError> {
    let node = &state.node;
    let now = state.clock.now_ms();
    let (id, mail) = (record.id, &record.mail);
    let attempts = record.attempts.saturating_add(1);
    let result_name = match &result {
        Ok(()) => "sent",
        Err(MailError::Temporary(_))
            if retry_at(&state.config, mail.created_ms, attempts, now).is_some() =>
        {
            "temporary"
        }
        Err(MailError::Temporary(_)) => "given_up",
        Err(MailError::Permanent(_)) => "permanent",
    };
    state.metrics.delivery(&mail.kind, result_name);
    let recorded = match result {
        Ok(()) => {
            info!(id, kind = %mail.kind, to = %mail.to, message_id = %mail.message_id, attempts, "mail sent");
            state
                .store_call(state.store.mail_sent(id, node, now))
                .await?
        }
        Err(MailError::Temporary(why)) => {
            match retry_at(&state.config, mail.created_ms, attempts, now) {
                Some(at) => {
                    info!(id, kind = %mail.kind, to = %mail.to, attempts, cause = %why, retry_in_s = (at - now) / 1000, "mail delivery failed temporarily; retrying");
                    state
                        .store_call(state.store.mail_failed(id, node, now, &why, Some(at)))
                        .await?
                }
                None => {
                    let why = format!(
                        "given up after {} hours: {why}",
                        state.config.smtp.give_up_hours
                    );
                    warn!(id, kind = %mail.kind, to = %mail.to, room = ?mail.room_id.as_deref().map(room_tag), attempts, cause = %why, "mail not delivered");
                    state
                        .store_call(state.store.mail_failed(id, node, now, &why, None))
                        .await?
                }
            }
        }
        Err(MailError::Permanent(why)) => {
            warn!(id, kind = %mail.kind, to = %mail.to, room = ?mail.room_id.as_deref().map(room_tag), attempts, cause = %why, "mail refused by the relay; not retried");
            state
                .store_call(state.store.mail_failed(id, node, now, &why, None))
                .await?
        }
    };
    if !recorded {
        warn!(
            id,
            "outgoing mail lease lost before the attempt was recorded"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_an_hour_and_stop_at_the_give_up_time() {
        let mut config = chmail::Config::default();
        config.smtp.retry_initial_secs = 60;
        config.smtp.give_up_hours = 48;
        let at = |attempts, now| retry_at(&config, 0, attempts, now);
        assert_eq!(at(1, 0), Some(60_000));
        assert_eq!(at(2, 0), Some(120_000));
        assert_eq!(at(3, 1_000), Some(241_000));
        assert_eq!(at(7, 0), Some(3_600_000), "64 min capped to an hour");
        assert_eq!(at(200, 0), Some(3_600_000), "no overflow");
        let give_up = 48 * 3_600_000;
        assert_eq!(
            at(50, give_up - 10_000),
            Some(give_up),
            "the last try at the deadline"
        );
        assert_eq!(at(51, give_up), None);
    }
}
