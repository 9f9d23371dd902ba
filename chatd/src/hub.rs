//! Fan-out of frames on this process: room -> its connections, login -> the sender's connections
//! (the `/me` page and the sender's room pages, which ring).
//!
//! Every connection has a bounded queue ([`Outbox`], `[chat] send_queue` frames). Delivery never
//! waits: a frame that does not fit marks the connection as too slow, and its send task closes it,
//! so one stuck client costs at most its queue.
//!
//! Several nodes ([`crate::fanout`], PostgreSQL only): everything that reaches other people's
//! connections goes through [`Hub::publish_room`] and [`Hub::publish_login`], which deliver here
//! and hand the frame to the fan-out's [`Outlet`]; the fan-out's listener calls
//! [`Hub::deliver_room`] and [`Hub::deliver_login`] for the frames of other nodes. The membership
//! maps stay per process: the look-ups below ([`Hub::has_login`], [`Hub::sender_in_room`],
//! [`Hub::recipient_in_room`], [`Hub::addresses_in_room`]) see this process's connections only,
//! and a decision that needs every node asks the store (presence rows, read marks) as well.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock, PoisonError,
    },
};

use axum::extract::ws::Utf8Bytes;
use chmail::config::ChatConfig;
use tokio::sync::{mpsc, watch, Notify};

use crate::{fanout::Outlet, ws::protocol::ServerFrame};

/// The id of one WebSocket connection on this process.
pub type ConnId = u64;

/// What a connection's send task gets from its queue.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A text frame.
    Frame(Utf8Bytes),
    /// Close the connection with this WebSocket close code and reason.
    Close(u16, &'static str),
}

/// The sending end of one connection's bounded queue.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    too_slow: Arc<Notify>,
}

/// The receiving end of a connection's queue, for its send task.
pub struct Inbox {
    /// The frames to send, in order.
    pub rx: mpsc::Receiver<Outgoing>,
    /// Fires when a frame did not fit: close the connection.
    pub too_slow: Arc<Notify>,
}

impl Outbox {
    /// A queue of `capacity` frames (at least 1).
    pub fn new(capacity: usize) -> (Outbox, Inbox) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let too_slow = Arc::new(Notify::new());
        (
            Outbox {
                tx,
                too_slow: too_slow.clone(),
            },
            Inbox { rx, too_slow },
        )
    }

    /// Queues `item` without waiting; false (and the connection marked too slow) when the queue
    /// is full, false when the connection is gone.
    pub fn deliver(&self, item: Outgoing) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                // notify_one keeps the permit, so the send task sees it even if busy right now.
                self.too_slow.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a frame (see [`Outbox::deliver`]).
    pub fn send(&self, frame: &ServerFrame) -> bool {
        self.deliver(Outgoing::Frame(frame.to_text()))
    }
}

/// A room as the hub knows it.
#[derive(Debug, Clone, Copy)]
pub struct RoomKey<'a> {
    /// The room id.
    pub id: &'a str,
    /// The sender's login.
    pub login: &'a str,
    /// The sender's address in the room.
    pub sender: &'a str,
}

/// Why a connection could not join a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// `[chat] max_room_connections` reached.
    #[error("the room is full")]
    RoomFull,
}

struct RoomConn {
    address: String,
    is_sender: bool,
    outbox: Outbox,
}

struct RoomEntry {
    login: String,
    sender: String,
    conns: HashMap<ConnId, RoomConn>,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<String, RoomEntry>,
    logins: HashMap<String, HashMap<ConnId, Outbox>>,
}

/// The rooms of this process and their connections.
pub struct Hub {
    inner: Mutex<Inner>,
    max_room_connections: usize,
    next_id: AtomicU64,
    closing: watch::Sender<bool>,
    /// The fan-out to other nodes, once started (never on SQLite).
    outlet: OnceLock<Arc<Outlet>>,
}

