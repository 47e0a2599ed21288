//! `arrow-bench replay`: a cache trace through an eviction policy, decision by decision.
//!
//! ```text
//! TRACE.csv (timestamp,key,size) → parse → for each request in trace order:
//!     key cached?  yes → Evictor::touch, hit
//!                  no  → miss; size ≤ capacity and Evictor::admit? → loop victim()/remove()
//!                        until it fits → insert
//! → DECISIONS.csv (key,hit) for bench/policy-kit/compare.py + OHR / BHR on stdout
//! ```
//!
//! The index is in memory: key → slot id (dense, recycled through a free list like the
//! store's index arena), slot → (key, size). Capacity is payload bytes. The clock is the request
//! index (like lrusp.py) or the trace timestamp in ms.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow_storage::policy::{new_evictor, PolicyKind};

/// What a replay failed on.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading trace {path}: {source}")]
    ReadTrace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("trace {path} line {line}: {reason}")]
    BadRow {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("trace {path} has no requests")]
    EmptyTrace { path: PathBuf },
    #[error("trace {path} has {count} distinct keys, more than the u32 slot ids allow")]
    TooManyKeys { path: PathBuf, count: usize },
    #[error("writing decisions {path}: {source}")]
    WriteDecisions {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--warmup-frac {0} is not in [0, 1)")]
    BadWarmup(f64),
}

/// Clock that drives the policy's `now_ticks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClockSource {
    /// Request index (0, 1, 2, ...), like lrusp.py.
    Index,
    /// Trace timestamp in milliseconds (wrapping u32).
    Timestamp,
}

/// A parsed trace: keys interned to dense ids in order of first appearance.
#[derive(Debug, Default)]
pub struct Trace {
    /// Key text per key id.
    pub keys: Vec<String>,
    /// Per request: key id.
    pub key_ids: Vec<u32>,
    /// Per request: object size in bytes.
    pub sizes_bytes: Vec<u64>,
    /// Per request: timestamp in ms.
    pub timestamps_ms: Vec<u64>,
}

impl Trace {
    /// Appends one request.
    pub fn push(
        &mut self,
        index: &mut HashMap<String, u32>,
        timestamp_ms: u64,
        key: &str,
        size_bytes: u64,
    ) {
        let next = self.keys.len() as u32;
        let id = *index.entry(key.to_owned()).or_insert_with(|| {
            self.keys.push(key.to_owned());
            next
        });
        self.key_ids.push(id);
        self.sizes_bytes.push(size_bytes);
        self.timestamps_ms.push(timestamp_ms);
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.key_ids.len()
    }

    /// Whether the trace has no requests.
    pub fn is_empty(&self) -> bool {
        self.key_ids.is_empty()
    }
}

/// Reads a `timestamp,key,size` CSV; rows before the first one with an integer timestamp are
/// headers (as in compare.py). The key is everything between the first and the last comma.
pub fn read_trace(path: &Path) -> Result<Trace, ReplayError> {
    let file = File::open(path).map_err(|source| ReplayError::ReadTrace {
        path: path.to_owned(),
        source,
    })?;
    let mut trace = Trace::default();
    let mut index = HashMap::new();
    for (n, line) in BufReader::with_capacity(1 << 20, file).lines().enumerate() {
        let line = line.map_err(|source| ReplayError::ReadTrace {
            path: path.to_owned(),
            source,
        })?;
        let bad = |reason: String| ReplayError::BadRow {
            path: path.to_owned(),
            line: n + 1,
            reason,
        };
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (Some((ts, rest)), true) = (line.split_once(','), line.matches(',').count() >= 2)
        else {
            return Err(bad(format!("expected timestamp,key,size, got {line:?}")));
        };
        let Some((key, size)) = rest.rsplit_once(',') else {
            return Err(bad(format!("expected timestamp,key,size, got {line:?}")));
        };
        let Ok(timestamp_ms) = ts.trim().parse::<u64>() else {
            if trace.is_empty() {
                continue; // header
            }
            return Err(bad(format!("bad timestamp {ts:?}")));
        };
        let size_bytes = size
            .trim()
            .parse::<u64>()
            .map_err(|_| bad(format!("bad size {size:?}")))?;
        trace.push(&mut index, timestamp_ms, key, size_bytes);
    }
    if trace.is_empty() {
        return Err(ReplayError::EmptyTrace {
            path: path.to_owned(),
        });
    }
    if trace.keys.len() >= u32::MAX as usize {
        return Err(ReplayError::TooManyKeys {
            path: path.to_owned(),
            count: trace.keys.len(),
        });
    }
    Ok(trace)
}

