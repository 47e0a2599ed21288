//! The C entry points of libarrow_cdn never crash on any input: the input becomes the cluster
//! table file (foreign, truncated, a valid header with garbage records, a newer version), and
//! keys, hosts, paths and DNS names of any bytes are routed through it. Every call returns a
//! documented code, and a result's strings stay NUL-terminated within their fields.
#![no_main]

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use arrow_cdn::ffi::*;
use arrow_cdn::status::*;
use arrow_cdn::{RouteKeys, RouteResult, NAME_BYTES};
use libfuzzer_sys::fuzz_target;

struct Files {
    _dir: tempfile::TempDir,
    table: std::path::PathBuf,
    config: CString,
}

fn files() -> &'static Files {
    static FILES: OnceLock<Files> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = dir.path().join("table");
        let config = dir.path().join("arrow.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"n01.fuzz\"\n[[host]]\nhosts = [\"*\"]\n[cluster]\n\
                 table_path = \"{}\"\ngroup = \"239.255.77.77:17777\"\n\
                 secret = \"0123456789abcdef0123\"\n[overflow]\ncdn_host = \"cdn.fuzz\"\n\
                 [dns]\nlisten = [\"127.0.0.1:53\"]\n[[dns.zones]]\nname = \"dx.fuzz.test\"\n\
                 domain = \"fuzz.test\"\nns = [\"ns1.dx.fuzz.test\"]\n",
                table.display()
            ),
        )
        .expect("config");
        let config = CString::new(config.to_str().expect("utf-8")).expect("no NUL");
        Files {
            _dir: dir,
            table,
            config,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = files();
    // The table: the input as is, or a real header followed by the input (reaches records).
    let split = data.len() / 2;
    let (table_bytes, query) = data.split_at(split);
    let mut table = table_bytes.to_vec();
    if table.first().is_some_and(|b| b & 1 == 1) && table.len() >= 16 {
        table[..8].copy_from_slice(b"ARWCLTB1");
        // layout: version (any of 1, 2, input), 64 record words, 1..=4 records.
        let version = u64::from(table[8] % 3);
        let records = u64::from(table[9] % 4) + 1;
        let layout = version | 64 << 16 | records << 32;
        table[8..16].copy_from_slice(&layout.to_le_bytes());
    }
    let _ = std::fs::remove_file(&f.table);
    std::fs::write(&f.table, &table).expect("write table");
    // SAFETY: every pointer below is valid for the length passed with it; the handle is used
    // by this thread only and closed once.
    unsafe {
        let mut err = 0;
        let h = arrow_open(f.config.as_ptr(), &mut err);
        assert!(!h.is_null(), "config is valid: {err}");
        let mut out = RouteResult::new();
        let mut keys = RouteKeys::new();
        let st = arrow_lookup(h, query.as_ptr().cast(), query.len(), 0, &mut *out);
        check(st, &out);
        let cut = query.len() / 3;
        let st = arrow_route(
            h,
            query.as_ptr().cast(),
            cut,
            query[cut..].as_ptr().cast(),
            query.len() - cut,
            ARROW_Q_NEW_VIEWER,
            &mut *out,
            &mut *keys,
        );
        check(st, &out);
        let mut buf = [0 as c_char; 2048];
        let qtype = query.first().map_or(1, |b| u16::from(*b));
        let rc = arrow_dns_answer(
            h,
            query.as_ptr().cast(),
            query.len(),
            qtype,
            buf.as_mut_ptr(),
            buf.len(),
        );
        assert!(
            rc >= ARROW_E_INTERNAL + 1 && rc <= 23 && rc != ARROW_E_INTERNAL,
            "{rc}"
        );
        let _ = arrow_cache_key(
            h,
            query.as_ptr().cast(),
            cut,
            query[cut..].as_ptr().cast(),
            query.len() - cut,
            buf.as_mut_ptr(),
            buf.len(),
        );
        arrow_close(h);
    }
});

fn check(status: i32, out: &RouteResult) {
    assert!(
        (ARROW_E_INTERNAL + 1..=ARROW_OK).contains(&status),
        "{status}"
    );
    assert_eq!(status, out.status);
    assert!(usize::from(out.node.name_len) < NAME_BYTES);
    assert_eq!(out.node.name[usize::from(out.node.name_len)], 0);
    assert!(out.mirrors_listed <= out.mirrors_total);
}
