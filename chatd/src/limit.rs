//! Rate limits in memory, shared by every connection and request of this process: sign-in
//! requests per client network, chat messages and rings per client network and per identity
//! (PRODUCT.md, "Network protection"), sign-in mails per login and client network. The per-login
//! cap on sign-in mails is in the store.
//!
//! One [`RateLimiter`] counts events per key in fixed windows. Its map is bounded: when it is
//! full, expired windows are dropped, then the oldest one, so a flood from many keys costs
//! memory only up to its `max_tracked` entries. An IP address counts by network ([`network`]):
//! an IPv4 address, an IPv6 /64 (one host often holds a whole /64).
//!
//! The counts live in this process: with several chatd nodes, each node allows the limit.

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::{Mutex, PoisonError},
};

use chmail::config::ChatConfig;

/// Most sign-in requests from one client network per window: a person who mistyped a few times
/// stays well under it; a script mailing links to many logins does not.
pub const SIGNINS_PER_IP: u32 = 20;
/// The window of [`SIGNINS_PER_IP`], in ms (one hour, as `[chat] signins_per_hour`).
pub const WINDOW_MS: i64 = 60 * 60 * 1000;
/// Most keys a limiter tracks at once (about 50-100 bytes each).
pub const MAX_TRACKED: usize = 10_000;
/// The window of the message limits, in ms: `[chat] messages_per_minute` counts per minute.
pub const MESSAGE_WINDOW_MS: i64 = 60 * 1000;
/// How many people's worth of messages one client network may send: an office or a family
/// behind one NAT address chats at once, but one address cannot multiply its budget by opening
/// many connections under many identities.
pub const MESSAGE_IP_SHARE: u32 = 10;
/// Rings one caller may start in one room per `[chat] ring_timeout`: one. A declined or missed
/// call can be tried again once the time a ring lasts has passed, not at once and repeatedly.
pub const RINGS_PER_CALLER: u32 = 1;
/// Rings from one client network per [`WINDOW_MS`] (an hour), over all rooms: a person calls a
/// few times an hour; a script ringing many senders does not get far.
pub const RINGS_PER_IP: u32 = 30;
/// How many client networks' worth of sign-in mails one login may get per hour: `[chat]
/// signins_per_hour` counts per login and client network ([`ChatLimits::signin_mail`]), so that
/// a stranger who asks for a login's links from their own network uses up only their own share,
/// never the owner's; the store caps the login at this many times that in all (a stranger with
/// many networks can still not flood the mailbox).
pub const SIGNIN_MAIL_NETWORKS: u32 = 4;

/// Counts events per key in fixed windows, bounded in memory.
#[derive(Debug)]
pub struct RateLimiter<K> {
    limit: u32,
    window_ms: i64,
    max_tracked: usize,
    windows: Mutex<HashMap<K, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: i64,
    count: u32,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter allowing `limit` events per key in each window of `window_ms`, tracking at
    /// most [`MAX_TRACKED`] keys.
    pub fn new(limit: u32, window_ms: i64) -> Self {
        Self::bounded(limit, window_ms, MAX_TRACKED)
    }

