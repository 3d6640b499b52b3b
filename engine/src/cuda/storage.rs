//! `CudaStorage`: a typed, contiguous buffer on one CUDA device, and the transfers between host
//! and device. Copies to and from the host happen only here, where a user asked for them.

use super::alloc::DeviceBuffer;
use super::{Arg, Gpu};
use crate::storage::CpuStorage;
use crate::{DType, Error, Result};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// The kernels of kernels/convert.cu that this file launches.
pub(crate) const KERNELS: &[&str] = &[
    "fill_f32",
    "fill_f64",
    "fill_i64",
    "cast_f32_f64",
    "cast_f32_i64",
    "cast_f64_f32",
    "cast_f64_i64",
    "cast_i64_f32",
    "cast_i64_f64",
];

pub struct CudaStorage {
    buf: DeviceBuffer,
    len: usize,
    dtype: DType,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaStorage({} x {} on cuda:{})",
            self.len,
            self.dtype,
            self.ordinal()
        )
    }
}

/// 0 = not read yet, 1 = off, 2 = on.
static POISON: AtomicU8 = AtomicU8::new(0);

/// Whether fresh output buffers are filled with NaN (all bits set) before a kernel writes them, so
/// a kernel that leaves an element unwritten is caught. On in the GPU tests, off by default;
/// `RCMCL_CUDA_POISON=1` turns it on for a whole run.
pub fn poison_outputs() -> bool {
    match POISON.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var("RCMCL_CUDA_POISON").is_ok_and(|v| v == "1");
            POISON.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
        v => v == 2,
    }
}

pub fn set_poison_outputs(on: bool) {
    POISON.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

fn suffix(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::I64 => "i64",
    }
}

impl CudaStorage {
    /// `len` elements of `dtype` whose contents the caller's kernel will overwrite (NaN-poisoned
    /// when `poison_outputs()` is on).
    pub fn alloc(gpu: &Arc<Gpu>, len: usize, dtype: DType) -> Result<CudaStorage> {
        let buf = gpu.allocate(len * dtype.size_in_bytes())?;
        let s = CudaStorage { buf, len, dtype };
        if poison_outputs() {
            s.memset(0xff)?;
        }
        Ok(s)
    }

    /// `len` zeros of `dtype`.
    pub fn zeros(gpu: &Arc<Gpu>, len: usize, dtype: DType) -> Result<CudaStorage> {
        let buf = gpu.allocate(len * dtype.size_in_bytes())?;
        let s = CudaStorage { buf, len, dtype };
        s.memset(0)?;
        Ok(s)
    }

    /// `len` copies of `value` (converted to `dtype` as `as` would).
    pub fn full(gpu: &Arc<Gpu>, len: usize, value: f64, dtype: DType) -> Result<CudaStorage> {
        if value == 0.0 && value.is_sign_positive() {
            return CudaStorage::zeros(gpu, len, dtype);
        }
        let s = CudaStorage::alloc(gpu, len, dtype)?;
        let v = match dtype {
            DType::F32 => Arg::F32(value as f32),
            DType::F64 => Arg::F64(value),
            DType::I64 => Arg::I64(value as i64),
        };
        if len > 0 {
            gpu.launch(
                "convert",
                &format!("fill_{}", suffix(dtype)),
                gpu.grid_for(len),
                &[s.arg(), v, Arg::I64(len as i64)],
            )?;
        }
        Ok(s)
    }

    fn memset(&self, byte: u8) -> Result<()> {
        let bytes = self.len * self.dtype.size_in_bytes();
        if bytes == 0 {
            return Ok(());
        }
        let gpu = self.gpu();
        gpu.bind()?;
        // SAFETY: the block holds at least `bytes` bytes and belongs to this device.
        unsafe {
            cudarc::driver::result::memset_d8_async(
                self.ptr(),
                byte,
                bytes,
                gpu.stream().cu_stream(),
            )
        }
        .map_err(|e| Error::cuda("filling a buffer", e))
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        self.buf.gpu()
    }

    pub fn ordinal(&self) -> usize {
        self.gpu().ordinal()
    }

