//! `arrow-bench restart`: fill a slab with N objects through the storage engine, then time
//! reopening it (superblock check + directory scan + index and policy rebuild).
//!
//! ```text
//! open Store (slab FILE sized for N objects, 1.3 × (body + 1 KiB) each) → fill N objects
//! → drop → open again (timed) → restart seconds, objects found, index bytes/object
//! ```

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use arrow_storage::{DiskSpec, PolicyKind, Store, StoreConfig};

/// Arguments of `restart`.
#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    /// Objects to store.
    #[arg(long, default_value_t = 1_000_000)]
    pub objects: usize,
    /// Slab file (replaced).
    #[arg(long)]
    pub file: PathBuf,
    /// Body bytes per object (bodies up to ~4,000 bytes take one 4 KiB block).
    #[arg(long, default_value_t = 2_000)]
    pub body_bytes: usize,
    /// Reuse FILE as it is (e.g. pre-zeroed with dd so ext4 has no unwritten extents to convert
    /// on every first write); its first block must be zero or an Arrow superblock of this size.
    #[arg(long)]
    pub keep_file: bool,
    /// Concurrent writers during the fill.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

fn key(i: usize) -> Vec<u8> {
    format!("foo.com/assets/title{}/seg{:08}.m4s", i % 1000, i).into_bytes()
}

/// Run `restart`.
pub fn run(args: &RestartArgs) -> Result<(), String> {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(1024)
        .enable_timer()
        .build()
        .map_err(|e| format!("io_uring runtime: {e}"))?
        .block_on(run_async(args))
}

async fn run_async(args: &RestartArgs) -> Result<(), String> {
    // Small objects share packs (no directory entry each): room for the bodies, their records
    // and a margin; objects too large for packs take at least the directory's 64 KiB each.
    let per_object = (args.body_bytes as u64 + 1024).max(if args.body_bytes > 60_000 {
        64 * 1024
    } else {
        0
    });
    let size_bytes = (args.objects as u64 * per_object * 13 / 10).max(16 << 20);
    if !args.keep_file {
        let _ = std::fs::remove_file(&args.file);
    }
    let cfg = StoreConfig {
        disks: vec![DiskSpec {
            path: args.file.clone(),
            size_bytes,
            policy: PolicyKind::LruSp,
            error_threshold: 1000,
        }],
        ram_tier_bytes: 0,
        chunk_bytes: 1 << 20,
    };
    let (store, refused) = Store::open(cfg.clone()).await.map_err(|e| e.to_string())?;
    if let Some(r) = refused.first() {
        return Err(r.reason.clone());
    }
    let store = Rc::new(store);
    let t0 = Instant::now();
    crate::storage_bench::fill(&store, args.objects, args.body_bytes, args.concurrency, key)
        .await?;
    let fill_secs = t0.elapsed().as_secs_f64();
    store.flush().await.map_err(|e| e.to_string())?;
    drop(store);

    let t0 = Instant::now();
    let (store, refused) = Store::open(cfg).await.map_err(|e| e.to_string())?;
    let restart_secs = t0.elapsed().as_secs_f64();
    if let Some(r) = refused.first() {
        return Err(r.reason.clone());
    }
    let stats = store.stats();
    let d = &stats.disks[0];
    let disk = d.id;
    let missing = (0..args.objects)
        .step_by(997)
        .filter(|&i| store.lookup(disk, &key(i)).is_none())
        .count();
    println!(
        "objects={} slab_bytes={} fill_seconds={fill_secs:.1} restart_seconds={restart_secs:.3} objects_found={} sampled_missing={missing} index_bytes_per_object={:.1} meta_arena_bytes_per_object={:.1} policy_bytes_per_object={}",
        args.objects,
        size_bytes,
        d.objects,
        d.index_bytes_per_object,
        d.meta_bytes as f64 / d.objects.max(1) as f64,
        d.policy_bytes_per_object,
    );
    if d.objects as usize != args.objects || missing > 0 {
        return Err(format!(
            "restart found {} of {} objects",
            d.objects, args.objects
        ));
    }
    Ok(())
}
