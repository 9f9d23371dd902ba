//! Time for chatd: wall-clock milliseconds that advance with tokio's clock, so tests that pause
//! and advance tokio's time see the store's timestamps move with it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// `d` in milliseconds, as the store counts time (saturating: a huge duration is `i64::MAX`).
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

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

/// `ms` (unix milliseconds) as `YYYY-MM-DD HH:MM UTC`, for pages, mails and admin output.
pub fn format_utc_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // d is 1..=31 and m 1..=12 by construction.
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
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

    #[test]
    fn times_format_as_utc_dates() {
        assert_eq!(format_utc_ms(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc_ms(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc_ms(1_714_566_896_000), "2024-05-01 12:34 UTC");
        assert_eq!(format_utc_ms(-60_000), "1969-12-31 23:59 UTC");
    }
}
