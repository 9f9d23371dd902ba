//! Ringing the sender (S107-S115). A recipient presses Chat:
//!
//! - the sender is offline: the ring ends at once as `offline` and a reminder mail is scheduled
//!   (S117, [`crate::reminder`]);
//! - the sender is online: every connection of the sender's login gets a `ring` frame, again
//!   every `[chat] ring_interval_secs`, until one accepts or declines (the store's compare-and-set
//!   lets the first answer win; the others get `ring_over`) or `[chat] ring_timeout_secs` pass,
//!   when the ring ends as `timed_out` and a reminder is scheduled.
//!
//! The room sees each step as a `call` frame with a status line ("ringing alice@example.com (2nd
//! try)"). The ring's state and attempts live in the store; the task that repeats it lives in the
//! process that started it. A ring whose task died with its process (a crash, a restart) is
//! resumed by the next Chat press once it has not been touched for two intervals; one that nobody
//! presses again is ended by the sweep ([`run_sweeper`], on every node): a ring still `ringing`
//! [`SWEEP_MARGIN`] past its time-out ends as `timed_out`, the room is told and the reminder is
//! scheduled, as its own task would have done. The store's compare-and-set lets one node win, so
//! the reminder is scheduled once however many nodes sweep.
//!
//! Several nodes: the ring and room frames go through the hub's fan-out ([`crate::fanout`]), so
//! the sender's pages on any node ring, and an answer on any node wins the store's
//! compare-and-set; the task on the ringing node sees the ring answered at its next interval and
//! stops without ringing again. Whether the sender is online is the store's presence. Cancelling
//! when the last recipient leaves ([`cancel`]) looks at the recipients on the ringing node only:
//! a recipient still in the room on another node does not keep the ring going (they may press
//! Chat again).

use crate::room_tag::room_tag;
use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use chmail::store::{Ring, RingState, Room};
use tokio::{sync::watch, task::AbortHandle};
use tracing::{debug, info, warn};

use crate::{clock::ms, error::AppError, presence, reminder, state::AppState, ws::protocol};
use protocol::ServerFrame;

/// The shortest ring interval used, whatever the config says: a zero interval would spin.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// How long past its time-out a ring may still be `ringing` before the sweep ends it: the ringing
/// task ends it at the time-out itself, so a ring this late lost its task. Room for a slow store
/// call and for clocks of nodes that differ by a few seconds.
pub const SWEEP_MARGIN: Duration = Duration::from_secs(30);

/// How often each node sweeps for orphaned rings: a ring is over at most this much later than
/// [`SWEEP_MARGIN`] past its time-out.
pub const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// Most orphaned rings ended per sweep; the rest wait for the next one.
const SWEEP_BATCH: u32 = 50;

/// The rings this process repeats, by ring id.
pub struct Ringer {
    tasks: Mutex<HashMap<i64, AbortHandle>>,
}

