//! Parameter sweep of byte-freq over the twelve kit configurations (development tool).
//!
//! ```text
//! bench/policy_baseline.sh SUFFIX   # S3FIFO + PFOO-L per trace and size → BASELINE file
//! P="ghost=60,sr=10" SUFFIX=n300000_s42 TRACE_DIR=../traces BASELINE=../traces/baseline_n300000_s42.tsv \
//!     cargo run --release -p arrow-storage --example byte_freq_sweep
//! ```
//!
//! Knobs in `P` (comma list): small, promote, fmax, cmp (sketch admission 0/1), sr (sketch reset
//! factor), maxobj, ghost — see `ByteFreqParams`. Keys are hashed from their trace index (not
//! their text as in `arrow-bench replay`), so figures differ from the replay's in the 3rd decimal.
//! `V=1` prints every configuration. One line: gap share closed per configuration ("o" = OHR
//! below S3FIFO's).
use arrow_storage::policy::byte_freq::{ByteFreq, ByteFreqParams};
use arrow_storage::policy::Evictor;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};

fn load(name: &str) -> (Vec<u32>, Vec<u64>) {
    let bin = format!("{}/{name}.bin", trace_dir());
    if let Ok(mut f) = std::fs::File::open(&bin) {
        let mut b = Vec::new();
        f.read_to_end(&mut b).unwrap();
        let n = b.len() / 12;
        let (mut k, mut s) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            k.push(u32::from_le_bytes(
                b[i * 12..i * 12 + 4].try_into().unwrap(),
            ));
            s.push(u64::from_le_bytes(
                b[i * 12 + 4..i * 12 + 12].try_into().unwrap(),
            ));
        }
        return (k, s);
    }
    let f = std::fs::File::open(format!("{}/{name}.csv", trace_dir())).unwrap();
    let mut idx: HashMap<String, u32> = HashMap::new();
    let (mut k, mut s) = (Vec::new(), Vec::new());
    for line in BufReader::new(f).lines().skip(1) {
        let line = line.unwrap();
        let mut it = line.split(',');
        it.next();
        let key = it.next().unwrap().to_string();
        let size: u64 = it.next().unwrap().parse().unwrap();
        let n = idx.len() as u32;
        k.push(*idx.entry(key).or_insert(n));
        s.push(size);
    }
    let mut b = Vec::new();
    for i in 0..k.len() {
        b.extend_from_slice(&k[i].to_le_bytes());
        b.extend_from_slice(&s[i].to_le_bytes());
    }
    std::fs::File::create(&bin).unwrap().write_all(&b).unwrap();
    (k, s)
}

fn trace_dir() -> String {
    std::env::var("TRACE_DIR").unwrap_or("../traces".into())
}

