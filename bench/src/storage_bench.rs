//! `arrow-bench storage-read`: reads through the storage engine, for comparison with fio on the
//! same file (bench/storage_vs_fio.sh).
//!
//! ```text
//! open Store (one disk = FILE, chunk 1 MiB, RAM tier off) → fill with objects if the disk has
//! fewer than the pattern needs (rand4k: 3,900-byte bodies, one 4 KiB block each; seq1m: 1 MiB
//! bodies) → IODEPTH tasks on one monoio runtime: lookup → read(whole body) for SECONDS
//! → ops/s and MB/s on stdout (one `key=value` line)
//! ```
//!
//! `--engine ring` leaves the engine out: IODEPTH tasks read random 4 KiB blocks of the whole file
//! through the disk ring alone (what fio's rand4k job does), each spinning `--work-ns` of CPU
//! after every read — to tell the ring's cost from the cost of what the engine does per read.

use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use arrow_storage::slab::AlignedBuf;
use arrow_storage::uring::DiskRing;
use arrow_storage::{DiskSpec, PolicyKind, Store, StoreConfig};
use clap::ValueEnum;

/// Access pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Pattern {
    /// Random reads of 4 KiB objects (one block each).
    Rand4k,
    /// Sequential reads of 1 MiB objects.
    Seq1m,
}

/// What reads the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// The storage engine: lookup, record read, checksum and key checks, index and policy update.
    Arrow,
    /// The disk ring alone: random 4 KiB reads of the whole file, no engine work.
    Ring,
}

/// Arguments of `storage-read`.
#[derive(Debug, clap::Args)]
pub struct StorageReadArgs {
    /// Slab file (created and filled if missing or empty).
    #[arg(long)]
    pub file: PathBuf,
    /// Slab size in bytes.
    #[arg(long)]
    pub size_bytes: u64,
    /// Access pattern.
    #[arg(long, value_enum)]
    pub pattern: Pattern,
    /// Concurrent reads in flight.
    #[arg(long, default_value_t = 32)]
    pub iodepth: usize,
    /// Measurement time.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// What reads: the storage engine, or the disk ring alone (rand4k only).
    #[arg(long, value_enum, default_value_t = Engine::Arrow)]
    pub engine: Engine,
    /// With `--engine ring`: CPU nanoseconds spent after each read (a stand-in for per-read work).
    #[arg(long, default_value_t = 0)]
    pub work_ns: u64,
}

/// Body bytes per object of a pattern: rand4k bodies fit one 4 KiB block with their record.
fn body_bytes(pattern: Pattern) -> usize {
    match pattern {
        Pattern::Rand4k => 3_900,
        Pattern::Seq1m => 1 << 20,
    }
}

fn key(pattern: Pattern, i: usize) -> Vec<u8> {
    format!("bench/{pattern:?}/{i:09}").into_bytes()
}

pub(crate) fn runtime(
) -> Result<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>, String> {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(1024)
        .enable_timer()
        .build()
        .map_err(|e| format!("io_uring runtime: {e}"))
}

/// Objects of `body` bytes that fit a disk of `size_bytes` (90 % of the data area, and for
/// objects too large for packs of the directory, so the fill never evicts).
fn target_objects(size_bytes: u64, body: usize) -> Result<usize, String> {
    let geo =
        arrow_storage::layout::Geometry::new(size_bytes, 1 << 20).map_err(|e| e.to_string())?;
    let per_object_blocks = (body as u64 + 200).div_ceil(4096);
    let by_space = geo.data_blocks() / per_object_blocks;
    let packed = body + 200 <= arrow_storage::layout::PACK_RECORD_BYTES_MAX;
    let by_dir = if packed {
        u64::MAX
    } else {
        u64::from(geo.dir_entries)
    };
    Ok((by_space.min(by_dir) * 9 / 10) as usize)
}

