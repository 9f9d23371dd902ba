//! The per-IP limit on sign-in requests, in memory (the per-login limit is in the store).
//!
//! One counter per client network (an IPv4 address, an IPv6 /64: one host often holds a whole
//! /64) in fixed one-hour windows. The map is bounded: when it is full, expired windows are
//! dropped, then the oldest one, so a flood from many addresses costs memory only up to
//! [`MAX_TRACKED`] entries.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Mutex, PoisonError},
};

/// Most sign-in requests from one client network per window: a person who mistyped a few times
/// stays well under it; a script mailing links to many logins does not.
pub const SIGNINS_PER_IP: u32 = 20;
/// The window of [`SIGNINS_PER_IP`], in ms (one hour, as `[chat] signins_per_hour`).
pub const WINDOW_MS: i64 = 60 * 60 * 1000;
/// Most client networks tracked at once (about 50 bytes each).
pub const MAX_TRACKED: usize = 10_000;

/// Counts sign-in requests per client network.
#[derive(Debug, Default)]
pub struct SigninLimiter {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: i64,
    count: u32,
}

impl SigninLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request from `ip` at `now_ms`; false when it is over the limit. Requests with
    /// no known address share one counter.
    pub fn allow(&self, ip: Option<IpAddr>, now_ms: i64) -> bool {
        let key = ip.map_or(IpAddr::from([0u8; 4]), network);
        // A poisoned lock only means another request panicked mid-update; the counts stay usable.
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if !windows.contains_key(&key) && windows.len() >= MAX_TRACKED {
            windows.retain(|_, w| now_ms - w.start_ms < WINDOW_MS);
            if windows.len() >= MAX_TRACKED {
                if let Some(oldest) = windows
                    .iter()
                    .min_by_key(|(_, w)| w.start_ms)
                    .map(|(k, _)| *k)
                {
                    windows.remove(&oldest);
                }
            }
        }
        let w = windows.entry(key).or_insert(Window {
            start_ms: now_ms,
            count: 0,
        });
        if now_ms - w.start_ms >= WINDOW_MS {
            *w = Window {
                start_ms: now_ms,
                count: 0,
            };
        }
        if w.count >= SIGNINS_PER_IP {
            return false;
        }
        w.count += 1;
        true
    }
}

/// The counter key of `ip`: the address itself for IPv4, its /64 for IPv6.
fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::from(segments)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_limited_per_window() {
        let limiter = SigninLimiter::new();
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        for _ in 0..SIGNINS_PER_IP {
            assert!(limiter.allow(ip, 0));
        }
        assert!(!limiter.allow(ip, 1));
        assert!(limiter.allow(Some(IpAddr::from([192, 0, 2, 2])), 1));
        assert!(limiter.allow(ip, WINDOW_MS));
    }

    #[test]
    fn an_ipv6_64_counts_as_one_client() {
        let limiter = SigninLimiter::new();
        for i in 0..SIGNINS_PER_IP {
            let ip: IpAddr = format!("2001:db8::{:x}", i + 1)
                .parse()
                .unwrap_or(IpAddr::from([0; 4]));
            assert!(limiter.allow(Some(ip), 0));
        }
        let other: Option<IpAddr> = "2001:db8::ffff".parse().ok();
        assert!(!limiter.allow(other, 0));
    }

    #[test]
    fn the_map_stays_bounded() {
        let limiter = SigninLimiter::new();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            assert!(limiter.allow(Some(IpAddr::from(i.to_be_bytes())), i64::from(i)));
        }
        let len = limiter
            .windows
            .lock()
            .map(|w| w.len())
            .unwrap_or(usize::MAX);
        assert!(len <= MAX_TRACKED, "{len}");
    }
}
