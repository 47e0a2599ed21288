//! `arrow-bench fill-ratio`: how much of a slab small objects can use, and how fast they commit.
//!
//! ```text
//! for each body size: new slab FILE of SIZE → writers (CONCURRENCY tasks) store objects with a
//! realistic key and metadata until the disk's first eviction → stored body bytes ÷ slab size,
//! objects, objects committed per second (up to the first eviction)
//! ```
//!
//! The disk's own accounting (`live_bytes`: body bytes of live objects) is the numerator; the
//! slab's configured size the denominator — what an operator pays for.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use arrow_storage::{DiskSpec, PolicyKind, Store, StoreConfig};

/// Arguments of `fill-ratio`.
#[derive(Debug, clap::Args)]
pub struct FillRatioArgs {
    /// Slab file (replaced for every body size).
    #[arg(long)]
    pub file: PathBuf,
    /// Slab size in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    pub size_bytes: u64,
    /// Body sizes to try, comma-separated.
    #[arg(long, default_value = "1024,4096,65536", value_delimiter = ',')]
    pub bodies: Vec<usize>,
    /// Metadata bytes per object (the server's encoded response head: ~150–300 for media).
    #[arg(long, default_value_t = 200)]
    pub meta_bytes: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

fn key(i: usize) -> Vec<u8> {
    format!("cdn.example.com/live/title{}/seg{:09}.m4s", i % 997, i).into_bytes()
}

/// Run `fill-ratio`.
pub fn run(args: &FillRatioArgs) -> Result<(), String> {
    crate::storage_bench::runtime()?.block_on(run_async(args))
}

struct Row {
    body: usize,
    objects: u64,
    committed: u64,
    live_bytes: u64,
    seconds: f64,
}

async fn run_async(args: &FillRatioArgs) -> Result<(), String> {
    let mut rows = Vec::new();
    for &body in &args.bodies {
        rows.push(one(args, body).await?);
    }
    println!(
        "fill-ratio: slab {} MiB, {} B of metadata and ~50 B of key per object, {} writers",
        args.size_bytes >> 20,
        args.meta_bytes,
        args.concurrency
    );
    println!("| body | objects at the first eviction | stored body bytes ÷ slab size | objects committed per second |");
    println!("|---|---|---|---|");
    for r in rows {
        println!(
            "| {} B | {} | {:.3} | {:.0} |",
            r.body,
            r.objects,
            r.live_bytes as f64 / args.size_bytes as f64,
            r.committed as f64 / r.seconds
        );
    }
    Ok(())
}

async fn one(args: &FillRatioArgs, body: usize) -> Result<Row, String> {
    let _ = std::fs::remove_file(&args.file);
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
    let disk = store.disks().first().map(|d| d.0).ok_or("no disk opened")?;
    let next = Rc::new(std::cell::Cell::new(0usize));
    let committed = Rc::new(std::cell::Cell::new(0u64));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let store = Rc::clone(&store);
        let next = Rc::clone(&next);
        let committed = Rc::clone(&committed);
        let meta = vec![0x6du8; args.meta_bytes];
        tasks.push(monoio::spawn(async move {
            let data = vec![0x5au8; body];
            loop {
                if store.stats().disks[0].evictions > 0 {
                    return Ok::<(), String>(());
                }
                let i = next.get();
                next.set(i + 1);
                let mut w = store
                    .writer(disk, &key(i), meta.clone().into(), Some(body as u64))
                    .map_err(|e| e.to_string())?;
                w.write(&data).await.map_err(|e| e.to_string())?;
                w.finish().await.map_err(|e| e.to_string())?;
                committed.set(committed.get() + 1);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let d = store.stats().disks.remove(0);
    let row = Row {
        body,
        // Live objects once the first eviction happened: what the slab held when it was full.
        objects: d.objects,
        committed: committed.get(),
        live_bytes: d.live_bytes,
        seconds,
    };
    store.flush().await.map_err(|e| e.to_string())?;
    drop(store);
    let _ = std::fs::remove_file(&args.file);
    Ok(row)
}