fn hash(k: u32) -> u64 {
    let mut z = u64::from(k).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn run(keys: &[u32], sizes: &[u64], cap: u64, p: ByteFreqParams) -> (f64, f64, usize) {
    let nobj = *keys.iter().max().unwrap() + 1;
    let mut pol = ByteFreq::with_params(nobj, cap, p);
    let mut slot_of = vec![u32::MAX; nobj as usize];
    let mut slots: Vec<(u32, u64)> = Vec::new();
    let mut free: Vec<u32> = Vec::new();
    let mut used = 0u64;
    let (mut hits, mut hb, mut tb) = (0u64, 0u128, 0u128);
    for (i, (&k, &s)) in keys.iter().zip(sizes).enumerate() {
        let now = i as u32;
        tb += s as u128;
        let sl = slot_of[k as usize];
        if sl != u32::MAX {
            pol.touch(sl, now);
            hits += 1;
            hb += s as u128;
            continue;
        }
        if s > cap || !pol.admit(hash(k), s, now) {
            continue;
        }
        while used + s > cap {
            let v = pol.victim(now).unwrap();
            pol.remove(v);
            let (vk, vs) = slots[v as usize];
            slot_of[vk as usize] = u32::MAX;
            used -= vs;
            free.push(v);
        }
        let sl = free.pop().unwrap_or_else(|| {
            slots.push((0, 0));
            (slots.len() - 1) as u32
        });
        slots[sl as usize] = (k, s);
        slot_of[k as usize] = sl;
        pol.insert(sl, s, now);
        used += s;
    }
    (
        hits as f64 / keys.len() as f64,
        hb as f64 / tb as f64,
        pol.bytes_per_object(),
    )
}

fn parse_params() -> ByteFreqParams {
    let mut p = ByteFreqParams::DEFAULT;
    let spec = std::env::var("P").unwrap_or_default();
    for kv in spec.split(',').filter(|x| !x.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap();
        match k {
            "small" => p.small_percent = v.parse().unwrap(),
            "promote" => p.promote_hits = v.parse().unwrap(),
            "fmax" => p.freq_max = v.parse().unwrap(),
            "cmp" => p.sketch_admission = v == "1",
            "sr" => p.sketch_reset_factor = v.parse().unwrap(),
            "maxobj" => p.max_object_percent = v.parse().unwrap(),
            "ghost" => p.ghost_percent = v.parse().unwrap(),
            _ => panic!("unknown knob {k}"),
        }
    }
    p
}

fn main() {
    let p = parse_params();
    let suffix = std::env::var("SUFFIX").unwrap_or("n300000_s42".into());
    let base = std::fs::read_to_string(
        std::env::var("BASELINE").unwrap_or(format!("{}/baseline_{suffix}.tsv", trace_dir())),
    )
    .expect("BASELINE file (bench/policy_baseline.sh)");
    let lines: Vec<Vec<String>> = base
        .lines()
        .map(|l| l.split(' ').map(String::from).collect())
        .collect();
    let names: Vec<String> = {
        let mut v: Vec<String> = lines.iter().map(|f| f[0].clone()).collect();
        v.dedup();
        v
    };
    let traces: HashMap<String, (Vec<u32>, Vec<u64>)> = std::thread::scope(|sc| {
        let hs: Vec<_> = names
            .iter()
            .map(|n| {
                let n = n.clone();
                let s = suffix.clone();
                sc.spawn(move || (n.clone(), load(&format!("{n}_{s}"))))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let results: Vec<(f64, f64, usize)> = std::thread::scope(|sc| {
        let chunks: Vec<Vec<usize>> = vec![
            (0..lines.len()).step_by(2).collect(),
            (1..lines.len()).step_by(2).collect(),
        ];
        let hs: Vec<_> = chunks
            .into_iter()
            .map(|idx| {
                let lines = &lines;
                let traces = &traces;
                sc.spawn(move || {
                    idx.into_iter()
                        .map(|i| {
                            let f = &lines[i];
                            let t = &traces[&f[0]];
                            (i, run(&t.0, &t.1, f[2].parse().unwrap(), p))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, (f64, f64, usize))> =
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_by_key(|x| x.0);
        all.into_iter().map(|x| x.1).collect()
    });
    let (mut pass, mut gsum, mut gmin) = (0, 0.0, f64::MAX);
    let mut short = String::new();
    for (f, (o, b, bpo)) in lines.iter().zip(&results) {
        let v: Vec<f64> = f[3..7].iter().map(|x| x.parse().unwrap()).collect();
        let (s3o, s3b, pf, tgt) = (v[0], v[1], v[2], v[3]);
        let gap = (b - s3b) / (pf - s3b);
        gsum += gap;
        gmin = gmin.min(gap);
        let ok = *b >= tgt && *o >= s3o - 0.0005;
        if ok {
            pass += 1;
        }
        if std::env::var("V").is_ok() {
            println!("{:11} {:>3}%  ohr {:.4} (s3 {:.4})  bhr {:.4} (s3 {:.4} tgt {:.4} pfoo {:.4}) gap {:+.2} {} bpo {bpo}", f[0], f[1], o, s3o, b, s3b, tgt, pf, gap, if ok { "ok" } else { "FAIL" });
        }
        short += &format!("{:+.2}{} ", gap, if *o >= s3o - 0.0005 { "" } else { "o" });
    }
    println!(
        "{:<60} pass {pass}/12 mean {:.3} min {:+.2} | {short}",
        std::env::var("P").unwrap_or_default(),
        gsum / 12.0,
        gmin
    );
}
