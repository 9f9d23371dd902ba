//! The reminder schedule and the worker that mails reminders (S117).
//!
//! A reminder is wanted when a recipient pressed Chat and the sender was offline, when a ring
//! timed out, and when a recipient leaves a message while the sender is away ([`schedule`]). It is
//! due `[chat] reminder_delay_secs` later, but never sooner than `[chat] reminder_interval_secs`
//! after the room's last reminder: messages meanwhile wait for the next one. The schedule lives in
//! the store, so a restart neither loses nor repeats a reminder.
//!
//! The worker ([`run_worker`]) claims due reminders every [`TICK`] with a lease of [`LEASE`]
//! (one node works each), queues each reminder mail in the outbox ([`crate::outbox`], which
//! delivers it with retries) and records it. The mail's Message-ID comes from the room and the
//! number of its reminders, so a worker that dies between queueing and recording queues the same
//! Message-ID again after the lease, which the outbox ignores: one mail either way.
//!
//! A reminder quotes the NEWEST messages the sender has not seen: after the last reminder and
//! after what they read in the chat; a sender in the chat gets none. What the
//! mail says, for a waiting caller, a continued chat or a mall member's question, is in
//! [`compose`].

pub mod compose;

use crate::room_tag::room_tag;
use std::time::Duration;

use chmail::store::{kind, mall::Inquiry, ReminderJob, Room, MAX_PAGE};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::{
    auth::sender_address,
    clock::ms,
    error::AppError,
    mall::{chatmail, inquiry, promotion},
    outbox, quote, ringer,
    state::AppState,
    ws::protocol::ServerFrame,
};
use compose::{Occasion, Origin, Reminder};

/// How often the worker looks for due reminders.
pub const TICK: Duration = Duration::from_secs(1);

/// How long a claimed reminder stays ours: long past the store calls of queueing one, so a second
/// node does not queue it too; also the retry delay when queueing failed.
pub const LEASE: Duration = Duration::from_secs(120);

/// Most reminders claimed per tick; the rest wait one tick.
pub const BATCH: u32 = 20;

/// Most messages quoted in one reminder: the newest; the reminder says how many earlier ones it
/// left out, and they are in the chat.
pub const MESSAGES_PER_REMINDER: u32 = 20;

/// Asks for a reminder of `room_id` naming `caller`, due after `[chat] reminder_delay_secs` and
/// no sooner than `[chat] reminder_interval_secs` after the last one. Returns when it is due (an
/// earlier pending reminder stays).
///
/// # Errors
/// When the store fails.
pub async fn schedule(state: &AppState, room_id: &str, caller: &str) -> Result<i64, AppError> {
    let now = state.clock.now_ms();
    let chat = &state.config.chat;
    let current = state.store_call(state.store.reminder(room_id)).await?;
    let mut due = now.saturating_add(ms(chat.reminder_delay()));
    if let Some(last) = current.as_ref().and_then(|r| r.last_sent_ms) {
        due = due.max(last.saturating_add(ms(chat.reminder_interval())));
    }
    state
        .store_call(state.store.schedule_reminder(room_id, caller, due))
        .await?;
    let pending = current.and_then(|r| r.due_ms);
    Ok(pending.map_or(due, |p| p.min(due)))
}

/// Queues due reminders until `shutdown` turns true. Stops at once on shutdown: an unfinished
/// reminder keeps its lease and is queued after it runs out (once: see the module doc).
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
            .claim_reminders(&state.node, now, ms(LEASE), BATCH);
        let jobs = match state.store_call(claim).await {
            Ok(jobs) => jobs,
            Err(e) => {
                warn!(cause = %e, "claiming reminders failed");
                continue;
            }
        };
        for job in jobs {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                result = send(&state, &job) => if let Err(e) = result {
                    warn!(room = %room_tag(&job.reminder.room_id), cause = %e, "reminder not queued; retrying after the lease");
                },
            }
        }
    }
}

