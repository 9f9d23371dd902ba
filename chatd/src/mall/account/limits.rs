//! The limits of the member forms: sign-ups and mail requests per client network, and password
//! checks, counted in this process.
//!
//! # Password checks
//!
//! A check is reserved before the password is compared, in one step per counter, so that a
//! burst of concurrent guesses cannot all pass the counters before any is counted; a correct
//! password gives its reservation back. Three counters, each of `[mall] signins_per_hour`
//! (`N`) or a multiple, per hour:
//!
//! - per client network, over all accounts (`N`): one network guessing at many accounts;
//! - per account and client network (`N`): one network guessing at one account. It locks out
//!   only that network, so strangers who fail cannot lock out the owner, who signs in from a
//!   network of their own;
//! - per account, over the networks the account has not signed in from in the last
//!   [`TRUSTED_MS`] ([`ACCOUNT_CEILING`] x `N`): guessing spread over many networks. A network
//!   the owner signed in from before is exempt, so that even many networks failing together do
//!   not lock the owner out of their usual place; on a new network during such an attack the
//!   owner waits, or sets a new password by mail (a reset asks for no password).

use std::{net::IpAddr, sync::Arc};

use crate::{
    limit::{network, RateLimiter},
    state::AppState,
};

/// The window of the per-network and per-account limits of this part, in ms.
const WINDOW_MS: i64 = 60 * 60 * 1000;

/// How many times `[mall] signins_per_hour` one account may be tried in an hour from networks
/// it has not signed in from: room for a few networks of honest typos, not for a botnet.
pub const ACCOUNT_CEILING: u32 = 5;

/// How long a network where an account signed in stays exempt from the account's ceiling: a
/// month, longer than most homes and offices keep their address changes apart.
pub const TRUSTED_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// The limits of the member forms, counted in this process (each chatd node counts on its own).
#[derive(Debug)]
pub struct AccountLimits {
    /// Sign-ups per client network.
    pub(super) signups: RateLimiter<IpAddr>,
    /// Resend and reset requests per client network.
    pub(super) mail_requests: RateLimiter<IpAddr>,
    /// Password checks per client network.
    checks_by_network: RateLimiter<IpAddr>,
    /// Password checks per account and client network.
    checks_by_account_network: RateLimiter<(String, IpAddr)>,
    /// Password checks per account from networks it has not signed in from.
    checks_by_account: RateLimiter<String>,
    /// The networks each account signed in from (a count of at least one in the window).
    trusted: RateLimiter<(String, IpAddr)>,
}

/// Why a password check may not run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The client network failed too often (at one account or over many).
    Network,
    /// The account was tried too often from networks it has not signed in from.
    Account,
}

/// A reserved password check: counted until [`AccountLimits::succeeded`] gives it back.
#[derive(Debug)]
#[must_use = "a reservation is given back on success"]
pub(super) struct Reservation {
    network: IpAddr,
    account: String,
    /// Whether the account's ceiling counted it (the network is not trusted).
    ceiling: bool,
    at_ms: i64,
}

impl AccountLimits {
    /// The limits of `[mall]`.
    pub fn new(mall: &chmail::config::MallConfig) -> Self {
        let per_hour = mall.signins_per_hour;
        Self {
            signups: RateLimiter::new(mall.signups_per_hour, WINDOW_MS),
            mail_requests: RateLimiter::new(mall.signups_per_hour, WINDOW_MS),
            checks_by_network: RateLimiter::new(per_hour, WINDOW_MS),
            checks_by_account_network: RateLimiter::new(per_hour, WINDOW_MS),
            checks_by_account: RateLimiter::new(
                per_hour.saturating_mul(ACCOUNT_CEILING),
                WINDOW_MS,
            ),
            trusted: RateLimiter::new(1, TRUSTED_MS),
        }
    }

