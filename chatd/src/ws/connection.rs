//! One WebSocket connection: a send loop that drains the connection's bounded queue and pings,
//! and a receive loop that hands frames to the [`Session`]; when either ends, so does the other
//! (axum's `examples/chat`). Every wait on the client is bounded: a send that does not finish in
//! [`SEND_TIMEOUT`] or a client silent for [`IDLE_TIMEOUT`] ends the connection.
//!
//! Both loops run in the connection's one task (the one the upgrade spawns), polled together, and
//! the handling of a client frame, which may wait on the store, is boxed while it runs: what an
//! idle connection holds is then only its loops' small waiting state (see
//! [`super::capacity::MAX_CONNECTIONS`]).

use std::{future::Future, time::Duration};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{
    stream::{SplitSink, SplitStream},
    SinkExt as _, StreamExt as _,
};
use tokio::{sync::watch, time::timeout};
use tracing::debug;

use super::{
    protocol::{ErrorCode, ServerFrame},
    session::{Peer, Session},
};
use crate::{
    hub::{Inbox, Outbox, Outgoing, TooSlow},
    state::AppState,
};

/// How often chatd pings an idle connection: the heartbeat behind presence, and what keeps
/// proxies (which often drop connections idle for 60 s) from closing it.
pub const PING_INTERVAL: Duration = Duration::from_secs(25);

/// A connection from which nothing (not even a pong) arrived for this long is dead: over two
/// pings, so one lost pong does not end it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait for one frame to be written to the client.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the send loop may take to flush its queue and close after the receive side ended.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a connection closed for an oversized frame stays open after the close frame: the
/// rest of that frame is unread, and closing the socket at once would reset it (TCP RST) before
/// the client reads why.
pub const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// WebSocket close code: going away (chatd stops, or the client was silent too long).
const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code: a message too big to process.
const CLOSE_TOO_BIG: u16 = 1009;
/// WebSocket close code: try again later (the client did not keep up with its frames).
const CLOSE_TRY_LATER: u16 = 1013;

/// Serves one upgraded connection until it closes: sets it up at once (the `hello` frame is
/// queued) and returns the future that serves it. The setup is not part of that future, and the
/// send loop is boxed, so the future holds each piece of state once: async arguments and values
/// moved into a pinned local would each take a second slot in it for the connection's lifetime.
pub fn run(socket: WebSocket, state: AppState, peer: Peer) -> impl Future<Output = ()> + Send {
    let (sink, mut stream) = socket.split();
    let (outbox, inbox) = Outbox::new(state.config.chat.send_queue);
    let mut send = Box::pin(send_loop(sink, inbox, state.hub.closing()));
    let mut session = Session::new(state, peer, outbox.clone());
    session.hello();
    async move {
        let (send_done, linger) = tokio::select! {
            linger = receive(&mut stream, &mut session, &outbox) => (false, linger),
            () = &mut send => (true, false),
        };
        // Leaving the hub may wait on the store; meanwhile the send loop writes what is queued
        // (a close frame, an error). Once the hub no longer holds the queue, dropping ours ends
        // it, and the send loop closes.
        let mut close = Box::pin(async move {
            session.close().await;
            drop(session);
            drop(outbox);
        });
        if send_done {
            close.await;
        } else {
            tokio::select! {
                () = &mut close => {
                    if timeout(CLOSE_TIMEOUT, &mut send).await.is_err() {
                        debug!("connection did not close in time");
                    }
                }
                () = &mut send => close.await,
            }
        }
        if linger {
            tokio::time::sleep(CLOSE_LINGER).await;
        }
        drop(stream);
    }
}

/// Reads frames until the client closes, errs or falls silent; true when it ended on an
/// oversized frame (see [`CLOSE_LINGER`]).
async fn receive(
    stream: &mut SplitStream<WebSocket>,
    session: &mut Session,
    outbox: &Outbox,
) -> bool {
    loop {
        let message = match timeout(IDLE_TIMEOUT, stream.next()).await {
            Err(_) => {
                debug!("connection silent too long");
                outbox.deliver(Outgoing::Close(CLOSE_GOING_AWAY, "idle"));
                return false;
            }
            Ok(None) => return false,
            Ok(Some(Err(e))) => {
                // tungstenite stops at a frame over `max_frame_bytes` before reading it; the
                // stream cannot be read past it, so say why and close.
                let text = e.to_string();
                if text.contains("limit exceeded") || text.contains("too long") {
                    outbox.send(&ServerFrame::error(
                        ErrorCode::TooLarge,
                        "that frame is larger than this server accepts",
                    ));
                    outbox.deliver(Outgoing::Close(CLOSE_TOO_BIG, "frame too large"));
                    return true;
                }
                debug!(cause = %e, "connection read failed");
                return false;
            }
            Ok(Some(Ok(message))) => message,
        };
        match message {
            // Boxed: handling a frame may take a large future (store calls), which an idle
            // connection should not carry.
            Message::Text(text) => Box::pin(session.on_text(text.as_str())).await,
            Message::Binary(_) => session.error(
                ErrorCode::BadFrame,
                "binary frames are not used; send JSON text frames",
            ),
            Message::Close(_) => return false,
            // tungstenite answers pings itself; any frame shows the client is alive.
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

/// Writes the queue to the client, pings it, and closes it when the queue ends, the client is
/// too slow, or chatd stops.
async fn send_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut inbox: Inbox,
    mut closing: watch::Receiver<bool>,
) {
    let start = tokio::time::Instant::now() + PING_INTERVAL;
    let mut ping = tokio::time::interval_at(start, PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let close = |code: u16, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    loop {
        let message = tokio::select! {
            item = inbox.rx.recv() => match item {
                Ok(Some(Outgoing::Frame(text))) => Message::Text(text),
                Ok(Some(Outgoing::Close(code, reason))) => {
                    let _ = timeout(SEND_TIMEOUT, sink.send(close(code, reason))).await;
                    return;
                }
                Ok(None) => {
                    let _ = timeout(SEND_TIMEOUT, sink.send(Message::Close(None))).await;
                    return;
                }
                Err(TooSlow) => {
                    debug!("client too slow; closing");
                    let _ = timeout(SEND_TIMEOUT, sink.send(close(CLOSE_TRY_LATER, "too slow"))).await;
                    return;
                }
            },
            // The guard of wait_for is not Send: drop it inside.
            () = async { let _ = closing.wait_for(|c| *c).await; } => {
                let _ = timeout(SEND_TIMEOUT, sink.send(close(CLOSE_GOING_AWAY, "server stopping"))).await;
                return;
            }
            _ = ping.tick() => Message::Ping(Default::default()),
        };
        match timeout(SEND_TIMEOUT, sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(cause = %e, "connection write failed");
                return;
            }
            Err(_) => {
                debug!("connection write timed out");
                return;
            }
        }
    }
}