/// Queues the mail of one claimed reminder and records it.
async fn send(state: &AppState, job: &ReminderJob) -> Result<(), AppError> {
    let room_id = &job.reminder.room_id;
    let Some(room) = state.store_call(state.store.room(room_id)).await? else {
        // The room is gone: nothing to remind of.
        finish(state, room_id, job.reminder.last_message_id).await?;
        return Ok(());
    };
    let sender = sender_address(&state.config, &room);
    let members = state.store_call(state.store.members(room_id)).await?;
    let sender_read = members
        .iter()
        .filter(|m| m.address == sender)
        .filter_map(|m| m.last_read)
        .max();
    // What the sender has not seen: after the last reminder and after what they read in the
    // chat (the newest of them, see the module doc).
    let after = job.reminder.last_message_id.max(sender_read).unwrap_or(0);
    let quoted = quote::newest_after(state, room_id, after, MESSAGES_PER_REMINDER).await?;
    let last_included = quoted
        .messages
        .last()
        .map(|m| m.id)
        .or(job.reminder.last_message_id);
    // With several nodes the hub sees this process's connections only; a sender in the room on
    // another node marks the messages read as they arrive: they read all that came since the
    // last reminder (a reminder for a ring alone, with nothing new, still goes).
    let seen_elsewhere = state.hub.is_shared()
        && quoted.messages.is_empty()
        && sender_read.unwrap_or(0) > job.reminder.last_message_id.unwrap_or(0);
    if state.hub.sender_in_room(room_id) || seen_elsewhere {
        // The sender is in the chat now and sees it all (Chatwoot's rule: no mail for what was
        // seen). Recorded as done, so the interval still applies.
        debug!(room = %room_tag(room_id), "sender is in the room; reminder skipped");
        finish(state, room_id, last_included).await?;
        return Ok(());
    }
    let caller = job.reminder.caller.as_deref().unwrap_or("someone");
    let url = crate::auth::signin_url(state, &room.login, Some((room.port, &room.id))).await?;
    let sequence = job.reminder.sent_count;
    let reminder = Reminder {
        caller,
        origin: origin(state, &room).await,
        occasion: Occasion::of(&sender, &members),
        quoted: &quoted,
        signin_url: &url,
    };
    let mut mail = compose::reminder_mail(&state.config, &room, sequence, &reminder);
    if let Some(reply_to) = reply_address(state, room_id, &sender).await {
        mail.headers.push(("Reply-To".into(), reply_to));
    }
    let fresh = outbox::queue(state, &mail, kind::REMINDER, Some(room_id)).await?;
    let last_included = if fresh {
        info!(room = %room_tag(room_id), to = %mail.to, messages = quoted.messages.len(), "reminder queued");
        last_included
    } else {
        // Queued by an attempt that died before recording it, perhaps with fewer messages: count
        // none of these as reminded, so the next reminder quotes them rather than losing some.
        info!(room = %room_tag(room_id), message_id = %mail.message_id, "reminder was queued before");
        job.reminder.last_message_id
    };
    let sent = finish(state, room_id, last_included).await?;
    state.hub.publish_room(
        room_id,
        &ServerFrame::Call {
            ring: None,
            state: "reminded",
            attempt: 0,
            sender: sender.clone(),
            text: ringer::call_text("reminded", 0, &sender),
        },
        None,
    );
    // A message that arrived while we held the lease had its schedule dropped by finishing (and
    // messages past this mail's quota wait): schedule the next reminder after the interval.
    let newer = state
        .store_call(state.store.messages_after(
            room_id,
            last_included.unwrap_or(0),
            MESSAGES_PER_REMINDER,
        ))
        .await?;
    if let Some(m) = newer
        .iter()
        .find(|m| !m.author.is_empty() && m.author != sender)
    {
        let who = &m.author;
        let due = sent.saturating_add(ms(state.config.chat.reminder_interval()));
        state
            .store_call(state.store.schedule_reminder(room_id, who, due))
            .await?;
    }
    Ok(())
}

/// Why `room` exists: a member's question in the mall (with its title and text when the inquiry
/// is found), a host's promotion, or an ordinary mail. A store failure is logged and leaves the
/// question without its details: the reminder matters more.
async fn origin(state: &AppState, room: &Room) -> Origin {
    match chatmail::kind_of(&state.config, room) {
        Some(inquiry::KIND) => {
            let found = match question_of(state, room).await {
                Ok(found) => found,
                Err(e) => {
                    warn!(room = %room_tag(&room.id), cause = %e, "inquiry not read; reminding without it");
                    None
                }
            };
            Origin::Question {
                title: found.as_ref().map(|i| i.ad_title.clone()),
                question: found.map(|i| i.question),
            }
        }
        Some(promotion::KIND) => Origin::Promotion,
        _ => Origin::Mail,
    }
}

/// The inquiry whose room is `room`, among the member's [`MAX_PAGE`] newest (a reminder is about
/// a recent question).
async fn question_of(state: &AppState, room: &Room) -> Result<Option<Inquiry>, AppError> {
    let Some(member) = state
        .store_call(state.store.member_by_address(&room.login))
        .await?
    else {
        return Ok(None);
    };
    let inquiries = state
        .store_call(state.store.inquiries_of_member(member.id, MAX_PAGE))
        .await?;
    Ok(inquiries.into_iter().find(|i| i.room_id == room.id))
}

/// The reply address (`<token>@<reply domain>`) of `participant` in `room_id` for the Reply-To
/// of a reminder, so that answering the mail writes in the chat. `None` (no Reply-To: an answer
/// goes to the From address) when replies by mail are off (`[reply] listen` empty) or the address
/// cannot be made (logged): the reminder matters more than its Reply-To.
async fn reply_address(state: &AppState, room_id: &str, participant: &str) -> Option<String> {
    if state.config.reply.listen.trim().is_empty() {
        return None;
    }
    match crate::reply::address(state, room_id, participant).await {
        Ok(address) => Some(address),
        Err(e) => {
            warn!(room = %room_tag(room_id), cause = %e, "no reply address for the reminder; sent without Reply-To");
            None
        }
    }
}

/// Records the claimed reminder as sent now; returns the time recorded.
async fn finish(state: &AppState, room_id: &str, last: Option<i64>) -> Result<i64, AppError> {
    let now = state.clock.now_ms();
    let done = state
        .store_call(state.store.finish_reminder(room_id, &state.node, now, last))
        .await?;
    if !done {
        warn!(room = %room_tag(room_id), "reminder lease lost before it was recorded");
    }
    Ok(now)
}
