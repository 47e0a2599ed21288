//! What a viewer's socket may cost while it drains slowly: a minimum delivery rate and a bound on
//! how long a body piece is held in memory for a socket that takes nothing.
//!
//! ```text
//!   send → socket full ─ waits ≤ hold ─▶ still full: the sender drops the piece (read it again
//!                                         later from the RAM tier or the disk) and waits for room
//!   every `window`: bytes delivered in it < rate_min × window → the connection is closed (counted)
//! ```
//!
//! A slow viewer therefore holds no body bytes in user space beyond the kernel's socket buffer
//! (except RAM-tier spans, which are shared pages of the tier, see `splice.rs`), and a viewer that
//! reads a few bytes now and then is closed after one window instead of holding its connection
//! forever.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Limits;
use crate::metrics::ShardMetrics;

/// One response's delivery pacing (see the module doc).
pub struct Pace {
    rate_min_bytes_per_s: u64,
    window: Duration,
    /// How long a stalled send keeps its piece before giving it back.
    pub hold: Duration,
    window_start: Instant,
    window_bytes: u64,
    metrics: Option<Arc<ShardMetrics>>,
}

impl Pace {
    /// Pacing from the node's limits; slow closures are counted in `metrics`.
    pub fn new(limits: &Limits, metrics: Option<Arc<ShardMetrics>>) -> Pace {
        Pace {
            rate_min_bytes_per_s: limits.send_rate_min_bytes_per_s,
            window: Duration::from_millis(limits.send_rate_window_ms.max(1)),
            hold: Duration::from_millis(limits.send_hold_ms),
            window_start: Instant::now(),
            window_bytes: 0,
            metrics,
        }
    }

    /// The shard's counters, if this pacing reports to them.
    pub fn metrics(&self) -> Option<&ShardMetrics> {
        self.metrics.as_deref()
    }

    /// `n` bytes reached the socket.
    pub fn sent(&mut self, n: usize) {
        self.window_bytes += n as u64;
    }

    /// End of the current rate window (a waiting sender wakes then to [`Pace::check`]).
    pub fn window_end(&self) -> Instant {
        self.window_start + self.window
    }

    /// Err(TimedOut) — and counted — if a whole window passed with less than the minimum rate;
    /// otherwise starts the next window when the current one is over.
    pub fn check(&mut self) -> io::Result<()> {
        let elapsed = self.window_start.elapsed();
        if elapsed < self.window {
            return Ok(());
        }
        let need = self.rate_min_bytes_per_s as f64 * elapsed.as_secs_f64();
        if (self.window_bytes as f64) < need {
            if let Some(m) = &self.metrics {
                m.slow_viewers_closed.inc();
            }
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "viewer below the minimum delivery rate",
            ));
        }
        self.window_start = Instant::now();
        self.window_bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_below_the_rate_fails_and_one_above_starts_the_next() {
        let limits = Limits {
            send_rate_min_bytes_per_s: 1000,
            send_rate_window_ms: 20,
            ..Limits::default()
        };
        let metrics = Arc::new(ShardMetrics::default());
        let mut p = Pace::new(&limits, Some(metrics.clone()));
        assert!(p.check().is_ok(), "inside the first window");
        p.sent(1_000_000);
        std::thread::sleep(Duration::from_millis(25));
        assert!(p.check().is_ok(), "fast enough");
        assert_eq!(metrics.slow_viewers_closed.get(), 0);
        p.sent(5);
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(
            p.check().unwrap_err().kind(),
            io::ErrorKind::TimedOut,
            "5 bytes in 25 ms is below 1000 B/s"
        );
        assert_eq!(metrics.slow_viewers_closed.get(), 1);
    }
}
