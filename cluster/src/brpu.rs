//! brpu arithmetic (docs/DESIGN.md "brpu, admission and mirroring"): a pure meter fed with counter
//! samples, and the mirroring state machine. No clock and no I/O here: tests feed numbers.
//!
//! For each bottleneck a capacity in bits/s of viewer egress:
//! - `C_net  = line_rate × net_safety` (unconstrained when the line rate is unknown);
//! - `C_cpu  = EWMA(egress bits per executor-busy second) × shards` — measured only over
//!   intervals with at least [`MIN_BUSY_NS`] of busy time and [`MIN_BUSY_SHARE`] of the
//!   interval's executor time busy (a lightly loaded node keeps its last estimate; unconstrained,
//!   shown as "unmeasured", until first measured — so before it has measured anything a node's
//!   capacity is what its line rate justifies);
//! - `C_disk = disk bandwidth / miss share`, where the disk bandwidth is the larger of the start
//!   probe (scaled by online/total disks) and the EWMA of observed read throughput per busy disk
//!   second × online disks (it refines the probe upward, as deeper queues show more), capped by
//!   the configured ceiling; the miss share is the EWMA of the share of egress bytes that missed
//!   the RAM tier (1.0 until measured; below 0.1 % the disk is not a constraint).
//!
//! `capacity = min(C_cpu, C_net, C_disk)`, `brpu = capacity / max(U, 1)`, and a new viewer is
//! admitted while `capacity / (U + 1) ≥ G`. "Unconstrained" is `u64::MAX`.

use crate::table::NodeView;

/// Busy time an interval needs before its egress/busy ratio updates C_cpu.
pub const MIN_BUSY_NS: u64 = 10_000_000;
/// Share of the interval's executor time (all shards) that must be busy before its egress/busy
/// ratio updates C_cpu: under light load fixed costs (timers, comets, metrics) dominate the busy
/// time, and extrapolating from them reads a capacity far below what the node can do.
pub const MIN_BUSY_SHARE: f64 = 0.2;
/// Egress bytes an interval needs before its RAM-tier miss share updates the EWMA.
pub const MIN_SHARE_BYTES: u64 = 1 << 20;
/// Miss share below which the disk is not a constraint.
pub const MISS_SHARE_FLOOR: f64 = 0.001;

/// Cumulative counters of this node at one instant (from [`crate::LocalStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrpuSample {
    /// When the sample was taken (CLOCK_MONOTONIC ns); 0: unknown (then only
    /// [`MIN_BUSY_NS`] gates C_cpu).
    pub at_ns: u64,
    /// Executor busy time summed over shards, ns.
    pub busy_ns: u64,
    /// Viewer egress, bytes.
    pub bytes_sent: u64,
    /// Active viewers now (gauge).
    pub users: u32,
    /// Bytes read from disks.
    pub disk_read_bytes: u64,
    /// Reads issued to disks.
    pub disk_read_ops: u64,
    /// Time disks had at least one read in flight, summed over disks, ns.
    pub disk_busy_ns: u64,
    /// Egress bytes served from the RAM tier.
    pub ram_hit_bytes: u64,
    /// Egress bytes that missed the RAM tier (read from disk).
    pub ram_miss_bytes: u64,
    pub disks_online: u16,
    pub disks_total: u16,
    /// Read bandwidth of all disks measured by the start probe, bits/s; 0 = not probed.
    pub disk_probe_bps: u64,
}

/// Configured ceilings of the meter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrpuLimits {
    pub shards: u32,
    pub line_rate_bps: Option<u64>,
    pub net_safety: f64,
    pub disk_ceiling_bps: Option<u64>,
    pub guarantee_bps: u64,
    /// Weight of the newest interval in the EWMAs, (0, 1].
    pub ewma_alpha: f64,
}

impl Default for BrpuLimits {
    fn default() -> Self {
        BrpuLimits {
            shards: 1,
            line_rate_bps: None,
            net_safety: 0.9,
            disk_ceiling_bps: None,
            guarantee_bps: 0,
            ewma_alpha: 0.2,
        }
    }
}

