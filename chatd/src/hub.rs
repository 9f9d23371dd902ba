//! Fan-out of frames on this process: room -> its connections, login -> the sender's connections
//! (the `/me` page and the sender's room pages, which ring).
//!
//! Every connection has a bounded queue ([`Outbox`], `[chat] send_queue` frames). Delivery never
//! waits: a frame that does not fit marks the connection as too slow, and its send loop closes it,
//! so one stuck client costs at most its queue; an idle connection's queue holds no memory.
//!
//! Several nodes ([`crate::fanout`], PostgreSQL only): everything that reaches other people's
//! connections goes through [`Hub::publish_room`] and [`Hub::publish_login`], which deliver here
//! and hand the frame to the fan-out's [`Outlet`]; the fan-out's listener calls
//! [`Hub::deliver_room`] and [`Hub::deliver_login`] for the frames of other nodes. The membership
//! maps stay per process: the look-ups below ([`Hub::has_login`], [`Hub::sender_in_room`],
//! [`Hub::recipient_in_room`], [`Hub::addresses_in_room`]) see this process's connections only,
//! and a decision that needs every node asks the store (presence rows, read marks) as well.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock, PoisonError,
    },
};

use axum::extract::ws::Utf8Bytes;
use chmail::config::ChatConfig;
use tokio::sync::{watch, Notify};

use crate::{fanout::Outlet, ws::protocol::ServerFrame};

/// The id of one WebSocket connection on this process.
pub type ConnId = u64;

/// What a connection's send loop gets from its queue.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A text frame.
    Frame(Utf8Bytes),
    /// Close the connection with this WebSocket close code and reason.
    Close(u16, &'static str),
}

/// The sending end of one connection's bounded queue. Clones share the queue; the receiving
/// end sees the queue end when the last clone is dropped.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The receiving end of a connection's queue, for its send loop.
#[derive(Debug)]
pub struct Inbox {
    /// The frames to send, in order.
    pub rx: Receiver,
}

/// Takes the frames of one connection's queue, in order.
#[derive(Debug)]
pub struct Receiver {
    shared: Arc<Shared>,
}

/// A frame did not fit in the queue: the client does not keep up, close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSlow;

/// Why [`Receiver::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing queued right now.
    Empty,
    /// Every [`Outbox`] is gone and the queue is drained.
    Disconnected,
    /// A frame did not fit (see [`TooSlow`]).
    TooSlow,
}

/// One connection's queue. A plain locked `VecDeque` rather than a `tokio::sync::mpsc` channel:
/// the channel allocates a block of 32 slots up front (about 1 KiB), which 20k idle connections
/// would each hold for nothing.
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the receiver: a frame queued, the queue too slow, or the last sender gone.
    ready: Notify,
    capacity: usize,
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<Outgoing>,
    senders: usize,
    receiver_gone: bool,
    too_slow: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue is consistent between statements; a panic elsewhere leaves it usable.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Outbox {
    /// A queue of `capacity` frames (at least 1).
    pub fn new(capacity: usize) -> (Outbox, Inbox) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                senders: 1,
                receiver_gone: false,
                too_slow: false,
            }),
            ready: Notify::new(),
            capacity: capacity.max(1),
        });
        (
            Outbox {
                shared: shared.clone(),
            },
            Inbox {
                rx: Receiver { shared },
            },
        )
    }

    /// Queues `item` without waiting; false (and the connection marked too slow) when the queue
    /// is full, false when the connection is gone.
    pub fn deliver(&self, item: Outgoing) -> bool {
        let mut queue = self.shared.lock();
        if queue.receiver_gone {
            return false;
        }
        if queue.items.len() >= self.shared.capacity {
            queue.too_slow = true;
            drop(queue);
            // notify_one keeps the permit, so the send loop sees it even if busy right now.
            self.shared.ready.notify_one();
            return false;
        }
        queue.items.push_back(item);
        drop(queue);
        self.shared.ready.notify_one();
        true
    }

    /// Queues a frame (see [`Outbox::deliver`]).
    pub fn send(&self, frame: &ServerFrame) -> bool {
        self.deliver(Outgoing::Frame(frame.to_text()))
    }
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.senders -= 1;
        let last = queue.senders == 0;
        drop(queue);
        if last {
            self.shared.ready.notify_one();
        }
    }
}

impl Receiver {
    /// The next frame without waiting.
    ///
    /// # Errors
    /// [`TryRecvError`]: too slow (checked first: a slow client is not flushed), nothing queued,
    /// or the queue ended.
    pub fn try_recv(&mut self) -> Result<Outgoing, TryRecvError> {
        let mut queue = self.shared.lock();
        if queue.too_slow {
            return Err(TryRecvError::TooSlow);
        }
        match queue.items.pop_front() {
            Some(item) => {
                // A drained queue gives its memory back: idle connections hold none, and a burst
                // does not stay with one.
                if queue.items.is_empty() {
                    queue.items = VecDeque::new();
                }
                Ok(item)
            }
            None if queue.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Waits for the next frame: `None` once every [`Outbox`] is gone and the queue is drained.
    ///
    /// # Errors
    /// [`TooSlow`] once a frame did not fit.
    pub async fn recv(&mut self) -> Result<Option<Outgoing>, TooSlow> {
        loop {
            match self.try_recv() {
                Ok(item) => return Ok(Some(item)),
                Err(TryRecvError::TooSlow) => return Err(TooSlow),
                Err(TryRecvError::Disconnected) => return Ok(None),
                // One receiver and notify_one's stored permit: a wake-up between the check and
                // the wait is not lost.
                Err(TryRecvError::Empty) => self.shared.ready.notified().await,
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.receiver_gone = true;
        queue.items = VecDeque::new();
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
        // Two fitted, the third marked the connection; the mark comes before the queued frames
        // (a slow client is closed, not flushed) and stays for the send loop's next poll.
        assert_eq!(inbox.rx.try_recv().err(), Some(TryRecvError::TooSlow));
        assert_eq!(inbox.rx.recv().await.err(), Some(TooSlow));
    }

    #[tokio::test]
    async fn a_queue_keeps_order_ends_with_its_last_outbox_and_frees_its_slots() {
        let (outbox, mut inbox) = Outbox::new(8);
        let other = outbox.clone();
        let frame = |n: u16| Outgoing::Close(n, "");
        assert!(outbox.deliver(frame(1)));
        assert!(other.deliver(frame(2)));
        assert!(matches!(inbox.rx.try_recv(), Ok(Outgoing::Close(1, _))));
        drop(outbox);
        assert!(matches!(
            inbox.rx.recv().await,
            Ok(Some(Outgoing::Close(2, _)))
        ));
        assert_eq!(inbox.rx.try_recv().err(), Some(TryRecvError::Empty));
        for n in 0..8 {
            assert!(other.deliver(frame(n)));
        }
        let waiter = tokio::spawn(async move {
            let mut n = 0;
            while let Ok(Some(_)) = inbox.rx.recv().await {
                n += 1;
            }
            (n, inbox.rx.shared.lock().items.capacity())
        });
        drop(other);
        assert_eq!(
            waiter.await.ok(),
            Some((8, 0)),
            "drained, ended, memory given back"
        );
        let (outbox, inbox) = Outbox::new(1);
        drop(inbox);
        assert!(!outbox.deliver(frame(0)), "the connection is gone");
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
