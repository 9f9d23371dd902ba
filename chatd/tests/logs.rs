//! What chatd's logs say of a room: a reply posted by mail is logged at `info` with the room's
//! short tag, never with the room id, which is the capability that lets anyone into the chat.
//! The test binary of its own holds the one global log subscriber, writing to memory.

mod common;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpStream,
    sync::{Arc, Mutex, PoisonError},
};

use chatd::room_tag::room_tag;
use common::{Harness, BOB, ROOM};

/// The log lines written so far.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

/// Sends `mail` from `from` to `to` over SMTP at `addr`, as an MTA would; returns the answers.
fn deliver(addr: std::net::SocketAddr, from: &str, to: &str, mail: &str) -> String {
    let stream = TcpStream::connect(addr).expect("connect");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut answers = String::new();
    let answer = |reader: &mut BufReader<TcpStream>, answers: &mut String| loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("answer");
        answers.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            break;
        }
    };
    answer(&mut reader, &mut answers);
    for command in [
        "EHLO mx.b.example\r\n".to_owned(),
        format!("MAIL FROM:<{from}>\r\n"),
        format!("RCPT TO:<{to}>\r\n"),
        "DATA\r\n".to_owned(),
        format!("{mail}\r\n.\r\n"),
        "QUIT\r\n".to_owned(),
    ] {
        writer.write_all(command.as_bytes()).expect("command");
        answer(&mut reader, &mut answers);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_is_logged_with_the_rooms_tag_and_never_its_id() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let mut h = Harness::start(|_| {}).await;
    let to = chatd::reply::address(h.state(), ROOM, BOB)
        .await
        .expect("reply address");
    let addr = h.running().reply_addr().expect("reply listener");
    let mail = format!(
        "From: Bob <{BOB}>\r\nTo: {to}\r\nSubject: Re: Quarterly numbers\r\n\
         Message-ID: <logs1@b.example>\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n\
         Sales are final."
    );
    let answers = tokio::task::spawn_blocking(move || deliver(addr, BOB, &to, &mail))
        .await
        .expect("delivered");
    assert!(answers.contains("250 "), "{answers}");
    h.stop().await;
    let text = logs.text();
    assert!(text.contains("reply accepted"), "{text}");
    assert!(
        text.contains(&room_tag(ROOM).to_string()),
        "the room's tag is logged: {text}"
    );
    assert!(
        !text.contains(ROOM),
        "the room id leaked into the logs: {text}"
    );
}