    /// The device address of the first element.
    pub fn ptr(&self) -> u64 {
        self.buf.ptr()
    }

    /// The device address as a kernel argument.
    pub fn arg(&self) -> Arg {
        Arg::Ptr(self.ptr())
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `_f32` / `_f64` / `_i64` kernel name for this storage's dtype.
    pub fn kernel(&self, base: &str) -> String {
        format!("{base}_{}", suffix(self.dtype))
    }

    /// A device copy of host data.
    pub fn from_cpu(gpu: &Arc<Gpu>, cpu: &CpuStorage) -> Result<CudaStorage> {
        let s = CudaStorage {
            buf: gpu.allocate(cpu.as_bytes().len())?,
            len: cpu.len(),
            dtype: cpu.dtype(),
        };
        let bytes = cpu.as_bytes();
        if !bytes.is_empty() {
            gpu.bind()?;
            // SAFETY: the block holds `bytes.len()` bytes. A copy from pageable host memory
            // returns only once the source has been read, so `cpu` may be dropped after.
            unsafe {
                cudarc::driver::result::memcpy_htod_async(s.ptr(), bytes, gpu.stream().cu_stream())
            }
            .map_err(|e| Error::cuda("copying to the device", e))?;
        }
        Ok(s)
    }

    /// The elements on the host (waits for the kernels that write them).
    pub fn to_cpu(&self) -> Result<CpuStorage> {
        fn read<T: crate::Element>(s: &CudaStorage) -> Result<CpuStorage> {
            let mut host = vec![T::default(); s.len];
            if s.len > 0 {
                let gpu = s.gpu();
                gpu.bind()?;
                // SAFETY: `host` holds exactly the storage's bytes; the stream is synchronised
                // before `host` is read.
                unsafe {
                    cudarc::driver::result::memcpy_dtoh_async(
                        &mut host[..],
                        s.ptr(),
                        gpu.stream().cu_stream(),
                    )
                }
                .map_err(|e| Error::cuda("copying to the host", e))?;
                gpu.synchronize()?;
            }
            Ok(T::wrap(host))
        }
        match self.dtype {
            DType::F32 => read::<f32>(self),
            DType::F64 => read::<f64>(self),
            DType::I64 => read::<i64>(self),
        }
    }

    /// A second buffer with the same contents (device-to-device copy).
    pub fn duplicate(&self) -> Result<CudaStorage> {
        let out = CudaStorage {
            buf: self.gpu().allocate(self.len * self.dtype.size_in_bytes())?,
            len: self.len,
            dtype: self.dtype,
        };
        out.copy_from(self)?;
        Ok(out)
    }

    /// Overwrites this buffer with `src` (same dtype and length).
    pub fn copy_from(&self, src: &CudaStorage) -> Result<()> {
        if src.len != self.len || src.dtype != self.dtype {
            return Err(Error::invalid(
                "copy_from",
                format!(
                    "cannot copy {} x {} into {} x {}",
                    src.len, src.dtype, self.len, self.dtype
                ),
            ));
        }
        let bytes = self.len * self.dtype.size_in_bytes();
        if bytes == 0 {
            return Ok(());
        }
        let gpu = self.gpu();
        gpu.bind()?;
        // SAFETY: both blocks hold `bytes` bytes on this device; the copy is stream-ordered.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                self.ptr(),
                src.ptr(),
                bytes,
                gpu.stream().cu_stream(),
            )
        }
        .map_err(|e| Error::cuda("copying on the device", e))
    }

    /// A converted copy (float to integer truncates toward zero, as on the CPU).
    pub fn to_dtype(&self, dtype: DType) -> Result<CudaStorage> {
        if dtype == self.dtype {
            return self.duplicate();
        }
        let gpu = self.gpu().clone();
        let out = CudaStorage::alloc(&gpu, self.len, dtype)?;
        if self.len > 0 {
            gpu.launch(
                "convert",
                &format!("cast_{}_{}", suffix(self.dtype), suffix(dtype)),
                gpu.grid_for(self.len),
                &[self.arg(), out.arg(), Arg::I64(self.len as i64)],
            )?;
        }
        Ok(out)
    }
}