impl Ringer {
    /// No rings.
    pub fn new() -> Self {
        Self {
            tasks: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, AbortHandle>> {
        // Plain handles: consistent after a panic elsewhere.
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this process repeats ring `id`.
    pub fn is_running(&self, id: i64) -> bool {
        self.lock().contains_key(&id)
    }

    fn stop(&self, id: i64) {
        if let Some(task) = self.lock().remove(&id) {
            task.abort();
        }
    }
}

impl Default for Ringer {
    fn default() -> Self {
        Self::new()
    }
}

fn interval(state: &AppState) -> Duration {
    state.config.chat.ring_interval().max(MIN_INTERVAL)
}

/// The status line of a call in `state` (a ring state's name, or `reminded`).
pub fn call_text(state: &str, attempt: u32, sender: &str) -> String {
    match state {
        "ringing" if attempt <= 1 => format!("ringing {sender}"),
        "ringing" => format!("ringing {sender} ({} try)", protocol::ordinal(attempt)),
        "accepted" => format!("{sender} accepted: joining now"),
        "declined" => format!("{sender} cannot chat right now"),
        "timed_out" => format!("{sender} did not answer: a reminder e-mail is on its way"),
        "offline" => format!("{sender} is away: a reminder e-mail is on its way"),
        "cancelled" => "the call was cancelled".to_owned(),
        "reminded" => format!("{sender} is away: we e-mailed a reminder"),
        other => format!("{sender}: {other}"),
    }
}

/// The `call` frame of `ring` as it stands.
pub fn call_frame(ring: &Ring, sender: &str) -> ServerFrame {
    let name = protocol::ring_state_name(ring.state);
    ServerFrame::Call {
        ring: Some(ring.id),
        state: name,
        attempt: ring.attempts,
        sender: sender.to_owned(),
        text: call_text(name, ring.attempts, sender),
    }
}

/// The `call` frame of a ring that ended in `state` with a reminder due at `due_ms`.
fn away_frame(
    state: &AppState,
    ring: &Ring,
    sender: &str,
    final_state: RingState,
    due_ms: i64,
) -> ServerFrame {
    let name = protocol::ring_state_name(final_state);
    let mut text = call_text(name, ring.attempts, sender);
    let wait_ms = due_ms - state.clock.now_ms() - ms(state.config.chat.reminder_delay());
    if wait_ms > 60_000 {
        // Rate-limited: a reminder went out recently (S117).
        let minutes = (wait_ms + ms(state.config.chat.reminder_delay())) / 60_000 + 1;
        text = format!(
            "{sender} was e-mailed a reminder recently; your messages go out with the next one in \
             about {minutes} min"
        );
    }
    ServerFrame::Call {
        ring: Some(ring.id),
        state: name,
        attempt: ring.attempts,
        sender: sender.to_owned(),
        text,
    }
}

/// A recipient (`caller`) pressed Chat in `room`, whose sender's address is `sender`.
///
/// # Errors
/// When the store fails.
pub async fn ring(
    state: &AppState,
    room: &Room,
    caller: &str,
    sender: &str,
) -> Result<(), AppError> {
    let now = state.clock.now_ms();
    if let Some(active) = state.store_call(state.store.active_ring(&room.id)).await? {
        let stale = now - active.updated_ms > 2 * ms(interval(state)) + 1_000;
        if stale && !state.ringer.is_running(active.id) {
            debug!(ring = active.id, room = %room_tag(&room.id), "resuming an orphaned ring");
            spawn(state, room, active.clone(), sender);
        }
        // Already ringing: show the caller where it stands.
        state
            .hub
            .publish_room(&room.id, &call_frame(&active, sender), None);
        return Ok(());
    }
    let ring = state
        .store_call(state.store.start_ring(&room.id, caller, now))
        .await?;
    state.metrics.ring_started();
    if presence::is_online(state, &room.login).await {
        spawn(state, room, ring, sender);
        return Ok(());
    }
    end(state, room, &ring, RingState::Offline, sender).await?;
    Ok(())
}

fn spawn(state: &AppState, room: &Room, ring: Ring, sender: &str) {
    let mut tasks = state.ringer.lock();
    if tasks.contains_key(&ring.id) {
        return;
    }
    let id = ring.id;
    let task = tokio::spawn({
        let (state, room, sender) = (state.clone(), room.clone(), sender.to_owned());
        async move {
            if let Err(e) = repeat(&state, &room, ring, &sender).await {
                warn!(room = %room_tag(&room.id), cause = %e, "ringing failed");
            }
            state.ringer.lock().remove(&id);
        }
    });
    tasks.insert(id, task.abort_handle());
}

/// Rings every interval until the ring is answered (elsewhere), the sender goes offline, or the
/// time-out.
async fn repeat(
    state: &AppState,
    room: &Room,
    mut ring: Ring,
    sender: &str,
) -> Result<(), AppError> {
    let deadline = ring
        .started_ms
        .saturating_add(ms(state.config.chat.ring_timeout()));
    loop {
        let now = state.clock.now_ms();
        if now >= deadline {
            return end(state, room, &ring, RingState::TimedOut, sender)
                .await
                .map(drop);
        }
        if !presence::is_online(state, &room.login).await {
            return end(state, room, &ring, RingState::Offline, sender)
                .await
                .map(drop);
        }
        let attempt = ring.attempts + 1;
        let update = state
            .store
            .update_ring(ring.id, RingState::Ringing, attempt, now);
        match state.store_call(update).await {
            Ok(Some(updated)) => ring = updated,
            Ok(None) => return Ok(()), // answered or ended elsewhere
            Err(e) => warn!(ring = ring.id, cause = %e, "ring not updated; ringing anyway"),
        }
        let attempt = ring.attempts.max(attempt);
        state.hub.publish_login(
            &room.login,
            &ServerFrame::Ring {
                ring: ring.id,
                room: room.id.clone(),
                port: room.port,
                caller: ring.caller.clone(),
                caller_name: room
                    .participants
                    .iter()
                    .find(|p| p.address == ring.caller)
                    .and_then(|p| p.name.clone()),
                subject: room.subject.clone(),
                attempt,
            },
        );
        let name = protocol::ring_state_name(RingState::Ringing);
        state.hub.publish_room(
            &room.id,
            &ServerFrame::Call {
                ring: Some(ring.id),
                state: name,
                attempt,
                sender: sender.to_owned(),
                text: call_text(name, attempt, sender),
            },
            None,
        );
        let left = u64::try_from(deadline - now).unwrap_or(0);
        tokio::time::sleep(interval(state).min(Duration::from_millis(left))).await;
    }
}

/// Ends `ring` as `final_state` (timed out or offline) and schedules the reminder; does nothing
/// when someone answered or ended it first. True when this call ended it.
async fn end(
    state: &AppState,
    room: &Room,
    ring: &Ring,
    final_state: RingState,
    sender: &str,
) -> Result<bool, AppError> {
    let now = state.clock.now_ms();
    let update = state
        .store
        .update_ring(ring.id, final_state, ring.attempts, now);
    let Some(ended) = state.store_call(update).await? else {
        return Ok(false);
    };
    debug!(ring = ring.id, room = %room_tag(&room.id), state = final_state.as_str(), "ring ended");
    state.metrics.ring_ended(final_state);
    state.hub.publish_login(
        &room.login,
        &ServerFrame::RingOver {
            ring: ring.id,
            room: room.id.clone(),
            state: protocol::ring_state_name(final_state),
        },
    );
    let due = reminder::schedule(state, &room.id, &ended.caller).await?;
    state.hub.publish_room(
        &room.id,
        &away_frame(state, &ended, sender, final_state, due),
        None,
    );
    Ok(true)
}

/// The sender answers ring `ring_id` of `room`: true when this answer counted (the first one).
///
/// # Errors
/// When the store fails.
pub async fn answer(
    state: &AppState,
    room: &Room,
    sender: &str,
    ring_id: i64,
    accept: bool,
) -> Result<bool, AppError> {
    let Some(active) = state
        .store_call(state.store.active_ring(&room.id))
        .await?
        .filter(|r| r.id == ring_id)
    else {
        return Ok(false);
    };
    let new_state = if accept {
        RingState::Accepted
    } else {
        RingState::Declined
    };
    let now = state.clock.now_ms();
    let update = state
        .store
        .update_ring(ring_id, new_state, active.attempts, now);
    let Some(ended) = state.store_call(update).await? else {
        return Ok(false);
    };
    state.metrics.ring_ended(new_state);
    state.ringer.stop(ring_id);
    state.hub.publish_login(
        &room.login,
        &ServerFrame::RingOver {
            ring: ring_id,
            room: room.id.clone(),
            state: protocol::ring_state_name(new_state),
        },
    );
    state
        .hub
        .publish_room(&room.id, &call_frame(&ended, sender), None);
    Ok(true)
}

/// The last recipient left `room`: after the presence grace (a page reload comes back within
/// it), a ring still under way there is cancelled.
pub async fn cancel(state: &AppState, room: &Room) {
    let state = state.clone();
    let room = room.clone();
    tokio::spawn(async move {
        tokio::time::sleep(state.config.chat.presence_grace()).await;
        if state.hub.recipient_in_room(&room.id) {
            return;
        }
        let Ok(Some(active)) = state.store_call(state.store.active_ring(&room.id)).await else {
            return;
        };
        if !state.ringer.is_running(active.id) {
            return;
        }
        let now = state.clock.now_ms();
        let update = state
            .store
            .update_ring(active.id, RingState::Cancelled, active.attempts, now);
        if let Ok(Some(_)) = state.store_call(update).await {
            state.metrics.ring_ended(RingState::Cancelled);
            state.ringer.stop(active.id);
            state.hub.publish_login(
                &room.login,
                &ServerFrame::RingOver {
                    ring: active.id,
                    room: room.id.clone(),
                    state: protocol::ring_state_name(RingState::Cancelled),
                },
            );
        }
    });
}

/// Ends orphaned rings every [`SWEEP_EVERY`] (the first sweep at once, so a node that starts
/// after a crash finishes the rings its predecessor left) until `shutdown` turns true.
pub async fn run_sweeper(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = sweep(&state).await {
            warn!(cause = %e, "sweeping orphaned rings failed");
        }
    }
}

/// Ends the rings still `ringing` [`SWEEP_MARGIN`] past their time-out as `timed_out`; returns
/// how many this node ended (another node may win some of them).
///
/// # Errors
/// When the store fails to list them; a ring that fails to end is logged and left for the next
/// sweep.
pub async fn sweep(state: &AppState) -> Result<usize, AppError> {
    let chat = &state.config.chat;
    let before = state
        .clock
        .now_ms()
        .saturating_sub(ms(chat.ring_timeout()))
        .saturating_sub(ms(SWEEP_MARGIN));
    let orphans = state
        .store_call(state.store.orphaned_rings(before, SWEEP_BATCH))
        .await?;
    let mut ended = 0;
    for ring in orphans {
        if state.ringer.is_running(ring.id) {
            continue; // our own task is late, not dead: it ends the ring itself
        }
        match end_orphan(state, &ring).await {
            Ok(true) => ended += 1,
            Ok(false) => {}
            Err(e) => warn!(ring = ring.id, cause = %e, "orphaned ring not ended"),
        }
    }
    Ok(ended)
}

/// Ends one orphaned ring; false when another node (or an answer) ended it first.
async fn end_orphan(state: &AppState, ring: &Ring) -> Result<bool, AppError> {
    let Some(room) = state.store_call(state.store.room(&ring.room_id)).await? else {
        return Ok(false); // a ring references its room: nothing to tell
    };
    let sender = crate::auth::sender_address(&state.config, &room);
    let won = end(state, &room, ring, RingState::TimedOut, &sender).await?;
    if won {
        info!(ring = ring.id, room = %room_tag(&room.id), "orphaned ring ended as timed out");
    }
    Ok(won)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_name_the_sender_and_the_try() {
        assert_eq!(call_text("ringing", 1, "alice@x"), "ringing alice@x");
        assert_eq!(
            call_text("ringing", 2, "alice@x"),
            "ringing alice@x (2nd try)"
        );
        assert_eq!(
            call_text("ringing", 3, "alice@x"),
            "ringing alice@x (3rd try)"
        );
        assert!(call_text("offline", 0, "alice@x").starts_with("alice@x is away"));
        assert_eq!(
            call_text("reminded", 0, "alice@x"),
            "alice@x is away: we e-mailed a reminder"
        );
    }
}
