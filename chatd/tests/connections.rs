//! The bounds of chatd's listeners. `[chat] listen` over plain HTTP (`chatd::http`): a
//! connection that sends half a request head, one that sends nothing, and one kept alive without
//! a further request are closed after the request-head time-out; a client network past its
//! connection cap has its next connection closed at once while another address still gets
//! pages. `[reply] listen`: the same cap answered with `421`, a silent client cut off after the
//! idle time-out, one that sends a byte now and then after the session time-out.
//!
//! The clients of these tests are all on loopback, which chatd otherwise counts as a local
//! proxy; the tests turn that off, and use 127.0.0.2 as a second client address.

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use chatd::{http::HttpLimits, reply::listener::ReplyLimits, ws::capacity::Capacity};
use common::Harness;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream},
};

/// The request-head time-out of these tests.
const HEAD_TIMEOUT: Duration = Duration::from_secs(1);

/// The per-address connection cap of these tests.
const PER_ADDRESS: u32 = 4;

/// chatd over plain HTTP with short bounds that count loopback clients per address.
async fn chatd() -> Harness {
    Harness::start_with(
        |_| {},
        |state| {
            state.http_limits = HttpLimits {
                request_head_timeout: HEAD_TIMEOUT,
                connections: Arc::new(Capacity::new(1_000, PER_ADDRESS)),
                loopback_in_all_only: false,
                ..HttpLimits::default()
            };
        },
    )
    .await
}

/// A TCP connection to `addr` from the address `from`.
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::from(from), 0))
        .expect("bind a loopback address");
    socket.connect(addr).await.expect("connect")
}

/// Reads until the server closes; returns what came and how long it took, or panics after
/// `within`.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the connection was still open after {within:?}; got {:?}",
        String::from_utf8_lossy(&got)
    );
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_request_head_is_cut_off_after_the_time_out() {
    let mut h = chatd().await;
    let mut stream = TcpStream::connect(h.running().addr())
        .await
        .expect("connect");
    stream
        .write_all(b"GET /signin HTTP/1.1\r\nHost: chat.test\r\n")
        .await
        .expect("half a head");
    let (got, after) = until_closed(&mut stream, HEAD_TIMEOUT * 5).await;
    assert!(after >= HEAD_TIMEOUT / 2, "closed too early: {after:?}");
    assert!(!got.contains("200 OK"), "{got}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_time_out() {
    let mut h = chatd().await;
    let mut stream = TcpStream::connect(h.running().addr())
        .await
        .expect("connect");
    until_closed(&mut stream, HEAD_TIMEOUT * 5).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_time_out() {
    let mut h = chatd().await;
    let mut stream = TcpStream::connect(h.running().addr())
        .await
        .expect("connect");
    stream
        .write_all(b"GET /signin HTTP/1.1\r\nHost: chat.test\r\n\r\n")
        .await
        .expect("a request, keep-alive");
    let (got, _) = until_closed(&mut stream, HEAD_TIMEOUT * 5).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        !got.to_ascii_lowercase()
            .contains("strict-transport-security"),
        "no HSTS over plain HTTP (a TLS proxy in front sets its own): {got}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_past_its_cap_is_closed_at_once_and_another_still_gets_pages() {
    let mut h = chatd().await;
    let addr = h.running().addr();
    let mut held = Vec::new();
    for _ in 0..PER_ADDRESS {
        held.push(connect_from([127, 0, 0, 1], addr).await);
    }
    // The places are counted once the loop has accepted them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut one_more = connect_from([127, 0, 0, 1], addr).await;
    let (got, after) = until_closed(&mut one_more, Duration::from_millis(500)).await;
    assert!(got.is_empty(), "{got}");
    assert!(after < HEAD_TIMEOUT, "closed at once, not by the time-out");

    let mut other = connect_from([127, 0, 0, 2], addr).await;
    other
        .write_all(b"GET /signin HTTP/1.1\r\nHost: chat.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let (page, _) = until_closed(&mut other, HEAD_TIMEOUT).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    drop(held);
    h.stop().await;
}

/// chatd whose reply listener has short time-outs and a small per-address cap.
async fn reply_chatd() -> Harness {
    Harness::start_with(
        |_| {},
        |state| {
            state.reply_limits = ReplyLimits {
                idle_timeout: HEAD_TIMEOUT,
                session_timeout: HEAD_TIMEOUT * 2,
                connections: Arc::new(Capacity::new(32, 2)),
            };
        },
    )
    .await
}

/// The first line the SMTP server sends.
async fn greeting(stream: &mut TcpStream) -> String {
    let mut got = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut got))
        .await
        .expect("a greeting in time")
        .expect("read");
    String::from_utf8_lossy(&got[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_listener_refuses_one_address_past_its_cap_and_greets_another() {
    let mut h = reply_chatd().await;
    let addr = h.running().reply_addr().expect("reply listener");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_from([127, 0, 0, 1], addr).await;
        assert!(greeting(&mut stream).await.starts_with("220"));
        held.push(stream);
    }
    let mut one_more = connect_from([127, 0, 0, 1], addr).await;
    let answer = greeting(&mut one_more).await;
    assert!(answer.starts_with("421"), "{answer}");
    let mut other = connect_from([127, 0, 0, 2], addr).await;
    let answer = greeting(&mut other).await;
    assert!(answer.starts_with("220"), "{answer}");
    drop(held);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_smtp_client_is_cut_off_after_the_idle_time_out() {
    let mut h = reply_chatd().await;
    let addr = h.running().reply_addr().expect("reply listener");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    assert!(greeting(&mut stream).await.starts_with("220"));
    until_closed(&mut stream, HEAD_TIMEOUT * 5).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_client_sending_a_byte_now_and_then_is_cut_off_at_the_session_time_out() {
    let mut h = reply_chatd().await;
    let addr = h.running().reply_addr().expect("reply listener");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    assert!(greeting(&mut stream).await.starts_with("220"));
    let started = Instant::now();
    // One byte of a command every 300 ms: never idle for the idle time-out.
    let mut closed = false;
    while started.elapsed() < HEAD_TIMEOUT * 6 {
        if stream.write_all(b"N").await.is_err() {
            closed = true;
            break;
        }
        let mut got = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut got)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            closed = true;
            break;
        }
    }
    assert!(closed, "the connection outlived the session time-out");
    h.stop().await;
}
