//! The limits of the member forms: sign-ups and mail requests per client network, failed
//! password checks per client network and per account, counted in this process.

use std::{net::IpAddr, sync::Arc};

use crate::{
    limit::{network, RateLimiter},
    state::AppState,
};

/// The window of the per-network and per-account limits of this part, in ms.
const WINDOW_MS: i64 = 60 * 60 * 1000;

/// The limits of the member forms, counted in this process (each chatd node counts on its own).
#[derive(Debug)]
pub struct AccountLimits {
    /// Sign-ups per client network.
    pub(super) signups: RateLimiter<IpAddr>,
    /// Resend and reset requests per client network.
    pub(super) mail_requests: RateLimiter<IpAddr>,
    /// Failed password checks per client network.
    failures_by_network: RateLimiter<IpAddr>,
    /// Failed password checks per account (the address typed).
    failures_by_account: RateLimiter<String>,
}

impl AccountLimits {
    /// The limits of `[mall]`.
    pub fn new(mall: &chmail::config::MallConfig) -> Self {
        Self {
            signups: RateLimiter::new(mall.signups_per_hour, WINDOW_MS),
            mail_requests: RateLimiter::new(mall.signups_per_hour, WINDOW_MS),
            failures_by_network: RateLimiter::new(mall.signins_per_hour, WINDOW_MS),
            failures_by_account: RateLimiter::new(mall.signins_per_hour, WINDOW_MS),
        }
    }

    /// Whether `account` may try a password now from `ip` (neither has too many failures).
    pub(super) fn may_try(&self, ip: Option<IpAddr>, account: &str, now_ms: i64) -> bool {
        self.failures_by_network.would_allow(&net(ip), now_ms)
            && self
                .failures_by_account
                .would_allow(&account.to_owned(), now_ms)
    }

    /// Counts a failed password check of `account` from `ip`.
    pub(super) fn failed(&self, ip: Option<IpAddr>, account: &str, now_ms: i64) {
        self.failures_by_network.allow(&net(ip), now_ms);
        self.failures_by_account.allow(&account.to_owned(), now_ms);
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
