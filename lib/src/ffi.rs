//! The C entry points (`include/arrow.h`). Every one checks its pointers, catches panics (a
//! bug is reported as `ARROW_E_INTERNAL`, never unwound into C), and writes only into buffers
//! the caller passes with their sizes.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use crate::config::LibConfig;
use crate::handle::{Handle, CLUSTER_KEY_MAX_BYTES};
use crate::status::*;

/// Bytes of a node name field: 253 + NUL, rounded up.
pub const NAME_BYTES: usize = 256;
/// Bytes of an `ip:port` field: `[v6]:port` + NUL fits.
pub const ADDR_BYTES: usize = 48;
/// Mirror nodes listed in a result (all are counted in `mirrors_total`).
pub const MIRRORS_MAX: usize = 8;
/// Bytes of the cluster key field of [`RouteKeys`].
pub const KEY_BYTES: usize = 288;
const _: () = assert!(KEY_BYTES > CLUSTER_KEY_MAX_BYTES);

/// `struct arrow_node`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NodeOut {
    /// NUL-terminated node name.
    pub name: [u8; NAME_BYTES],
    /// NUL-terminated `ip:port` of its HTTP listener (`[v6]:port`); empty when unknown.
    pub addr: [u8; ADDR_BYTES],
    pub name_len: u16,
    pub addr_len: u16,
    pub port: u16,
    pub reserved: u16,
}

/// `struct arrow_result`.
#[repr(C)]
pub struct RouteResult {
    pub status: i32,
    pub flags: u32,
    pub action: u32,
    pub mirrors_total: u32,
    pub mirrors_listed: u32,
    pub reserved: u32,
    /// The designated node (actions SELF, PEER, MIRROR, and LOCAL with a designated node).
    pub node: NodeOut,
    pub mirrors: [NodeOut; MIRRORS_MAX],
}

/// `struct arrow_keys`: what `arrow_route` derived from the host and path.
#[repr(C)]
pub struct RouteKeys {
    /// NUL-terminated cluster key: the domain, then 32 hex digits.
    pub cluster_key: [u8; KEY_BYTES],
    pub cluster_key_len: u32,
    /// The domain is the first `domain_len` bytes of the cluster key.
    pub domain_len: u32,
    /// The hash input is `path[hash_input_offset .. + hash_input_len]`.
    pub hash_input_offset: u32,
    pub hash_input_len: u32,
    /// Index of the `[[host]]` rule that matched.
    pub rule: u32,
}

impl NodeOut {
    const EMPTY: NodeOut = NodeOut {
        name: [0; NAME_BYTES],
        addr: [0; ADDR_BYTES],
        name_len: 0,
        addr_len: 0,
        port: 0,
        reserved: 0,
    };
}

impl RouteResult {
    /// A zeroed result (for Rust callers; C callers declare one).
    pub fn new() -> Box<RouteResult> {
        Box::new(RouteResult {
            status: 0,
            flags: 0,
            action: 0,
            mirrors_total: 0,
            mirrors_listed: 0,
            reserved: 0,
            node: NodeOut::EMPTY,
            mirrors: [NodeOut::EMPTY; MIRRORS_MAX],
        })
    }

    /// Clears what a lookup sets (names by their first byte: cheap per call).
    pub(crate) fn reset(&mut self) {
        self.status = ARROW_OK;
        self.flags = 0;
        self.action = 0;
        self.mirrors_total = 0;
        self.mirrors_listed = 0;
        self.node.name[0] = 0;
        self.node.addr[0] = 0;
        self.node.name_len = 0;
        self.node.addr_len = 0;
        self.node.port = 0;
    }

    /// The designated node's name.
    pub fn node_name(&self) -> &str {
        std::str::from_utf8(&self.node.name[..usize::from(self.node.name_len)]).unwrap_or("")
    }

