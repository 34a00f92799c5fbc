//! The sleep handler (lifecycle hooks only): sleeps on tokio time, cut short by what is left
//! of the hook's time.

use std::time::Duration;

/// Sleeps `seconds` (negative counts as 0) if that fits in `remaining`, and returns true;
/// otherwise sleeps `remaining` and returns false (the container ended before the sleep did).
pub async fn sleep_within(seconds: i64, remaining: Duration) -> bool {
    let want = Duration::from_secs(seconds.max(0) as u64);
    if want <= remaining {
        tokio::time::sleep(want).await;
        true
    } else {
        tokio::time::sleep(remaining).await;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_sleep_that_fits_completes() {
        let t0 = tokio::time::Instant::now();
        assert!(sleep_within(5, Duration::from_secs(30)).await);
        assert_eq!(t0.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_past_the_budget_is_cut_short() {
        let t0 = tokio::time::Instant::now();
        assert!(!sleep_within(60, Duration::from_secs(3)).await);
        assert_eq!(t0.elapsed(), Duration::from_secs(3));
        assert!(sleep_within(-1, Duration::ZERO).await);
    }
}
