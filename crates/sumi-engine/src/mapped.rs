//! Weights used from their file as stored: a `Vec` whose memory is a private mapping of the
//! bytes of one tensor in a weights file, so a loaded tensor costs no copy and no fresh memory.
//!
//! candle's CPU tensors own a `Vec`, and a `Vec` hands its memory back to the global allocator.
//! This module's allocator wraps the system one and recognises memory it mapped: such pointers
//! lie in one address range reserved (inaccessible, nothing committed) on first use, each tensor
//! in its own page-aligned slot. Freeing a tensor replaces its slot with inaccessible memory
//! again, and the slot is reused. Every other allocation goes to the system allocator after one
//! range check.
//!
//! The mapping is private (copy-on-write): a LoRA patch written into a weight gets its own pages
//! and never reaches the file. Pages come from the page cache when first touched, so loading a
//! model that was read before takes no time and no new memory. A file truncated in place while a
//! model mapped from it is loaded would fault the process (as it would for any program that maps
//! its weights, diffusers included); Sumi's downloads write a new file and rename it.

use std::alloc::{GlobalAlloc, Layout, System};

/// The allocator: the system's, plus the release of mapped tensors.
pub struct Allocator;

#[global_allocator]
static GLOBAL: Allocator = Allocator;

// SAFETY: every request not in the mapped range goes to `System` unchanged; mapped memory is
// released only here, once, when its owner frees it.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_mapped(ptr) {
            imp::release(ptr as usize, layout.size());
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !is_mapped(ptr) {
            return System.realloc(ptr, layout, new_size);
        }
        // A grown or shrunk mapped vector moves into ordinary memory.
        let new = System.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            imp::release(ptr as usize, layout.size());
        }
        new
    }
}

/// Whether `ptr` points into memory this module mapped.
pub(crate) fn is_mapped(ptr: *mut u8) -> bool {
    imp::range().is_some_and(|(start, end)| (start..end).contains(&(ptr as usize)))
}

/// Tensors smaller than a page are read rather than mapped: each mapping takes at least one
/// page of address space and one of the process's limited number of memory areas (an SD1.5
/// model maps 630 tensors).
pub const MIN_BYTES: u64 = 4 << 10;

/// Whether weights are mapped at all: on Linux, unless `SUMI_MAP_WEIGHTS=0` asks for copies
/// (to compare the two).
pub fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| {
        cfg!(all(target_os = "linux", target_endian = "little"))
            && std::env::var("SUMI_MAP_WEIGHTS").map_or(true, |v| v != "0")
    })
}

/// `n` values of `T` stored in `file` from byte `offset`, as a vector whose memory is a private
/// mapping of those bytes. `None` when they cannot be mapped (another platform, a misaligned
/// offset, no address space left); the caller then reads them.
pub fn map_vec<T: bytemuck::Pod>(file: &std::fs::File, offset: u64, n: usize) -> Option<Vec<T>> {
    let len = n.checked_mul(std::mem::size_of::<T>())?;
    if len == 0 || !offset.is_multiple_of(std::mem::align_of::<T>() as u64) || !enabled() {
        return None;
    }
    let ptr = imp::map(file, offset, len)?;
    // SAFETY: `ptr` is aligned for T (the slot is page-aligned and keeps the offset's alignment),
    // points to `len` readable and writable bytes that nothing else refers to, and `dealloc`
    // above releases them when the vector frees them with the layout of `n` values of T. Every
    // bit pattern is a valid T (Pod).
    Some(unsafe { Vec::from_raw_parts(ptr.cast::<T>(), n, n) })
}

