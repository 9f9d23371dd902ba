//! The milter socket: `inet:HOST:PORT` or `unix:PATH`, with `TCP_NODELAY` on every accepted
//! connection.
//!
//! Without `TCP_NODELAY` the small replies of end-of-message (one per header action) meet Nagle's
//! algorithm and the MTA's delayed ACKs, and every mail pays about 40 ms.

use std::{
    io,
    net::SocketAddr,
    path::PathBuf,
    task::{Context, Poll},
};

use indymilter::{EitherStream, Listener};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::error::{MilterError, Result};

/// A parsed `[milter] listen` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketSpec {
    /// `inet:HOST:PORT` (also `inet6:[HOST]:PORT`, and `inet:PORT@HOST` as Sendmail writes it).
    Inet(String),
    /// `unix:PATH` (also `local:PATH`).
    Unix(PathBuf),
}

impl SocketSpec {
    /// Parses a socket spec.
    ///
    /// # Errors
    /// [`MilterError::ListenSpec`] when it is neither form.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = || MilterError::ListenSpec(spec.to_owned());
        if let Some(path) = spec
            .strip_prefix("unix:")
            .or_else(|| spec.strip_prefix("local:"))
        {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let rest = spec
            .strip_prefix("inet:")
            .or_else(|| spec.strip_prefix("inet6:"))
            .ok_or_else(bad)?;
        let addr = match rest.split_once('@') {
            Some((port, host)) => format!("{host}:{port}"),
            None => rest.to_owned(),
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        Ok(Self::Inet(addr))
    }
}

/// The bound milter socket.
#[derive(Debug)]
pub enum MilterListener {
    /// A TCP socket.
    Tcp(TcpListener),
    /// A UNIX-domain socket.
    Unix(UnixListener, PathBuf),
}

impl MilterListener {
    /// Binds the socket named by `spec`. A stale UNIX socket file is replaced.
    ///
    /// # Errors
    /// When the spec is malformed or the socket cannot be bound.
    pub async fn bind(spec: &str) -> Result<Self> {
        let bind_err = |source| MilterError::Bind {
            spec: spec.to_owned(),
            source,
        };
        match SocketSpec::parse(spec)? {
            SocketSpec::Inet(addr) => Ok(Self::Tcp(
                TcpListener::bind(addr.as_str()).await.map_err(bind_err)?,
            )),
            SocketSpec::Unix(path) => {
                if path.exists() {
                    std::fs::remove_file(&path).map_err(bind_err)?;
                }
                Ok(Self::Unix(
                    UnixListener::bind(&path).map_err(bind_err)?,
                    path,
                ))
            }
        }
    }

    /// The socket as an MTA names it: `inet:127.0.0.1:8890` or `unix:/run/chmail/milter.sock`.
    pub fn socket_name(&self) -> String {
        match self {
            Self::Tcp(l) => match l.local_addr() {
                Ok(SocketAddr::V6(a)) => format!("inet6:[{}]:{}", a.ip(), a.port()),
                Ok(a) => format!("inet:{a}"),
                Err(_) => "inet:?".into(),
            },
            Self::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }

    /// The TCP address, when it is a TCP socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(..) => None,
        }
    }
}

impl Listener for MilterListener {
    type Io = EitherStream<TcpStream, UnixStream>;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        match self {
            Self::Tcp(l) => TcpListener::poll_accept(l, cx).map_ok(|(stream, _)| {
                // Best effort: a socket that refuses NODELAY still works, only slower.
                let _ = stream.set_nodelay(true);
                EitherStream::Tcp(stream)
            }),
            Self::Unix(l, _) => {
                UnixListener::poll_accept(l, cx).map_ok(|(stream, _)| EitherStream::Unix(stream))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_specs_in_postfix_and_sendmail_forms_parse() {
        assert_eq!(
            SocketSpec::parse("inet:127.0.0.1:8890").ok(),
            Some(SocketSpec::Inet("127.0.0.1:8890".into()))
        );
        assert_eq!(
            SocketSpec::parse("inet:8890@127.0.0.1").ok(),
            Some(SocketSpec::Inet("127.0.0.1:8890".into()))
        );
        assert_eq!(
            SocketSpec::parse("inet6:[::1]:8890").ok(),
            Some(SocketSpec::Inet("[::1]:8890".into()))
        );
        assert_eq!(
            SocketSpec::parse("unix:/run/chmail/milter.sock").ok(),
            Some(SocketSpec::Unix("/run/chmail/milter.sock".into()))
        );
        for bad in [
            "",
            "127.0.0.1:8890",
            "inet:",
            "inet:host",
            "inet:host:99999",
            "unix:",
        ] {
            assert!(SocketSpec::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[tokio::test]
    async fn accepted_tcp_connections_have_tcp_nodelay() {
        let mut listener = MilterListener::bind("inet:127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("a TCP socket");
        let _mta = TcpStream::connect(addr).await.expect("connect");
        let accepted = std::future::poll_fn(|cx| listener.poll_accept(cx))
            .await
            .expect("accept");
        let EitherStream::Tcp(stream) = accepted else {
            panic!("a TCP listener accepted a UNIX-domain stream");
        };
        assert!(stream.nodelay().expect("TCP_NODELAY"));
    }

    #[tokio::test]
    async fn a_unix_socket_replaces_a_stale_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("milter.sock");
        std::fs::write(&path, b"stale").expect("write");
        let spec = format!("unix:{}", path.display());
        let l = MilterListener::bind(&spec).await.expect("bind");
        assert_eq!(l.socket_name(), spec);
    }
}
