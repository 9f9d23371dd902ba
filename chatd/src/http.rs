//! chatd's accept loop on `[chat] listen`: plain HTTP, or HTTPS when `[chat] tls_cert` is set
//! (the handshake's settings in [`crate::tls::https`]). Each connection is served by hyper's
//! HTTP/1.1 with the router, upgrades to WebSockets (`ws://`, `wss://`) included, and the
//! client's address as `ConnectInfo`.
//!
//! Every connection is accepted at once and then bounded, so that silent or slow clients from
//! one address cannot hold what the others need ([`HttpLimits`], all in `docs/security.md`):
//!
//! - open connections: [`MAX_CONNECTIONS`] in all, [`MAX_CONNECTIONS_PER_ADDRESS`] per client
//!   network; one more is closed at once. A loopback peer (a reverse proxy on the same host,
//!   which speaks for many clients, as [`crate::client_ip`] assumes) counts only in all.
//! - TLS handshakes under way: [`crate::tls::https::MAX_HANDSHAKES`] in all and
//!   [`crate::tls::https::MAX_HANDSHAKES_PER_ADDRESS`] per client network, beyond which a
//!   connection is closed at once, each within [`crate::tls::https::HANDSHAKE_TIMEOUT`].
//! - [`REQUEST_HEAD_TIMEOUT`] from the moment a connection can take a request (just opened or
//!   handshaken, or its last response sent) to the end of that request's head: the header-read
//!   time-out and the keep-alive idle time-out in one (hyper's `header_read_timeout`).
//!
//! A connection once upgraded to a WebSocket leaves these counts: it keeps the WebSocket's own
//! caps ([`crate::ws::capacity`]) and heartbeat (`docs/protocol.md`).
//!
//! A connection that fails is logged at `debug` and closed; the accept loop goes on. On shutdown
//! it stops accepting, lets each connection finish the request under way, and returns when all
//! are closed; upgraded WebSockets are ended by the hub.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{extract::connect_info::IntoMakeServiceWithConnectInfo, Router};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use tracing::{debug, info, warn};

use crate::{
    tls::{https, Tls},
    ws::capacity::{Admission, Capacity},
};

/// Longest time from the moment a connection can take a request to the end of the request's
/// head: a browser sends its head at once and reuses an idle connection within seconds; a
/// client that sends half a head, or holds a connection open without asking anything, is cut
/// off after this.
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(20);

/// Most HTTP connections open at once (not counting upgraded WebSockets): far above what the
/// pages need between two requests, and well inside the file descriptors of the unit.
pub const MAX_CONNECTIONS: usize = 10_000;

/// Most HTTP connections open at once from one client network (an IPv4 address, an IPv6 /64):
/// a browser holds six per host, an office behind one NAT address a few dozen.
pub const MAX_CONNECTIONS_PER_ADDRESS: u32 = 64;

/// The bounds of `[chat] listen`. A field of the state, so that a test can shrink them.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// [`REQUEST_HEAD_TIMEOUT`].
    pub request_head_timeout: Duration,
    /// [`https::HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// The open connections: [`MAX_CONNECTIONS`], [`MAX_CONNECTIONS_PER_ADDRESS`].
    pub connections: Arc<Capacity>,
    /// The TLS handshakes under way: [`https::MAX_HANDSHAKES`],
    /// [`https::MAX_HANDSHAKES_PER_ADDRESS`].
    pub handshakes: Arc<Capacity>,
    /// Whether a loopback peer (a local reverse proxy) counts only in all. True; tests, whose
    /// clients are all on loopback, turn it off.
    pub loopback_in_all_only: bool,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            request_head_timeout: REQUEST_HEAD_TIMEOUT,
            handshake_timeout: https::HANDSHAKE_TIMEOUT,
            connections: Arc::new(Capacity::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS)),
            handshakes: Arc::new(Capacity::new(
                https::MAX_HANDSHAKES,
                https::MAX_HANDSHAKES_PER_ADDRESS,
            )),
            loopback_in_all_only: true,
        }
    }
}

impl HttpLimits {
    /// A place in `capacity` for a connection from `peer`, by the rules of the module doc.
    fn admit(&self, capacity: &Arc<Capacity>, peer: SocketAddr) -> Option<Admission> {
        if self.loopback_in_all_only && peer.ip().is_loopback() {
            capacity.admit_in_all()
        } else {
            capacity.admit(Some(peer.ip()))
        }
    }
}

/// What each connection needs.
#[derive(Clone)]
struct Shared {
    tls: Option<TlsAcceptor>,
    limits: HttpLimits,
    make_service: IntoMakeServiceWithConnectInfo<Router, SocketAddr>,
    shutdown: watch::Receiver<bool>,
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` turns true, then returns
/// when every connection has closed.
pub async fn serve(
    listener: TcpListener,
    tls: Option<&Tls>,
    router: Router,
    limits: HttpLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = Shared {
        tls: tls.map(|tls| TlsAcceptor::from(tls.server_config())),
        limits,
        make_service: router.into_make_service_with_connect_info::<SocketAddr>(),
        shutdown: shutdown.clone(),
    };
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                warn!(cause = %e, "http: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        crate::server::no_delay(&mut stream);
        let Some(place) = shared.limits.admit(&shared.limits.connections, peer) else {
            debug!(peer = %peer, "http: too many connections; closed");
            continue;
        };
        connections.spawn(connection(shared.clone(), stream, peer, place));
    }
    let addr = listener.local_addr().ok();
    drop(listener);
    while connections.join_next().await.is_some() {}
    info!(addr = ?addr, "http stopped");
}

/// Returns once `shutdown` is true (or its sender is gone), holding no borrow of it.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// One connection: the TLS handshake when there is TLS, then HTTP until the client, a time-out
/// or the shutdown ends it. `place` is its place among the open connections.
async fn connection(mut shared: Shared, stream: TcpStream, peer: SocketAddr, place: Admission) {
    let Some(acceptor) = shared.tls.clone() else {
        return http(shared, stream, peer, place).await;
    };
    let Some(slot) = shared.limits.admit(&shared.limits.handshakes, peer) else {
        debug!(peer = %peer, "https: too many TLS handshakes under way; closed");
        return;
    };
    let handshake = tokio::select! {
        () = stopped(&mut shared.shutdown) => return,
        done = tokio::time::timeout(shared.limits.handshake_timeout, acceptor.accept(stream)) => done,
    };
    drop(slot);
    match handshake {
        Ok(Ok(stream)) => http(shared, stream, peer, place).await,
        Ok(Err(e)) => debug!(peer = %peer, cause = %e, "https: TLS handshake failed"),
        Err(_) => debug!(peer = %peer, "https: TLS handshake timed out"),
    }
}

/// HTTP/1.1 over `stream` until the client, [`REQUEST_HEAD_TIMEOUT`], an upgrade or the
/// shutdown ends it.
async fn http<S>(mut shared: Shared, stream: S, peer: SocketAddr, place: Admission)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = match shared.make_service.oneshot(peer).await {
        Ok(service) => service,
        Err(never) => match never {},
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.request_head_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = stopped(&mut shared.shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    drop(place);
    if let Err(e) = served {
        debug!(peer = %peer, cause = %e, "http: connection ended with an error");
    }
}
