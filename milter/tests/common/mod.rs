//! Test harness: a CHmail milter in-process on 127.0.0.1:0 over an SQLite store in a temporary
//! directory, with fixed foreign keys instead of DNS; and an MTA played by `indymilter-test`.

#![allow(dead_code)]

use std::{ffi::CString, sync::Arc};

use chmail::{
    config::{Config, OnError},
    header::{ChmailHeader, Signer},
    store::{open_store, Store},
};
use chmail_milter::{
    keys::{KeySource, StaticKeys},
    listen::MilterListener,
    metrics::Metrics,
    Milter, SigningTable,
};
use indymilter::MacroStage;
use indymilter_test::{EomAction, EomActions, ProtoOpts, TestConnection};
use tokio::{sync::oneshot, task::JoinHandle};

/// Our signing domain in these tests.
pub const DOMAIN: &str = "example.com";
/// A foreign domain whose key the tests know.
pub const FOREIGN: &str = "foreign.example";

/// A running milter and what it writes to.
pub struct TestMilter {
    pub addr: std::net::SocketAddr,
    pub store: Arc<dyn Store>,
    pub signer: Signer,
    pub foreign: Signer,
    pub milter: Arc<Milter>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// The configuration of the tests: our domain, a small port range.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_owned(),
        ..Default::default()
    };
    config.signing.domain = DOMAIN.into();
    config.signing.selector = "sel1".into();
    config.chat.public_url = "https://chat.example.com".into();
    config.chat.ports = "20000-20009".parse().expect("range");
    config.milter.metrics_listen = String::new();
    config.store.timeout_ms = 2_000;
    config
}

