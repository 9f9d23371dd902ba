//! Every connection chatd accepts has `TCP_NODELAY`: its answers are small writes that must not
//! wait for the client's delayed ACK. Read from chatd's own end of the connection
//! ([`common::accepted_nodelay`]), for plain HTTP (pages and WebSockets) and the reply listener;
//! HTTPS is in `tls.rs`, the milter's socket in `milter/src/listen.rs`.

mod common;

use std::time::Duration;

use common::Harness;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::TcpStream,
};

/// The longest wait for one answer of chatd.
const ANSWER: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_have_tcp_nodelay() {
    let h = Harness::start(|_| {}).await;
    let mut stream = TcpStream::connect(h.running().addr())
        .await
        .expect("connects");
    stream
        .write_all(b"GET /signin HTTP/1.1\r\nHost: chat.test\r\n\r\n")
        .await
        .expect("request sent");
    let mut status = String::new();
    let mut reader = BufReader::new(&mut stream);
    tokio::time::timeout(ANSWER, reader.read_line(&mut status))
        .await
        .expect("an answer in time")
        .expect("the status line");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(common::accepted_nodelay(&stream));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_listener_connections_have_tcp_nodelay() {
    let h = Harness::start(|_| {}).await;
    let addr = h.running().reply_addr().expect("the reply listener runs");
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let mut greeting = String::new();
    let mut reader = BufReader::new(&mut stream);
    tokio::time::timeout(ANSWER, reader.read_line(&mut greeting))
        .await
        .expect("a greeting in time")
        .expect("the greeting");
    assert!(greeting.starts_with("220"), "{greeting}");
    assert!(common::accepted_nodelay(&stream));
}
