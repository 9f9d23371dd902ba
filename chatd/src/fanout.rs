//! Fan-out across chatd nodes that share one PostgreSQL, over its LISTEN/NOTIFY
//! ([`chmail::store::bus`]).
//!
//! Every frame that reaches other people's connections goes through [`Hub::publish_room`] or
//! [`Hub::publish_login`]. On a node with a bus, those deliver to this process's connections at
//! once and hand the frame to the [`Outlet`]; a publisher task sends what queued up with
//! `pg_notify`, in order, many in one statement. A listener task on a dedicated connection gets
//! every node's notifications, ignores its own (they were delivered locally already), and
//! delivers the others to this process's connections. Sender presence (the sender came online or
//! went away) travels as its own kind, so that each node tells the rooms it holds.
//!
//! **Payload.** JSON: `{"node", "seq", "kind": "room"|"login"|"presence", "key": room id or
//! login, "frame": the frame as sent to clients}`. NOTIFY takes under 8000 bytes: a `message`
//! frame that does not fit goes as `"message": <id>` instead of `"frame"`, and receivers read the
//! message from the store (it is stored before it is published). Every other frame is small (a
//! subject, addresses, a status line); one that still did not fit would be logged and reach this
//! node's connections only. `except` (the author's own connection) is not sent: connection ids
//! mean something only on the node that made them, and that node ignores its own notifications.
//!
//! **Order.** Per origin node, frames arrive in the order they were published (one publisher,
//! one statement per batch, delivered in commit order; the listener handles them one after the
//! other, a message read from the store included). Frames from two nodes interleave as their
//! commits did, which can differ from what each author saw locally; messages carry their ids
//! for that.
//!
//! **Failures.** Nothing here blocks a caller: the publish queue ([`PUBLISH_QUEUE`]) and the
//! queue of received payloads ([`RECEIVE_QUEUE`]) are bounded, and what does not fit is dropped,
//! counted ([`Stats`]) and logged. A lost listening connection is reconnected with back-off
//! ([`RECONNECT_FIRST`] doubling to [`RECONNECT_MAX`]) and checked every [`CHECK_EVERY`]; while
//! it is down, this node's own connections still get everything published here, and frames of
//! other nodes are missed (messages are in the store: a page's next join shows them).
//!
//! **SQLite** has no bus: one chatd per SQLite file, and the hub is the whole fan-out.

use crate::room_tag::room_tag;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::extract::ws::Utf8Bytes;
use chmail::store::bus::{Bus, Listener, MAX_PAYLOAD_BYTES};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use crate::{
    hub::Hub,
    state::AppState,
    ws::protocol::{MessageView, ServerFrame},
};

/// Most payloads waiting to be published: a few seconds of a busy node's frames. Beyond it the
/// database is not keeping up, and other nodes miss frames rather than this node stalling.
pub const PUBLISH_QUEUE: usize = 4_096;

/// Most payloads received and not yet delivered; beyond it they are dropped (see
/// [`chmail::store::bus::Bus::listen`]).
pub const RECEIVE_QUEUE: usize = 4_096;

/// Most payloads sent in one `pg_notify` statement: one round trip for a burst, and still a
/// statement well under a megabyte.
pub const PUBLISH_BATCH: usize = 100;

/// Longest wait for one publishing statement (the store bounds it too).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The first wait before listening again after the connection was lost or refused.
pub const RECONNECT_FIRST: Duration = Duration::from_millis(250);

/// The longest wait between two attempts to listen again.
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// How often an idle listening connection is checked: a peer that vanished without a word
/// (a network cut) shows up within this time.
pub const CHECK_EVERY: Duration = Duration::from_secs(30);

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    /// A frame for a room's connections; `key` is the room id.
    Room,
    /// A frame for a login's connections; `key` is the login.
    Login,
    /// A login came online or went away; `key` is the login.
    Presence,
}

/// A notification as sent.
#[derive(Serialize)]
struct Envelope<'a> {
    node: &'a str,
    seq: u64,
    kind: Kind,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    frame: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    online: Option<bool>,
}

/// A notification as received.
#[derive(Deserialize)]
struct Received {
    node: String,
    seq: u64,
    kind: Kind,
    key: String,
    #[serde(default)]
    frame: Option<Box<RawValue>>,
    #[serde(default)]
    message: Option<i64>,
    #[serde(default)]
    online: Option<bool>,
}