    /// Reserves one password check of `account` (the address typed, lowercased) from `ip`, or
    /// says which limit refuses it. Each counter counts it at once, so concurrent checks never
    /// exceed a limit; a refusal leaves no count behind.
    pub(super) fn reserve(
        &self,
        ip: Option<IpAddr>,
        account: &str,
        now_ms: i64,
    ) -> Result<Reservation, Refused> {
        let network = net(ip);
        let pair = (account.to_owned(), network);
        if !self.checks_by_network.allow(&network, now_ms) {
            return Err(Refused::Network);
        }
        if !self.checks_by_account_network.allow(&pair, now_ms) {
            self.checks_by_network.release(&network, now_ms);
            return Err(Refused::Network);
        }
        let ceiling = self.trusted.count(&pair, now_ms) == 0;
        if ceiling && !self.checks_by_account.allow(&pair.0, now_ms) {
            self.checks_by_account_network.release(&pair, now_ms);
            self.checks_by_network.release(&network, now_ms);
            return Err(Refused::Account);
        }
        Ok(Reservation {
            network,
            account: pair.0,
            ceiling,
            at_ms: now_ms,
        })
    }

    /// The password was right: the check counts against no limit, and the network is trusted
    /// for the account from now on.
    pub(super) fn succeeded(&self, reservation: Reservation, now_ms: i64) {
        let pair = (reservation.account.clone(), reservation.network);
        self.give_back(reservation);
        if self.trusted.count(&pair, now_ms) == 0 {
            self.trusted.allow(&pair, now_ms);
        }
    }

    /// The check did not run (too many were waiting): it counts against no limit.
    pub(super) fn give_back(&self, reservation: Reservation) {
        let Reservation {
            network,
            account,
            ceiling,
            at_ms,
        } = reservation;
        let pair = (account, network);
        self.checks_by_network.release(&network, at_ms);
        self.checks_by_account_network.release(&pair, at_ms);
        if ceiling {
            self.checks_by_account.release(&pair.0, at_ms);
        }
    }
}

/// The counter key of a client: its network, or one shared key when its address is unknown.
pub(super) fn net(ip: Option<IpAddr>) -> IpAddr {
    ip.map_or(IpAddr::from([0u8; 4]), network)
}

/// The limits of this router, made from the config on first use (the routes are built before
/// the state is at hand, so the router's extension holds an empty cell).
pub(super) fn limits(state: &AppState, holder: &LimitsHolder) -> Arc<AccountLimits> {
    holder
        .get_or_init(|| Arc::new(AccountLimits::new(&state.config.mall)))
        .clone()
}

/// Where the limits live: one per router, made from the config on first use.
pub(super) type LimitsHolder = std::sync::OnceLock<Arc<AccountLimits>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_hour: u32) -> AccountLimits {
        AccountLimits::new(&chmail::config::MallConfig {
            signins_per_hour: per_hour,
            ..Default::default()
        })
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_limit() {
        let limits = Arc::new(limits(20));
        let granted = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..25 {
                        if limits.reserve(ip(1), "ana@example.com", 0).is_ok() {
                            granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(granted.into_inner(), 20);
    }

    #[test]
    fn strangers_failing_lock_only_their_networks_and_the_owners_network_stays_open() {
        let limits = limits(2);
        let owner = limits.reserve(ip(1), "ana", 0).expect("first try");
        limits.succeeded(owner, 0);
        // Strangers fail from many networks: each locks itself, then the account's ceiling
        // (2 x 5) closes for networks the account has not signed in from.
        let mut refused = Vec::new();
        for n in 10..30 {
            for _ in 0..3 {
                if let Err(why) = limits.reserve(ip(n), "ana", 1) {
                    refused.push(why);
                }
            }
        }
        assert!(refused.contains(&Refused::Network));
        assert!(refused.contains(&Refused::Account));
        assert_eq!(
            limits.reserve(ip(99), "ana", 2).err(),
            Some(Refused::Account)
        );
        for _ in 0..2 {
            let mine = limits
                .reserve(ip(1), "ana", 2)
                .expect("the owner's network");
            limits.succeeded(mine, 2);
        }
        assert!(limits.reserve(ip(99), "bob", 2).is_ok(), "other accounts");
    }

    #[test]
    fn a_refusal_and_a_success_leave_no_count() {
        let limits = limits(1);
        let first = limits.reserve(ip(1), "ana", 0).expect("first");
        assert_eq!(
            limits.reserve(ip(1), "ana", 0).err(),
            Some(Refused::Network)
        );
        limits.succeeded(first, 0);
        let _failed = limits.reserve(ip(1), "ana", 0).expect("given back");
        assert_eq!(
            limits.reserve(ip(1), "bob", 0).err(),
            Some(Refused::Network)
        );
        assert!(limits.reserve(ip(2), "bob", 0).is_ok());
    }
}