/// Which capacity is the minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bottleneck {
    Cpu,
    Net,
    Disk,
    /// Nothing measured or configured yet.
    None,
}

/// The meter's result for one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrpuSnapshot {
    pub c_cpu_bps: u64,
    pub c_net_bps: u64,
    pub c_disk_bps: u64,
    /// min of the three.
    pub capacity_bps: u64,
    pub users: u32,
    /// capacity / max(users, 1).
    pub brpu_bps: u64,
    pub guarantee_bps: u64,
    /// capacity / (users + 1) ≥ guarantee.
    pub admit_next: bool,
    pub bottleneck: Bottleneck,
}

impl BrpuSnapshot {
    /// Would a node of this capacity admit one more viewer with `users` active?
    pub fn admits(&self, users: u32) -> bool {
        admits(self.capacity_bps, users, self.guarantee_bps)
    }
}

/// `capacity / (users + 1) ≥ guarantee` (always true for a zero guarantee).
pub fn admits(capacity_bps: u64, users: u32, guarantee_bps: u64) -> bool {
    guarantee_bps == 0 || capacity_bps / (u64::from(users) + 1) >= guarantee_bps
}

fn ewma(prev: Option<f64>, value: f64, alpha: f64) -> f64 {
    match prev {
        None => value,
        Some(p) => p + alpha * (value - p),
    }
}

fn to_bps(value: f64) -> u64 {
    if value.is_finite() && value >= 0.0 {
        if value >= u64::MAX as f64 {
            u64::MAX
        } else {
            value as u64
        }
    } else {
        u64::MAX
    }
}

/// Turns counter samples into capacities, brpu and the admission decision.
#[derive(Debug, Clone)]
pub struct BrpuMeter {
    limits: BrpuLimits,
    prev: Option<BrpuSample>,
    cpu_bps_per_shard: Option<f64>,
    miss_share: Option<f64>,
    disk_observed_bps: Option<f64>,
    last: Option<BrpuSnapshot>,
}

impl BrpuMeter {
    pub fn new(limits: BrpuLimits) -> Self {
        assert!(limits.ewma_alpha > 0.0 && limits.ewma_alpha <= 1.0);
        BrpuMeter {
            limits,
            prev: None,
            cpu_bps_per_shard: None,
            miss_share: None,
            disk_observed_bps: None,
            last: None,
        }
    }

    pub fn limits(&self) -> &BrpuLimits {
        &self.limits
    }

    /// Feeds the counters at the end of an interval; the first sample only sets the baseline.
    /// Counters that went backwards (a restart of the counting side) reset the baseline.
    pub fn observe(&mut self, sample: BrpuSample) -> BrpuSnapshot {
        let alpha = self.limits.ewma_alpha;
        if let Some(prev) = self.prev {
            let d = |now: u64, before: u64| now.checked_sub(before);
            if let (Some(busy), Some(sent)) = (
                d(sample.busy_ns, prev.busy_ns),
                d(sample.bytes_sent, prev.bytes_sent),
            ) {
                let elapsed_ns = sample.at_ns.saturating_sub(prev.at_ns);
                let loaded = busy as f64
                    >= elapsed_ns as f64 * f64::from(self.limits.shards.max(1)) * MIN_BUSY_SHARE;
                if busy >= MIN_BUSY_NS && loaded && sent > 0 {
                    let per_busy_second = sent as f64 * 8.0 / (busy as f64 / 1e9);
                    self.cpu_bps_per_shard =
                        Some(ewma(self.cpu_bps_per_shard, per_busy_second, alpha));
                }
            }
            if let (Some(hit), Some(miss)) = (
                d(sample.ram_hit_bytes, prev.ram_hit_bytes),
                d(sample.ram_miss_bytes, prev.ram_miss_bytes),
            ) {
                let total = hit.saturating_add(miss);
                if total >= MIN_SHARE_BYTES {
                    let share = miss as f64 / total as f64;
                    self.miss_share = Some(ewma(self.miss_share, share, alpha));
                }
            }
            if let (Some(read), Some(busy)) = (
                d(sample.disk_read_bytes, prev.disk_read_bytes),
                d(sample.disk_busy_ns, prev.disk_busy_ns),
            ) {
                if busy >= MIN_BUSY_NS && read > 0 && sample.disks_online > 0 {
                    let per_disk = read as f64 * 8.0 / (busy as f64 / 1e9);
                    let all = per_disk * f64::from(sample.disks_online);
                    self.disk_observed_bps = Some(ewma(self.disk_observed_bps, all, alpha));
                }
            }
        }
        self.prev = Some(sample);
        let snapshot = self.compute(&sample);
        self.last = Some(snapshot);
        snapshot
    }

