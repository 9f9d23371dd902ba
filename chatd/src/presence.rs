//! Who is online (S113): a login is online while at least one of its pages or clients holds a
//! live connection (the `/me` page, or a room page joined as the sender), and for
//! `[chat] presence_grace_secs` after the last one closed, so that a page reload does not flap.
//!
//! Liveness of a connection is its WebSocket heartbeat (`ws::connection`: pings, and an idle
//! time-out that ends a silent connection). This process counts its own connections per login in
//! memory and mirrors the count into the store's presence rows (`set_presence`, refreshed every
//! [`PRESENCE_REFRESH`] and valid for [`PRESENCE_TTL`]), so that another chatd node on the same
//! PostgreSQL sees the login online too, and a node that dies stops counting by itself. A node's
//! id is new at every start, so a restarted node has no rows of its own to clear: those of the
//! process before it expire within [`PRESENCE_TTL`] and a later heartbeat prunes them.
//! Presence changes are announced to the rooms on this process and, through the fan-out
//! ([`crate::fanout`]), to the rooms on the other nodes; a login that went away here but is
//! still online on another node (per the store) is not announced as gone.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use chmail::config::ChatConfig;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::{state::AppState, ws::protocol::ServerFrame};

/// How long a presence row in the store counts without a refresh: a node that died (killed, no
/// shutdown to remove its rows) stops counting within this time, so its logins look offline to
/// the other nodes about three ring intervals later and a Chat press there gets a reminder
/// instead of a ring nobody hears. Three refreshes, so one slow store call does not flap.
pub const PRESENCE_TTL: Duration = Duration::from_secs(30);

/// How often this process rewrites the presence rows of its online logins.
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Local {
    conns: u32,
    /// Bumped on every change, so that a grace timer knows whether it is still current.
    epoch: u64,
}

/// The logins with live connections on this process.
pub struct Presence {
    grace: Duration,
    local: Mutex<HashMap<String, Local>>,
}