/// Replay settings.
#[derive(Clone, Copy, Debug)]
pub struct ReplayConfig {
    pub capacity_bytes: u64,
    pub policy: PolicyKind,
    pub clock: ClockSource,
    /// Requests `[0, warmup_frac·n)` are replayed but not counted in the ratios.
    pub warmup_frac: f64,
}

/// What the replay observed.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayOutcome {
    /// Hit flag per request, trace order.
    pub hits: Vec<bool>,
    /// First counted request (after warm-up).
    pub counted_from: usize,
    pub object_hit_ratio: f64,
    pub byte_hit_ratio: f64,
    pub evictions: u64,
    /// Most objects cached at once.
    pub max_cached_objects: u32,
}

/// Stable 64-bit key hash (FNV-1a, splitmix64 finaliser): same on every build.
pub fn key_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

const NO_SLOT: u32 = u32::MAX;

/// Replays `trace` from an empty cache.
pub fn replay(trace: &Trace, config: &ReplayConfig) -> Result<ReplayOutcome, ReplayError> {
    if !(0.0..1.0).contains(&config.warmup_frac) {
        return Err(ReplayError::BadWarmup(config.warmup_frac));
    }
    let capacity_objects = trace.keys.len() as u32;
    let mut evictor = new_evictor(config.policy, capacity_objects, config.capacity_bytes);
    let hashes: Vec<u64> = trace.keys.iter().map(|k| key_hash(k)).collect();
    let mut slot_of_key = vec![NO_SLOT; trace.keys.len()];
    // slot → (key id, size)
    let mut slots: Vec<(u32, u64)> = Vec::new();
    let mut free_slots: Vec<u32> = Vec::new();
    let mut used_bytes = 0u64;
    let mut cached_objects = 0u32;
    let mut max_cached_objects = 0u32;
    let mut evictions = 0u64;
    let mut hits = Vec::with_capacity(trace.len());

    for i in 0..trace.len() {
        let now_ticks = match config.clock {
            ClockSource::Index => i as u32,
            ClockSource::Timestamp => trace.timestamps_ms[i] as u32,
        };
        let key = trace.key_ids[i];
        let size_bytes = trace.sizes_bytes[i];
        let slot = slot_of_key[key as usize];
        if slot != NO_SLOT {
            evictor.touch(slot, now_ticks);
            hits.push(true);
            continue;
        }
        hits.push(false);
        if size_bytes > config.capacity_bytes
            || !evictor.admit(hashes[key as usize], size_bytes, now_ticks)
        {
            continue;
        }
        while used_bytes + size_bytes > config.capacity_bytes {
            let victim = evictor
                .victim(now_ticks)
                .expect("replay: policy has no victim while the cache holds bytes");
            evictor.remove(victim);
            let (victim_key, victim_bytes) = slots[victim as usize];
            slot_of_key[victim_key as usize] = NO_SLOT;
            used_bytes -= victim_bytes;
            free_slots.push(victim);
            cached_objects -= 1;
            evictions += 1;
        }
        let slot = free_slots.pop().unwrap_or_else(|| {
            slots.push((0, 0));
            (slots.len() - 1) as u32
        });
        slots[slot as usize] = (key, size_bytes);
        slot_of_key[key as usize] = slot;
        evictor.insert(slot, size_bytes, now_ticks);
        used_bytes += size_bytes;
        cached_objects += 1;
        max_cached_objects = max_cached_objects.max(cached_objects);
    }

    let counted_from = (config.warmup_frac * trace.len() as f64) as usize;
    let (mut hit_requests, mut hit_bytes, mut total_bytes) = (0u64, 0u128, 0u128);
    for (&size_bytes, &hit) in trace.sizes_bytes[counted_from..]
        .iter()
        .zip(&hits[counted_from..])
    {
        total_bytes += u128::from(size_bytes);
        if hit {
            hit_requests += 1;
            hit_bytes += u128::from(size_bytes);
        }
    }
    let counted = (trace.len() - counted_from).max(1);
    Ok(ReplayOutcome {
        hits,
        counted_from,
        object_hit_ratio: hit_requests as f64 / counted as f64,
        byte_hit_ratio: if total_bytes == 0 {
            0.0
        } else {
            hit_bytes as f64 / total_bytes as f64
        },
        evictions,
        max_cached_objects,
    })
}

