//! Bad input gets a clear code and the documented fallback, never a crash: a missing,
//! foreign, truncated, newer or stale table, no node in service, keys of any length and bytes,
//! null pointers through the C entry points; and the library follows a table the node replaces.

mod common;

use std::ffi::CString;

use arrow_cdn::ffi::*;
use arrow_cdn::status::*;
use arrow_cdn::RouteResult;
use common::*;

fn three(t: &mut ShmTable) {
    for n in ["n01.test", "n02.test", "n03.test"] {
        t.put(&Spec::new(n, 1 << 40));
    }
}

#[test]
fn table_problems_are_error_codes_with_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("table");
    let with_cdn = write_config(dir.path(), &path, "n01.test", 0, true, "");
    let mut h = open(&with_cdn);
    let mut out = RouteResult::new();
    let mut check = |h: &mut arrow_cdn::Handle, code: i32| {
        settle();
        assert_eq!(h.lookup(b"example.test0123", 0, &mut out), code);
        assert_eq!(out.flags, ARROW_F_ERROR);
        assert_eq!(out.action, ARROW_ACT_OVERFLOW, "the CDN is the fallback");
        assert_eq!(out.node_name(), "");
    };
    // Missing.
    check(&mut h, ARROW_E_NO_TABLE);
    // Foreign: random bytes, and a file shorter than the header.
    std::fs::write(&path, vec![0x5a; 100_000]).unwrap();
    check(&mut h, ARROW_E_TABLE_FOREIGN);
    std::fs::write(&path, b"ARWCLTB1").unwrap();
    check(&mut h, ARROW_E_TABLE_FOREIGN);
    // A real table cut short after its header.
    {
        let mut t = ShmTable::create("trunc");
        three(&mut t);
        let bytes = std::fs::read(&t.path).unwrap();
        std::fs::write(&path, &bytes[..64 + 100]).unwrap();
        check(&mut h, ARROW_E_TABLE_FOREIGN);
        // A newer layout version.
        let mut newer = bytes.clone();
        newer[8] = 2;
        std::fs::write(&path, &newer).unwrap();
        check(&mut h, ARROW_E_TABLE_VERSION);
        // The real table (a new inode at the same path): followed at once.
        std::fs::write(dir.path().join("next"), &bytes).unwrap();
        std::fs::rename(dir.path().join("next"), &path).unwrap();
        settle();
        assert_eq!(h.lookup(b"example.test0123", 0, &mut out), ARROW_OK);
        assert!(["n01.test", "n02.test", "n03.test"].contains(&out.node_name()));
    }
    // Stale: every record older than the liveness window (the writer stopped).
    let mut t = ShmTable::create("stale");
    for n in ["n01.test", "n02.test"] {
        t.put_at(&Spec::new(n, 1), 10_000);
    }
    let cfg = write_config(dir.path(), &t.path, "n01.test", 0, false, "");
    let mut h = open(&cfg);
    assert_eq!(h.lookup(b"k", 0, &mut out), ARROW_E_STALE);
    assert_eq!(out.flags, ARROW_F_ERROR | ARROW_F_SELF);
    assert_eq!(
        out.action, ARROW_ACT_LOCAL,
        "no CDN: served here, as the node does"
    );
    // No node in service: fresh records, no storage.
    t.put(&Spec::new("n01.test", 0));
    assert_eq!(h.lookup(b"k", 0, &mut out), ARROW_E_NO_NODE);
    // Back in service.
    t.put(&Spec::new("n02.test", 1));
    assert_eq!(h.lookup(b"k", 0, &mut out), ARROW_OK);
    assert_eq!(out.node_name(), "n02.test");
    assert_eq!(out.action, ARROW_ACT_PEER);
}

#[test]
fn keys_of_any_length_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = ShmTable::create("keys");
    three(&mut t);
    let cfg = write_config(dir.path(), &t.path, "n01.test", 0, true, "");
    let mut h = open(&cfg);
    let mut out = RouteResult::new();
    let mut keys = arrow_cdn::RouteKeys::new();
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for len in (0..300).chain([4096, 65_536, 1 << 20]) {
        let key: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        assert_eq!(h.lookup(&key, 0, &mut out), ARROW_OK);
        assert!(out.name_len_ok());
        let host: Vec<u8> = (0..len.min(600)).map(|_| next() as u8).collect();
        let st = h.route(&host, &key, 0, &mut out, Some(&mut keys));
        assert!(
            [ARROW_OK, ARROW_E_ARG, ARROW_E_NO_RULE].contains(&st),
            "{st}"
        );
    }
    // A 253-byte host: the longest cluster key fits.
    let label = "a".repeat(59);
    let host = format!("cdn.{label}.{label}.{label}.{}.example.test", &label[..56]);
    assert_eq!(host.len(), 253);
    let st = h.route(host.as_bytes(), b"/v/t/x", 0, &mut out, Some(&mut keys));
    assert_eq!(st, ARROW_OK);
    assert_eq!(keys.domain_len as usize, 253 - 4);
    assert_eq!(keys.cluster_key_len as usize, 253 - 4 + 32);
}

