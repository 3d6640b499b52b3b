//! The CPU buffer cache: large output buffers are recycled instead of returned to the system.
//!
//! A fresh 64 MB buffer costs thousands of page faults and the kernel's zeroing of every page
//! before an op writes a byte; in a training loop the same sizes come back every step. When the
//! last tensor holding a large buffer is dropped, the buffer goes into this cache (bounded in
//! bytes), and the next op asking for that dtype and length takes it back. Buffers that must start
//! zeroed are cleared on reuse; buffers a kernel overwrites completely are handed out as they are.
//! Misses fall back to `calloc` with transparent huge pages requested before the first touch.

use crate::storage::{CpuStorage, Element};
use crate::DType;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Buffers smaller than this are left to the system allocator, which is fast for them.
const MIN_BYTES: usize = 1 << 20;

/// Default bound on the bytes held by the cache; `RCMCL_CPU_CACHE_MB` overrides it (0 disables).
const DEFAULT_LIMIT_BYTES: usize = 1 << 30;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Bytes currently held (free buffers waiting for reuse).
    pub cached_bytes: usize,
    pub limit_bytes: usize,
}

#[derive(Default)]
struct Cache {
    free: HashMap<(DType, usize), Vec<CpuStorage>>,
    stats: CacheStats,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        let limit = std::env::var("RCMCL_CPU_CACHE_MB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map(|mb| mb << 20)
            .unwrap_or(DEFAULT_LIMIT_BYTES);
        Mutex::new(Cache {
            free: HashMap::new(),
            stats: CacheStats {
                limit_bytes: limit,
                ..Default::default()
            },
        })
    })
}

fn lock() -> std::sync::MutexGuard<'static, Cache> {
    // A panic while holding the lock cannot leave the map inconsistent: recover it.
    cache().lock().unwrap_or_else(|e| e.into_inner())
}

fn take<T: Element>(n: usize) -> Option<Vec<T>> {
    if n * std::mem::size_of::<T>() < MIN_BYTES {
        return None;
    }
    let mut c = lock();
    let hit = c.free.get_mut(&(T::DTYPE, n)).and_then(|list| list.pop());
    match hit {
        Some(s) => {
            c.stats.hits += 1;
            c.stats.cached_bytes -= n * std::mem::size_of::<T>();
            T::unwrap(s).ok()
        }
        None => {
            c.stats.misses += 1;
            None
        }
    }
}

/// Offers a storage that no tensor uses any more; kept when it is large and there is room.
pub(crate) fn recycle(storage: CpuStorage) {
    let bytes = storage.len() * storage.dtype().size_in_bytes();
    if bytes < MIN_BYTES {
        return;
    }
    let mut c = lock();
    if c.stats.cached_bytes + bytes > c.stats.limit_bytes {
        return;
    }
    c.stats.cached_bytes += bytes;
    c.free
        .entry((storage.dtype(), storage.len()))
        .or_default()
        .push(storage);
}

/// A zero-filled buffer of `n` elements (accumulators, scatter targets, padded copies).
pub fn alloc_zeroed<T: Element>(n: usize) -> Vec<T> {
    match take::<T>(n) {
        Some(mut v) => {
            v.par_chunks_mut(1 << 16).for_each(|c| c.fill(T::zeroed()));
            v
        }
        None => fresh(n),
    }
}

/// A buffer of `n` elements whose contents are unspecified (stale values of an earlier tensor,
/// or zeros): only for kernels that write every element before anything reads it.
pub fn alloc_for_overwrite<T: Element>(n: usize) -> Vec<T> {
    take::<T>(n).unwrap_or_else(|| fresh(n))
}

fn fresh<T: Element>(n: usize) -> Vec<T> {
    // `vec![zero; n]` becomes calloc, whose large blocks are fresh, untouched mappings.
    let v = vec![T::zeroed(); n];
    advise_huge_pages(&v);
    v
}

pub fn stats() -> CacheStats {
    lock().stats
}

/// Returns every cached buffer to the system.
pub fn empty_cache() {
    let mut c = lock();
    c.free.clear();
    c.stats.cached_bytes = 0;
}

#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(v: &[T]) {
    const HUGE: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let end = start + std::mem::size_of_val(v);
    let (lo, hi) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
    if hi > lo {
        // Advice only: where transparent huge pages are off, the buffer keeps small pages.
        // SAFETY: [lo, hi) lies inside the live allocation of `v`; madvise does not change its contents.
        unsafe {
            libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_: &[T]) {}