/// Counters of the fan-out, for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Payloads published.
    pub published: AtomicU64,
    /// Payloads dropped because the publish queue was full.
    pub publish_dropped: AtomicU64,
    /// Payloads lost because publishing failed (the database was down or slow).
    pub publish_failed: AtomicU64,
    /// `message` frames sent by reference (too big for a notification).
    pub by_reference: AtomicU64,
    /// Frames that did not fit a notification and could not go by reference.
    pub too_big: AtomicU64,
    /// Notifications of other nodes delivered here.
    pub received: AtomicU64,
    /// Notifications dropped because this node did not keep up reading them.
    pub receive_dropped: AtomicU64,
    /// How often listening started again after the connection was lost.
    pub reconnects: AtomicU64,
}

/// Where [`Hub`] hands frames for the other nodes.
pub struct Outlet {
    node: Arc<str>,
    seq: AtomicU64,
    tx: mpsc::Sender<String>,
    listening: AtomicBool,
    /// The counters.
    pub stats: Stats,
}

impl Outlet {
    /// An outlet of node `node` and the queue its publisher task drains.
    pub(crate) fn new(node: Arc<str>) -> (Arc<Self>, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let outlet = Arc::new(Self {
            node,
            seq: AtomicU64::new(0),
            tx,
            listening: AtomicBool::new(false),
            stats: Stats::default(),
        });
        (outlet, rx)
    }

    /// Whether the listening connection is up (frames of other nodes arrive).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    fn envelope<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
        frame: Option<&'a RawValue>,
    ) -> Envelope<'a> {
        Envelope {
            node: &self.node,
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            kind,
            key,
            frame,
            message: None,
            online: None,
        }
    }

    /// Publishes `text` (the serialized `frame`) to `room_id`'s connections on other nodes.
    pub fn room(&self, room_id: &str, frame: &ServerFrame, text: &Utf8Bytes) {
        let Ok(raw) = serde_json::from_str::<&RawValue>(text.as_str()) else {
            return;
        };
        let mut envelope = self.envelope(Kind::Room, room_id, Some(raw));
        let payload = to_payload(&envelope);
        if payload.len() <= MAX_PAYLOAD_BYTES {
            return self.queue(payload);
        }
        if let ServerFrame::Message { message } = frame {
            // The message is stored: receivers read it back.
            envelope.frame = None;
            envelope.message = Some(message.id);
            self.stats.by_reference.fetch_add(1, Ordering::Relaxed);
            return self.queue(to_payload(&envelope));
        }
        self.too_big(room_id, payload.len());
    }

    /// Publishes `text` to `login`'s connections on other nodes.
    pub fn login(&self, login: &str, text: &Utf8Bytes) {
        let Ok(raw) = serde_json::from_str::<&RawValue>(text.as_str()) else {
            return;
        };
        let payload = to_payload(&self.envelope(Kind::Login, login, Some(raw)));
        if payload.len() <= MAX_PAYLOAD_BYTES {
            return self.queue(payload);
        }
        self.too_big(login, payload.len());
    }

    /// Tells the other nodes that `login` came online or went away.
    pub fn presence(&self, login: &str, online: bool) {
        let mut envelope = self.envelope(Kind::Presence, login, None);
        envelope.online = Some(online);
        let payload = to_payload(&envelope);
        if payload.len() <= MAX_PAYLOAD_BYTES {
            self.queue(payload);
        }
    }

    fn too_big(&self, key: &str, bytes: usize) {
        self.stats.too_big.fetch_add(1, Ordering::Relaxed);
        warn!(key = %key, bytes, "frame too big for the fan-out; other nodes miss it");
    }

    fn queue(&self, payload: String) {
        match self.tx.try_send(payload) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = self.stats.publish_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(
                        dropped = n,
                        "fan-out publish queue full; other nodes miss frames"
                    );
                }
            }
            // The publisher stopped: chatd is stopping.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

fn to_payload(envelope: &Envelope<'_>) -> String {
    // Strings, numbers and already valid JSON: serializing cannot fail.
    serde_json::to_string(envelope).unwrap_or_default()
}