impl TestMilter {
    /// A milter on a fresh SQLite store.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A milter whose config `tweak` adjusts (e.g. a dead store URL, `on_error`).
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_table(tweak, |_, signer| SigningTable::single(signer)).await
    }

    /// A milter whose signing table `table` builds from the config and our `sel1` signer (which
    /// it may leave out).
    pub async fn start_with_table(
        tweak: impl FnOnce(&mut Config),
        table: impl FnOnce(&Config, Signer) -> SigningTable,
    ) -> Self {
        Self::start_with_parts(tweak, table, |foreign| {
            Arc::new(
                StaticKeys::default()
                    .with("f1", FOREIGN, foreign.public_key())
                    .with_host([192, 0, 2, 8].into(), "named.example.net"),
            )
        })
        .await
    }

    /// A milter that finds foreign keys where `keys` says (given the foreign `f1` signer).
    pub async fn start_with_keys(keys: impl FnOnce(&Signer) -> Arc<dyn KeySource>) -> Self {
        Self::start_with_parts(|_| {}, |_, signer| SigningTable::single(signer), keys).await
    }

    /// A milter from all its parts: config `tweak`, signing `table`, and the `keys` it looks foreign
    /// keys up in (given the foreign `f1` signer).
    pub async fn start_with_parts(
        tweak: impl FnOnce(&mut Config),
        table: impl FnOnce(&Config, Signer) -> SigningTable,
        keys: impl FnOnce(&Signer) -> Arc<dyn KeySource>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let store = open_store(&config.store_url(), 4)
            .await
            .expect("open store");
        // A dead store cannot be migrated; the milter must cope with it anyway.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), store.migrate()).await;
        let signer = Signer::from_seed(DOMAIN, "sel1", [7; 32]);
        let foreign = Signer::from_seed(FOREIGN, "f1", [9; 32]);
        let keys = keys(&foreign);
        let table = table(&config, Signer::from_seed(DOMAIN, "sel1", [7; 32]));
        let milter = Arc::new(
            Milter::new(config, store.clone(), table, keys, Arc::new(Metrics::new()))
                .expect("milter"),
        );
        let listener = MilterListener::bind("inet:127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("tcp");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(chmail_milter::run(listener, milter.clone(), stopped));
        Self {
            addr,
            store,
            signer,
            foreign,
            milter,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Stops the milter and checks it ended cleanly.
    pub async fn stop(mut self) {
        self.begin_stop();
        self.stopped().await;
    }

    /// Tells the milter to shut down (as SIGTERM does), without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until the milter has stopped and checks it ended cleanly.
    pub async fn stopped(mut self) {
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("milter ran cleanly");
        }
    }
}

/// One SMTP transaction as the MTA would play it.
pub struct Transaction<'a> {
    pub auth: Option<&'a str>,
    pub client_addr: &'a str,
    pub client_name: &'a str,
    pub headers: Vec<(&'a str, String)>,
    /// The body, sent when not empty and the milter asked for the body stage.
    pub body: Vec<u8>,
}

/// What the milter answered to one transaction.
pub struct Played {
    /// The end-of-message actions.
    pub actions: EomActions,
    /// The end-of-message status.
    pub status: indymilter_test::Status,
    /// The answer to the (last) body chunk; `None` when no body was sent.
    pub body_status: Option<indymilter_test::Status>,
    /// The protocol options the milter negotiated.
    pub opts: ProtoOpts,
}

impl<'a> Transaction<'a> {
    /// An authenticated submission from 192.0.2.7 with these headers.
    pub fn authenticated(login: &'a str, headers: &[(&'a str, &str)]) -> Self {
        Self {
            auth: Some(login),
            client_addr: "192.0.2.7",
            client_name: "client.example.net",
            headers: headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect(),
            body: Vec::new(),
        }
    }

    /// An unauthenticated mail from 198.51.100.9 with these headers.
    pub fn inbound(headers: &[(&'a str, &str)]) -> Self {
        Self {
            auth: None,
            client_addr: "198.51.100.9",
            client_name: "mx.foreign.example",
            headers: headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect(),
            body: Vec::new(),
        }
    }

    /// Plays the transaction against the milter at `addr`; returns the end-of-message answer.
    pub async fn run(&self, addr: std::net::SocketAddr) -> (EomActions, indymilter_test::Status) {
        let played = self.play(addr).await;
        (played.actions, played.status)
    }

    /// Plays the transaction against the milter at `addr`; returns all the milter answered.
    pub async fn play(&self, addr: std::net::SocketAddr) -> Played {
        let mut conn = TestConnection::open(addr).await.expect("open");
        let opts = conn.negotiated_opts();
        conn.macros(
            MacroStage::Connect,
            [
                ("{client_addr}", self.client_addr),
                ("{client_name}", self.client_name),
            ],
        )
        .await
        .expect("macros");
        conn.connect(self.client_name, ([192, 0, 2, 7], 2525))
            .await
            .expect("connect");
        let mut mail_macros = vec![("i", "4XyZ1")];
        if let Some(auth) = self.auth {
            mail_macros.push(("{auth_authen}", auth));
        }
        conn.macros(MacroStage::Mail, mail_macros)
            .await
            .expect("macros");
        conn.mail(["<sender@example.com>"]).await.expect("mail");
        for (name, value) in &self.headers {
            conn.header(
                *name,
                CString::new(value.as_bytes()).expect("no NUL in test headers"),
            )
            .await
            .expect("header");
        }
        let body_status = if self.body.is_empty() || opts.contains(ProtoOpts::NO_BODY) {
            None
        } else {
            Some(conn.body(self.body.clone()).await.expect("body"))
        };
        let (actions, status) = conn.eom().await.expect("eom");
        conn.close().await.expect("close");
        Played {
            actions,
            status,
            body_status,
            opts,
        }
    }
}

/// The values of the headers named `name` that the milter added.
pub fn added(actions: &EomActions, name: &str) -> Vec<String> {
    actions
        .actions
        .iter()
        .filter_map(|a| match a {
            EomAction::AddHeader { name: n, value } if n.to_bytes() == name.as_bytes() => {
                Some(String::from_utf8_lossy(value.to_bytes()).into_owned())
            }
            _ => None,
        })
        .collect()
}

/// The values of the headers named `name` that the milter inserted on top (index 0).
pub fn inserted(actions: &EomActions, name: &str) -> Vec<String> {
    actions
        .actions
        .iter()
        .filter_map(|a| match a {
            EomAction::InsertHeader {
                index: 0,
                name: n,
                value,
            } if n.to_bytes() == name.as_bytes() => {
                Some(String::from_utf8_lossy(value.to_bytes()).into_owned())
            }
            _ => None,
        })
        .collect()
}

/// Whether the milter changed nothing but put its Authentication-Results on top.
pub fn only_results_added(actions: &EomActions) -> bool {
    actions.actions.iter().all(|a| {
        matches!(a, EomAction::InsertHeader { index: 0, name, .. }
            if name.to_bytes() == b"Authentication-Results")
    })
}

/// The (name, index) of each header deletion, in the order sent.
pub fn deleted(actions: &EomActions) -> Vec<(String, i32)> {
    actions
        .actions
        .iter()
        .filter_map(|a| match a {
            EomAction::DeleteHeader { name, index } => Some((
                String::from_utf8_lossy(name.to_bytes()).into_owned(),
                *index,
            )),
            _ => None,
        })
        .collect()
}

/// Parses an added CHmail header value.
pub fn parse(value: &str) -> ChmailHeader {
    ChmailHeader::parse(value.as_bytes()).expect("the milter writes parseable headers")
}

/// Sets `on_error = "tempfail"`.
pub fn tempfail(config: &mut Config) {
    config.milter.on_error = OnError::Tempfail;
}
