//! Local counters the server's shards feed and the cluster thread samples every interval.
//! Each shard writes only its own cache-line-padded slot (no contended cache line on the data
//! path); the cluster thread sums the slots.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::brpu::BrpuSample;
use crate::comet::{DiskHealth, DiskState, MAX_DISKS};

/// Counters of one shard. Cumulative counters only grow; `users` is a gauge.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardStats {
    busy_ns: AtomicU64,
    bytes_sent: AtomicU64,
    users: AtomicU32,
    disk_read_bytes: AtomicU64,
    disk_read_ops: AtomicU64,
    disk_busy_ns: AtomicU64,
    ram_hit_bytes: AtomicU64,
    ram_miss_bytes: AtomicU64,
}

impl ShardStats {
    /// Executor time spent running tasks (not parked), ns.
    pub fn add_busy_ns(&self, ns: u64) {
        self.busy_ns.fetch_add(ns, Ordering::Relaxed);
    }
    /// Viewer egress bytes.
    pub fn add_bytes_sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }
    /// Active viewers of this shard (connections that carried media in the last few seconds).
    pub fn set_users(&self, users: u32) {
        self.users.store(users, Ordering::Relaxed);
    }
    /// One disk read completed.
    pub fn add_disk_read(&self, bytes: u64) {
        self.disk_read_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.disk_read_ops.fetch_add(1, Ordering::Relaxed);
    }
    /// `ops` disk reads completed, `bytes` in all.
    pub fn add_disk_reads(&self, bytes: u64, ops: u64) {
        self.disk_read_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.disk_read_ops.fetch_add(ops, Ordering::Relaxed);
    }
    /// Time this shard's disks had at least one read in flight, ns.
    pub fn add_disk_busy_ns(&self, ns: u64) {
        self.disk_busy_ns.fetch_add(ns, Ordering::Relaxed);
    }
    /// Egress bytes served from the RAM tier.
    pub fn add_ram_hit_bytes(&self, bytes: u64) {
        self.ram_hit_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    /// Egress bytes that missed the RAM tier.
    pub fn add_ram_miss_bytes(&self, bytes: u64) {
        self.ram_miss_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct DiskSlot {
    uuid_hi: AtomicU64,
    uuid_lo: AtomicU64,
    /// 0 unused, else DiskState + 1.
    state: AtomicU8,
}

/// This node's counters: one slot per shard plus node-wide disk state and weight.
/// Shared as `Arc<LocalStats>` between the shards and the cluster thread.
#[derive(Debug)]
pub struct LocalStats {
    shards: Box<[ShardStats]>,
    disks: Box<[DiskSlot]>,
    weight_bytes: AtomicU64,
    disk_probe_bps: AtomicU64,
    disks_online: AtomicU16,
    disks_total: AtomicU16,
}

impl LocalStats {
    /// Counters for `shards` shards (at least one).
    pub fn new(shards: usize) -> Self {
        LocalStats {
            shards: (0..shards.max(1)).map(|_| ShardStats::default()).collect(),
            disks: (0..MAX_DISKS).map(|_| DiskSlot::default()).collect(),
            weight_bytes: AtomicU64::new(0),
            disk_probe_bps: AtomicU64::new(0),
            disks_online: AtomicU16::new(0),
            disks_total: AtomicU16::new(0),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The slot of shard `index` (panics on a shard that does not exist: a bug).
    pub fn shard(&self, index: usize) -> &ShardStats {
        &self.shards[index]
    }

    /// Hashing weight: bytes of healthy storage.
    pub fn set_weight_bytes(&self, bytes: u64) {
        self.weight_bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes.load(Ordering::Relaxed)
    }

    /// Read bandwidth of all disks from the start probe, bits/s.
    pub fn set_disk_probe_bps(&self, bps: u64) {
        self.disk_probe_bps.store(bps, Ordering::Relaxed);
    }

    /// Add one shard's disks to the start probe's total, bits/s.
    pub fn add_disk_probe_bps(&self, bps: u64) {
        self.disk_probe_bps.fetch_add(bps, Ordering::Relaxed);
    }

    /// Reports disk `index` (< [`MAX_DISKS`]; later ones are not reported) with its UUID and
    /// state; the online/total counts follow.
    pub fn set_disk(&self, index: usize, uuid: [u8; 16], state: DiskState) {
        let Some(slot) = self.disks.get(index) else {
            return;
        };
        slot.uuid_hi.store(
            u64::from_be_bytes(uuid[..8].try_into().unwrap_or_default()),
            Ordering::Relaxed,
        );
        slot.uuid_lo.store(
            u64::from_be_bytes(uuid[8..].try_into().unwrap_or_default()),
            Ordering::Relaxed,
        );
        slot.state.store(state as u8 + 1, Ordering::Release);
        let disks = self.disks();
        let online = disks
            .iter()
            .filter(|d| d.state == DiskState::Online)
            .count();
        self.disks_online.store(online as u16, Ordering::Relaxed);
        self.disks_total
            .store(disks.len() as u16, Ordering::Relaxed);
    }

    /// Reported disks, in index order.
    pub fn disks(&self) -> Vec<DiskHealth> {
        self.disks
            .iter()
            .filter_map(|slot| {
                let state = slot.state.load(Ordering::Acquire);
                let state = DiskState::from_u8(state.checked_sub(1)?)?;
                let mut uuid = [0u8; 16];
                uuid[..8].copy_from_slice(&slot.uuid_hi.load(Ordering::Relaxed).to_be_bytes());
                uuid[8..].copy_from_slice(&slot.uuid_lo.load(Ordering::Relaxed).to_be_bytes());
                Some(DiskHealth { uuid, state })
            })
            .collect()
    }

    /// Sums the shard slots into one sample for the brpu meter.
    pub fn sample(&self) -> BrpuSample {
        let mut s = BrpuSample {
            at_ns: crate::monotonic_ms().saturating_mul(1_000_000),
            disks_online: self.disks_online.load(Ordering::Relaxed),
            disks_total: self.disks_total.load(Ordering::Relaxed),
            disk_probe_bps: self.disk_probe_bps.load(Ordering::Relaxed),
            ..BrpuSample::default()
        };
        for shard in self.shards.iter() {
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            s.busy_ns = s.busy_ns.wrapping_add(load(&shard.busy_ns));
            s.bytes_sent = s.bytes_sent.wrapping_add(load(&shard.bytes_sent));
            s.users = s.users.saturating_add(shard.users.load(Ordering::Relaxed));
            s.disk_read_bytes = s.disk_read_bytes.wrapping_add(load(&shard.disk_read_bytes));
            s.disk_read_ops = s.disk_read_ops.wrapping_add(load(&shard.disk_read_ops));
            s.disk_busy_ns = s.disk_busy_ns.wrapping_add(load(&shard.disk_busy_ns));
            s.ram_hit_bytes = s.ram_hit_bytes.wrapping_add(load(&shard.ram_hit_bytes));
            s.ram_miss_bytes = s.ram_miss_bytes.wrapping_add(load(&shard.ram_miss_bytes));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_sums_shards_and_tracks_disks() {
        let stats = LocalStats::new(2);
        stats.shard(0).add_bytes_sent(100);
        stats.shard(1).add_bytes_sent(50);
        stats.shard(0).set_users(3);
        stats.shard(1).set_users(4);
        stats.shard(1).add_disk_read(4096);
        stats.set_disk(0, [1; 16], DiskState::Online);
        stats.set_disk(1, [2; 16], DiskState::Offline);
        stats.set_disk(MAX_DISKS, [3; 16], DiskState::Online); // beyond the bound: ignored
        let s = stats.sample();
        assert_eq!(s.bytes_sent, 150);
        assert_eq!(s.users, 7);
        assert_eq!((s.disk_read_bytes, s.disk_read_ops), (4096, 1));
        assert_eq!((s.disks_online, s.disks_total), (1, 2));
        assert_eq!(stats.disks()[1].uuid, [2; 16]);
        assert_eq!(stats.disks()[1].state, DiskState::Offline);
    }
}
