//! Prometheus metrics of chatd, and the `/metrics` endpoint that serves them on `[chat]
//! metrics_listen` (its own listener, never the public chat port).
//!
//! One [`Metrics`] per process, in [`crate::AppState`]. Every label takes a value from a fixed
//! list named here (a WebSocket refusal's reason, a message's way in, a mail's kind): never a
//! login, a room or an address, so the number of series stays small whatever the traffic. The
//! fan-out's counters live in [`crate::fanout::Stats`] and are read at each scrape.

use std::sync::{atomic::Ordering, Arc, OnceLock};

use axum::{extract::State, http::header, routing::get, Router};
use chmail::store::{kind, RingState, Via};
use prometheus_client::{
    collector::Collector,
    encoding::{text::encode, DescriptorEncoder, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
    },
    registry::Registry,
};
use tokio::{net::TcpListener, sync::watch};

use crate::{fanout::Outlet, http::HttpLimits};

type Labels = Vec<(&'static str, &'static str)>;

/// Why a WebSocket was refused before the upgrade.
pub const REFUSALS: [&str; 2] = ["capacity", "origin"];

/// The kinds of outgoing mail, as [`chmail::store::kind`] and the mall name them; any other
/// counts as `other`.
pub const MAIL_KINDS: [&str; 9] = [
    kind::REMINDER,
    kind::NOTIFICATION,
    kind::CODE,
    kind::SIGNIN,
    crate::mall::inquiry::KIND,
    crate::mall::promotion::KIND,
    crate::mall::account::KIND_CONFIRM,
    crate::mall::account::KIND_RESET,
    crate::mall::account::KIND_EXISTS,
];

/// The results of one outbox delivery attempt.
pub const DELIVERY_RESULTS: [&str; 4] = ["sent", "temporary", "permanent", "given_up"];

/// How a ring ends.
pub const RING_RESULTS: [RingState; 5] = [
    RingState::Accepted,
    RingState::Declined,
    RingState::TimedOut,
    RingState::Offline,
    RingState::Cancelled,
];

/// What became of a mail to the reply listener: posted or dropped with a 2xx (`accepted`),
/// refused with a 5xx (`refused`), or deferred with a 4xx because the store failed (`deferred`).
pub const REPLY_RESULTS: [&str; 3] = ["accepted", "refused", "deferred"];

/// What became of one promotion mail: queued for delivery (`sent`), failed and retried later
/// (`failed`), or failed too often (`given_up`).
pub const PROMOTION_RESULTS: [&str; 3] = ["sent", "failed", "given_up"];

/// How someone signed in: by a mailed link (`link`), or as a mall member (`mall`).
pub const SIGNIN_METHODS: [&str; 2] = ["link", "mall"];