    /// The last snapshot, if any sample was fed.
    pub fn last(&self) -> Option<BrpuSnapshot> {
        self.last
    }

    fn compute(&self, s: &BrpuSample) -> BrpuSnapshot {
        let l = &self.limits;
        let c_net = l
            .line_rate_bps
            .map_or(u64::MAX, |rate| to_bps(rate as f64 * l.net_safety));
        let c_cpu = self
            .cpu_bps_per_shard
            .map_or(u64::MAX, |v| to_bps(v * f64::from(l.shards.max(1))));
        let probe = if s.disks_total == 0 {
            0.0
        } else {
            s.disk_probe_bps as f64 * f64::from(s.disks_online) / f64::from(s.disks_total)
        };
        let measured = self.disk_observed_bps.map_or(probe, |o| o.max(probe));
        let disk_known = s.disk_probe_bps > 0 || self.disk_observed_bps.is_some();
        let disk_bw = match l.disk_ceiling_bps {
            Some(ceiling) if disk_known => measured.min(ceiling as f64),
            Some(ceiling) => ceiling as f64,
            None if disk_known => measured,
            None => f64::INFINITY,
        };
        let disk_bw = if s.disks_online == 0 && s.disks_total > 0 {
            0.0
        } else {
            disk_bw
        };
        let share = self.miss_share.unwrap_or(1.0);
        let c_disk = if share < MISS_SHARE_FLOOR {
            u64::MAX
        } else {
            to_bps(disk_bw / share)
        };
        let capacity = c_cpu.min(c_net).min(c_disk);
        let bottleneck = if capacity == u64::MAX {
            Bottleneck::None
        } else if capacity == c_net {
            Bottleneck::Net
        } else if capacity == c_cpu {
            Bottleneck::Cpu
        } else {
            Bottleneck::Disk
        };
        BrpuSnapshot {
            c_cpu_bps: c_cpu,
            c_net_bps: c_net,
            c_disk_bps: c_disk,
            capacity_bps: capacity,
            users: s.users,
            brpu_bps: if capacity == u64::MAX {
                u64::MAX
            } else {
                capacity / u64::from(s.users.max(1))
            },
            guarantee_bps: l.guarantee_bps,
            admit_next: admits(capacity, s.users, l.guarantee_bps),
            bottleneck,
        }
    }
}

/// Cluster headroom: in-service capacity over what the guarantee needs for its viewers,
/// `Σ capacity / (G · max(Σ users, 1))`. `None` without a guarantee or in-service node.
pub fn cluster_headroom(nodes: &[NodeView], guarantee_bps: u64) -> Option<f64> {
    if guarantee_bps == 0 {
        return None;
    }
    let live = nodes.iter().filter(|n| n.in_service);
    let (capacity, users, count) = live.fold((0.0f64, 0u64, 0usize), |(c, u, k), n| {
        (c + n.capacity_bps as f64, u + u64::from(n.users), k + 1)
    });
    (count > 0).then(|| capacity / (guarantee_bps as f64 * users.max(1) as f64))
}

/// Mirroring with hysteresis: on below the low watermark, off above the high one, unchanged
/// between. While on, non-designated nodes keep the copies they pull (mirror count i grows);
/// when off, those copies are evicted first (i falls back toward 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MirrorState {
    low_watermark: f64,
    high_watermark: f64,
    mirroring: bool,
    /// Transitions so far (for metrics).
    pub flips: u64,
}

