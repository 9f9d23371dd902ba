//! Notifications to people who are not there: a verified recipient with no connection in a room
//! gets one mail with the messages they missed, after `[chat] notify_delay_secs`, batching
//! everything that arrives meanwhile (Chatwoot, Zulip and Intercom wait about two minutes and
//! group). Only unread messages go in, the newest [`MESSAGES_PER_MAIL`] of them: what was read
//! meanwhile is not mailed, and nothing at all when everything was. Each mail carries a link into the room, the participant's reply address
//! and a one-click unsubscribe (RFC 8058, [`crate::web::unsubscribe`]); `mute` in the chat does
//! the same.
//!
//! **Back-off.** A busy room must not become a flood of mails (Synapse throttles a room from
//! 10 min up to a day). Per room and participant, the next notification is due no sooner than
//! `backoff` after the last one; each mail doubles `backoff`, from `notify_delay` up to
//! `[chat] notify_max_backoff_secs`; after [`QUIET_RESET`] without a notification it starts over.
//!
//! **The sender.** The room's sender is not notified here: while they are away every message of
//! a recipient schedules a reminder (S117, [`crate::reminder`]), which quotes the messages,
//! signs them straight in and re-schedules itself for messages that come after it (every
//! `reminder_interval`). Notifying the sender too would mail the same messages twice; the
//! reminder is the sender's notification.
//!
//! **Who counts as there.** A recipient with a connection in the room on this process (the hub)
//! gets no notification, checked when one is scheduled and again when it is due. With several
//! nodes ([`crate::fanout`]) a recipient connected to another node is not in this hub, but gets
//! the messages through the fan-out and their page marks them read as they arrive; a
//! notification finds nothing unread and is skipped (the check when it is due), so no mail goes
//! out for what they had on screen.
//!
//! The schedule lives in the store ([`chmail::store::MailStore::schedule_notification`]), so a
//! restart neither loses nor repeats a notification; a worker on each node claims due ones with
//! a lease ([`run_worker`]).

pub mod compose;

use crate::room_tag::room_tag;
use std::{collections::HashSet, time::Duration};

use chmail::store::{kind, NotifyJob, NotifyState, Role};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::{auth::sender_address, clock::ms, error::AppError, state::AppState};

/// How often the worker looks for due notifications.
pub const TICK: Duration = Duration::from_secs(1);

/// How long a claimed notification stays ours: composing it and queueing it in the outbox are a
/// few store calls; a node that dies meanwhile leaves it to another after this.
pub const LEASE: Duration = Duration::from_secs(60);

/// Most notifications claimed per tick; the rest wait one tick.
pub const BATCH: u32 = 20;

/// Most chat messages in one notification: the newest, enough to follow; the mail says how many
/// earlier ones it left out, and they are in the chat.
pub const MESSAGES_PER_MAIL: u32 = 50;

/// After this long without a notification the back-off starts over from `notify_delay`.
pub const QUIET_RESET: Duration = Duration::from_secs(24 * 60 * 60);

/// A message by `author` was stored in `room_id`: schedules a notification for every verified
/// recipient but the author who has no connection in the room on this process, due after
/// `[chat] notify_delay_secs` and not before the back-off since their last one allows. A
/// pending notification keeps its earlier due time (that is the batching). Failures are logged:
/// the message is stored either way.
pub async fn schedule(state: &AppState, room_id: &str, author: &str) {
    if let Err(e) = try_schedule(state, room_id, author).await {
        warn!(room = %room_tag(room_id), cause = %e, "notifications not scheduled");
    }
}

/// [`schedule`] in a task of its own: the author's `ack` and the room's `message` need not wait
/// for the store calls it makes.
pub fn spawn_schedule(state: &AppState, room_id: &str, author: &str) {
    let (state, room_id, author) = (state.clone(), room_id.to_owned(), author.to_owned());
    tokio::spawn(async move { schedule(&state, &room_id, &author).await });
}

