//! Prometheus metrics of the milter, and the `/metrics` endpoint that serves them.

use std::{future::Future, sync::Arc, time::Duration};

use axum::{extract::State, http::header, routing::get, Router};
use chmail::header::AuthResult;
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use tokio::net::TcpListener;

type Labels = Vec<(&'static str, &'static str)>;

/// The milter's counters and histograms.
pub struct Metrics {
    registry: Registry,
    mails: Family<Labels, Counter>,
    added: Counter,
    stripped: Counter,
    verified: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    footers: Family<Labels, Counter>,
    eom: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, registered under the `chmail_milter` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chmail_milter");
        let mails = Family::<Labels, Counter>::default();
        let added = Counter::default();
        let stripped = Counter::default();
        let verified = Family::<Labels, Counter>::default();
        let errors = Family::<Labels, Counter>::default();
        let footers = Family::<Labels, Counter>::default();
        // 0.5 ms .. ~4 s: a milter answers end-of-message in about a millisecond when healthy.
        let eom = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.0005, 2.0, 14,
        ));
        registry.register("mails", "Mails seen, by what the milter did", mails.clone());
        registry.register(
            "headers_added",
            "CHmail, CHmail-Link and Authentication-Results headers added",
            added.clone(),
        );
        registry.register(
            "headers_stripped",
            "CHmail, CHmail-Link and Authentication-Results headers removed (forged, failing, never checkable)",
            stripped.clone(),
        );
        registry.register(
            "headers_verified",
            "Incoming CHmail headers checked, by result: pass, fail, neutral, temperror, permerror",
            verified.clone(),
        );
        for result in AuthResult::ALL {
            let _ = verified.get_or_create(&vec![("result", result.as_str())]);
        }
        registry.register(
            "errors",
            "Failures of the store, DNS or the MTA connection, by kind",
            errors.clone(),
        );
        registry.register(
            "footers",
            "Signed mails under [milter] footer, by result: added, or why the body was left as it is",
            footers.clone(),
        );
        registry.register(
            "eom_duration_seconds",
            "Time spent deciding at end-of-message",
            eom.clone(),
        );
        Self {
            registry,
            mails,
            added,
            stripped,
            verified,
            errors,
            footers,
            eom,
        }
    }

    /// Counts a mail by what was done with it (`signed`, `checked`, `passed`, `tempfailed`).
    pub fn mail(&self, action: &'static str) {
        self.mails.get_or_create(&vec![("action", action)]).inc();
    }

    /// Counts headers added.
    pub fn added(&self, n: usize) {
        self.added.inc_by(n as u64);
    }

    /// Counts headers removed.
    pub fn stripped(&self, n: usize) {
        self.stripped.inc_by(n as u64);
    }

    /// Counts one checked header by its result (`pass`, `fail`, `neutral`, `temperror`,
    /// `permerror`).
    pub fn verified(&self, result: &'static str) {
        self.verified.get_or_create(&vec![("result", result)]).inc();
    }

    /// Counts a failure of `kind` (`store`, `dns`, `action`).
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&vec![("kind", kind)]).inc();
    }

    /// Counts one signed mail under `[milter] footer`: `added`, or why the body stayed as it was.
    pub fn footer(&self, result: &'static str) {
        self.footers.get_or_create(&vec![("result", result)]).inc();
    }

    /// Records the time taken at end-of-message.
    pub fn eom_time(&self, took: Duration) {
        self.eom.observe(took.as_secs_f64());
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
///
/// # Errors
/// When serving fails.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
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
    fn counters_show_in_the_text_format() {
        let m = Metrics::new();
        m.mail("signed");
        m.added(2);
        m.stripped(3);
        m.verified("fail");
        m.error("store");
        m.eom_time(Duration::from_millis(2));
        let text = m.render();
        assert!(
            text.contains("chmail_milter_mails_total{action=\"signed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("chmail_milter_headers_added_total 2"),
            "{text}"
        );
        assert!(
            text.contains("chmail_milter_headers_stripped_total 3"),
            "{text}"
        );
        assert!(
            text.contains("chmail_milter_headers_verified_total{result=\"fail\"} 1"),
            "{text}"
        );
        for result in ["pass", "neutral", "temperror", "permerror"] {
            let zero = format!("chmail_milter_headers_verified_total{{result=\"{result}\"}} 0");
            assert!(text.contains(&zero), "{result} starts at 0: {text}");
        }
        assert!(
            text.contains("chmail_milter_errors_total{kind=\"store\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("chmail_milter_eom_duration_seconds_count 1"),
            "{text}"
        );
    }
}