/// Starts the fan-out of `state` when its store has a bus (PostgreSQL): attaches the outlet to
/// the hub, listens (the first time before returning, so a started chatd hears the others), and
/// returns the publisher and listener tasks, which end when `shutdown` turns true. Nothing on
/// SQLite.
pub async fn start(state: &AppState, shutdown: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let Some(bus) = state.store.bus() else {
        return Vec::new();
    };
    let (outlet, rx) = Outlet::new(state.node.clone());
    if !state.hub.attach(outlet.clone()) {
        return Vec::new(); // started already
    }
    state.metrics.watch_fanout(outlet.clone());
    let first = match bus.listen(&listener_name(state), RECEIVE_QUEUE).await {
        Ok(listener) => {
            info!(channel = %listener.channel(), node = %state.node, "fan-out listening");
            outlet.listening.store(true, Ordering::Relaxed);
            Some(listener)
        }
        Err(e) => {
            warn!(cause = %e, "fan-out cannot listen yet; retrying (frames of other nodes are missed meanwhile)");
            None
        }
    };
    vec![
        tokio::spawn(run_publisher(
            bus.clone(),
            rx,
            outlet.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(run_listener(
            state.clone(),
            bus,
            first,
            outlet,
            shutdown.clone(),
        )),
    ]
}

/// The name of the listening connection in `pg_stat_activity`: which node it belongs to.
pub fn listener_name(state: &AppState) -> String {
    format!("chatd-fanout {}", state.node)
}

/// Publishes the queued payloads, a batch per statement, until `shutdown`.
async fn run_publisher(
    bus: Arc<dyn Bus>,
    mut rx: mpsc::Receiver<String>,
    outlet: Arc<Outlet>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    loop {
        let first = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            item = rx.recv() => match item {
                Some(payload) => payload,
                None => return,
            },
        };
        batch.clear();
        batch.push(first);
        while batch.len() < PUBLISH_BATCH {
            match rx.try_recv() {
                Ok(payload) => batch.push(payload),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        match tokio::time::timeout(PUBLISH_TIMEOUT, bus.publish(&batch)).await {
            Ok(Ok(())) => {
                outlet.stats.published.fetch_add(n, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                outlet.stats.publish_failed.fetch_add(n, Ordering::Relaxed);
                warn!(frames = n, cause = %e, "fan-out publish failed; other nodes miss these frames");
            }
            Err(_) => {
                outlet.stats.publish_failed.fetch_add(n, Ordering::Relaxed);
                warn!(
                    frames = n,
                    "fan-out publish timed out; other nodes miss these frames"
                );
            }
        }
    }
}

/// Listens until `shutdown`, listening again with back-off whenever the connection is lost.
async fn run_listener(
    state: AppState,
    bus: Arc<dyn Bus>,
    mut current: Option<Listener>,
    outlet: Arc<Outlet>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = listener_name(&state);
    let mut wait = RECONNECT_FIRST;
    let mut receiver = Receiver::default();
    loop {
        if let Some(listener) = current.take() {
            outlet.listening.store(true, Ordering::Relaxed);
            wait = RECONNECT_FIRST;
            let stopped = receiver
                .serve(&state, &outlet, listener, &mut shutdown)
                .await;
            outlet.listening.store(false, Ordering::Relaxed);
            if stopped {
                return;
            }
            warn!("fan-out connection lost; listening again (frames of other nodes are missed meanwhile)");
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RECONNECT_MAX);
        let attempt = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            attempt = bus.listen(&name, RECEIVE_QUEUE) => attempt,
        };
        match attempt {
            Ok(listener) => {
                outlet.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                info!(channel = %listener.channel(), "fan-out listening again");
                current = Some(listener);
            }
            Err(e) => {
                warn!(cause = %e, retry_in_ms = wait.as_millis() as u64, "fan-out cannot listen")
            }
        }
    }
}

/// What the listener remembers across connections: the last sequence number of each node, to
/// notice frames that went missing.
#[derive(Default)]
struct Receiver {
    last_seq: HashMap<String, u64>,
}

impl Receiver {
    /// Delivers what `listener` hears until it is lost (false) or `shutdown` (true).
    async fn serve(
        &mut self,
        state: &AppState,
        outlet: &Outlet,
        mut listener: Listener,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.reset();
        let mut dropped = 0;
        loop {
            // The guard of wait_for is not Send: drop it inside, and act after the select.
            let payload = tokio::select! {
                () = async { let _ = shutdown.wait_for(|s| *s).await; } => return true,
                payload = listener.next() => match payload {
                    Some(payload) => Some(payload),
                    None => return false,
                },
                _ = check.tick() => None,
            };
            match payload {
                Some(payload) => self.deliver(state, outlet, &payload).await,
                None => {
                    if let Err(e) = listener.check().await {
                        warn!(cause = %e, "fan-out connection does not answer");
                        return false;
                    }
                }
            }
            let now = listener.dropped();
            if now > dropped {
                outlet
                    .stats
                    .receive_dropped
                    .fetch_add(now - dropped, Ordering::Relaxed);
                warn!(
                    dropped = now - dropped,
                    "fan-out frames of other nodes dropped: this node did not keep up"
                );
                dropped = now;
            }
        }
    }

    /// Delivers one notification of another node to this node's connections.
    async fn deliver(&mut self, state: &AppState, outlet: &Outlet, payload: &str) {
        let received: Received = match serde_json::from_str(payload) {
            Ok(r) => r,
            Err(e) => {
                debug!(cause = %e, "fan-out payload not understood; ignored");
                return;
            }
        };
        if *received.node == *state.node {
            return; // delivered locally when it was published
        }
        let last = self
            .last_seq
            .insert(received.node.clone(), received.seq)
            .unwrap_or(received.seq.saturating_sub(1));
        if received.seq > last + 1 {
            debug!(node = %received.node, missed = received.seq - last - 1, "fan-out frames of a node missed");
        }
        outlet.stats.received.fetch_add(1, Ordering::Relaxed);
        let hub: &Hub = &state.hub;
        match received.kind {
            Kind::Room => {
                let text = match (&received.frame, received.message) {
                    (Some(frame), _) => Utf8Bytes::from(frame.get().to_owned()),
                    (None, Some(id)) => match message_frame(state, &received.key, id).await {
                        Some(text) => text,
                        None => return,
                    },
                    (None, None) => return,
                };
                hub.deliver_room(&received.key, &text, None);
            }
            Kind::Login => {
                if let Some(frame) = &received.frame {
                    hub.deliver_login(&received.key, &Utf8Bytes::from(frame.get().to_owned()));
                }
            }
            Kind::Presence => {
                if let Some(online) = received.online {
                    crate::presence::announce_here(state, &received.key, online);
                }
            }
        }
    }
}

/// The `message` frame of message `id` of `room_id`, read from the store; `None` (logged) when it
/// cannot be read.
async fn message_frame(state: &AppState, room_id: &str, id: i64) -> Option<Utf8Bytes> {
    let call = state.store.messages_after(room_id, id.saturating_sub(1), 1);
    match state.store_call(call).await {
        Ok(messages) => {
            let message = messages.into_iter().find(|m| m.id == id)?;
            Some(
                ServerFrame::Message {
                    message: MessageView::from(&message),
                }
                .to_text(),
            )
        }
        Err(e) => {
            warn!(room = %room_tag(room_id), message = id, cause = %e, "fan-out message not read; other nodes' pages miss it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_message_goes_by_reference_and_other_frames_as_they_are() {
        let (outlet, mut rx) = Outlet::new("n1".into());
        let small = ServerFrame::Typing {
            from: "bob@x".into(),
        };
        outlet.room("r", &small, &small.to_text());
        let payload = rx.try_recv().unwrap_or_default();
        let got: Received = serde_json::from_str(&payload).expect("a payload");
        assert_eq!(
            (got.node.as_str(), got.seq, got.kind),
            ("n1", 1, Kind::Room)
        );
        assert_eq!(
            got.frame.map(|f| f.get().to_owned()).unwrap_or_default(),
            small.to_text().as_str()
        );

        let big = ServerFrame::Message {
            message: MessageView {
                id: 42,
                author: "bob@x".into(),
                text: "ü\"\n".repeat(3_000),
                at: 1,
                via: "web",
                client_id: None,
                picture: None,
            },
        };
        outlet.room("r", &big, &big.to_text());
        let payload = rx.try_recv().unwrap_or_default();
        assert!(payload.len() <= MAX_PAYLOAD_BYTES);
        let got: Received = serde_json::from_str(&payload).expect("a payload");
        assert_eq!((got.seq, got.message), (2, Some(42)));
        assert!(got.frame.is_none());
        assert_eq!(outlet.stats.by_reference.load(Ordering::Relaxed), 1);

        let ring_over = ServerFrame::Unread {
            room: "r".repeat(9_000),
            count: 1,
        };
        outlet.login("alice", &ring_over.to_text());
        assert!(
            rx.try_recv().is_err(),
            "too big and not a message: not sent"
        );
        assert_eq!(outlet.stats.too_big.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_full_publish_queue_drops_and_counts_instead_of_blocking() {
        let (outlet, _rx) = Outlet::new("n1".into());
        for _ in 0..PUBLISH_QUEUE + 3 {
            outlet.presence("alice", true);
        }
        assert_eq!(outlet.stats.publish_dropped.load(Ordering::Relaxed), 3);
    }
}
