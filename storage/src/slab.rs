//! The I/O seam: one O_DIRECT slab file or block device, 4 KiB-aligned buffers, io_uring reads,
//! writes and fdatasyncs through the shard's [`DiskRing`]. Every other module reaches the disk only
//! through [`SlabFile`].

use crate::error::StorageError;
use crate::layout::BLOCK_BYTES;
use crate::uring::DiskRing;
use monoio::buf::{IoBuf, IoBufMut};
use std::alloc::{self, Layout};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::rc::Rc;

/// A zeroed, 4 KiB-aligned heap buffer whose length is a multiple of 4 KiB (O_DIRECT needs both).
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBuf uniquely owns its allocation (like Vec<u8>), so moving it across threads is
// sound; it has no interior mutability.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only give `&[u8]` access.
unsafe impl Sync for AlignedBuf {}

/// Most bytes of freed buffers one thread keeps for reuse (reads of 1 MiB chunks would otherwise
/// map, fault in and unmap a fresh buffer per read).
const POOL_BYTES_MAX: usize = 64 << 20;

/// Freed buffers by length, per thread.
struct Pool {
    free: std::collections::HashMap<usize, Vec<NonNull<u8>>>,
    bytes: usize,
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (&len, ptrs) in self.free.iter() {
            for &p in ptrs {
                release(p, len);
            }
        }
    }
}

thread_local! {
    static POOL: std::cell::RefCell<Pool> =
        std::cell::RefCell::new(Pool { free: std::collections::HashMap::new(), bytes: 0 });
}

/// Bytes of freed read buffers this thread keeps for reuse (at most 64 MiB).
pub fn pooled_bytes() -> usize {
    POOL.try_with(|p| p.borrow().bytes).unwrap_or(0)
}

/// Fresh zeroed memory for a buffer of `len` bytes (a multiple of 4 KiB), from the global
/// allocator; freed ones go to the pool (up to its bound), which keeps them. Tried instead
/// (BENCHMARKS.md, 2026-12-04): buffers mapped from the kernel one by one and unmapped when
/// freed (c155648) made 1 MiB disk-tier hits at 32 connections 0.68× fio's reads/s instead of
/// 1.16×, and a pool that gave back what it had not reused for a second (14ee197) made 64 KiB
/// hits at 8 connections 0.57× instead of 0.79×, both with slower reads in the device. A per-thread
/// 64 MiB arena on transparent huge pages (0ed92b8) made the storage engine alone (system
/// allocator) read 1 MiB objects 2.5× faster, but in the `arrow` binary, whose mimalloc heap
/// already sits on huge pages, it saved no CPU and served 1 MiB disk-tier hits at 32 connections
/// ~12 % slower in three A/B pairs (BENCHMARKS.md, 2026-12-04); it was reverted.
fn obtain(len: usize) -> NonNull<u8> {
    let layout = AlignedBuf::layout(len);
    // SAFETY: layout has a non-zero size (len >= 4096) and a power-of-two alignment.
    let raw = unsafe { alloc::alloc_zeroed(layout) };
    NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout))
}

