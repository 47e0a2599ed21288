//! Codes, flags and actions of the C ABI (mirrored one to one in `include/arrow.h`; a test
//! compiles the header against these values).

/// ABI version: bumped when a struct layout, a signature or a code's meaning changes.
pub const ARROW_ABI_VERSION: u32 = 1;

pub const ARROW_OK: i32 = 0;
/// A null pointer, a non-UTF-8 host or path, or a bad argument.
pub const ARROW_E_ARG: i32 = -1;
/// The config file cannot be read or is invalid (`arrow_open`).
pub const ARROW_E_CONFIG: i32 = -2;
/// The cluster table file is missing or unreadable (the node is not running there).
pub const ARROW_E_NO_TABLE: i32 = -3;
/// The file is not a cluster table (bad magic, truncated, unknown record size).
pub const ARROW_E_TABLE_FOREIGN: i32 = -4;
/// The table was written by a newer Arrow (layout version above this library's).
pub const ARROW_E_TABLE_VERSION: i32 = -5;
/// No record of the table was updated within the liveness window: its writer (the local node)
/// is down or cut off from the cluster.
pub const ARROW_E_STALE: i32 = -6;
/// No node with storage is in service.
pub const ARROW_E_NO_NODE: i32 = -7;
/// No host rule serves the host (or it is not a host name).
pub const ARROW_E_NO_RULE: i32 = -8;
/// An output buffer is too small.
pub const ARROW_E_BUFFER: i32 = -9;
/// A Rust panic was caught at the boundary (a bug; reported, never unwound into C).
pub const ARROW_E_INTERNAL: i32 = -10;

/// The answer is a fallback: `status` says why.
pub const ARROW_F_ERROR: u32 = 1;
/// The brpu guarantee would break: no in-service node admits a new viewer (or this node does
/// not, for `ARROW_Q_NEW_VIEWER`); the answer is the overflow target.
pub const ARROW_F_OVERLOAD: u32 = 2;
/// This node serves it (designated, or no cluster answer and no overflow CDN).
pub const ARROW_F_SELF: u32 = 4;
/// This node mirrors: it keeps a local copy filled from the designated node.
pub const ARROW_F_MIRROR: u32 = 8;

/// Serve here: this node is the designated node.
pub const ARROW_ACT_SELF: u32 = 1;
/// Proxy to the designated node (`node.addr`).
pub const ARROW_ACT_PEER: u32 = 2;
/// Serve here, filling the local copy from the designated node (`node.addr`).
pub const ARROW_ACT_MIRROR: u32 = 3;
/// Redirect (302) to the overflow CDN.
pub const ARROW_ACT_OVERFLOW: u32 = 4;
/// Serve here without being designated: a fallback (no cluster answer and no overflow CDN, or
/// a designated node without an HTTP address).
pub const ARROW_ACT_LOCAL: u32 = 5;

/// Query option: the request is a viewer's first on its connection (admission is checked
/// against this node's last comet, as the node checks it).
pub const ARROW_Q_NEW_VIEWER: u32 = 1;

/// The text of a status code (static, NUL-terminated).
pub fn status_text(code: i32) -> &'static [u8] {
    match code {
        ARROW_OK => b"ok\0",
        ARROW_E_ARG => b"bad argument\0",
        ARROW_E_CONFIG => b"config file unreadable or invalid\0",
        ARROW_E_NO_TABLE => b"cluster table missing or unreadable\0",
        ARROW_E_TABLE_FOREIGN => b"not a cluster table (foreign or truncated file)\0",
        ARROW_E_TABLE_VERSION => b"cluster table of a newer layout version\0",
        ARROW_E_STALE => b"cluster table stale (its node is down or isolated)\0",
        ARROW_E_NO_NODE => b"no node in service\0",
        ARROW_E_NO_RULE => b"no host rule serves this host\0",
        ARROW_E_BUFFER => b"output buffer too small\0",
        ARROW_E_INTERNAL => b"internal error\0",
        _ => b"unknown status\0",
    }
}