    /// The designated node's `ip:port`.
    pub fn node_addr(&self) -> &str {
        std::str::from_utf8(&self.node.addr[..usize::from(self.node.addr_len)]).unwrap_or("")
    }
}

impl RouteKeys {
    pub fn new() -> Box<RouteKeys> {
        Box::new(RouteKeys {
            cluster_key: [0; KEY_BYTES],
            cluster_key_len: 0,
            domain_len: 0,
            hash_input_offset: 0,
            hash_input_len: 0,
            rule: 0,
        })
    }
}

/// The bytes at `ptr` (`len` of them); an empty slice for a null pointer with `len == 0`.
///
/// # Safety
/// `ptr` must be null (with `len == 0`) or valid for reads of `len` bytes.
unsafe fn bytes<'a>(ptr: *const c_char, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        return (len == 0).then_some(&[][..]);
    }
    // SAFETY: the caller promises `ptr` is valid for `len` bytes (see the function's contract).
    Some(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
}

/// Runs `f`, turning a panic into `ARROW_E_INTERNAL`.
fn guard(f: impl FnOnce() -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(ARROW_E_INTERNAL)
}

/// Copies `text` and a NUL into `buf`; returns its length or `ARROW_E_BUFFER`.
///
/// # Safety
/// `buf` must be valid for writes of `cap` bytes.
unsafe fn write_text(text: &[u8], buf: *mut c_char, cap: usize) -> i32 {
    if buf.is_null() || cap < text.len() + 1 || text.len() > i32::MAX as usize {
        return ARROW_E_BUFFER;
    }
    // SAFETY: `buf` is valid for `cap ≥ len + 1` bytes (the caller's contract, checked above).
    let out = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, cap) };
    out[..text.len()].copy_from_slice(text);
    out[text.len()] = 0;
    text.len() as i32
}

/// `uint32_t arrow_abi_version(void)`.
#[no_mangle]
pub extern "C" fn arrow_abi_version() -> u32 {
    ARROW_ABI_VERSION
}

/// `const char *arrow_strerror(int code)`: static text, never freed.
#[no_mangle]
pub extern "C" fn arrow_strerror(code: i32) -> *const c_char {
    status_text(code).as_ptr() as *const c_char
}

/// `arrow_t *arrow_open(const char *config_path, int *err)`: a handle for one thread, or NULL
/// with `*err` set. A missing or bad table is not an error here: lookups report it (and pick
/// the table up once the node has written it).
///
/// # Safety
/// `config_path` must be a NUL-terminated string; `err` null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn arrow_open(config_path: *const c_char, err: *mut i32) -> *mut Handle {
    let mut code = ARROW_OK;
    let handle = catch_unwind(|| {
        if config_path.is_null() {
            return Err(ARROW_E_ARG);
        }
        // SAFETY: a NUL-terminated string (the function's contract).
        let path = unsafe { CStr::from_ptr(config_path) };
        let path = path.to_str().map_err(|_| ARROW_E_ARG)?;
        let cfg = LibConfig::load(Path::new(path)).map_err(|e| {
            if std::env::var_os("ARROW_LIB_QUIET").is_none() {
                eprintln!("arrow: {e}");
            }
            ARROW_E_CONFIG
        })?;
        Ok(Box::new(Handle::new(cfg)))
    })
    .unwrap_or(Err(ARROW_E_INTERNAL));
    let ptr = match handle {
        Ok(h) => Box::into_raw(h),
        Err(e) => {
            code = e;
            std::ptr::null_mut()
        }
    };
    if !err.is_null() {
        // SAFETY: `err` is valid for one write (the function's contract).
        unsafe { *err = code };
    }
    ptr
}

/// `void arrow_close(arrow_t *h)`.
///
/// # Safety
/// `h` must be null or a handle from `arrow_open` not closed before.
#[no_mangle]
pub unsafe extern "C" fn arrow_close(h: *mut Handle) {
    if !h.is_null() {
        // SAFETY: `h` came from Box::into_raw in arrow_open and is closed once.
        drop(unsafe { Box::from_raw(h) });
    }
}

