//! Who counts as a viewer (docs/DESIGN.md "brpu, admission and mirroring"): a connection that is
//! being answered a viewer's request now, or that delivered body bytes to one within the last
//! `viewer_window_ms`. Open sockets that never asked for anything, connections between requests
//! for longer than the window, and pulls by other nodes of the cluster never count, so holding
//! idle sockets cannot push a node's viewers onto the overflow CDN.
//!
//! One [`Viewers`] per shard, used only on its thread; the count is published in a gauge the
//! cluster thread and the other shards read ([`crate::ctx::Node::users`]).

use std::cell::RefCell;
use std::collections::HashMap;

use crate::metrics::Counter;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Monotonic ms of the end of the last response that delivered body bytes (0: none yet).
    delivered_ms: u64,
    /// Requests of this connection being answered now.
    in_flight: bool,
    /// Counted in the gauge.
    counted: bool,
}

/// The viewers of one shard, keyed by connection (its descriptor while it is open).
pub struct Viewers {
    window_ms: u64,
    entries: RefCell<HashMap<i32, Entry>>,
}

impl Viewers {
    pub fn new(window_ms: u64) -> Self {
        Viewers {
            window_ms,
            entries: RefCell::new(HashMap::new()),
        }
    }

    /// A viewer's request on `conn` starts being answered: it counts from now.
    pub fn begin(&self, conn: i32, gauge: &Counter) {
        let mut entries = self.entries.borrow_mut();
        let e = entries.entry(conn).or_insert(Entry {
            delivered_ms: 0,
            in_flight: false,
            counted: false,
        });
        e.in_flight = true;
        if !e.counted {
            e.counted = true;
            gauge.inc();
        }
    }

    /// The request ends; `delivered` says whether it carried body bytes. A connection whose
    /// answers carried none (errors, HEAD, 304s only) stops counting at the next sweep.
    pub fn end(&self, conn: i32, delivered: bool, now_ms: u64) {
        if let Some(e) = self.entries.borrow_mut().get_mut(&conn) {
            e.in_flight = false;
            if delivered {
                e.delivered_ms = now_ms;
            }
        }
    }

    /// The connection closed.
    pub fn close(&self, conn: i32, gauge: &Counter) {
        if let Some(e) = self.entries.borrow_mut().remove(&conn) {
            if e.counted {
                gauge.dec();
            }
        }
    }

    /// Stop counting connections that delivered nothing within the window; returns the count.
    pub fn sweep(&self, now_ms: u64, gauge: &Counter) -> u64 {
        let mut active = 0;
        for e in self.entries.borrow_mut().values_mut() {
            let recent =
                e.delivered_ms != 0 && now_ms.saturating_sub(e.delivered_ms) <= self.window_ms;
            let counts = e.in_flight || recent;
            if e.counted && !counts {
                e.counted = false;
                gauge.dec();
            }
            active += u64::from(e.counted);
        }
        active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_quiet_connections_do_not_count() {
        let v = Viewers::new(1_000);
        let g = Counter::default();
        // Two sockets that never sent a request: nothing.
        assert_eq!(v.sweep(0, &g), 0);
        // A viewer: counts while answered and for the window after its last body byte.
        v.begin(7, &g);
        assert_eq!(g.get(), 1);
        v.end(7, true, 100);
        assert_eq!(v.sweep(1_100, &g), 1);
        assert_eq!(v.sweep(1_101, &g), 0);
        assert_eq!(g.get(), 0);
        // An answer without body bytes (a 404) stops counting at the next sweep.
        v.begin(8, &g);
        v.end(8, false, 2_000);
        assert_eq!(v.sweep(2_000, &g), 0);
        // Back again: counted once, however many requests.
        v.begin(7, &g);
        v.begin(7, &g);
        assert_eq!(g.get(), 1);
        v.close(7, &g);
        v.close(8, &g);
        assert_eq!(g.get(), 0);
        assert_eq!(v.sweep(3_000, &g), 0);
    }
}