#[cfg(all(target_os = "linux", target_endian = "little"))]
mod imp {
    use std::os::unix::io::AsRawFd;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, PoisonError};

    /// Address space reserved for mappings: 1 TiB (costs nothing until used).
    const RESERVED: usize = 1 << 40;

    /// Start of the reserved range; 0 before it is reserved, 1 when reserving failed.
    static BASE: AtomicUsize = AtomicUsize::new(0);

    /// Free parts of the reserved range.
    static FREE: Mutex<Slots> = Mutex::new(Slots(Vec::new()));

    pub fn range() -> Option<(usize, usize)> {
        match BASE.load(Ordering::Acquire) {
            0 | 1 => None,
            base => Some((base, base + RESERVED)),
        }
    }

    fn page() -> usize {
        // SAFETY: sysconf has no preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(p).unwrap_or(4096).max(4096)
    }

    /// Replaces `[start, start + len)` with inaccessible, uncommitted memory.
    fn inaccessible(start: usize, len: usize, fixed: bool) -> *mut libc::c_void {
        let flags = libc::MAP_PRIVATE
            | libc::MAP_ANONYMOUS
            | libc::MAP_NORESERVE
            | if fixed { libc::MAP_FIXED } else { 0 };
        // SAFETY: with MAP_FIXED the range lies in the reserved range and holds no memory any
        // live value refers to; without it the kernel picks a fresh range.
        unsafe { libc::mmap(start as *mut _, len, libc::PROT_NONE, flags, -1, 0) }
    }

    pub fn map(file: &std::fs::File, offset: u64, len: usize) -> Option<*mut u8> {
        let page = page();
        let skip = (offset % page as u64) as usize;
        let slot_len = (skip + len).div_ceil(page) * page;
        let file_offset = libc::off_t::try_from(offset - skip as u64).ok()?;
        let mut free = FREE.lock().unwrap_or_else(PoisonError::into_inner);
        if BASE.load(Ordering::Acquire) == 0 {
            let base = inaccessible(0, RESERVED, false);
            match base == libc::MAP_FAILED {
                true => BASE.store(1, Ordering::Release),
                false => {
                    free.give(base as usize, RESERVED);
                    BASE.store(base as usize, Ordering::Release);
                }
            }
        }
        let start = free.take(slot_len)?;
        // SAFETY: the slot is free reserved space; MAP_FIXED replaces only it.
        let got = unsafe {
            libc::mmap(
                start as *mut _,
                slot_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                file.as_raw_fd(),
                file_offset,
            )
        };
        if got == libc::MAP_FAILED {
            free.give(start, slot_len);
            return None;
        }
        Some((start + skip) as *mut u8)
    }

    /// Releases the slot of the mapped tensor at `ptr` of `len` bytes.
    pub fn release(ptr: usize, len: usize) {
        let page = page();
        let start = ptr - ptr % page;
        let slot_len = (ptr - start + len).div_ceil(page) * page;
        if inaccessible(start, slot_len, true) == libc::MAP_FAILED {
            // The mapping stays; its address range is never handed out again.
            return;
        }
        FREE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .give(start, slot_len);
    }

    /// Free address ranges as (start, length), sorted, with no two touching.
    pub struct Slots(pub Vec<(usize, usize)>);

    impl Slots {
        /// The start of `len` bytes taken from the first free range that holds them.
        pub fn take(&mut self, len: usize) -> Option<usize> {
            let at = self.0.iter().position(|&(_, l)| l >= len)?;
            let (start, have) = self.0[at];
            match have == len {
                true => drop(self.0.remove(at)),
                false => self.0[at] = (start + len, have - len),
            }
            Some(start)
        }

        /// Gives `[start, start + len)` back, merged with the free ranges it touches.
        pub fn give(&mut self, start: usize, len: usize) {
            let at = self.0.partition_point(|&(s, _)| s < start);
            self.0.insert(at, (start, len));
            if at + 1 < self.0.len() && start + len == self.0[at + 1].0 {
                self.0[at].1 += self.0[at + 1].1;
                self.0.remove(at + 1);
            }
            if at > 0 && self.0[at - 1].0 + self.0[at - 1].1 == start {
                self.0[at - 1].1 += self.0[at].1;
                self.0.remove(at);
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_endian = "little")))]
mod imp {
    pub fn range() -> Option<(usize, usize)> {
        None
    }

    pub fn map(_: &std::fs::File, _: u64, _: usize) -> Option<*mut u8> {
        None
    }

    pub fn release(_: usize, _: usize) {}
}

#[cfg(all(test, target_os = "linux", target_endian = "little"))]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(values: &[f32], lead: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let mut bytes = vec![7u8; lead];
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&bytes).unwrap();
        f.flush().unwrap();
        (f, bytes)
    }

    #[test]
    fn mapped_vectors_hold_the_file_values_and_never_write_the_file() {
        let values: Vec<f32> = (0..50_000).map(|k| k as f32 * 0.5 - 3.0).collect();
        // An offset that is not page-aligned, as tensors in a safetensors file are.
        let (f, bytes) = file_of(&values, 4100);
        let mut v: Vec<f32> = map_vec(f.as_file(), 4100, values.len()).unwrap();
        assert!(is_mapped(v.as_mut_ptr().cast()));
        assert_eq!(v, values);
        // Writing copies the page (a LoRA patch); the file keeps its bytes.
        v[3] = 99.0;
        v[49_999] = -1.0;
        assert_eq!((v[3], v[4], v[49_999]), (99.0, values[4], -1.0));
        assert_eq!(std::fs::read(f.path()).unwrap(), bytes);
        // Growing moves it into ordinary memory with its values.
        v.push(5.0);
        assert!(!is_mapped(v.as_mut_ptr().cast()));
        assert_eq!((v[3], v[50_000], v[17]), (99.0, 5.0, values[17]));
        // A misaligned offset is not mapped.
        assert!(map_vec::<f32>(f.as_file(), 4102, 10).is_none());
    }

    #[test]
    fn freed_tensors_can_be_mapped_again() {
        let values: Vec<f32> = (0..100_000).map(|k| k as f32).collect();
        let (f, _) = file_of(&values, 64);
        for _ in 0..3 {
            let mut v: Vec<f32> = map_vec(f.as_file(), 64, values.len()).unwrap();
            assert_eq!(v[99_999], 99_999.0);
            v[0] = -5.0;
        }
    }

    #[test]
    fn slots_are_taken_first_fit_and_merged_when_given_back() {
        let mut s = imp::Slots(vec![(1000, 100)]);
        assert_eq!(s.take(30), Some(1000));
        assert_eq!(s.take(30), Some(1030));
        assert_eq!(s.take(50), None);
        assert_eq!(s.take(40), Some(1060));
        assert!(s.0.is_empty());
        s.give(1030, 30);
        s.give(1060, 40);
        assert_eq!(s.0, vec![(1030, 70)]);
        s.give(1000, 30);
        assert_eq!(s.0, vec![(1000, 100)]);
        s.give(5000, 10);
        s.give(2000, 10);
        assert_eq!(s.0, vec![(1000, 100), (2000, 10), (5000, 10)]);
        assert_eq!(s.take(10), Some(1000));
    }
}
