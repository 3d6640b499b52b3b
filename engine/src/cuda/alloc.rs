//! The caching device allocator. Freed blocks go to per-size-class free lists and are handed out
//! again, so a training step that repeats the same shapes allocates nothing from the driver after
//! its first iteration. Every kernel runs on the device's one stream, so a block freed while a
//! queued kernel still uses it can be reused at once: the next user is ordered after it.

use super::Gpu;
use crate::{Error, Result};
use cudarc::driver::sys::{CUdeviceptr, CUresult};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Blocks up to 1 MiB are rounded up to a multiple of 512 bytes, larger ones to 2 MiB: little
/// waste, and a handful of classes for the shapes a model uses.
const SMALL_LIMIT: usize = 1 << 20;
const SMALL_ROUND: usize = 512;
const LARGE_ROUND: usize = 2 << 20;

pub(super) fn size_class(bytes: usize) -> usize {
    let round = if bytes <= SMALL_LIMIT {
        SMALL_ROUND
    } else {
        LARGE_ROUND
    };
    bytes.div_ceil(round) * round
}

/// What the allocator holds and how often its cache answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes held by live buffers (rounded to their size class).
    pub in_use_bytes: usize,
    /// The largest `in_use_bytes` since the device was opened or the peak was reset.
    pub peak_bytes: usize,
    /// Bytes in free blocks kept for reuse.
    pub cached_bytes: usize,
    /// Allocations answered from the cache.
    pub cache_hits: u64,
    /// Allocations that went to the driver.
    pub cache_misses: u64,
    /// Blocks given back to the driver (by `empty_cache` or to make room after an out-of-memory).
    pub driver_frees: u64,
}

#[derive(Default)]
pub(crate) struct Allocator {
    free: BTreeMap<usize, Vec<CUdeviceptr>>,
    stats: MemoryStats,
}

impl Allocator {
    pub(super) fn stats(&self) -> MemoryStats {
        self.stats
    }

    pub(super) fn reset_peak(&mut self) {
        self.stats.peak_bytes = self.stats.in_use_bytes;
    }

    fn take(&mut self, class: usize) -> Option<CUdeviceptr> {
        let list = self.free.get_mut(&class)?;
        let ptr = list.pop()?;
        self.stats.cached_bytes -= class;
        Some(ptr)
    }

    fn mark_in_use(&mut self, class: usize) {
        self.stats.in_use_bytes += class;
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.stats.in_use_bytes);
    }

    fn release(&mut self, ptr: CUdeviceptr, class: usize) {
        self.stats.in_use_bytes -= class;
        self.stats.cached_bytes += class;
        self.free.entry(class).or_default().push(ptr);
    }

    /// Every cached block, removed from the free lists.
    fn drain(&mut self) -> Vec<CUdeviceptr> {
        let blocks: Vec<CUdeviceptr> = std::mem::take(&mut self.free)
            .into_values()
            .flatten()
            .collect();
        self.stats.cached_bytes = 0;
        self.stats.driver_frees += blocks.len() as u64;
        blocks
    }
}

/// A block of device memory owned by one storage; dropping it returns the block to the cache.
pub(crate) struct DeviceBuffer {
    ptr: CUdeviceptr,
    class: usize,
    gpu: Arc<Gpu>,
}

impl DeviceBuffer {
    pub(crate) fn ptr(&self) -> CUdeviceptr {
        self.ptr
    }

    pub(crate) fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if self.class > 0 {
            self.gpu.lock_alloc().release(self.ptr, self.class);
        }
    }
}

impl Gpu {
    /// A block of at least `bytes` bytes, uninitialised.
    pub(crate) fn allocate(self: &Arc<Self>, bytes: usize) -> Result<DeviceBuffer> {
        if bytes == 0 {
            return Ok(DeviceBuffer {
                ptr: 0,
                class: 0,
                gpu: self.clone(),
            });
        }
        let class = size_class(bytes);
        {
            let mut a = self.lock_alloc();
            if let Some(ptr) = a.take(class) {
                a.stats.cache_hits += 1;
                a.mark_in_use(class);
                return Ok(DeviceBuffer {
                    ptr,
                    class,
                    gpu: self.clone(),
                });
            }
            a.stats.cache_misses += 1;
        }
        self.bind()?;
        let ptr = match self.driver_malloc(class) {
            Ok(ptr) => ptr,
            Err(CUresult::CUDA_ERROR_OUT_OF_MEMORY) => {
                // Give the cache back to the driver and try once more before reporting.
                self.empty_cache()?;
                self.driver_malloc(class).map_err(|code| {
                    if code == CUresult::CUDA_ERROR_OUT_OF_MEMORY {
                        self.out_of_memory(bytes)
                    } else {
                        Error::cuda(format!("allocating {bytes} bytes"), code)
                    }
                })?
            }
            Err(code) => return Err(Error::cuda(format!("allocating {bytes} bytes"), code)),
        };
        self.lock_alloc().mark_in_use(class);
        Ok(DeviceBuffer {
            ptr,
            class,
            gpu: self.clone(),
        })
    }

    fn driver_malloc(&self, bytes: usize) -> std::result::Result<CUdeviceptr, CUresult> {
        // SAFETY: the context is bound; the block is owned by the DeviceBuffer made from it.
        unsafe { cudarc::driver::result::malloc_sync(bytes) }.map_err(|e| e.0)
    }

    fn out_of_memory(&self, requested: usize) -> Error {
        let stats = self.memory_stats();
        let (free, total) = self.mem_info();
        Error::OutOfMemory {
            device: self.ordinal(),
            requested,
            in_use: stats.in_use_bytes,
            cached: stats.cached_bytes,
            free,
            total,
        }
    }

    /// Returns every cached block to the driver (after the stream has finished with them).
    pub fn empty_cache(&self) -> Result<()> {
        self.synchronize()?;
        let blocks = self.lock_alloc().drain();
        for ptr in blocks {
            // SAFETY: a block from cuMemAlloc that no buffer owns any more, and the stream is idle.
            unsafe { cudarc::driver::result::free_sync(ptr) }
                .map_err(|e| Error::cuda("returning a cached block to the driver", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_round_up_and_never_shrink() {
        assert_eq!(size_class(1), 512);
        assert_eq!(size_class(512), 512);
        assert_eq!(size_class(513), 1024);
        assert_eq!(size_class(SMALL_LIMIT), SMALL_LIMIT);
        assert_eq!(size_class(SMALL_LIMIT + 1), LARGE_ROUND);
        assert_eq!(size_class(5 << 20), 6 << 20);
        for b in [1usize, 100, 4097, 1 << 20, (1 << 20) + 7, 123_456_789] {
            assert!(size_class(b) >= b);
        }
    }

    #[test]
    fn the_free_lists_reuse_blocks_of_the_same_class_and_keep_statistics() {
        let mut a = Allocator::default();
        a.mark_in_use(1024);
        a.mark_in_use(2048);
        assert_eq!(a.stats().in_use_bytes, 3072);
        a.release(0x1000, 1024);
        assert_eq!(a.stats().cached_bytes, 1024);
        assert_eq!(
            a.take(2048),
            None,
            "no block of another class is handed out"
        );
        assert_eq!(a.take(1024), Some(0x1000));
        a.mark_in_use(1024);
        assert_eq!(a.stats().peak_bytes, 3072);
        a.release(0x1000, 1024);
        a.release(0x2000, 2048);
        assert_eq!(a.stats().in_use_bytes, 0);
        assert_eq!(a.drain().len(), 2);
        assert_eq!(a.stats().cached_bytes, 0);
        assert_eq!(a.stats().driver_frees, 2);
    }
}
