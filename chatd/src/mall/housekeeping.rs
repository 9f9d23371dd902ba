//! The mall's housekeeping: an hourly prune of the per-view ad events and of member tokens that
//! expired, so that neither table grows without bound. The counters on the ads stay.

use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

use crate::{clock::ms, state::AppState};

/// How often the prune runs.
pub const EVERY: Duration = Duration::from_secs(3_600);

/// How long ad events and expired tokens are kept: a page view older than this no longer counts
/// a click only once (nobody clicks a week-old page), and no rate-limit window is this long.
pub const KEEP: Duration = Duration::from_secs(7 * 24 * 3_600);

/// Prunes every [`EVERY`] until `shutdown`; the first prune runs at start.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tick.tick() => {}
        }
        prune(&state).await;
    }
}

/// One prune: rows older than [`KEEP`].
pub async fn prune(state: &AppState) {
    let before = state.clock.now_ms().saturating_sub(ms(KEEP));
    match state.store_call(state.store.prune_mall(before)).await {
        Ok(rows) => debug!(rows, "mall pruned"),
        Err(e) => warn!(cause = %e, "pruning the mall's events and tokens failed"),
    }
}