/// `int arrow_state(arrow_t *h)`: `ARROW_OK`, or why lookups fall back now.
///
/// # Safety
/// `h` must be null or a live handle, used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn arrow_state(h: *mut Handle) -> i32 {
    // SAFETY: a live handle used by this thread only (the function's contract).
    let Some(h) = (unsafe { h.as_mut() }) else {
        return ARROW_E_ARG;
    };
    guard(|| h.state())
}

/// `int arrow_lookup(arrow_t *h, const char *key, size_t key_len, uint32_t opts,
/// struct arrow_result *out)`: the route of a cluster key (any bytes, any length).
///
/// # Safety
/// `h` a live handle used by this thread only; `key` valid for `key_len` bytes; `out` valid
/// for writes of one `struct arrow_result`.
#[no_mangle]
pub unsafe extern "C" fn arrow_lookup(
    h: *mut Handle,
    key: *const c_char,
    key_len: usize,
    opts: u32,
    out: *mut RouteResult,
) -> i32 {
    // SAFETY: per the function's contract.
    let (Some(h), Some(out), Some(key)) =
        (unsafe { h.as_mut() }, unsafe { out.as_mut() }, unsafe {
            bytes(key, key_len)
        })
    else {
        return ARROW_E_ARG;
    };
    guard(|| h.lookup(key, opts, out))
}

/// `int arrow_route(arrow_t *h, const char *host, size_t host_len, const char *path,
/// size_t path_len, uint32_t opts, struct arrow_result *out, struct arrow_keys *keys)`: the
/// route of a request by the node's host rules; `keys` may be NULL.
///
/// # Safety
/// As [`arrow_lookup`]; `host` and `path` valid for their lengths; `keys` null or valid for
/// writes of one `struct arrow_keys`.
#[no_mangle]
pub unsafe extern "C" fn arrow_route(
    h: *mut Handle,
    host: *const c_char,
    host_len: usize,
    path: *const c_char,
    path_len: usize,
    opts: u32,
    out: *mut RouteResult,
    keys: *mut RouteKeys,
) -> i32 {
    // SAFETY: per the function's contract.
    let (Some(h), Some(out), Some(host), Some(path)) = (
        unsafe { h.as_mut() },
        unsafe { out.as_mut() },
        unsafe { bytes(host, host_len) },
        unsafe { bytes(path, path_len) },
    ) else {
        return ARROW_E_ARG;
    };
    // SAFETY: null or valid for one write (the function's contract).
    let keys = unsafe { keys.as_mut() };
    guard(|| h.route(host, path, opts, out, keys))
}

/// `int arrow_overflow_base(arrow_t *h, char *buf, size_t cap)`: `scheme://cdn_host` of the
/// overflow CDN into `buf`; its length, 0 when none is configured, or `ARROW_E_BUFFER`.
///
/// # Safety
/// `h` a live handle; `buf` valid for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn arrow_overflow_base(h: *mut Handle, buf: *mut c_char, cap: usize) -> i32 {
    // SAFETY: per the function's contract.
    let Some(h) = (unsafe { h.as_ref() }) else {
        return ARROW_E_ARG;
    };
    let text = h.cfg.overflow_base.as_deref().unwrap_or("");
    // SAFETY: `buf` valid for `cap` bytes (the function's contract).
    guard(|| unsafe { write_text(text.as_bytes(), buf, cap) })
}

/// `int arrow_self_name(arrow_t *h, char *buf, size_t cap)`: the name of the node this library
/// runs beside; its length or `ARROW_E_BUFFER`.
///
/// # Safety
/// As [`arrow_overflow_base`].
#[no_mangle]
pub unsafe extern "C" fn arrow_self_name(h: *mut Handle, buf: *mut c_char, cap: usize) -> i32 {
    // SAFETY: per the function's contract.
    let Some(h) = (unsafe { h.as_ref() }) else {
        return ARROW_E_ARG;
    };
    // SAFETY: `buf` valid for `cap` bytes (the function's contract).
    guard(|| unsafe { write_text(h.cfg.self_name.as_bytes(), buf, cap) })
}