    /// As [`RateLimiter::new`], tracking at most `max_tracked` keys.
    pub fn bounded(limit: u32, window_ms: i64, max_tracked: usize) -> Self {
        Self {
            limit,
            window_ms: window_ms.max(1),
            max_tracked: max_tracked.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Whether one more event of `key` at `now_ms` is within the limit, without counting it.
    pub fn would_allow(&self, key: &K, now_ms: i64) -> bool {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows
            .get(key)
            .is_none_or(|w| now_ms - w.start_ms >= self.window_ms || w.count < self.limit)
    }

    /// Counts one event of `key` at `now_ms`; false (and not counted) when it is over the limit.
    pub fn allow(&self, key: &K, now_ms: i64) -> bool {
        // A poisoned lock only means another request panicked mid-update; the counts stay usable.
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if !windows.contains_key(key) && windows.len() >= self.max_tracked {
            let window_ms = self.window_ms;
            windows.retain(|_, w| now_ms - w.start_ms < window_ms);
            if windows.len() >= self.max_tracked {
                if let Some(oldest) = windows
                    .iter()
                    .min_by_key(|(_, w)| w.start_ms)
                    .map(|(k, _)| k.clone())
                {
                    windows.remove(&oldest);
                }
            }
        }
        let w = windows.entry(key.clone()).or_insert(Window {
            start_ms: now_ms,
            count: 0,
        });
        if now_ms - w.start_ms >= self.window_ms {
            *w = Window {
                start_ms: now_ms,
                count: 0,
            };
        }
        if w.count >= self.limit {
            return false;
        }
        w.count += 1;
        true
    }

    /// Takes back one event of `key` counted by [`RateLimiter::allow`] at `now_ms` (a reserved
    /// attempt that turned out not to count, such as a correct password), if its window is still
    /// the one it was counted in.
    pub fn release(&self, key: &K, now_ms: i64) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = windows.get_mut(key) {
            if now_ms - w.start_ms < self.window_ms {
                w.count = w.count.saturating_sub(1);
            }
        }
    }

    /// How many events of `key` count in its window at `now_ms`.
    pub fn count(&self, key: &K, now_ms: i64) -> u32 {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows
            .get(key)
            .filter(|w| now_ms - w.start_ms < self.window_ms)
            .map_or(0, |w| w.count)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Counts sign-in requests per client network.
#[derive(Debug)]
pub struct SigninLimiter(RateLimiter<IpAddr>);

impl Default for SigninLimiter {
    fn default() -> Self {
        Self(RateLimiter::new(SIGNINS_PER_IP, WINDOW_MS))
    }
}

impl SigninLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request from `ip` at `now_ms`; false when it is over the limit. Requests with
    /// no known address share one counter.
    pub fn allow(&self, ip: Option<IpAddr>, now_ms: i64) -> bool {
        self.0.allow(&ip_key(ip), now_ms)
    }
}

/// The shared limits of the chat: messages and rings, per client network and per identity.
#[derive(Debug)]
pub struct ChatLimits {
    /// Messages per identity (the sender's login, or a recipient's room and address).
    messages: RateLimiter<String>,
    /// Messages per client network.
    messages_by_ip: RateLimiter<IpAddr>,
    /// Rings per room and caller.
    rings: RateLimiter<String>,
    /// Rings per client network.
    rings_by_ip: RateLimiter<IpAddr>,
    /// Sign-in mails per login and client network.
    signin_mails: RateLimiter<(String, IpAddr)>,
}

impl ChatLimits {
    /// The limits of `[chat]`: `messages_per_minute`, `ring_timeout`.
    pub fn new(chat: &ChatConfig) -> Self {
        let per_minute = chat.messages_per_minute;
        let ring_ms = i64::try_from(chat.ring_timeout().as_millis()).unwrap_or(i64::MAX);
        Self {
            messages: RateLimiter::new(per_minute, MESSAGE_WINDOW_MS),
            messages_by_ip: RateLimiter::new(
                per_minute.saturating_mul(MESSAGE_IP_SHARE),
                MESSAGE_WINDOW_MS,
            ),
            rings: RateLimiter::new(RINGS_PER_CALLER, ring_ms),
            rings_by_ip: RateLimiter::new(RINGS_PER_IP, WINDOW_MS),
            signin_mails: RateLimiter::new(chat.signins_per_hour, WINDOW_MS),
        }
    }

    /// Counts one sign-in mail for `login` asked from `ip`; false when that client network
    /// asked for `[chat] signins_per_hour` of them in the last hour.
    pub fn signin_mail(&self, login: &str, ip: Option<IpAddr>, now_ms: i64) -> bool {
        self.signin_mails
            .allow(&(login.to_owned(), ip_key(ip)), now_ms)
    }

    /// Counts one message of `identity` from `ip`; false when either is over its limit (then
    /// neither counts it).
    pub fn message(&self, identity: &str, ip: Option<IpAddr>, now_ms: i64) -> bool {
        both(
            (&self.messages, &identity.to_owned()),
            (&self.messages_by_ip, &ip_key(ip)),
            now_ms,
        )
    }

    /// Counts one ring of `caller` in `room_id` from `ip`; false when either is over its limit.
    pub fn ring(&self, room_id: &str, caller: &str, ip: Option<IpAddr>, now_ms: i64) -> bool {
        both(
            (&self.rings, &format!("{room_id}\n{caller}")),
            (&self.rings_by_ip, &ip_key(ip)),
            now_ms,
        )
    }
}

/// Counts in both limiters, or in neither when one of them is full. Two concurrent events may
/// both pass `would_allow`; the second `allow` still refuses, at worst costing the other
/// limiter one count.
fn both<A: Hash + Eq + Clone, B: Hash + Eq + Clone>(
    (a, ka): (&RateLimiter<A>, &A),
    (b, kb): (&RateLimiter<B>, &B),
    now_ms: i64,
) -> bool {
    if !a.would_allow(ka, now_ms) || !b.would_allow(kb, now_ms) {
        return false;
    }
    a.allow(ka, now_ms) && b.allow(kb, now_ms)
}

/// The counter key of a client: its network, or one shared key when its address is unknown.
fn ip_key(ip: Option<IpAddr>) -> IpAddr {
    ip.map_or(IpAddr::from([0u8; 4]), network)
}

/// The counter key of `ip`: the address itself for IPv4, its /64 for IPv6.
pub fn network(ip: IpAddr) -> IpAddr {
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
        let len = limiter.0.tracked();
        assert!(len <= MAX_TRACKED, "{len}");
    }

    #[test]
    fn a_refused_event_counts_in_neither_limiter() {
        let chat = ChatConfig {
            messages_per_minute: 2,
            ..ChatConfig::default()
        };
        let limits = ChatLimits::new(&chat);
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        assert!(limits.message("bob", ip, 0));
        assert!(limits.message("bob", ip, 0));
        for _ in 0..100 {
            assert!(!limits.message("bob", ip, 0));
        }
        // bob's refusals did not use up the address's share: 2 of 20 are used.
        for who in 0..9 {
            assert!(limits.message(&format!("p{who}"), ip, 0));
            assert!(limits.message(&format!("p{who}"), ip, 0));
        }
        assert!(
            !limits.message("p10", ip, 0),
            "the address's share is used up"
        );
        assert!(limits.message("bob", ip, MESSAGE_WINDOW_MS));
    }

    #[test]
    fn a_released_event_counts_no_more_within_its_window() {
        let limiter = RateLimiter::new(2, 100);
        assert!(limiter.allow(&"a", 0));
        assert!(limiter.allow(&"a", 1));
        assert!(!limiter.allow(&"a", 2));
        limiter.release(&"a", 3);
        assert_eq!(limiter.count(&"a", 3), 1);
        assert!(limiter.allow(&"a", 4));
        limiter.release(&"b", 4);
        assert_eq!(limiter.count(&"b", 4), 0);
        assert_eq!(limiter.count(&"a", 100), 0, "a new window");
    }

    #[test]
    fn sign_in_mails_count_per_login_and_network() {
        let chat = ChatConfig {
            signins_per_hour: 2,
            ..ChatConfig::default()
        };
        let limits = ChatLimits::new(&chat);
        let (stranger, owner) = (
            Some(IpAddr::from([203, 0, 113, 1])),
            Some(IpAddr::from([192, 0, 2, 1])),
        );
        assert!(limits.signin_mail("ana", stranger, 0));
        assert!(limits.signin_mail("ana", stranger, 0));
        assert!(!limits.signin_mail("ana", stranger, 0));
        assert!(limits.signin_mail("ana", owner, 0), "the owner's share");
        assert!(limits.signin_mail("bob", stranger, 0));
    }

    #[test]
    fn one_ring_per_room_and_caller_per_ring_timeout() {
        let chat = ChatConfig::default();
        let ring_ms = i64::try_from(chat.ring_timeout().as_millis()).unwrap_or(i64::MAX);
        let limits = ChatLimits::new(&chat);
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        assert!(limits.ring("r1", "bob", ip, 0));
        assert!(!limits.ring("r1", "bob", ip, 1));
        assert!(limits.ring("r1", "carol", ip, 1));
        assert!(limits.ring("r2", "bob", ip, 1));
        assert!(limits.ring("r1", "bob", ip, ring_ms));
    }
}