/// chatd's counters and gauges.
pub struct Metrics {
    registry: Registry,
    connections_open: Gauge,
    connections: Family<Labels, Counter>,
    joins: Family<Labels, Counter>,
    messages: Family<Labels, Counter>,
    rings_started: Counter,
    rings_ended: Family<Labels, Counter>,
    mails_queued: Family<Labels, Counter>,
    deliveries: Family<Labels, Counter>,
    backlog: Gauge,
    replies: Family<Labels, Counter>,
    inquiries: Counter,
    promotions: Family<Labels, Counter>,
    signins: Family<Labels, Counter>,
    fanout: Arc<OnceLock<Arc<Outlet>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh set of metrics, registered under the `chatd` prefix. Every labelled series that
    /// can occur starts at 0, so a rate or an alert has a series before the first event.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chatd");
        let connections_open = Gauge::default();
        let connections = family("result", &["accepted", REFUSALS[0], REFUSALS[1]]);
        let joins = family("role", &["sender", "recipient"]);
        let messages = family("via", &[Via::Web, Via::Mail, Via::System].map(Via::as_str));
        let rings_started = Counter::default();
        let ring_results = RING_RESULTS.map(RingState::as_str);
        let rings_ended = family("result", &ring_results);
        let mails_queued = family("kind", &MAIL_KINDS);
        let deliveries = Family::<Labels, Counter>::default();
        for kind in MAIL_KINDS {
            for result in DELIVERY_RESULTS {
                // Creates the series at 0; the guard is not needed.
                let _ = deliveries.get_or_create(&vec![("kind", kind), ("result", result)]);
            }
        }
        let backlog = Gauge::default();
        let replies = family("result", &REPLY_RESULTS);
        let inquiries = Counter::default();
        let promotions = family("result", &PROMOTION_RESULTS);
        let signins = family("method", &SIGNIN_METHODS);
        let fanout = Arc::new(OnceLock::new());
        registry.register(
            "websocket_connections_open",
            "WebSocket connections open now",
            connections_open.clone(),
        );
        registry.register(
            "websocket_connections",
            "WebSocket upgrades: accepted, or refused (capacity: at the process or network cap; origin: a foreign Origin)",
            connections.clone(),
        );
        registry.register(
            "rooms_joined",
            "Rooms joined by a connection, by role (sender, recipient)",
            joins.clone(),
        );
        registry.register(
            "messages_stored",
            "Chat messages stored, by how they came (web, mail, system)",
            messages.clone(),
        );
        registry.register(
            "rings_started",
            "Rings started by a recipient pressing Chat",
            rings_started.clone(),
        );
        registry.register(
            "rings_ended",
            "Rings ended, by result (accepted, declined, timed_out, offline, cancelled)",
            rings_ended.clone(),
        );
        registry.register(
            "mails_queued",
            "Mails queued in the outbox, by kind (reminder, notification, code, signin, inquiry, promotion, mall-*)",
            mails_queued.clone(),
        );
        registry.register(
            "outbox_deliveries",
            "Outbox delivery attempts, by kind and result (sent, temporary, permanent, given_up)",
            deliveries.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Mails queued and not yet delivered (all nodes; read by the delivery worker)",
            backlog.clone(),
        );
        registry.register(
            "replies",
            "Mails to the reply listener, by result (accepted, refused, deferred)",
            replies.clone(),
        );
        registry.register(
            "mall_inquiries",
            "Product inquiries mailed to a host",
            inquiries.clone(),
        );
        registry.register(
            "mall_promotion_mails",
            "Promotion mails, by result (sent, failed, given_up)",
            promotions.clone(),
        );
        registry.register(
            "signins",
            "Sign-ins, by method (link, mall)",
            signins.clone(),
        );
        registry.register_collector(Box::new(FanoutCollector(fanout.clone())));
        Self {
            registry,
            connections_open,
            connections,
            joins,
            messages,
            rings_started,
            rings_ended,
            mails_queued,
            deliveries,
            backlog,
            replies,
            inquiries,
            promotions,
            signins,
            fanout,
        }
    }

    /// Counts a WebSocket upgrade and returns a guard that holds it in the open gauge until
    /// dropped.
    pub fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.connections
            .get_or_create(&vec![("result", "accepted")])
            .inc();
        self.connections_open.inc();
        OpenConnection(self.clone())
    }

    /// Counts a WebSocket refused for `reason` (one of [`REFUSALS`]).
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections
            .get_or_create(&vec![("result", reason)])
            .inc();
    }

    /// Counts a room joined, by the sender or a recipient.
    pub fn joined(&self, sender: bool) {
        let role = if sender { "sender" } else { "recipient" };
        self.joins.get_or_create(&vec![("role", role)]).inc();
    }

    /// Counts a message stored (a new one, not a retry).
    pub fn message(&self, via: Via) {
        self.messages
            .get_or_create(&vec![("via", via.as_str())])
            .inc();
    }

    /// Counts a ring started.
    pub fn ring_started(&self) {
        self.rings_started.inc();
    }

    /// Counts a ring ended as `result`.
    pub fn ring_ended(&self, result: RingState) {
        self.rings_ended
            .get_or_create(&vec![("result", result.as_str())])
            .inc();
    }

    /// Counts a mail of `kind` queued in the outbox.
    pub fn mail_queued(&self, kind: &str) {
        self.mails_queued
            .get_or_create(&vec![("kind", mail_kind(kind))])
            .inc();
    }

    /// Counts one delivery attempt at a mail of `kind` (`result` one of [`DELIVERY_RESULTS`]).
    pub fn delivery(&self, kind: &str, result: &'static str) {
        self.deliveries
            .get_or_create(&vec![("kind", mail_kind(kind)), ("result", result)])
            .inc();
    }

    /// Sets the outbox backlog, as the store counted it.
    pub fn set_backlog(&self, queued: u32) {
        self.backlog.set(i64::from(queued));
    }

    /// Counts a mail to the reply listener by its SMTP answer `code`.
    pub fn reply(&self, code: u16) {
        let result = match code {
            ..400 => "accepted",
            400..500 => "deferred",
            _ => "refused",
        };
        self.replies.get_or_create(&vec![("result", result)]).inc();
    }

    /// Counts an inquiry mailed to a host.
    pub fn inquiry(&self) {
        self.inquiries.inc();
    }

    /// Counts a promotion mail (`result` one of [`PROMOTION_RESULTS`]).
    pub fn promotion(&self, result: &'static str) {
        self.promotions
            .get_or_create(&vec![("result", result)])
            .inc();
    }

    /// Counts a sign-in (`method` one of [`SIGNIN_METHODS`]).
    pub fn signin(&self, method: &'static str) {
        self.signins.get_or_create(&vec![("method", method)]).inc();
    }

    /// Shows the counters of the fan-out from now on (PostgreSQL only; called once).
    pub fn watch_fanout(&self, outlet: Arc<Outlet>) {
        let _ = self.fanout.set(outlet);
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A WebSocket counted as open; dropping it counts it closed.
#[derive(Debug)]
pub struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.dec();
    }
}