/// Writes `key,hit` rows (header `key,hit`, hit 0/1), one per request, trace order.
pub fn write_decisions(path: &Path, trace: &Trace, hits: &[bool]) -> Result<(), ReplayError> {
    let err = |source| ReplayError::WriteDecisions {
        path: path.to_owned(),
        source,
    };
    let file = File::create(path).map_err(err)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    writeln!(out, "key,hit").map_err(err)?;
    for (&key, &hit) in trace.key_ids.iter().zip(hits) {
        writeln!(out, "{},{}", trace.keys[key as usize], u8::from(hit)).map_err(err)?;
    }
    out.flush().map_err(err)
}

/// `arrow-bench replay` arguments.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Trace CSV: `timestamp,key,size` (header allowed), as written by gen_trace.py.
    #[arg(long)]
    pub trace: PathBuf,
    /// Cache capacity in payload bytes.
    #[arg(long)]
    pub capacity_bytes: u64,
    /// Eviction policy: lru-sp, byte-mode or byte-freq.
    #[arg(long)]
    pub policy: PolicyKind,
    /// Where to write the `key,hit` decisions CSV (for compare.py).
    #[arg(long)]
    pub decisions: Option<PathBuf>,
    /// Share of the first requests replayed but not counted in the printed ratios.
    #[arg(long, default_value_t = 0.0)]
    pub warmup_frac: f64,
    /// Policy clock: request index (like lrusp.py) or trace timestamp (ms).
    #[arg(long, value_enum, default_value_t = ClockSource::Index)]
    pub clock: ClockSource,
}