impl MirrorState {
    pub fn new(low_watermark: f64, high_watermark: f64) -> Self {
        assert!(low_watermark < high_watermark);
        MirrorState {
            low_watermark,
            high_watermark,
            mirroring: false,
            flips: 0,
        }
    }

    pub fn mirroring(&self) -> bool {
        self.mirroring
    }

    /// Updates with the cluster headroom (`None`: no guarantee, never mirror); returns the
    /// new state.
    pub fn update(&mut self, headroom: Option<f64>) -> bool {
        let next = match headroom {
            None => false,
            Some(h) if h < self.low_watermark => true,
            Some(h) if h > self.high_watermark => false,
            Some(_) => self.mirroring,
        };
        if next != self.mirroring {
            self.flips += 1;
            self.mirroring = next;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GBIT: u64 = 1_000_000_000;

    fn limits() -> BrpuLimits {
        BrpuLimits {
            shards: 4,
            line_rate_bps: Some(25 * GBIT),
            net_safety: 0.9,
            disk_ceiling_bps: None,
            guarantee_bps: 8_000_000,
            ewma_alpha: 1.0,
        }
    }

    #[test]
    fn first_sample_sets_baseline_and_net_caps() {
        let mut meter = BrpuMeter::new(limits());
        let s = meter.observe(BrpuSample {
            users: 100,
            ..Default::default()
        });
        assert_eq!(s.c_net_bps, 22_500_000_000);
        assert_eq!(s.c_cpu_bps, u64::MAX);
        assert_eq!(s.c_disk_bps, u64::MAX, "no disk probe: unconstrained");
        assert_eq!(s.capacity_bps, 22_500_000_000);
        assert_eq!(s.brpu_bps, 225_000_000);
        assert_eq!(s.bottleneck, Bottleneck::Net);
        assert!(s.admit_next);
    }

    #[test]
    fn cpu_capacity_is_egress_per_busy_second_times_shards() {
        let mut meter = BrpuMeter::new(limits());
        meter.observe(BrpuSample::default());
        // 1 s of busy time summed over shards carried 250 MB = 2 Gbit → 2 Gbit/s per shard.
        let s = meter.observe(BrpuSample {
            busy_ns: 1_000_000_000,
            bytes_sent: 250_000_000,
            users: 999,
            ..Default::default()
        });
        assert_eq!(s.c_cpu_bps, 8 * GBIT);
        assert_eq!(s.capacity_bps, 8 * GBIT);
        assert_eq!(s.bottleneck, Bottleneck::Cpu);
        assert_eq!(s.brpu_bps, 8 * GBIT / 999);
        // 8 Gbit/s / 1000 = 8 Mbit/s = G exactly: admitted; one more user is not.
        assert!(s.admit_next);
        assert!(!s.admits(1000));
        // An idle interval keeps the estimate.
        let idle = meter.observe(BrpuSample {
            busy_ns: 1_000_000_000 + 1000,
            bytes_sent: 250_000_000,
            users: 0,
            ..Default::default()
        });
        assert_eq!(idle.c_cpu_bps, 8 * GBIT);
    }

    #[test]
    fn disk_capacity_divides_by_miss_share() {
        let mut meter = BrpuMeter::new(limits());
        let base = BrpuSample {
            disks_online: 4,
            disks_total: 4,
            disk_probe_bps: 4 * GBIT,
            ..Default::default()
        };
        let s = meter.observe(base);
        assert_eq!(s.c_disk_bps, 4 * GBIT, "miss share 1.0 until measured");
        // 1/4 of egress misses RAM → disks carry 4× their bandwidth of egress.
        let s = meter.observe(BrpuSample {
            ram_hit_bytes: 3 << 30,
            ram_miss_bytes: 1 << 30,
            ..base
        });
        assert_eq!(s.c_disk_bps, 16 * GBIT);
        // One disk of four fails: probe scaled to 3/4.
        let s = meter.observe(BrpuSample {
            ram_hit_bytes: 6 << 30,
            ram_miss_bytes: 2 << 30,
            disks_online: 3,
            ..base
        });
        assert_eq!(s.c_disk_bps, 12 * GBIT);
        // Observed throughput above the probe refines it upward: 1 GB read in 1 busy-disk
        // second = 8 Gbit/s per disk × 3 online.
        let s = meter.observe(BrpuSample {
            ram_hit_bytes: 9 << 30,
            ram_miss_bytes: 3 << 30,
            disks_online: 3,
            disk_read_bytes: 1_000_000_000,
            disk_busy_ns: 1_000_000_000,
            ..base
        });
        assert_eq!(s.c_disk_bps, 4 * 24 * GBIT);
        // All disks offline with misses: no disk capacity.
        let s = meter.observe(BrpuSample {
            ram_hit_bytes: 12 << 30,
            ram_miss_bytes: 4 << 30,
            disks_online: 0,
            disk_read_bytes: 1_000_000_000,
            disk_busy_ns: 1_000_000_000,
            ..base
        });
        assert_eq!(s.c_disk_bps, 0);
        assert!(!s.admit_next);
    }

    #[test]
    fn light_load_does_not_measure_cpu_capacity() {
        // 4 shards for 1 s = 4 s of executor time; 0.5 s busy (12.5 %) carrying small answers
        // would read 4 × 1.4 Mbit/s: not measured, capacity stays what the line rate justifies.
        let mut meter = BrpuMeter::new(limits());
        meter.observe(BrpuSample {
            at_ns: 1_000_000_000,
            ..Default::default()
        });
        let s = meter.observe(BrpuSample {
            at_ns: 2_000_000_000,
            busy_ns: 500_000_000,
            bytes_sent: 90_000,
            users: 2,
            ..Default::default()
        });
        assert_eq!(s.c_cpu_bps, u64::MAX, "unmeasured under light load");
        assert_eq!(s.capacity_bps, 22_500_000_000);
        // 1 s busy of 4 (25 %): measured.
        let s = meter.observe(BrpuSample {
            at_ns: 3_000_000_000,
            busy_ns: 1_500_000_000,
            bytes_sent: 90_000 + 250_000_000,
            users: 2,
            ..Default::default()
        });
        assert_eq!(s.c_cpu_bps, 8 * GBIT);
        // Nothing measured at all: brpu is unmeasured too, not capacity / users.
        let mut meter = BrpuMeter::new(BrpuLimits {
            line_rate_bps: None,
            ..limits()
        });
        let s = meter.observe(BrpuSample {
            users: 6,
            ..Default::default()
        });
        assert_eq!((s.capacity_bps, s.brpu_bps), (u64::MAX, u64::MAX));
        assert!(s.admits(1_000_000));
    }

    #[test]
    fn counters_going_backwards_do_not_poison_estimates() {
        let mut meter = BrpuMeter::new(limits());
        meter.observe(BrpuSample {
            busy_ns: 5_000_000_000,
            bytes_sent: 1 << 40,
            ..Default::default()
        });
        let s = meter.observe(BrpuSample::default());
        assert_eq!(s.c_cpu_bps, u64::MAX);
    }

    #[test]
    fn mirroring_has_hysteresis() {
        let mut m = MirrorState::new(1.2, 2.0);
        assert!(!m.update(Some(1.5)));
        assert!(m.update(Some(1.1)));
        assert!(m.update(Some(1.9)), "between watermarks: stays on");
        assert!(!m.update(Some(2.1)));
        assert!(!m.update(Some(1.3)), "between watermarks: stays off");
        assert!(!m.update(None));
        assert_eq!(m.flips, 2);
    }

    #[test]
    fn cluster_headroom_counts_in_service_nodes() {
        let mut a = crate::placement::tests_support::node("a", 1);
        a.capacity_bps = 10 * GBIT;
        a.users = 500;
        let mut b = a.clone();
        b.name = "b".into();
        b.users = 750;
        let mut c = a.clone();
        c.name = "c".into();
        c.in_service = false;
        // 20 Gbit/s for 1250 users at 8 Mbit/s = 10 Gbit/s needed: headroom 2.
        let h = cluster_headroom(&[a, b, c], 8_000_000).unwrap();
        assert!((h - 2.0).abs() < 1e-9, "{h}");
        assert_eq!(cluster_headroom(&[], 8_000_000), None);
    }
}