/// `int arrow_debug_headers(arrow_t *h)`: 1 when the node's config turns debug headers on.
///
/// # Safety
/// `h` null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn arrow_debug_headers(h: *mut Handle) -> i32 {
    // SAFETY: per the function's contract.
    match unsafe { h.as_ref() } {
        Some(h) => i32::from(h.cfg.debug_headers),
        None => ARROW_E_ARG,
    }
}

/// `int arrow_cache_key(arrow_t *h, const char *host, size_t host_len, const char *path,
/// size_t path_len, char *buf, size_t cap)`: the node's cache key of a request (for the debug
/// header; allocates, unlike the routing calls); its length or an error.
///
/// # Safety
/// As [`arrow_route`]; `buf` valid for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn arrow_cache_key(
    h: *mut Handle,
    host: *const c_char,
    host_len: usize,
    path: *const c_char,
    path_len: usize,
    buf: *mut c_char,
    cap: usize,
) -> i32 {
    // SAFETY: per the function's contract.
    let (Some(h), Some(host), Some(path)) = (
        unsafe { h.as_ref() },
        unsafe { bytes(host, host_len) },
        unsafe { bytes(path, path_len) },
    ) else {
        return ARROW_E_ARG;
    };
    guard(|| {
        let (Ok(host), Ok(path)) = (std::str::from_utf8(host), std::str::from_utf8(path)) else {
            return ARROW_E_ARG;
        };
        let Some(host) = arrow_cluster::keys::normalize_host(host) else {
            return ARROW_E_NO_RULE;
        };
        let Some(rule) = h.cfg.rules.iter().find(|r| r.matches(&host)) else {
            return ARROW_E_NO_RULE;
        };
        let k = rule.derive(&host, path, false);
        // SAFETY: `buf` valid for `cap` bytes (the function's contract).
        unsafe { write_text(k.cache_key.as_bytes(), buf, cap) }
    })
}

/// `int arrow_dns_answer(arrow_t *h, const char *qname, size_t qname_len, uint16_t qtype,
/// char *buf, size_t cap)`: the records Arrow's own responder answers for `qname` (class IN),
/// one per line, `TYPE<TAB>TTL<TAB>CONTENT`, into `buf`; returns the DNS RCODE (0 NOERROR, 2
/// SERVFAIL, 3 NXDOMAIN, 5 REFUSED) or a negative error. QTYPE 255 (ANY) gives every RRset of
/// the name (what PowerDNS asks a backend). Allocates (DNS messages), unlike the routing calls.
///
/// # Safety
/// `h` a live handle used by this thread only; `qname` valid for `qname_len` bytes; `buf`
/// valid for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn arrow_dns_answer(
    h: *mut Handle,
    qname: *const c_char,
    qname_len: usize,
    qtype: u16,
    buf: *mut c_char,
    cap: usize,
) -> i32 {
    // SAFETY: per the function's contract.
    let (Some(h), Some(qname)) = (unsafe { h.as_mut() }, unsafe { bytes(qname, qname_len) }) else {
        return ARROW_E_ARG;
    };
    if buf.is_null() || cap == 0 {
        return ARROW_E_BUFFER;
    }
    guard(|| {
        let Ok(qname) = std::str::from_utf8(qname) else {
            return ARROW_E_ARG;
        };
        let mut text = String::new();
        let rcode = crate::dns::answer(h, qname, qtype, &mut text);
        if rcode < 0 {
            return rcode;
        }
        // SAFETY: `buf` valid for `cap` bytes (the function's contract).
        match unsafe { write_text(text.as_bytes(), buf, cap) } {
            n if n < 0 => n,
            _ => rcode,
        }
    })
}