/// Fill `store`'s only disk with `count` objects of `body` bytes, `concurrency` writers at a time.
pub async fn fill(
    store: &Rc<Store>,
    count: usize,
    body: usize,
    concurrency: usize,
    name: impl Fn(usize) -> Vec<u8> + Clone + 'static,
) -> Result<(), String> {
    let disk = store.disks().first().map(|d| d.0).ok_or("no disk opened")?;
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let store = Rc::clone(store);
        let name = name.clone();
        tasks.push(monoio::spawn(async move {
            let data = vec![0x5au8; body];
            let mut i = t;
            while i < count {
                let key = name(i);
                let mut w = store
                    .writer(disk, &key, b"meta".to_vec().into(), Some(body as u64))
                    .map_err(|e| e.to_string())?;
                w.write(&data).await.map_err(|e| e.to_string())?;
                w.finish().await.map_err(|e| e.to_string())?;
                i += concurrency;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

/// Run `storage-read`.
pub fn run(args: &StorageReadArgs) -> Result<(), String> {
    runtime()?.block_on(run_async(args))
}

async fn run_async(args: &StorageReadArgs) -> Result<(), String> {
    if args.engine == Engine::Ring {
        return ring_only(args).await;
    }
    let cfg = StoreConfig {
        disks: vec![DiskSpec {
            path: args.file.clone(),
            size_bytes: args.size_bytes,
            policy: PolicyKind::LruSp,
            error_threshold: 1000,
        }],
        ram_tier_bytes: 0,
        chunk_bytes: 1 << 20,
    };
    let (store, refused) = Store::open(cfg).await.map_err(|e| e.to_string())?;
    if let Some(r) = refused.first() {
        return Err(r.reason.clone());
    }
    let store = Rc::new(store);
    let body = body_bytes(args.pattern);
    let count = target_objects(args.size_bytes, body)?;
    let disk = store.disks()[0].0;
    let pattern = args.pattern;
    if (0..count).any(|i| store.lookup(disk, &key(pattern, i)).is_none()) {
        let t0 = Instant::now();
        fill(&store, count, body, 32, move |i| key(pattern, i)).await?;
        eprintln!(
            "filled {count} objects of {body} bytes in {:.1}s",
            t0.elapsed().as_secs_f64()
        );
    }
    // Keys are built before the clock starts: the loop times the engine, not string formatting.
    let keys: Rc<Vec<Vec<u8>>> = Rc::new((0..count).map(|i| key(pattern, i)).collect());
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    let t0 = Instant::now();
    let cpu0 = process_cpu_secs();
    for t in 0..args.iodepth {
        let store = Rc::clone(&store);
        let keys = Rc::clone(&keys);
        let iodepth = args.iodepth;
        tasks.push(monoio::spawn(async move {
            let mut ops = 0u64;
            let mut bytes = 0u64;
            let mut rng_state = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64);
            let mut seq = t;
            while Instant::now() < deadline {
                let i = match pattern {
                    Pattern::Rand4k => {
                        rng_state ^= rng_state << 13;
                        rng_state ^= rng_state >> 7;
                        rng_state ^= rng_state << 17;
                        (rng_state % count as u64) as usize
                    }
                    Pattern::Seq1m => {
                        seq = (seq + iodepth) % count;
                        seq
                    }
                };
                let info = store
                    .lookup(disk, &keys[i])
                    .ok_or_else(|| format!("object {i} missing"))?;
                let got = store
                    .read(&info, 0, info.body_len)
                    .await
                    .map_err(|e| e.to_string())?;
                ops += 1;
                bytes += got.len() as u64;
            }
            Ok::<(u64, u64), String>((ops, bytes))
        }));
    }
    let (mut ops, mut bytes) = (0u64, 0u64);
    for t in tasks {
        let (o, b) = t.await?;
        ops += o;
        bytes += b;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_us_per_op = (process_cpu_secs() - cpu0) * 1e6 / ops.max(1) as f64;
    // The extent the objects occupy (a fresh slab fills its data area from the start): fio
    // reads the same bytes, not the whole file.
    let extent_offset = arrow_storage::layout::Geometry::new(args.size_bytes, 1 << 20)
        .map_err(|e| e.to_string())?
        .data_start_block
        * arrow_storage::layout::BLOCK_BYTES;
    let extent_bytes = store.stats().disks[0].used_bytes;
    let disk_bytes_per_op = match pattern {
        Pattern::Rand4k => 4096.0,
        Pattern::Seq1m => ((body + 200) as f64 / 4096.0).ceil() * 4096.0,
    };
    println!(
        "engine=arrow pattern={:?} iodepth={} objects={count} seconds={secs:.2} ops_per_s={:.0} body_mb_per_s={:.1} disk_mb_per_s={:.1} cpu_us_per_op={cpu_us_per_op:.1} extent_offset={extent_offset} extent_bytes={extent_bytes}",
        pattern,
        args.iodepth,
        ops as f64 / secs,
        bytes as f64 / secs / 1e6,
        ops as f64 * disk_bytes_per_op / secs / 1e6,
    );
    Ok(())
}

/// User + system CPU time of this process so far (the engine's thread and the kernel work done
/// on its behalf), in seconds.
fn process_cpu_secs() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `--engine ring`: random 4 KiB reads of the whole file through a [`DiskRing`], IODEPTH at once.
async fn ring_only(args: &StorageReadArgs) -> Result<(), String> {
    if args.pattern != Pattern::Rand4k {
        return Err("--engine ring reads rand4k only".into());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&args.file)
        .map_err(|e| format!("{}: {e}", args.file.display()))?;
    let blocks = args.size_bytes / 4096;
    if blocks == 0 || file.metadata().map_err(|e| e.to_string())?.len() < args.size_bytes {
        return Err(format!(
            "{}: shorter than --size-bytes",
            args.file.display()
        ));
    }
    let ring = DiskRing::new().map_err(|e| format!("disk ring: {e}"))?;
    let fd = file.as_raw_fd();
    let work = Duration::from_nanos(args.work_ns);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..args.iodepth {
        let ring = Rc::clone(&ring);
        tasks.push(monoio::spawn(async move {
            let mut ops = 0u64;
            let mut rng_state = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64);
            let mut buf = AlignedBuf::for_read(4096);
            while Instant::now() < deadline {
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 7;
                rng_state ^= rng_state << 17;
                let (res, b) = ring.read(fd, buf, (rng_state % blocks) * 4096).await;
                buf = b;
                match res {
                    Ok(4096) => ops += 1,
                    Ok(n) => return Err(format!("short read: {n} bytes")),
                    Err(e) => return Err(format!("read: {e}")),
                }
                let spin = Instant::now();
                while spin.elapsed() < work {
                    std::hint::spin_loop();
                }
            }
            Ok::<u64, String>(ops)
        }));
    }
    let mut ops = 0u64;
    for t in tasks {
        ops += t.await?;
    }
    let secs = t0.elapsed().as_secs_f64();
    drop(file);
    let st = ring.stats();
    println!(
        "engine=ring pattern=Rand4k iodepth={} work_ns={} seconds={secs:.2} ops_per_s={:.0} disk_mb_per_s={:.1} completions_per_reap={:.1} share_in_bursts_ge16={:.2}",
        args.iodepth,
        args.work_ns,
        ops as f64 / secs,
        ops as f64 * 4096.0 / secs / 1e6,
        st.completions as f64 / st.reaps.max(1) as f64,
        st.completions_in_bursts as f64 / st.completions.max(1) as f64,
    );
    Ok(())
}