async fn try_schedule(state: &AppState, room_id: &str, author: &str) -> Result<(), AppError> {
    let members = state.store_call(state.store.members(room_id)).await?;
    let here = state.hub.addresses_in_room(room_id);
    let senders: HashSet<&str> = members
        .iter()
        .filter(|m| m.role == Role::From)
        .map(|m| m.address.as_str())
        .collect();
    let author = author.trim().to_lowercase();
    let now = state.clock.now_ms();
    let delay = ms(state.config.chat.notify_delay());
    let mut done = HashSet::new();
    for m in &members {
        let address = m.address.as_str();
        if !m.verified
            || m.role == Role::From
            || senders.contains(address)
            || address == author
            || here.contains(address)
            || !done.insert(address)
        {
            continue;
        }
        let current = state
            .store_call(state.store.notify_state(room_id, address))
            .await?;
        if current.as_ref().is_some_and(|s| s.muted) {
            continue;
        }
        let due = due_time(now, delay, current.as_ref());
        state
            .store_call(state.store.schedule_notification(room_id, address, due))
            .await?;
        debug!(room = %room_tag(room_id), to = %address, due, "notification scheduled");
    }
    Ok(())
}

/// When a notification asked for at `now` is due: after `delay`, and no sooner than the back-off
/// after the last one.
fn due_time(now: i64, delay: i64, current: Option<&NotifyState>) -> i64 {
    let mut due = now.saturating_add(delay);
    if let Some(s) = current {
        if let Some(last) = s.last_sent_ms {
            due = due.max(last.saturating_add(s.backoff_ms));
        }
    }
    due
}

/// The back-off after a notification sent at `now`: double the last one, at least `delay`, at
/// most `max`; from `delay` again when the last notification is [`QUIET_RESET`] old or more.
pub fn next_backoff(now: i64, last_sent: Option<i64>, backoff: i64, delay: i64, max: i64) -> i64 {
    let quiet = last_sent.is_none_or(|t| now.saturating_sub(t) >= ms(QUIET_RESET));
    let base = if quiet { 0 } else { backoff };
    base.saturating_mul(2).max(delay).min(max)
}

/// Composes due notifications and queues them in the outbox ([`crate::outbox`], which delivers
/// them) until `shutdown` turns true. Stops at once on shutdown: an unfinished notification
/// keeps its lease and is composed again after it runs out (with the same Message-ID, so the
/// outbox queues it once).
pub async fn run_worker(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let now = state.clock.now_ms();
        let claim = state
            .store
            .claim_notifications(&state.node, now, ms(LEASE), BATCH);
        let jobs = match state.store_call(claim).await {
            Ok(jobs) => jobs,
            Err(e) => {
                warn!(cause = %e, "claiming notifications failed");
                continue;
            }
        };
        for job in jobs {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                result = send(&state, &job) => if let Err(e) = result {
                    warn!(room = %room_tag(&job.state.room_id), to = %job.state.address, cause = %e,
                        "notification not queued; retrying after the lease");
                },
            }
        }
    }
}