/// Longer than the library's re-check period of a missing or changed table (100 ms at most).
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(120));
}

trait NameOk {
    fn name_len_ok(&self) -> bool;
}
impl NameOk for RouteResult {
    fn name_len_ok(&self) -> bool {
        usize::from(self.node.name_len) < NAME_BYTES
            && self.node.name[usize::from(self.node.name_len)] == 0
    }
}

#[test]
fn the_c_entry_points_refuse_nulls_and_bad_files() {
    // SAFETY (whole test): every pointer passed is null or valid for the lengths given.
    unsafe {
        assert_eq!(arrow_abi_version(), ARROW_ABI_VERSION);
        let mut err = 0;
        assert!(arrow_open(std::ptr::null(), &mut err).is_null());
        assert_eq!(err, ARROW_E_ARG);
        std::env::set_var("ARROW_LIB_QUIET", "1");
        let bad = CString::new("/nonexistent/arrow.toml").unwrap();
        assert!(arrow_open(bad.as_ptr(), &mut err).is_null());
        assert_eq!(err, ARROW_E_CONFIG);
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.toml");
        std::fs::write(&garbage, [0xff, 0xfe, 0, 1, 2]).unwrap();
        let g = CString::new(garbage.to_str().unwrap()).unwrap();
        assert!(arrow_open(g.as_ptr(), std::ptr::null_mut()).is_null());

        let mut out = RouteResult::new();
        assert_eq!(
            arrow_lookup(std::ptr::null_mut(), std::ptr::null(), 0, 0, &mut *out),
            ARROW_E_ARG
        );
        let mut t = ShmTable::create("ffi");
        three(&mut t);
        let cfg = write_config(dir.path(), &t.path, "n02.test", 0, true, "");
        let c = CString::new(cfg.to_str().unwrap()).unwrap();
        let h = arrow_open(c.as_ptr(), &mut err);
        assert!(!h.is_null());
        assert_eq!(err, ARROW_OK);
        assert_eq!(arrow_state(h), ARROW_OK);
        assert_eq!(
            arrow_lookup(h, std::ptr::null(), 5, 0, &mut *out),
            ARROW_E_ARG
        );
        assert_eq!(
            arrow_lookup(h, std::ptr::null(), 0, 0, &mut *out),
            ARROW_OK,
            "empty key"
        );
        assert_eq!(
            arrow_lookup(h, b"k".as_ptr().cast(), 1, 0, std::ptr::null_mut()),
            ARROW_E_ARG
        );
        let mut buf = [0 as std::ffi::c_char; 64];
        assert_eq!(arrow_self_name(h, buf.as_mut_ptr(), 64), 8);
        assert_eq!(arrow_self_name(h, buf.as_mut_ptr(), 8), ARROW_E_BUFFER);
        assert_eq!(
            arrow_overflow_base(h, buf.as_mut_ptr(), 64),
            "https://cdn.overflow.test".len() as i32
        );
        assert_eq!(arrow_debug_headers(h), 1);
        let n = arrow_cache_key(
            h,
            b"CDN.example.test".as_ptr().cast(),
            16,
            b"/v/t/a.ts?x=1".as_ptr().cast(),
            13,
            buf.as_mut_ptr(),
            64,
        );
        assert_eq!(n, "example.test/v/t/a.ts".len() as i32);
        assert_eq!(
            arrow_dns_answer(h, b"x".as_ptr().cast(), 1, 1, std::ptr::null_mut(), 0),
            ARROW_E_BUFFER
        );
        assert!(!arrow_strerror(ARROW_E_STALE).is_null());
        assert!(!arrow_strerror(12345).is_null());
        arrow_close(h);
        arrow_close(std::ptr::null_mut());
    }
}
