//! chatd's Prometheus endpoint on `[chat] metrics_listen` (here 127.0.0.1:0): scraped over HTTP
//! after a WebSocket opened, joined, wrote and rang, and after one was refused for its Origin,
//! the counters moved and the text is well-formed exposition format. The endpoint is not on the
//! public chat port, stops with chatd, and is not there at all when `metrics_listen` is empty.

mod common;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use common::{Client, Harness, BOB, WAIT};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// `GET path` on `addr`: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .expect("answered in time")
        .expect("response read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// The samples of an exposition text by series (`name{labels}`), after checking its form: every
/// sample belongs to a family declared by `# TYPE` (a counter's samples end in `_total`), every
/// value is a number, and the text ends with `# EOF`.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<&str, &str> = HashMap::new();
    let mut samples = HashMap::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" {
            assert!(lines.peek().is_none(), "nothing after # EOF");
            assert!(!samples.is_empty(), "samples in {text}");
            return samples;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            assert!(
                ["counter", "gauge", "histogram", "info", "unknown"].contains(&kind),
                "{line}"
            );
            assert!(name.starts_with("chatd_"), "{line}");
            assert!(types.insert(name, kind).is_none(), "declared once: {line}");
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
        let value: f64 = value.parse().expect("a numeric value");
        let name = series.split('{').next().unwrap_or(series);
        let family = match name.strip_suffix("_total") {
            Some(base) if types.get(base) == Some(&"counter") => base,
            _ => name,
        };
        let kind = types
            .get(family)
            .unwrap_or_else(|| panic!("no # TYPE for {line}"));
        if *kind == "counter" {
            assert!(name.ends_with("_total"), "{line}");
            assert!(value >= 0.0, "{line}");
        }
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "one sample per series: {line}"
        );
    }
    panic!("no # EOF at the end of {text}");
}

/// Scrapes until `series` reaches `at_least` (background work such as a reminder may lag).
async fn scrape_until(addr: SocketAddr, series: &str, at_least: f64) -> HashMap<String, f64> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        let samples = parse(&body);
        if samples.get(series).is_some_and(|v| *v >= at_least) {
            return samples;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never reached {at_least}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("{series} in {samples:?}"))
}

#[tokio::test]
async fn a_scrape_shows_connections_joins_messages_and_rings_as_they_happen() {
    let mut h = Harness::start(|c| {
        c.chat.metrics_listen = "127.0.0.1:0".into();
        c.chat.reminder_delay_secs = 0;
    })
    .await;
    let addr = h
        .running()
        .metrics_addr()
        .expect("the metrics endpoint runs");
    assert_ne!(addr, h.running().addr(), "a listener of its own");

    let (status, before) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let before = parse(&before);
    assert_eq!(value(&before, "chatd_websocket_connections_open"), 0.0);
    assert_eq!(
        value(&before, "chatd_rings_ended_total{result=\"offline\"}"),
        0.0,
        "every fixed series is there from the start"
    );
    assert!(
        !before.keys().any(|k| k.contains("fanout")),
        "no fan-out on SQLite"
    );

    let refused = Client::try_connect(&h.ws_url(), Some("http://evil.example"), None).await;
    assert!(refused.is_err(), "a foreign Origin is refused");
    let mut bob = h.joined(BOB).await;
    bob.say("hello from the page", "m1").await;
    // The sender is offline: the ring ends at once as `offline`, and a reminder is queued.
    bob.send(json!({"type": "ring"})).await;
    bob.skip_to("call").await;

    let after = scrape_until(addr, "chatd_mails_queued_total{kind=\"reminder\"}", 1.0).await;
    for (series, expected) in [
        ("chatd_websocket_connections_open", 1.0),
        (
            "chatd_websocket_connections_total{result=\"accepted\"}",
            1.0,
        ),
        ("chatd_websocket_connections_total{result=\"origin\"}", 1.0),
        (
            "chatd_websocket_connections_total{result=\"capacity\"}",
            0.0,
        ),
        ("chatd_rooms_joined_total{role=\"recipient\"}", 1.0),
        ("chatd_rooms_joined_total{role=\"sender\"}", 0.0),
        ("chatd_messages_stored_total{via=\"web\"}", 1.0),
        ("chatd_messages_stored_total{via=\"mail\"}", 0.0),
        ("chatd_rings_started_total", 1.0),
        ("chatd_rings_ended_total{result=\"offline\"}", 1.0),
        ("chatd_rings_ended_total{result=\"accepted\"}", 0.0),
    ] {
        assert_eq!(value(&after, series), expected, "{series}");
    }
    // The reminder goes to the recording mailer: one delivery, sent.
    let sent = "chatd_outbox_deliveries_total{kind=\"reminder\",result=\"sent\"}";
    let after = scrape_until(addr, sent, 1.0).await;
    assert_eq!(value(&after, sent), 1.0);
    assert!(after.contains_key("chatd_outbox_backlog"));

    bob.close().await;
    scrape_until_open_is(addr, 0.0).await;

    let (status, _) = get(h.running().addr(), "/metrics").await;
    assert_eq!(status, 404, "not on the public chat port");

    h.stop().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the endpoint stops with chatd"
    );
}

/// Scrapes until the open-connections gauge reads `n` (a close is seen by the server a moment
/// after the client sent it).
async fn scrape_until_open_is(addr: SocketAddr, n: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = get(addr, "/metrics").await;
        if value(&parse(&body), "chatd_websocket_connections_open") == n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_empty_metrics_listen_opens_no_listener() {
    let h = Harness::start(|c| c.chat.metrics_listen = String::new()).await;
    assert_eq!(h.running().metrics_addr(), None);
    let (status, _) = get(h.running().addr(), "/metrics").await;
    assert_eq!(status, 404);
}

#[test]
fn the_default_endpoint_is_the_port_after_the_milter_s() {
    let config = chmail::Config::default();
    assert_eq!(config.chat.metrics_listen, "127.0.0.1:9891");
    assert_eq!(config.milter.metrics_listen, "127.0.0.1:9890");
}