/// Queues one claimed notification, or gives it up when there is nothing to tell.
async fn send(state: &AppState, job: &NotifyJob) -> Result<(), AppError> {
    let (room_id, address) = (&job.state.room_id, &job.state.address);
    let skip = || async {
        state
            .store_call(state.store.skip_notification(room_id, address, &state.node))
            .await
    };
    let Some(room) = state.store_call(state.store.room(room_id)).await? else {
        skip().await?;
        return Ok(());
    };
    let now = state.clock.now_ms();
    if let Some(last) = job.state.last_sent_ms {
        let allowed = last.saturating_add(job.state.backoff_ms);
        if now < allowed {
            // Asked for while the previous one was being sent, before the back-off grew: wait
            // for the back-off after all.
            skip().await?;
            state
                .store_call(state.store.schedule_notification(room_id, address, allowed))
                .await?;
            return Ok(());
        }
    }
    if state.hub.addresses_in_room(room_id).contains(address) {
        debug!(room = %room_tag(room_id), to = %address, "participant is in the room; notification skipped");
        skip().await?;
        return Ok(());
    }
    let members = state.store_call(state.store.members(room_id)).await?;
    let member = members.iter().find(|m| &m.address == address);
    let Some(member) = member.filter(|m| m.verified) else {
        skip().await?;
        return Ok(());
    };
    let after = member.last_read.max(job.state.last_message_id).unwrap_or(0);
    let mut quoted = crate::quote::newest_after(state, room_id, after, MESSAGES_PER_MAIL).await?;
    let last_included = quoted.messages.last().map(|m| m.id);
    quoted.messages.retain(|m| &m.author != address);
    if quoted.messages.is_empty() {
        debug!(room = %room_tag(room_id), to = %address, "nothing unread; notification skipped");
        skip().await?;
        return Ok(());
    }
    let links = compose::Links {
        room_url: format!("{}/c/{}/{}", state.base_url(), room.port, room.id),
        unsubscribe_url: format!(
            "{}/u/{}",
            state.base_url(),
            unsubscribe_token(state, room_id, address).await?
        ),
        reply_to: reply_address(state, room_id, address).await,
    };
    let sender = sender_address(&state.config, &room);
    let mail = compose::notification_mail(&state.config, &room, &sender, address, &quoted, &links);
    // Queued in the outbox, which delivers it with retries; its Message-ID is stable, so a
    // notification composed again after a lost lease is queued once.
    crate::outbox::queue(state, &mail, kind::NOTIFICATION, Some(room_id)).await?;
    let chat = &state.config.chat;
    let backoff = next_backoff(
        now,
        job.state.last_sent_ms,
        job.state.backoff_ms,
        ms(chat.notify_delay()),
        ms(chat.notify_max_backoff()),
    );
    let finished = state
        .store_call(state.store.finish_notification(
            room_id,
            address,
            &state.node,
            now,
            last_included,
            backoff,
        ))
        .await?;
    if !finished {
        warn!(room = %room_tag(room_id), to = %address, "notification lease lost before it was recorded");
        return Ok(());
    }
    info!(room = %room_tag(room_id), to = %address, messages = quoted.messages.len(), "notification queued");
    Ok(())
}

/// The unsubscribe token of `address` in `room_id`: the stored one, or a fresh random one
/// (formed as a reply token: 160 random bits in lowercase base32).
async fn unsubscribe_token(
    state: &AppState,
    room_id: &str,
    address: &str,
) -> Result<String, AppError> {
    let candidate = crate::reply::address::new_token()?;
    state
        .store_call(state.store.unsubscribe_token(room_id, address, &candidate))
        .await
}

/// The participant's reply address; a failure to make one is logged and the mail goes without
/// it (the link into the room still works, and a reply then goes to the From address).
async fn reply_address(state: &AppState, room_id: &str, address: &str) -> Option<String> {
    match crate::reply::address(state, room_id, address).await {
        Ok(reply_to) => Some(reply_to),
        Err(e) => {
            warn!(room = %room_tag(room_id), to = %address, cause = %e, "no reply address for a notification");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_the_delay_to_the_cap_and_resets_after_a_quiet_day() {
        let (delay, max) = (120_000, 86_400_000);
        let day = ms(QUIET_RESET);
        assert_eq!(next_backoff(0, None, 0, delay, max), delay);
        assert_eq!(next_backoff(1_000, Some(0), delay, delay, max), 2 * delay);
        assert_eq!(
            next_backoff(1_000, Some(0), 4 * delay, delay, max),
            8 * delay
        );
        assert_eq!(next_backoff(1_000, Some(0), max, delay, max), max);
        assert_eq!(next_backoff(day, Some(0), 8 * delay, delay, max), delay);
        assert_eq!(
            next_backoff(day - 1, Some(0), 8 * delay, delay, max),
            16 * delay
        );
    }

    #[test]
    fn the_due_time_respects_the_backoff_after_the_last_mail() {
        let state = |last: Option<i64>, backoff: i64| NotifyState {
            room_id: "r".into(),
            address: "a@b".into(),
            muted: false,
            due_ms: None,
            next_due_ms: None,
            last_sent_ms: last,
            backoff_ms: backoff,
            last_message_id: None,
            sent_count: 0,
        };
        assert_eq!(due_time(1_000, 100, None), 1_100);
        assert_eq!(due_time(1_000, 100, Some(&state(Some(900), 50))), 1_100);
        assert_eq!(due_time(1_000, 100, Some(&state(Some(900), 5_000))), 5_900);
    }
}