/// A family of one label, `name`, with a series for each of `values`, all at 0.
fn family(name: &'static str, values: &[&'static str]) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    for value in values {
        // Creates the series at 0; the guard is not needed.
        let _ = family.get_or_create(&vec![(name, *value)]);
    }
    family
}

/// `kind` as a label value: one of [`MAIL_KINDS`], or `other`.
fn mail_kind(kind: &str) -> &'static str {
    MAIL_KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("other")
}

/// Reads the fan-out's [`crate::fanout::Stats`] at each scrape; nothing without a fan-out
/// (SQLite).
struct FanoutCollector(Arc<OnceLock<Arc<Outlet>>>);

impl std::fmt::Debug for FanoutCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutCollector")
            .field("attached", &self.0.get().is_some())
            .finish()
    }
}

impl Collector for FanoutCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(outlet) = self.0.get() else {
            return Ok(());
        };
        let stats = &outlet.stats;
        let read = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        let counters = [
            (
                "fanout_published",
                "Frames published to the other nodes",
                read(&stats.published),
            ),
            (
                "fanout_received",
                "Frames of other nodes delivered here",
                read(&stats.received),
            ),
            (
                "fanout_by_reference",
                "Message frames too big for a notification, sent as the message's id",
                read(&stats.by_reference),
            ),
            (
                "fanout_reconnects",
                "Times the listening connection was opened again after it was lost",
                read(&stats.reconnects),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let dropped = [
            ("publish_queue_full", read(&stats.publish_dropped)),
            ("publish_failed", read(&stats.publish_failed)),
            ("too_big", read(&stats.too_big)),
            ("receive_queue_full", read(&stats.receive_dropped)),
        ];
        let mut family = encoder.encode_descriptor(
            "fanout_dropped",
            "Frames other nodes missed (publish_queue_full, publish_failed, too_big) or this node missed (receive_queue_full)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (reason, value) in dropped {
            let labels: Labels = vec![("reason", reason)];
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        let listening = ConstGauge::new(i64::from(outlet.is_listening()));
        let metric = encoder.encode_descriptor(
            "fanout_listening",
            "1 while the listening connection is up (frames of other nodes arrive), else 0",
            None,
            listening.metric_type(),
        )?;
        listening.encode(metric)
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` turns true, with the bounds of the chat
/// listener ([`crate::http`]) but places of its own, so that clients of `[chat] listen` never
/// take them.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(metrics);
    crate::http::serve(listener, None, app, HttpLimits::default(), shutdown).await;
}

async fn render(
    State(metrics): State<Arc<Metrics>>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_the_text_format_from_zero() {
        let m = Arc::new(Metrics::new());
        let before = m.render();
        assert!(
            before.contains("chatd_rings_ended_total{result=\"timed_out\"} 0"),
            "{before}"
        );
        assert!(
            before.contains("chatd_websocket_connections_open 0"),
            "{before}"
        );
        assert!(
            !before.contains("fanout"),
            "no fan-out on one node: {before}"
        );
        let open = m.connection_opened();
        m.connection_refused("origin");
        m.message(Via::Mail);
        m.ring_ended(RingState::Declined);
        m.mail_queued("something-new");
        m.delivery(kind::REMINDER, "given_up");
        m.reply(550);
        m.reply(451);
        m.set_backlog(7);
        let text = m.render();
        for line in [
            "chatd_websocket_connections_open 1",
            "chatd_websocket_connections_total{result=\"accepted\"} 1",
            "chatd_websocket_connections_total{result=\"origin\"} 1",
            "chatd_messages_stored_total{via=\"mail\"} 1",
            "chatd_rings_ended_total{result=\"declined\"} 1",
            "chatd_mails_queued_total{kind=\"other\"} 1",
            "chatd_outbox_deliveries_total{kind=\"reminder\",result=\"given_up\"} 1",
            "chatd_replies_total{result=\"refused\"} 1",
            "chatd_replies_total{result=\"deferred\"} 1",
            "chatd_outbox_backlog 7",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        drop(open);
        assert!(m.render().contains("chatd_websocket_connections_open 0"));
    }

    #[test]
    fn the_fan_out_shows_once_attached() {
        let m = Metrics::new();
        let (outlet, _rx) = Outlet::new("n1".into());
        outlet.stats.published.store(5, Ordering::Relaxed);
        outlet.stats.receive_dropped.store(2, Ordering::Relaxed);
        m.watch_fanout(outlet);
        let text = m.render();
        for line in [
            "# TYPE chatd_fanout_published counter",
            "chatd_fanout_published_total 5",
            "chatd_fanout_dropped_total{reason=\"receive_queue_full\"} 2",
            "chatd_fanout_listening 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
