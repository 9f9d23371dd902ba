//! Time for chatd: wall-clock milliseconds that advance with tokio's clock, so tests that pause
//! and advance tokio's time see the store's timestamps move with it.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A wall clock anchored at creation and advanced by tokio's (pausable) clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_ms: i64,
    base: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock that reads the system time now and counts on from it with tokio's clock.
    pub fn new() -> Self {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self {
            base_ms,
            base: Instant::now(),
        }
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.base.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.base_ms.saturating_add(elapsed)
    }

    /// Unix seconds now.
    pub fn now_secs(&self) -> i64 {
        self.now_ms() / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_clock_follows_paused_tokio_time() {
        let clock = Clock::new();
        let before = clock.now_ms();
        tokio::time::advance(Duration::from_secs(90)).await;
        let after = clock.now_ms();
        assert!((after - before - 90_000).abs() < 5, "{before} -> {after}");
    }
}
