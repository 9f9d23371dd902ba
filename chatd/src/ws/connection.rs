//! One WebSocket connection: a send task that drains the connection's bounded queue and pings,
//! and a receive loop that hands frames to the [`Session`]; when either ends, so does the other
//! (axum's `examples/chat`). Every wait on the client is bounded: a send that does not finish in
//! [`SEND_TIMEOUT`] or a client silent for [`IDLE_TIMEOUT`] ends the connection.

use std::time::Duration;

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
    hub::{Inbox, Outbox, Outgoing},
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

/// How long the send task may take to flush its queue and close after the receive side ended.
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

/// Serves one upgraded connection until it closes.
pub async fn run(socket: WebSocket, state: AppState, peer: Peer) {
    let (sink, mut stream) = socket.split();
    let (outbox, inbox) = Outbox::new(state.config.chat.send_queue);
    let closing = state.hub.closing();
    let mut send_task = tokio::spawn(send_loop(sink, inbox, closing));
    let mut session = Session::new(state, peer, outbox.clone());
    session.hello();
    let (send_done, linger) = tokio::select! {
        linger = receive(&mut stream, &mut session, &outbox) => (false, linger),
        _ = &mut send_task => (true, false),
    };
    session.close().await;
    // The hub no longer holds the queue: dropping ours ends it, and the send task closes.
    drop(session);
    drop(outbox);
    if !send_done && timeout(CLOSE_TIMEOUT, &mut send_task).await.is_err() {
        send_task.abort();
    }
    if linger {
        tokio::time::sleep(CLOSE_LINGER).await;
    }
    drop(stream);
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
            Message::Text(text) => session.on_text(text.as_str()).await,
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
                Some(Outgoing::Frame(text)) => Message::Text(text),
                Some(Outgoing::Close(code, reason)) => {
                    let _ = timeout(SEND_TIMEOUT, sink.send(close(code, reason))).await;
                    return;
                }
                None => {
                    let _ = timeout(SEND_TIMEOUT, sink.send(Message::Close(None))).await;
                    return;
                }
            },
            () = inbox.too_slow.notified() => {
                debug!("client too slow; closing");
                let _ = timeout(SEND_TIMEOUT, sink.send(close(CLOSE_TRY_LATER, "too slow"))).await;
                return;
            }
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
