//! The I/O seam: one O_DIRECT slab file or block device, 4 KiB-aligned buffers, io_uring reads,
//! writes and fdatasyncs through the shard's [`DiskRing`]. Every other module reaches the disk only
//! through [`SlabFile`].

use crate::alloc::FreeMap;
use crate::error::StorageError;
use crate::layout::{Extent, BLOCK_BYTES};
use crate::uring::DiskRing;
use crossbeam::queue::SegQueue;
use monoio::buf::{IoBuf, IoBufMut};
use std::alloc::{self, Layout};
use std::cell::{Cell, RefCell};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;

/// A 4 KiB-aligned buffer whose length is a multiple of 4 KiB (O_DIRECT needs both), taken from
/// the thread's read-buffer arena when it has room, else from the heap.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    /// The arena the bytes belong to (None: a heap allocation of its own).
    home: Option<Arc<Arena>>,
}

// SAFETY: AlignedBuf uniquely owns its bytes (like Vec<u8>); freeing from another thread hands
// them back through the arena's queue, never touching the owner's allocator state.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only give `&[u8]` access.
unsafe impl Sync for AlignedBuf {}

/// Bytes of each thread's read-buffer arena (what the per-thread pool of freed buffers was bound
/// to before: 64 MiB per shard).
pub const ARENA_BYTES: usize = 64 << 20;

/// Huge-page size the arena is aligned to and advised for.
const HUGE_PAGE_BYTES: usize = 2 << 20;

/// One thread's read-buffer arena: a mapping of [`ARENA_BYTES`] on transparent huge pages
/// (`MADV_HUGEPAGE`) carved into buffers by a free-extent map of 4 KiB blocks ([`FreeMap`]: best
/// fit, coalesced on free), mapped once and kept. Why huge pages: an O_DIRECT read pins its
/// buffer page by page, and on this machine's virtio disk a 1 MiB read into 4 KiB pages cost ~37
/// µs of CPU and often reached the device as two requests, against ~8 µs and one request into a
/// huge page (BENCHMARKS.md, 2026-12-04 "Read buffers on huge pages"). Where THP is off the
/// arena is ordinary pages and still saves the allocator round trip.
///
/// The free map belongs to the owning thread ([`LOCAL`]); a buffer dropped on another thread
/// (a reply that crossed shards) goes back through `returned`, which the owner drains on its next
/// allocation. The mapping lives as long as any buffer of it does.
pub struct Arena {
    base: NonNull<u8>,
    len: usize,
    returned: SegQueue<Extent>,
}

// SAFETY: the mapping is owned by the arena and only freed in Drop; `returned` is a lock-free
// queue; the free map that decides who owns which bytes is thread-local to the owner.
unsafe impl Send for Arena {}
// SAFETY: as above: shared access only pushes to `returned` or reads `base`.
unsafe impl Sync for Arena {}

