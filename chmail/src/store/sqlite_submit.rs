//! The milter's submissions on SQLite, committed in groups.
//!
//! SQLite has one writer at a time, so the mails of many milter connections queue for it
//! anyway. Instead of one blocking task, one lock hand-over and one commit per mail, the mails
//! that wait meanwhile are written by one blocking task in one transaction, each in a savepoint
//! of its own: a mail that fails (no port free, a room id of another login) is rolled back
//! alone, exactly as its own transaction would be, and the others commit together. Every mail is
//! still answered only after the commit that holds it.

use std::{
    mem,
    sync::{Arc, Mutex, PoisonError},
};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::{
    sqlite::{backend, create_room_in, grant_in, UPSERT_LOGIN_SQL},
    PortGrant, Result, Room, StoreError, Submission,
};

/// One mail waiting for the writer: what to write and where its answer goes.
struct Pending {
    sub: Submission,
    /// The normalized room; its port is filled in once granted.
    room: Room,
    done: oneshot::Sender<Result<PortGrant>>,
}

/// The mails waiting for the writer, and whether a writer runs.
#[derive(Default)]
struct Queue {
    waiting: Vec<Pending>,
    writing: bool,
}

/// The queue of a store's submissions (see the module doc).
#[derive(Clone, Default)]
pub(super) struct Submissions {
    queue: Arc<Mutex<Queue>>,
}

impl Submissions {
    /// Writes `sub` with its normalized `room` on `conn`, together with whatever else waits;
    /// returns once it is committed (or failed).
    pub(super) async fn submit(
        &self,
        conn: &Arc<Mutex<Connection>>,
        sub: Submission,
        room: Room,
    ) -> Result<PortGrant> {
        let (done, answer) = oneshot::channel();
        let start_writer = {
            let mut queue = self.lock();
            queue.waiting.push(Pending { sub, room, done });
            !mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            let (queue, conn) = (self.clone(), Arc::clone(conn));
            tokio::task::spawn_blocking(move || queue.write_all(&conn));
        }
        answer
            .await
            .map_err(|_| StoreError::Backend("the SQLite writer stopped".into()))?
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue is a plain list and a flag: a panic elsewhere leaves it usable.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writer: takes what waits and writes it as one group, until nothing waits.
    fn write_all(&self, conn: &Mutex<Connection>) {
        // Should writing panic, the next mail starts a new writer; the mails taken are answered
        // with an error when their senders drop, and those still waiting here as well.
        let _reset = ResetOnPanic(self);
        loop {
            let group = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.writing = false;
                    return;
                }
                mem::take(&mut queue.waiting)
            };
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            write_group(&mut conn, group);
        }
    }
}

/// Clears the queue when the writer unwinds.
struct ResetOnPanic<'a>(&'a Submissions);

impl Drop for ResetOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.lock();
            queue.writing = false;
            queue.waiting.clear();
        }
    }
}

/// Writes `group` in one `BEGIN IMMEDIATE` transaction, each mail in its own savepoint, and
/// answers each mail after the commit.
fn write_group(conn: &mut Connection, group: Vec<Pending>) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let why = e.to_string();
            for pending in group {
                let _ = pending.done.send(Err(StoreError::Backend(why.clone())));
            }
            return;
        }
    };
    let mut answers = Vec::with_capacity(group.len());
    for mut pending in group {
        let result = tx.savepoint().map_err(backend).and_then(|savepoint| {
            let grant = write_one(&savepoint, &pending.sub, &mut pending.room)?;
            // Without this RELEASE the savepoint rolls back when dropped.
            savepoint.commit().map_err(backend)?;
            Ok(grant)
        });
        answers.push((pending.done, result));
    }
    if let Err(e) = tx.commit() {
        let why = e.to_string();
        for (done, result) in answers {
            let failed = match result {
                Ok(_) => StoreError::Backend(why.clone()),
                Err(e) => e,
            };
            let _ = done.send(Err(failed));
        }
        return;
    }
    for (done, result) in answers {
        let _ = done.send(result);
    }
}

/// One mail: the first table, the grant, the room on the granted port.
fn write_one(tx: &Connection, sub: &Submission, room: &mut Room) -> Result<PortGrant> {
    tx.prepare_cached(UPSERT_LOGIN_SQL)
        .map_err(backend)?
        .execute((&sub.login, &sub.ip, &sub.hostname, sub.now))
        .map_err(backend)?;
    let grant = grant_in(tx, &sub.login, sub.ports, sub.reclaim_after, sub.now)?;
    room.port = grant.port;
    create_room_in(tx, room)?;
    Ok(grant)
}