/// Free what [`obtain`] gave for `len` bytes.
fn release(ptr: NonNull<u8>, len: usize) {
    // SAFETY: `ptr` came from alloc_zeroed with this length's layout and is freed once.
    unsafe { alloc::dealloc(ptr.as_ptr(), AlignedBuf::layout(len)) }
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes rounded up to whole blocks (at least one block).
    pub fn new(len: usize) -> AlignedBuf {
        let mut buf = Self::for_read(len);
        buf.as_mut_slice().fill(0);
        buf
    }

    /// A buffer of `len` bytes rounded up to whole blocks whose contents are unspecified (stale
    /// bytes of an earlier buffer): for reads, which overwrite all of it.
    pub fn for_read(len: usize) -> AlignedBuf {
        let len = len.max(1).div_ceil(BLOCK_BYTES as usize) * BLOCK_BYTES as usize;
        let pooled = POOL
            .try_with(|p| {
                let mut p = p.borrow_mut();
                let ptr = p.free.get_mut(&len).and_then(Vec::pop);
                if ptr.is_some() {
                    p.bytes -= len;
                }
                ptr
            })
            .ok()
            .flatten();
        if let Some(ptr) = pooled {
            return AlignedBuf { ptr, len };
        }
        AlignedBuf {
            ptr: obtain(len),
            len,
        }
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, BLOCK_BYTES as usize).expect("aligned layout")
    }

    /// Length in bytes (a multiple of 4 KiB).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: buffers hold at least one block.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for len initialised (zeroed) bytes for the buffer's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self gives unique access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let (ptr, len) = (self.ptr, self.len);
        let kept = POOL
            .try_with(|p| {
                let mut p = p.borrow_mut();
                if p.bytes + len > POOL_BYTES_MAX {
                    return false;
                }
                p.bytes += len;
                p.free.entry(len).or_default().push(ptr);
                true
            })
            .unwrap_or(false);
        if !kept {
            release(ptr, len);
        }
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

// SAFETY: read_ptr/bytes_init describe the owned allocation, which stays at a fixed address while
// the buffer is moved into and held by an io_uring operation.
unsafe impl IoBuf for AlignedBuf {
    fn read_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
}

// SAFETY: write_ptr/bytes_total describe the owned allocation; every byte is always initialised
// (zeroed at allocation), so set_init has nothing to record.
unsafe impl IoBufMut for AlignedBuf {
    fn write_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    fn bytes_total(&mut self) -> usize {
        self.len
    }
    unsafe fn set_init(&mut self, _pos: usize) {}
}

/// An open disk: O_DIRECT file or block device.
pub struct SlabFile {
    file: std::fs::File,
    ring: Rc<DiskRing>,
    path: PathBuf,
}