/// Runs the `replay` subcommand.
pub fn run(args: &ReplayArgs) -> Result<(), ReplayError> {
    let trace = read_trace(&args.trace)?;
    let config = ReplayConfig {
        capacity_bytes: args.capacity_bytes,
        policy: args.policy,
        clock: args.clock,
        warmup_frac: args.warmup_frac,
    };
    let started = std::time::Instant::now();
    let outcome = replay(&trace, &config)?;
    let elapsed = started.elapsed();
    if let Some(path) = &args.decisions {
        write_decisions(path, &trace, &outcome.hits)?;
    }
    println!(
        "policy {} capacity_bytes {} requests {} objects {} counted_from {}",
        config.policy,
        config.capacity_bytes,
        trace.len(),
        trace.keys.len(),
        outcome.counted_from
    );
    println!(
        "OHR {:.4} BHR {:.4} evictions {} max_cached_objects {} replay_ms {}",
        outcome.object_hit_ratio,
        outcome.byte_hit_ratio,
        outcome.evictions,
        outcome.max_cached_objects,
        elapsed.as_millis()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic CDN-like trace: Zipf-ish keys over three size classes (xorshift64*).
    fn generated_trace(requests: usize, seed: u64) -> Trace {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut trace = Trace::default();
        let mut index = HashMap::new();
        for i in 0..requests {
            let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
            let class = next() % 100;
            let (prefix, catalogue) = match class {
                0..=24 => ("m", 60u64),
                25..=98 => ("s", 400),
                _ => ("f", 8),
            };
            let rank = ((catalogue as f64).powf(u) - 1.0) as u64; // log-uniform: skewed
            let key = format!("/{prefix}/{rank}");
            let h = key_hash(&key);
            let size_bytes = match prefix {
                "m" => 1_000 + h % 9_000,
                "s" => 500_000 + h % 3_500_000,
                _ => 20_000_000 + h % 80_000_000,
            };
            trace.push(&mut index, i as u64 * 20, &key, size_bytes);
        }
        trace
    }

    /// lrusp.py transliterated: groups in a Vec in dict insertion order, each group a Vec of
    /// keys with the LRU end first.
    fn lrusp_py(trace: &Trace, capacity_bytes: u64) -> Vec<bool> {
        let mut groups: Vec<(i32, Vec<u32>)> = Vec::new();
        let mut meta: HashMap<u32, (u64, u32, u32, i32)> = HashMap::new(); // size, p, last, g
        let mut used = 0u64;
        let mut hits = Vec::new();
        let group_of = |s: u64, p: u32| ((s as f64) / f64::from(p)).log2().floor() as i32;
        let add = |groups: &mut Vec<(i32, Vec<u32>)>, g: i32, k: u32| match groups
            .iter_mut()
            .find(|x| x.0 == g)
        {
            Some(x) => x.1.push(k),
            None => groups.push((g, vec![k])),
        };
        let del = |groups: &mut Vec<(i32, Vec<u32>)>, g: i32, k: u32| {
            let pos = groups.iter().position(|x| x.0 == g).unwrap();
            groups[pos].1.retain(|&x| x != k);
            if groups[pos].1.is_empty() {
                groups.remove(pos);
            }
        };
        for i in 0..trace.len() {
            let (k, s, now) = (trace.key_ids[i], trace.sizes_bytes[i], i as u32);
            if let Some(&(size, p, _, g)) = meta.get(&k) {
                hits.push(true);
                let g2 = group_of(size, p + 1);
                del(&mut groups, g, k);
                add(&mut groups, g2, k);
                meta.insert(k, (size, p + 1, now, g2));
                continue;
            }
            hits.push(false);
            if s > capacity_bytes {
                continue;
            }
            while used + s > capacity_bytes {
                let mut best: Option<(f64, u32, i32)> = None;
                for (g, keys) in &groups {
                    let (vs, vp, vl, _) = meta[&keys[0]];
                    let cost = f64::from(now - vl) * vs as f64 / f64::from(vp);
                    if !matches!(best, Some(b) if cost <= b.0) {
                        best = Some((cost, keys[0], *g));
                    }
                }
                let (_, victim, g) = best.unwrap();
                del(&mut groups, g, victim);
                used -= meta.remove(&victim).unwrap().0;
            }
            let g = group_of(s, 1);
            add(&mut groups, g, k);
            meta.insert(k, (s, 1, now, g));
            used += s;
        }
        hits
    }

    fn config(policy: PolicyKind, capacity_bytes: u64) -> ReplayConfig {
        ReplayConfig {
            capacity_bytes,
            policy,
            clock: ClockSource::Index,
            warmup_frac: 0.0,
        }
    }

    #[test]
    fn lru_sp_replay_equals_lrusp_py_transliteration() {
        let trace = generated_trace(2_000, 42);
        for capacity_bytes in [5_000_000, 50_000_000, 200_000_000, 1_000_000_000] {
            let outcome = replay(&trace, &config(PolicyKind::LruSp, capacity_bytes)).unwrap();
            assert_eq!(outcome.hits.len(), trace.len());
            assert_eq!(
                outcome.hits,
                lrusp_py(&trace, capacity_bytes),
                "capacity {capacity_bytes}"
            );
        }
    }

    #[test]
    fn replay_ratios_are_sane_for_both_policies() {
        let trace = generated_trace(2_000, 7);
        for policy in PolicyKind::ALL {
            let outcome = replay(&trace, &config(policy, 100_000_000)).unwrap();
            assert_eq!(outcome.hits.len(), 2_000);
            assert!((0.0..=1.0).contains(&outcome.object_hit_ratio));
            assert!((0.0..=1.0).contains(&outcome.byte_hit_ratio));
            assert!(outcome.object_hit_ratio > 0.1, "{policy}: {outcome:?}");
            assert!(outcome.evictions > 0, "{policy}: the cache should fill");
            let mut seen = vec![false; trace.keys.len()];
            for (i, &hit) in outcome.hits.iter().enumerate() {
                let key = trace.key_ids[i] as usize;
                assert!(
                    !hit || seen[key],
                    "{policy}: hit on the first request of a key"
                );
                seen[key] = true;
            }
        }
    }

    #[test]
    fn warmup_requests_are_not_counted() {
        let trace = generated_trace(2_000, 9);
        let mut cfg = config(PolicyKind::LruSp, 100_000_000);
        cfg.warmup_frac = 0.5;
        let outcome = replay(&trace, &cfg).unwrap();
        assert_eq!(outcome.counted_from, 1_000);
        let counted_hits = outcome.hits[1_000..].iter().filter(|&&h| h).count();
        assert!((outcome.object_hit_ratio - counted_hits as f64 / 1_000.0).abs() < 1e-12);
        cfg.warmup_frac = 1.0;
        assert!(matches!(
            replay(&trace, &cfg),
            Err(ReplayError::BadWarmup(_))
        ));
    }

    #[test]
    fn trace_csv_round_trips_to_decisions_csv() {
        let dir = tempfile::tempdir().unwrap();
        let trace_path = dir.path().join("t.csv");
        std::fs::write(
            &trace_path,
            "timestamp,key,size\n0,/a,10\n5,/b,20\n9,/a,10\n",
        )
        .unwrap();
        let trace = read_trace(&trace_path).unwrap();
        assert_eq!(trace.keys, vec!["/a".to_owned(), "/b".to_owned()]);
        let outcome = replay(&trace, &config(PolicyKind::LruSp, 25)).unwrap();
        let out = dir.path().join("d.csv");
        write_decisions(&out, &trace, &outcome.hits).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "key,hit\n/a,0\n/b,0\n/a,0\n"
        );
        std::fs::write(&trace_path, "timestamp,key,size\n0,/a,10\n1,/b\n").unwrap();
        assert!(matches!(
            read_trace(&trace_path),
            Err(ReplayError::BadRow { line: 3, .. })
        ));
    }
}