impl Arena {
    /// Map `len` bytes (a multiple of the huge-page size) aligned to a huge page, advised for
    /// huge pages. None if the mapping fails (the thread then uses the heap).
    fn map(len: usize) -> Option<Arena> {
        let span = len + HUGE_PAGE_BYTES;
        // SAFETY: an anonymous private mapping; no existing memory is affected.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let start = raw as usize;
        let aligned = start.next_multiple_of(HUGE_PAGE_BYTES);
        // SAFETY: both trims lie inside the mapping just made and leave [aligned, aligned+len).
        unsafe {
            if aligned > start {
                libc::munmap(raw, aligned - start);
            }
            let tail = start + span - (aligned + len);
            if tail > 0 {
                libc::munmap((aligned + len) as *mut libc::c_void, tail);
            }
            // Advice only: without THP the arena is ordinary pages.
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
        Some(Arena {
            base: NonNull::new(aligned as *mut u8)?,
            len,
            returned: SegQueue::new(),
        })
    }

    fn blocks(&self) -> u32 {
        (self.len / BLOCK_BYTES as usize) as u32
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`; no buffer of it is left (each holds an Arc).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// The owning thread's side of its arena.
struct Local {
    arena: Arc<Arena>,
    free: FreeMap,
    /// Bytes handed out and not yet back.
    used: usize,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
    /// Buffers this thread took from the heap because its arena had no room (or none).
    static OUTSIDE: Cell<u64> = const { Cell::new(0) };
}

/// Bytes of this thread's read-buffer arena in use (at most [`ARENA_BYTES`]).
pub fn arena_used_bytes() -> usize {
    LOCAL
        .try_with(|l| l.borrow().as_ref().map_or(0, |l| l.used))
        .unwrap_or(0)
}

/// Buffers this thread has taken from the heap because its arena was full, since it started.
pub fn buffers_outside_arena() -> u64 {
    OUTSIDE.try_with(Cell::get).unwrap_or(0)
}

/// Take `len` bytes (a multiple of 4 KiB) from this thread's arena, mapping it on first use.
fn from_arena(len: usize) -> Option<(NonNull<u8>, Arc<Arena>)> {
    LOCAL
        .try_with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                let arena = Arena::map(ARENA_BYTES)?;
                let mut free = FreeMap::new();
                free.free(Extent {
                    start: 0,
                    blocks: arena.blocks(),
                });
                *slot = Some(Local {
                    arena: Arc::new(arena),
                    free,
                    used: 0,
                });
            }
            let local = slot.as_mut()?;
            while let Some(e) = local.arena.returned.pop() {
                local.used -= e.blocks as usize * BLOCK_BYTES as usize;
                local.free.free(e);
            }
            let want = (len / BLOCK_BYTES as usize) as u32;
            let e = local.free.alloc_exact(want, None)?;
            local.used += len;
            // SAFETY: the extent lies inside the arena's mapping.
            let ptr = unsafe {
                local
                    .arena
                    .base
                    .add(e.start as usize * BLOCK_BYTES as usize)
            };
            Some((ptr, local.arena.clone()))
        })
        .ok()
        .flatten()
}

/// Give `len` bytes at `ptr` back to `arena`: straight into the free map on the owning thread,
/// through the arena's queue from any other.
fn to_arena(arena: &Arc<Arena>, ptr: NonNull<u8>, len: usize) {
    let e = Extent {
        start: ((ptr.as_ptr() as usize - arena.base.as_ptr() as usize) / BLOCK_BYTES as usize)
            as u32,
        blocks: (len / BLOCK_BYTES as usize) as u32,
    };
    let home = LOCAL.try_with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_mut() {
            Some(local) if Arc::ptr_eq(&local.arena, arena) => {
                local.free.free(e);
                local.used -= len;
                true
            }
            _ => false,
        }
    });
    if home != Ok(true) {
        arena.returned.push(e);
    }
}

/// Fresh zeroed heap memory for a buffer of `len` bytes (a multiple of 4 KiB): the arena had
/// no room. Tried instead of the arena (BENCHMARKS.md, 2026-12-04): buffers mapped from the
/// kernel one by one and unmapped when freed (c155648) made 1 MiB disk-tier hits at 32
/// connections 0.68× fio's reads/s instead of 1.16×, and a heap pool that gave back what it had
/// not reused for a second (14ee197) made 64 KiB hits at 8 connections 0.57× instead of 0.79×.
fn obtain(len: usize) -> NonNull<u8> {
    let _ = OUTSIDE.try_with(|c| c.set(c.get() + 1));
    let layout = AlignedBuf::layout(len);
    // SAFETY: layout has a non-zero size (len >= 4096) and a power-of-two alignment.
    let raw = unsafe { alloc::alloc_zeroed(layout) };
    NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout))
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
        match from_arena(len) {
            Some((ptr, arena)) => AlignedBuf {
                ptr,
                len,
                home: Some(arena),
            },
            None => AlignedBuf {
                ptr: obtain(len),
                len,
                home: None,
            },
        }
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, BLOCK_BYTES as usize).expect("aligned layout")
    }

    /// True if the bytes come from a read-buffer arena (false: the heap).
    pub fn in_arena(&self) -> bool {
        self.home.is_some()
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
        // SAFETY: ptr is valid for len initialised bytes (zeroed at mapping or allocation, or
        // written since) for the buffer's lifetime.
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
        match self.home.take() {
            Some(arena) => to_arena(&arena, self.ptr, self.len),
            // SAFETY: `ptr` came from alloc_zeroed with this length's layout and is freed once.
            None => unsafe { alloc::dealloc(self.ptr.as_ptr(), AlignedBuf::layout(self.len)) },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_from_the_arena_until_it_is_full_and_go_back_from_any_thread() {
        // A thread of its own: the arena is per thread.
        std::thread::spawn(|| {
            let a = AlignedBuf::for_read(1 << 20);
            assert!(a.in_arena());
            assert_eq!(a.read_ptr() as usize % BLOCK_BYTES as usize, 0);
            assert_eq!(arena_used_bytes(), 1 << 20);
            // A length that is not a power of two takes exactly its blocks.
            let b = AlignedBuf::new((1 << 20) + 100);
            assert_eq!(b.len(), (1 << 20) + BLOCK_BYTES as usize);
            assert!(b.as_slice().iter().all(|&x| x == 0));
            assert_eq!(arena_used_bytes(), (2 << 20) + BLOCK_BYTES as usize);
            drop(b);
            // Fill the arena: the rest come from the heap and are counted.
            let mut held: Vec<AlignedBuf> = (0..ARENA_BYTES / (1 << 20) - 1)
                .map(|_| AlignedBuf::for_read(1 << 20))
                .collect();
            assert!(held.iter().all(AlignedBuf::in_arena));
            assert_eq!(arena_used_bytes(), ARENA_BYTES);
            let outside_before = buffers_outside_arena();
            let c = AlignedBuf::for_read(BLOCK_BYTES as usize);
            assert!(!c.in_arena());
            assert_eq!(buffers_outside_arena(), outside_before + 1);
            drop(c);
            // A buffer freed on another thread comes back through the queue and is reused.
            let moved = held.pop().expect("held");
            let at = moved.read_ptr();
            std::thread::spawn(move || drop(moved))
                .join()
                .expect("join");
            assert_eq!(arena_used_bytes(), ARENA_BYTES);
            let again = AlignedBuf::for_read(1 << 20);
            assert!(again.in_arena());
            assert_eq!(again.read_ptr(), at);
            drop(again);
            drop(held);
            drop(a);
            assert_eq!(arena_used_bytes(), 0);
            // Everything coalesced back into one extent: the largest buffer fits again.
            assert!(AlignedBuf::for_read(ARENA_BYTES).in_arena());
        })
        .join()
        .expect("arena thread");
    }

    #[test]
    fn a_buffer_outliving_its_thread_keeps_the_arena_mapped() {
        let buf = std::thread::spawn(|| {
            let mut b = AlignedBuf::new(8192);
            b.as_mut_slice()[..5].copy_from_slice(b"arrow");
            b
        })
        .join()
        .expect("thread");
        assert!(buf.in_arena());
        assert_eq!(&buf.as_slice()[..5], b"arrow");
        drop(buf);
    }
}
