//! Stopping without dropping the mails under way: on shutdown the milter socket closes at once
//! (a new MTA connection is refused), and the sessions go on until every mail under way (MAIL
//! FROM to end-of-message or abort) has been answered, or until `[milter] shutdown_grace_secs`.
//!
//! indymilter ends every session at its next command once its own shutdown future completes, a
//! mail half-way through included; so [`server::run`](crate::server::run) hands it a future that
//! completes only after [`Transactions::finished`], and closes the socket itself through
//! [`ClosingListener`].

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
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

/// A listener that closes its socket once `closed` completes: from then on a new connection is
/// refused by the system, and accepting waits for ever (until indymilter drops the listener).
pub struct ClosingListener<L> {
    inner: Option<L>,
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl<L> ClosingListener<L> {
    /// Wraps `inner`, to be closed when `closed` completes.
    pub fn new(inner: L, closed: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            inner: Some(inner),
            closed: Box::pin(closed),
        }
    }
}

impl<L: Listener> Listener for ClosingListener<L> {
    type Io = L::Io;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        if self.inner.is_some() && self.closed.as_mut().poll(cx).is_ready() {
            self.inner = None;
        }
        match self.inner.as_mut() {
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
}
