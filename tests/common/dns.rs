//! A tiny authoritative DNS server on 127.0.0.1 (UDP and TCP) that answers TXT queries from a
//! table: the CHmail key records the milter looks up. Any other name gets NXDOMAIN, another type
//! of a known name an empty answer; a name marked failing gets SERVFAIL or no answer at all.

use std::{
    collections::HashMap,
    io::{self, Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{rdata::TXT, RData, Record, RecordType},
};

/// How often the server threads look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// TTL of every answer: short, the tests change records.
const TTL: u32 = 5;

/// Longest character-string in a TXT record (RFC 1035 section 3.3).
const MAX_TXT_STRING: usize = 255;

/// How the server fails for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answers SERVFAIL (the name's servers are broken or unreachable upstream).
    ServFail,
    /// Never answers (the resolver times out).
    Silent,
}

/// The records, the failing names and a query counter, shared with the server threads.
#[derive(Default)]
struct Zone {
    txt: Mutex<HashMap<String, String>>,
    failing: Mutex<HashMap<String, Failure>>,
    queries: AtomicUsize,
}

/// The running server; it stops when dropped.
pub struct TestDns {
    port: u16,
    zone: Arc<Zone>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl TestDns {
    /// Starts the server on a free port with these `(name, TXT value)` records.
    ///
    /// # Panics
    ///
    /// When no port can be bound.
    pub fn start<N: Into<String>, V: Into<String>>(
        records: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let zone = Arc::new(Zone::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (udp, tcp, port) = bind_pair();
        let mut dns = Self {
            port,
            zone,
            stop,
            threads: Vec::new(),
        };
        for (name, value) in records {
            dns.insert(name, value);
        }
        let (zone, stop) = (dns.zone.clone(), dns.stop.clone());
        dns.threads
            .push(thread::spawn(move || serve_udp(&udp, &zone, &stop)));
        let (zone, stop) = (dns.zone.clone(), dns.stop.clone());
        dns.threads
            .push(thread::spawn(move || serve_tcp(&tcp, &zone, &stop)));
        dns
    }

    /// The port, the same for UDP and TCP.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, as the milter's `[milter] resolver` wants it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Adds or replaces the TXT record of `name` (case and a final dot do not matter).
    pub fn insert(&self, name: impl Into<String>, value: impl Into<String>) {
        self.zone
            .txt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(normalize(&name.into()), value.into());
    }

    /// Makes queries for `name` fail as `failure` says (case and a final dot do not matter).
    pub fn fail(&self, name: impl Into<String>, failure: Failure) {
        self.zone
            .failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(normalize(&name.into()), failure);
    }

    /// How many queries the server has answered so far.
    pub fn queries(&self) -> usize {
        self.zone.queries.load(Ordering::SeqCst)
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same free port.
fn bind_pair() -> (UdpSocket, TcpListener, u16) {
    for _ in 0..100 {
        let port = crate::free_port();
        let (Ok(udp), Ok(tcp)) = (
            UdpSocket::bind(("127.0.0.1", port)),
            TcpListener::bind(("127.0.0.1", port)),
        ) else {
            continue;
        };
        // Both set up for polling the stop flag: cannot fail on a fresh socket.
        udp.set_read_timeout(Some(POLL)).expect("UDP read timeout");
        tcp.set_nonblocking(true)
            .expect("non-blocking TCP listener");
        return (udp, tcp, port);
    }
    panic!("cannot bind the test DNS server on 127.0.0.1");
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn serve_udp(socket: &UdpSocket, zone: &Zone, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let Ok((len, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if let Some(reply) = answer(&buf[..len], zone) {
            let _ = socket.send_to(&reply, peer);
        }
    }
}

fn serve_tcp(listener: &TcpListener, zone: &Zone, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = serve_tcp_connection(stream, zone);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// Answers length-prefixed queries (RFC 1035 section 4.2.2) until the client closes.
fn serve_tcp_connection(mut stream: TcpStream, zone: &Zone) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    loop {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len)?;
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut query)?;
        if let Some(reply) = answer(&query, zone) {
            let len = u16::try_from(reply.len()).map_err(io::Error::other)?;
            stream.write_all(&len.to_be_bytes())?;
            stream.write_all(&reply)?;
        }
    }
}

/// The reply to one query message, or `None` for garbage.
fn answer(query: &[u8], zone: &Zone) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    zone.queries.fetch_add(1, Ordering::SeqCst);
    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(true)
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true);
    let records = zone.txt.lock().unwrap_or_else(|e| e.into_inner());
    let failing = zone.failing.lock().unwrap_or_else(|e| e.into_inner());
    let mut code = ResponseCode::NoError;
    for question in request.queries() {
        reply.add_query(question.clone());
        let name = normalize(&question.name().to_ascii());
        match failing.get(&name) {
            Some(Failure::Silent) => return None,
            Some(Failure::ServFail) => {
                code = ResponseCode::ServFail;
                continue;
            }
            None => {}
        }
        match records.get(&name) {
            None => code = ResponseCode::NXDomain,
            Some(value) if question.query_type() == RecordType::TXT => {
                let strings = value
                    .as_bytes()
                    .chunks(MAX_TXT_STRING)
                    .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
                    .collect();
                reply.add_answer(Record::from_rdata(
                    question.name().clone(),
                    TTL,
                    RData::TXT(TXT::new(strings)),
                ));
            }
            Some(_) => {}
        }
    }
    reply.set_response_code(code);
    reply.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::{
        op::Query,
        rr::{Name, RecordType},
    };
    use std::str::FromStr;

    fn ask(dns: &TestDns, name: &str, kind: RecordType) -> Message {
        let mut query = Message::new();
        query
            .set_id(4242)
            .add_query(Query::query(Name::from_str(name).expect("name"), kind));
        let socket = UdpSocket::bind("127.0.0.1:0").expect("client socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        socket
            .send_to(&query.to_vec().expect("encode"), dns.addr())
            .expect("send");
        let mut buf = [0u8; 4096];
        let len = socket.recv(&mut buf).expect("reply");
        Message::from_vec(&buf[..len]).expect("decode")
    }

    #[test]
    fn known_txt_name_is_answered_and_unknown_name_is_nxdomain() {
        let long = "p=".to_owned() + &"A".repeat(300);
        let dns = TestDns::start([("s1._chmail.Foreign.Test.", long.clone())]);

        let reply = ask(&dns, "s1._chmail.foreign.test.", RecordType::TXT);
        assert_eq!(reply.id(), 4242);
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        let txt = match reply.answers().first().map(Record::data) {
            Some(RData::TXT(txt)) => txt.to_string(),
            other => panic!("no TXT answer: {other:?}"),
        };
        assert_eq!(txt, long, "strings of a long record join back");

        let reply = ask(&dns, "nobody._chmail.foreign.test.", RecordType::TXT);
        assert_eq!(reply.response_code(), ResponseCode::NXDomain);
        assert!(reply.answers().is_empty());
        assert_eq!(dns.queries(), 2);

        dns.fail("s1._chmail.foreign.test", Failure::ServFail);
        let reply = ask(&dns, "s1._chmail.foreign.test.", RecordType::TXT);
        assert_eq!(reply.response_code(), ResponseCode::ServFail);
        assert!(reply.answers().is_empty());
    }
}