impl Presence {
    /// Nobody online.
    pub fn new(config: &ChatConfig) -> Self {
        Self {
            grace: config.presence_grace(),
            local: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Local>> {
        // Plain counters: consistent between statements even after a panic elsewhere.
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more connection of `login`; returns (was it online here before, connections).
    fn add(&self, login: &str) -> (bool, u32) {
        let mut local = self.lock();
        let was = local.contains_key(login);
        let entry = local.entry(login.to_owned()).or_default();
        entry.conns += 1;
        entry.epoch += 1;
        (was, entry.conns)
    }

    /// Counts one connection less; returns the connections left and the epoch.
    fn remove(&self, login: &str) -> Option<(u32, u64)> {
        let mut local = self.lock();
        let entry = local.get_mut(login)?;
        entry.conns = entry.conns.saturating_sub(1);
        entry.epoch += 1;
        Some((entry.conns, entry.epoch))
    }

    /// Forgets `login` if nothing changed since `epoch`; true when it went offline here.
    fn expire(&self, login: &str, epoch: u64) -> bool {
        let mut local = self.lock();
        if local
            .get(login)
            .is_some_and(|e| e.conns == 0 && e.epoch == epoch)
        {
            local.remove(login);
            true
        } else {
            false
        }
    }

    /// Whether nothing changed for `login` since `epoch`.
    fn current(&self, login: &str, epoch: u64) -> bool {
        self.lock().get(login).is_some_and(|e| e.epoch == epoch)
    }

    /// Whether `login` is online on this process (connected, or within the grace period).
    pub fn is_online_here(&self, login: &str) -> bool {
        self.lock().contains_key(login)
    }

    /// The logins with connections on this process and how many.
    fn connected(&self) -> Vec<(String, u32)> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.conns > 0)
            .map(|(login, e)| (login.clone(), e.conns))
            .collect()
    }
}

/// The store's time for "now + `d`".
fn until(state: &AppState, d: Duration) -> i64 {
    state
        .clock
        .now_ms()
        .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A connection of `login` opened: counts it, refreshes the store's row and, if the login was
/// offline, tells its rooms.
pub async fn connect(state: &AppState, login: &str) {
    let (was_online, conns) = state.presence.add(login);
    let row = state
        .store
        .set_presence(login, &state.node, conns, until(state, PRESENCE_TTL));
    if let Err(e) = state.store_call(row).await {
        warn!(login = %login, cause = %e, "presence not stored");
    }
    if !was_online {
        debug!(login = %login, "online");
        announce(state, login, true);
    }
}

/// A connection of `login` closed: after the grace period with no new connection the login is
/// offline (its store row runs out at the same time) and its rooms are told.
pub fn disconnect(state: &AppState, login: &str) {
    let Some((conns, epoch)) = state.presence.remove(login) else {
        return;
    };
    let state = state.clone();
    let login = login.to_owned();
    tokio::spawn(async move {
        let grace = state.presence.grace;
        let until = until(&state, if conns == 0 { grace } else { PRESENCE_TTL });
        if !state.presence.current(&login, epoch) {
            return; // a newer connect or disconnect writes the row
        }
        let row = state.store.set_presence(&login, &state.node, conns, until);
        if let Err(e) = state.store_call(row).await {
            warn!(login = %login, cause = %e, "presence not stored");
        }
        if conns > 0 {
            return;
        }
        tokio::time::sleep(grace).await;
        if state.presence.expire(&login, epoch) {
            if state.hub.is_shared() && is_online(&state, &login).await {
                debug!(login = %login, "offline here, online on another node");
                return;
            }
            debug!(login = %login, "offline");
            announce(&state, &login, false);
        }
    });
}

/// Whether `login` is online: here (no store call), or on another node per the store. A store
/// failure counts as offline (so the sender gets a reminder rather than nothing).
pub async fn is_online(state: &AppState, login: &str) -> bool {
    if state.presence.is_online_here(login) {
        return true;
    }
    let now = state.clock.now_ms();
    match state.store_call(state.store.online(login, now)).await {
        Ok(online) => online,
        Err(e) => {
            warn!(login = %login, cause = %e, "presence look-up failed; counting as offline");
            false
        }
    }
}

/// Tells the rooms of `login`, here and on the other nodes, that their sender came or went.
fn announce(state: &AppState, login: &str, online: bool) {
    announce_here(state, login, online);
    if let Some(outlet) = state.hub.outlet() {
        outlet.presence(login, online);
    }
}

/// Tells the rooms of `login` that have connections on this process that their sender came or
/// went (`in_room`: whether the sender has a connection in the room on this process).
pub fn announce_here(state: &AppState, login: &str, online: bool) {
    for (room, sender) in state.hub.rooms_of_login(login) {
        let in_room = state.hub.sender_in_room(&room);
        let frame = ServerFrame::Presence {
            address: sender,
            online,
            in_room,
        };
        state.hub.deliver_room(&room, &frame.to_text(), None);
    }
}

/// Refreshes this process's presence rows every [`PRESENCE_REFRESH`] and prunes expired rows,
/// until `shutdown` turns true; then removes this process's rows (its connections are closing).
pub async fn run_heartbeat(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PRESENCE_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
        }
        for (login, conns) in state.presence.connected() {
            let row =
                state
                    .store
                    .set_presence(&login, &state.node, conns, until(&state, PRESENCE_TTL));
            if let Err(e) = state.store_call(row).await {
                warn!(login = %login, cause = %e, "presence refresh failed");
            }
        }
        let now = state.clock.now_ms();
        if let Err(e) = state.store_call(state.store.prune_presence(now)).await {
            warn!(cause = %e, "presence prune failed");
        }
    }
    for (login, _) in state.presence.connected() {
        let _ = state
            .store_call(state.store.clear_presence(&login, &state.node))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_stays_online_until_its_last_connection_expires() {
        let p = Presence::new(&ChatConfig::default());
        assert_eq!(p.add("alice"), (false, 1));
        assert_eq!(p.add("alice"), (true, 2));
        let (left, epoch) = p.remove("alice").unwrap_or_default();
        assert_eq!(left, 1);
        assert!(!p.expire("alice", epoch), "one connection is still open");
        let (left, epoch) = p.remove("alice").unwrap_or_default();
        assert_eq!(left, 0);
        assert!(p.is_online_here("alice"), "within the grace period");
        // A reload: a new connection before the grace ends keeps the login online.
        p.add("alice");
        assert!(!p.expire("alice", epoch));
        let (_, epoch) = p.remove("alice").unwrap_or_default();
        assert!(p.expire("alice", epoch));
        assert!(!p.is_online_here("alice"));
    }
}
