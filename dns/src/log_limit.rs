//! Rate-limited logging of what untrusted peers cause (malformed queries, refused or evicted
//! connections): at most one line per interval per process, carrying the number of lines held
//! back since the previous one, so a flood of spoofed packets cannot flood the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// One line per `interval_ms` at most; the others are counted.
pub(crate) struct LogLimit {
    interval_ms: u64,
    /// The earliest time (ms of [`monotonic_ms`]) the next line may be written.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimit {
    pub(crate) const fn new(interval_ms: u64) -> LogLimit {
        LogLimit {
            interval_ms,
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` if a line may be written at `now_ms`; else
    /// `None`, and this line is counted as held back.
    pub(crate) fn check(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms.saturating_add(self.interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// [`LogLimit::check`] at the current time.
    pub(crate) fn check_now(&self) -> Option<u64> {
        self.check(monotonic_ms())
    }
}

/// Milliseconds since the first call in this process.
fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let limit = LogLimit::new(1000);
        assert_eq!(limit.check(5), Some(0));
        for t in 6..1005 {
            assert_eq!(limit.check(t), None, "{t}");
        }
        assert_eq!(limit.check(1005), Some(999));
        assert_eq!(limit.check(1006), None);
        // A long quiet period: the next line is written at once.
        assert_eq!(limit.check(60_000), Some(1));
        assert_eq!(limit.check(60_001), None);
    }
}