/// True if `dir` accepts O_DIRECT opens (tmpfs does not).
pub fn supports_o_direct(dir: &Path) -> bool {
    let probe = dir.join(format!(".arrow-odirect-probe-{}", std::process::id()));
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// How long a slab lock held by another process is waited for (a crashed process releases it
/// when the kernel has torn its io_uring down).
pub const SLAB_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl SlabFile {
    /// Release the slab lock (a disk being replaced: the new open of its path takes it, even
    /// while reads still in flight keep this descriptor open).
    pub fn unlock(&self) {
        // SAFETY: flock on a descriptor this file owns; no memory is passed.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }

    /// Open `path` with O_DIRECT, its I/O to go through `ring`; a missing regular file is created
    /// and preallocated to `size_bytes` (fallocate). Returns the file and whether it was created.
    /// Open (creating a regular file if needed) and lock the slab at `path`.
    pub fn open(
        path: &Path,
        size_bytes: u64,
        ring: &Rc<DiskRing>,
    ) -> Result<(SlabFile, bool), StorageError> {
        let io_err = |op: &'static str, source: std::io::Error| StorageError::Io {
            op,
            path: path.to_path_buf(),
            offset_bytes: 0,
            source,
        };
        let existed = path.exists();
        let std_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(!existed)
            .truncate(false)
            .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| io_err("open", e))?;
        // One owner per slab for the life of the process: an exclusive lock on the file or
        // device (released when the process dies, so a crash never leaves it held). A second
        // node, or a second [[disk]] entry reaching the same slab, is refused here.
        // A process killed a moment ago still holds its lock until the kernel has torn its
        // io_uring down (milliseconds): a held lock is retried for up to SLAB_LOCK_WAIT.
        let lock_started = std::time::Instant::now();
        // SAFETY: flock on a descriptor we own; no memory is passed.
        while unsafe { libc::flock(std_file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK)
                && lock_started.elapsed() < SLAB_LOCK_WAIT
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(StorageError::Config(format!(
                    "{}: in use by another process or another [[disk]] entry (its slab lock is held)",
                    path.display()
                )));
            }
            return Err(io_err("flock", e));
        }
        let meta = std_file.metadata().map_err(|e| io_err("stat", e))?;
        if !meta.file_type().is_block_device() {
            if !existed || meta.len() < size_bytes {
                let len = libc::off_t::try_from(size_bytes)
                    .map_err(|_| StorageError::Config(format!("size {size_bytes} too large")))?;
                // SAFETY: fallocate on a file descriptor we own, with valid arguments; it does not
                // touch our memory.
                let rc = unsafe { libc::fallocate(std_file.as_raw_fd(), 0, 0, len) };
                if rc != 0 {
                    return Err(io_err("fallocate", std::io::Error::last_os_error()));
                }
            }
        } else {
            let dev_bytes = block_device_bytes(&std_file).map_err(|e| io_err("ioctl", e))?;
            if dev_bytes < size_bytes {
                return Err(StorageError::Config(format!(
                    "{}: device has {dev_bytes} bytes, configured {size_bytes}",
                    path.display()
                )));
            }
        }
        Ok((
            SlabFile {
                file: std_file,
                ring: Rc::clone(ring),
                path: path.to_path_buf(),
            },
            !existed,
        ))
    }

    /// The path the disk was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read `buf.len()` bytes at `block`; a short read is an error.
    pub async fn read_blocks<T: IoBufMut + 'static>(
        &self,
        mut buf: T,
        block: u64,
    ) -> (Result<(), StorageError>, T) {
        let offset_bytes = block * BLOCK_BYTES;
        let want_bytes = buf.bytes_total();
        let (res, mut buf) = self
            .ring
            .read(self.file.as_raw_fd(), buf, offset_bytes)
            .await;
        if let Ok(n) = res {
            // SAFETY: the kernel wrote the first n bytes of the buffer.
            unsafe { buf.set_init(n as usize) };
        }
        let res = match res.map(|n| n as usize) {
            Ok(n) if n == want_bytes => Ok(()),
            Ok(n) => Err(StorageError::Short {
                op: "read",
                path: self.path.clone(),
                offset_bytes,
                got_bytes: n,
                want_bytes,
            }),
            Err(source) => Err(StorageError::Io {
                op: "read",
                path: self.path.clone(),
                offset_bytes,
                source,
            }),
        };
        (res, buf)
    }

    /// Write all of `buf` at `block`.
    pub async fn write_blocks<T: IoBuf + 'static>(
        &self,
        buf: T,
        block: u64,
    ) -> (Result<(), StorageError>, T) {
        let offset_bytes = block * BLOCK_BYTES;
        let want_bytes = buf.bytes_init();
        let (res, buf) = self
            .ring
            .write(self.file.as_raw_fd(), buf, offset_bytes)
            .await;
        let res = match res.map(|n| n as usize) {
            Ok(n) if n == want_bytes => Ok(()),
            Ok(n) => Err(StorageError::Short {
                op: "write",
                path: self.path.clone(),
                offset_bytes,
                got_bytes: n,
                want_bytes,
            }),
            Err(source) => Err(StorageError::Io {
                op: "write",
                path: self.path.clone(),
                offset_bytes,
                source,
            }),
        };
        (res, buf)
    }

    /// fdatasync: make completed writes durable.
    pub async fn sync(&self) -> Result<(), StorageError> {
        let (res, ()) = self.ring.sync_data(self.file.as_raw_fd()).await;
        res.map(drop).map_err(|source| StorageError::Io {
            op: "sync",
            path: self.path.clone(),
            offset_bytes: 0,
            source,
        })
    }
}

fn block_device_bytes(file: &std::fs::File) -> std::io::Result<u64> {
    let mut bytes: u64 = 0;
    // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    // SAFETY: the ioctl writes one u64 into `bytes`, which outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut bytes as *mut u64) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(bytes)
}