impl Hub {
    /// An empty hub with the limits of `config`.
    pub fn new(config: &ChatConfig) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_room_connections: config.max_room_connections,
            next_id: AtomicU64::new(1),
            closing: watch::channel(false).0,
            outlet: OnceLock::new(),
        }
    }

    /// Sends what is published from now on to the other nodes too; false when an outlet was
    /// attached already.
    pub fn attach(&self, outlet: Arc<Outlet>) -> bool {
        self.outlet.set(outlet).is_ok()
    }

    /// The fan-out to other nodes, when this process has one.
    pub fn outlet(&self) -> Option<&Arc<Outlet>> {
        self.outlet.get()
    }

    /// Whether other chatd nodes may hold connections of the same rooms and logins (the store
    /// is shared): local look-ups then do not see everyone.
    pub fn is_shared(&self) -> bool {
        self.outlet.get().is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The maps stay consistent between statements; a panic elsewhere leaves them usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh connection id.
    pub fn next_id(&self) -> ConnId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds connection `conn` to `room` as `address`. Returns whether it is the first connection
    /// of that address in the room.
    ///
    /// # Errors
    /// [`JoinError::RoomFull`] at `[chat] max_room_connections`.
    pub fn join_room(
        &self,
        room: &RoomKey<'_>,
        conn: ConnId,
        address: &str,
        is_sender: bool,
        outbox: Outbox,
    ) -> Result<bool, JoinError> {
        let (room_id, login, sender) = (room.id, room.login, room.sender);
        let mut inner = self.lock();
        let entry = inner
            .rooms
            .entry(room_id.to_owned())
            .or_insert_with(|| RoomEntry {
                login: login.to_owned(),
                sender: sender.to_owned(),
                conns: HashMap::new(),
            });
        if entry.conns.len() >= self.max_room_connections {
            if entry.conns.is_empty() {
                inner.rooms.remove(room_id);
            }
            return Err(JoinError::RoomFull);
        }
        let first = !entry.conns.values().any(|c| c.address == address);
        entry.conns.insert(
            conn,
            RoomConn {
                address: address.to_owned(),
                is_sender,
                outbox,
            },
        );
        Ok(first)
    }

    /// Removes `conn` from `room_id`; returns whether it was the last connection of its address
    /// there.
    pub fn leave_room(&self, room_id: &str, conn: ConnId) -> bool {
        let mut inner = self.lock();
        let Some(entry) = inner.rooms.get_mut(room_id) else {
            return false;
        };
        let Some(gone) = entry.conns.remove(&conn) else {
            return false;
        };
        let last = !entry.conns.values().any(|c| c.address == gone.address);
        if entry.conns.is_empty() {
            inner.rooms.remove(room_id);
        }
        last
    }

    /// Registers `conn` as one of `login`'s connections (it receives the login's rings).
    pub fn add_login(&self, login: &str, conn: ConnId, outbox: Outbox) {
        self.lock()
            .logins
            .entry(login.to_owned())
            .or_default()
            .insert(conn, outbox);
    }

    /// Removes `conn` from `login`'s connections.
    pub fn remove_login(&self, login: &str, conn: ConnId) {
        let mut inner = self.lock();
        if let Some(conns) = inner.logins.get_mut(login) {
            conns.remove(&conn);
            if conns.is_empty() {
                inner.logins.remove(login);
            }
        }
    }

    /// Sends `frame` to every connection in `room_id` but `except`, here and on the other nodes
    /// (`except` is one of this process's connections). The entry point of room fan-out.
    pub fn publish_room(&self, room_id: &str, frame: &ServerFrame, except: Option<ConnId>) {
        let text = frame.to_text();
        self.deliver_room(room_id, &text, except);
        if let Some(outlet) = self.outlet.get() {
            outlet.room(room_id, frame, &text);
        }
    }

    /// Delivers an already serialized frame to this process's connections in `room_id`.
    pub fn deliver_room(&self, room_id: &str, text: &Utf8Bytes, except: Option<ConnId>) {
        let inner = self.lock();
        if let Some(entry) = inner.rooms.get(room_id) {
            for (id, conn) in &entry.conns {
                if Some(*id) != except {
                    conn.outbox.deliver(Outgoing::Frame(text.clone()));
                }
            }
        }
    }

    /// Sends `frame` to every connection of `login` (its `/me` pages and its room pages), here
    /// and on the other nodes. The entry point of login fan-out.
    pub fn publish_login(&self, login: &str, frame: &ServerFrame) {
        let text = frame.to_text();
        self.deliver_login(login, &text);
        if let Some(outlet) = self.outlet.get() {
            outlet.login(login, &text);
        }
    }

    /// Delivers an already serialized frame to this process's connections of `login`.
    pub fn deliver_login(&self, login: &str, text: &Utf8Bytes) {
        let inner = self.lock();
        if let Some(conns) = inner.logins.get(login) {
            for outbox in conns.values() {
                outbox.deliver(Outgoing::Frame(text.clone()));
            }
        }
    }

    /// Whether `login` has connections on this process (its `/me` pages and its room pages).
    pub fn has_login(&self, login: &str) -> bool {
        self.lock().logins.contains_key(login)
    }

    /// The addresses with a connection in `room_id` on this process.
    pub fn addresses_in_room(&self, room_id: &str) -> HashSet<String> {
        self.lock()
            .rooms
            .get(room_id)
            .map(|e| e.conns.values().map(|c| c.address.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether the sender has a connection in `room_id` on this process.
    pub fn sender_in_room(&self, room_id: &str) -> bool {
        self.lock()
            .rooms
            .get(room_id)
            .is_some_and(|e| e.conns.values().any(|c| c.is_sender))
    }

    /// Whether a recipient (not the sender) has a connection in `room_id` on this process.
    pub fn recipient_in_room(&self, room_id: &str) -> bool {
        self.lock()
            .rooms
            .get(room_id)
            .is_some_and(|e| e.conns.values().any(|c| !c.is_sender))
    }

    /// The rooms of `login` that have connections on this process, with the sender's address in
    /// each.
    pub fn rooms_of_login(&self, login: &str) -> Vec<(String, String)> {
        self.lock()
            .rooms
            .iter()
            .filter(|(_, e)| e.login == login)
            .map(|(id, e)| (id.clone(), e.sender.clone()))
            .collect()
    }

    /// How many connections are in rooms or watching, on this process.
    pub fn connection_count(&self) -> usize {
        let inner = self.lock();
        let mut ids: HashSet<ConnId> = HashSet::new();
        for e in inner.rooms.values() {
            ids.extend(e.conns.keys());
        }
        for conns in inner.logins.values() {
            ids.extend(conns.keys());
        }
        ids.len()
    }

    /// Tells every connection to close (chatd is stopping).
    pub fn close_all(&self) {
        let _ = self.closing.send(true);
    }

    /// Turns true when chatd is stopping.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: RoomKey<'static> = RoomKey {
        id: "r",
        login: "alice",
        sender: "alice@x",
    };

    fn config(max: usize) -> ChatConfig {
        ChatConfig {
            max_room_connections: max,
            ..ChatConfig::default()
        }
    }

    #[tokio::test]
    async fn a_full_queue_marks_the_connection_too_slow_instead_of_growing() {
        let (outbox, mut inbox) = Outbox::new(2);
        let hub = Hub::new(&config(10));
        assert_eq!(hub.join_room(&KEY, 1, "bob@x", false, outbox), Ok(true));
        let frame = ServerFrame::Pong {};
        for _ in 0..5 {
            hub.publish_room("r", &frame, None);
        }
        let mut queued = 0;
        while inbox.rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 2);
        // The permit is stored: the send task sees it on its next poll.
        let fired = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            inbox.too_slow.notified(),
        )
        .await;
        assert!(fired.is_ok());
    }

    #[test]
    fn rooms_have_a_connection_limit_and_track_addresses() {
        let hub = Hub::new(&config(2));
        let (a, _ia) = Outbox::new(4);
        let (b, _ib) = Outbox::new(4);
        let (c, _ic) = Outbox::new(4);
        assert_eq!(hub.join_room(&KEY, 1, "bob@x", false, a), Ok(true));
        assert_eq!(hub.join_room(&KEY, 2, "bob@x", false, b), Ok(false));
        assert_eq!(
            hub.join_room(&KEY, 3, "carol@x", false, c),
            Err(JoinError::RoomFull)
        );
        assert!(!hub.sender_in_room("r"));
        assert!(!hub.leave_room("r", 1));
        assert!(hub.leave_room("r", 2));
        assert!(hub.addresses_in_room("r").is_empty());
        assert!(hub.rooms_of_login("alice").is_empty());
    }
}
