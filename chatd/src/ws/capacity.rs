//! How many WebSocket connections chatd holds: a [`Semaphore`] bounds them all (each costs a
//! few KB and one task), and a count per client network bounds what one client may hold, so
//! one address cannot take the whole budget. A connection beyond either gets `503` before the
//! upgrade. The same [`Capacity`] bounds the HTTP connections and TLS handshakes of
//! [`crate::http`].

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limit::network;

/// Most WebSocket connections of one chatd process: more than the 20k idle connections one node
/// is sized for, and well within a small server's memory and file descriptors. An idle
/// connection costs chatd about 5 KiB, 7.5 KiB once it joined a room (`bench ws`,
/// `docs/bench.md`): its one task ([`super::connection`]), the 1 KiB read buffer
/// ([`super::READ_BUFFER_BYTES`]), the hub's entries, and allocator slack; 50 000 of them take
/// about 400 MiB.
pub const MAX_CONNECTIONS: usize = 50_000;

/// Most concurrent connections from one client network: a person has a few tabs and devices,
/// an office behind one NAT address a few dozen; a script opening thousands is refused.
pub const MAX_CONNECTIONS_PER_IP: u32 = 64;

/// The connection budget of the process. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Capacity {
    total: Arc<Semaphore>,
    per_ip_cap: u32,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

impl Default for Capacity {
    fn default() -> Self {
        Self::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP)
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    capacity: Arc<Capacity>,
    /// The client network counted; `None` for a place that counts only in all.
    key: Option<IpAddr>,
}

impl Capacity {
    /// A budget of `total` connections, `per_ip` from one client network (tests use small ones).
    pub fn new(total: usize, per_ip: u32) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total)),
            per_ip_cap: per_ip,
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// A place for one more connection from `ip`, or `None` when the process or that client
    /// network is at its cap. Clients with no known address share one count.
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Option<Admission> {
        let permit = self.total.clone().try_acquire_owned().ok()?;
        let key = ip.map_or(IpAddr::from([0u8; 4]), network);
        // A poisoned lock only means another connection panicked mid-update; counts stay usable.
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let count = per_ip.entry(key).or_insert(0);
        if *count >= self.per_ip_cap {
            return None;
        }
        *count += 1;
        Some(Admission {
            _permit: permit,
            capacity: self.clone(),
            key: Some(key),
        })
    }

    /// A place that counts only against the process's cap, for a peer that speaks for many
    /// clients (a reverse proxy on the same host); `None` when the process is at its cap.
    pub fn admit_in_all(self: &Arc<Self>) -> Option<Admission> {
        let permit = self.total.clone().try_acquire_owned().ok()?;
        Some(Admission {
            _permit: permit,
            capacity: self.clone(),
            key: None,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let Some(key) = self.key else {
            return;
        };
        let mut per_ip = self
            .capacity
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_ip.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_ip.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_in_all_and_per_network_and_come_back() {
        let capacity = Arc::new(Capacity::new(3, 2));
        let a = Some(IpAddr::from([192, 0, 2, 1]));
        let b = Some(IpAddr::from([192, 0, 2, 2]));
        let a1 = capacity.admit(a);
        let a2 = capacity.admit(a);
        assert!(a1.is_some() && a2.is_some());
        assert!(capacity.admit(a).is_none(), "per network");
        let b1 = capacity.admit(b);
        assert!(b1.is_some());
        assert!(capacity.admit(b).is_none(), "in all");
        drop(a1);
        assert!(capacity.admit(b).is_some(), "a freed place is free again");
        drop((a2, b1));
        assert!(capacity.per_ip.lock().map(|m| m.len()).unwrap_or(9) <= 1);
    }
}
