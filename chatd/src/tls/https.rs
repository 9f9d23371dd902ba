//! HTTPS on `[chat] listen` when `[chat] tls_cert` is set: every accepted connection gets its
//! TLS handshake (bounded in time, and in how many run at once) and is then served by hyper with
//! the same router as plain HTTP, upgrades to WebSockets (`wss://`) included, and the client's
//! address as `ConnectInfo`.
//!
//! A connection that fails (a handshake that fails or times out, a client that misbehaves) is
//! logged and closed; the accept loop goes on. On shutdown it stops accepting, lets each
//! connection finish the request under way, and returns when all are closed, as plain HTTP does
//! with `axum::serve`; upgraded WebSockets are ended by the hub.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{extract::connect_info::IntoMakeServiceWithConnectInfo, Router};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use tracing::{debug, info, warn};

use super::Tls;

/// The application protocol offered in the handshake: chatd speaks HTTP/1.1 only.
pub const ALPN: &[&[u8]] = &[b"http/1.1"];

/// Longest TLS handshake: a browser needs a round trip or two; a client that stalls longer
/// holds a handshake slot for nothing.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most TLS handshakes under way at once; further connections wait in the listen backlog. A
/// flood of clients that never finish their handshake so takes at most this many sockets and
/// never the CPU of the handshakes that do finish.
pub const MAX_HANDSHAKES: usize = 256;

/// What each connection needs.
#[derive(Clone)]
struct Shared {
    acceptor: TlsAcceptor,
    make_service: IntoMakeServiceWithConnectInfo<Router, SocketAddr>,
    shutdown: watch::Receiver<bool>,
}

/// Serves `router` over TLS on `listener` until `shutdown` turns true, then returns when every
/// connection has closed.
pub async fn serve(
    listener: TcpListener,
    tls: &Tls,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = Shared {
        acceptor: TlsAcceptor::from(tls.server_config()),
        make_service: router.into_make_service_with_connect_info::<SocketAddr>(),
        shutdown: shutdown.clone(),
    };
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let mut connections = JoinSet::new();
    loop {
        let (permit, accepted) = tokio::select! {
            () = stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            next = accept(&listener, &handshakes) => next,
        };
        let (mut stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                warn!(cause = %e, "https: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        crate::server::no_delay(&mut stream);
        connections.spawn(connection(shared.clone(), stream, peer, permit));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    info!("https stopped");
}

/// Returns once `shutdown` is true (or its sender is gone), holding no borrow of it.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// A handshake slot, then the next connection.
async fn accept(
    listener: &TcpListener,
    handshakes: &Arc<Semaphore>,
) -> (
    Option<OwnedSemaphorePermit>,
    std::io::Result<(TcpStream, SocketAddr)>,
) {
    // The semaphore is never closed; without a permit the bound is only lost, not the service.
    let permit = handshakes.clone().acquire_owned().await.ok();
    (permit, listener.accept().await)
}

/// One connection: the handshake, then HTTP until the client or the shutdown ends it.
async fn connection(
    mut shared: Shared,
    stream: TcpStream,
    peer: SocketAddr,
    permit: Option<OwnedSemaphorePermit>,
) {
    let handshake = tokio::select! {
        () = stopped(&mut shared.shutdown) => return,
        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, shared.acceptor.accept(stream)) => done,
    };
    drop(permit);
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            debug!(peer = %peer, cause = %e, "https: TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(peer = %peer, "https: TLS handshake timed out");
            return;
        }
    };
    let service = match shared.make_service.oneshot(peer).await {
        Ok(service) => service,
        Err(never) => match never {},
    };
    let mut builder = Builder::new(TokioExecutor::new());
    // A timer makes hyper's header read time-out (30 s) work: a client that opens a request
    // and never finishes its headers is dropped.
    builder.http1().timer(TokioTimer::new());
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = stopped(&mut shared.shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        debug!(peer = %peer, cause = %e, "https: connection ended with an error");
    }
}
