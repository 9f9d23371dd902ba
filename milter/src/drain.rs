//! Stopping without dropping the mails under way: on shutdown the milter socket closes at once
//! (a new MTA connection is refused), and the sessions go on until every mail under way (MAIL
//! FROM to end-of-message or abort) has been answered, or until `[milter] shutdown_grace_secs`.
//!
//! indymilter ends every session at its next command once its own shutdown future completes, a
//! mail half-way through included; so [`server::run`](crate::server::run) hands it a future that
//! closes the socket itself ([`Closer`]) and completes only after [`Transactions::finished`].

use std::{
    io,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use indymilter::Listener;
use tokio::sync::watch;

/// Counts the mails under way over all sessions.
#[derive(Debug, Clone)]
pub struct Transactions(Arc<watch::Sender<usize>>);

impl Default for Transactions {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl Transactions {
    /// Marks a mail as under way until the returned guard is dropped (at end-of-message, at
    /// abort, or with the session).
    pub fn begin(&self) -> Transaction {
        self.0.send_modify(|n| *n += 1);
        Transaction(self.0.clone())
    }

    /// How many mails are under way now.
    pub fn under_way(&self) -> usize {
        *self.0.borrow()
    }

    /// Completes when no mail is under way.
    pub async fn finished(&self) {
        let mut count = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = count.wait_for(|n| *n == 0).await;
    }
}

/// One mail under way; dropping it ends it.
#[derive(Debug)]
pub struct Transaction(Arc<watch::Sender<usize>>);

impl Drop for Transaction {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A listener whose socket its [`Closer`] closes: from then on a new connection is refused by
/// the system, and accepting waits for ever (until indymilter drops the listener). The closer
/// works even while indymilter is not accepting (all its connection places taken).
pub struct ClosingListener<L>(Arc<Mutex<Option<L>>>);

/// Closes the socket of its [`ClosingListener`].
pub struct Closer<L>(Arc<Mutex<Option<L>>>);

impl<L> ClosingListener<L> {
    /// Wraps `inner`; the closer closes it.
    pub fn new(inner: L) -> (Self, Closer<L>) {
        let shared = Arc::new(Mutex::new(Some(inner)));
        (Self(shared.clone()), Closer(shared))
    }
}

impl<L> Closer<L> {
    /// Closes the socket.
    pub fn close(&self) {
        drop(self.0.lock().unwrap_or_else(PoisonError::into_inner).take());
    }
}

impl<L: Listener> Listener for ClosingListener<L> {
    type Io = L::Io;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        // Held only for the poll, never across an await.
        match self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            Some(inner) => inner.poll_accept(cx),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn finished_waits_for_the_last_mail_under_way() {
        let transactions = Transactions::default();
        let first = transactions.begin();
        let second = transactions.begin();
        assert_eq!(transactions.under_way(), 2);
        drop(first);
        let waiting = tokio::time::timeout(Duration::from_millis(50), transactions.finished());
        assert!(waiting.await.is_err(), "one mail is still under way");
        drop(second);
        tokio::time::timeout(Duration::from_secs(1), transactions.finished())
            .await
            .expect("no mail under way");
        assert_eq!(transactions.under_way(), 0);
    }

    #[tokio::test]
    async fn a_closed_listener_refuses_connections_even_when_nobody_accepts() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = tcp.local_addr().expect("address");
        let (_listener, closer) = ClosingListener::new(tcp);
        assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
        closer.close();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the socket is closed"
        );
    }
}
