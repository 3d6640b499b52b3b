//! Contiguous element buffers. `Storage` is the seam between backends: the CPU variant is here,
//! the CUDA variant arrives with the CUDA backend and each op family's `cuda.rs` matches on it.

use crate::DType;

#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::I64(_) => DType::I64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
            CpuStorage::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every element as f64 (exact for f32; i64 beyond 2^53 rounds).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            CpuStorage::F32(v) => v.iter().map(|&x| x as f64).collect(),
            CpuStorage::F64(v) => v.clone(),
            CpuStorage::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    pub fn from_f64_vec(values: Vec<f64>, dtype: DType) -> CpuStorage {
        match dtype {
            DType::F32 => CpuStorage::F32(values.iter().map(|&x| x as f32).collect()),
            DType::F64 => CpuStorage::F64(values),
            DType::I64 => CpuStorage::I64(values.iter().map(|&x| x as i64).collect()),
        }
    }

    pub fn to_dtype(&self, dtype: DType) -> CpuStorage {
        match (self, dtype) {
            (CpuStorage::F32(v), DType::F32) => CpuStorage::F32(v.clone()),
            (CpuStorage::F64(v), DType::F64) => CpuStorage::F64(v.clone()),
            (CpuStorage::I64(v), DType::I64) => CpuStorage::I64(v.clone()),
            (CpuStorage::F64(v), DType::F32) => {
                CpuStorage::F32(v.iter().map(|&x| x as f32).collect())
            }
            (CpuStorage::I64(v), DType::F32) => {
                CpuStorage::F32(v.iter().map(|&x| x as f32).collect())
            }
            (CpuStorage::F32(v), DType::I64) => {
                CpuStorage::I64(v.iter().map(|&x| x as i64).collect())
            }
            (CpuStorage::F64(v), DType::I64) => {
                CpuStorage::I64(v.iter().map(|&x| x as i64).collect())
            }
            (s, DType::F64) => CpuStorage::F64(s.to_f64_vec()),
        }
    }

    /// Raw little-endian bytes (for checkpoints and .npy files).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            CpuStorage::F32(v) => bytemuck::cast_slice(v),
            CpuStorage::F64(v) => bytemuck::cast_slice(v),
            CpuStorage::I64(v) => bytemuck::cast_slice(v),
        }
    }
}

/// A tensor's elements on one device. Not `Clone`: copying device memory can fail (out of
/// memory), so it is the explicit [`Storage::try_clone`].
#[derive(Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::CudaStorage),
}

impl Storage {
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => s.dtype(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len(),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => s.len(),
        }
    }

    pub fn device(&self) -> crate::Device {
        match self {
            Storage::Cpu(_) => crate::Device::Cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => crate::Device::Cuda(s.ordinal()),
        }
    }

    /// The host storage, or `None` for a device storage.
    pub fn as_cpu(&self) -> Option<&CpuStorage> {
        match self {
            Storage::Cpu(c) => Some(c),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => None,
        }
    }

    pub fn into_cpu(self) -> Option<CpuStorage> {
        match self {
            Storage::Cpu(c) => Some(c),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => None,
        }
    }

    /// A copy of the elements on the same device.
    pub fn try_clone(&self) -> crate::Result<Storage> {
        Ok(match self {
            Storage::Cpu(s) => Storage::Cpu(s.clone()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => Storage::Cuda(s.duplicate()?),
        })
    }

    /// A converted copy on the same device.
    pub fn to_dtype(&self, dtype: DType) -> crate::Result<Storage> {
        Ok(match self {
            Storage::Cpu(s) => Storage::Cpu(s.to_dtype(dtype)),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => Storage::Cuda(s.to_dtype(dtype)?),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs `$body` with `$v` bound to the typed `&Vec<T>` of a float CPU storage, `T` being f32 or
/// f64; an i64 storage is a dtype error naming `$op`. The body is generic code instantiated twice.
#[macro_export]
macro_rules! with_float {
    ($op:expr, $storage:expr, |$v:ident| $body:expr) => {
        match $storage {
            $crate::storage::CpuStorage::F32($v) => Ok($body),
            $crate::storage::CpuStorage::F64($v) => Ok($body),
            $crate::storage::CpuStorage::I64(_) => Err($crate::Error::DType {
                op: $op,
                got: $crate::DType::I64,
                msg: "expected a floating-point tensor".into(),
            }),
        }
    };
}

/// Like `with_float!` for two storages of the same float dtype.
#[macro_export]
macro_rules! with_float2 {
    ($op:expr, $a:expr, $b:expr, |$x:ident, $y:ident| $body:expr) => {
        match ($a, $b) {
            ($crate::storage::CpuStorage::F32($x), $crate::storage::CpuStorage::F32($y)) => {
                Ok($body)
            }
            ($crate::storage::CpuStorage::F64($x), $crate::storage::CpuStorage::F64($y)) => {
                Ok($body)
            }
            (a, b) => Err($crate::Error::DTypeMismatch {
                op: $op,
                a: a.dtype(),
                b: b.dtype(),
            }),
        }
    };
}

/// Element types that have a CPU storage variant.
pub trait Element: bytemuck::Pod + Default + Send + Sync + 'static {
    const DTYPE: DType;
    fn wrap(v: Vec<Self>) -> CpuStorage;
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    /// The vector inside a storage of this element type, or the storage back.
    fn unwrap(s: CpuStorage) -> std::result::Result<Vec<Self>, CpuStorage>;
}

macro_rules! element {
    ($t:ty, $variant:ident, $dtype:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$dtype;
            fn wrap(v: Vec<Self>) -> CpuStorage {
                CpuStorage::$variant(v)
            }
            fn slice(s: &CpuStorage) -> Option<&[Self]> {
                match s {
                    CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn unwrap(s: CpuStorage) -> std::result::Result<Vec<Self>, CpuStorage> {
                match s {
                    CpuStorage::$variant(v) => Ok(v),
                    other => Err(other),
                }
            }
        }
        impl From<Vec<$t>> for CpuStorage {
            fn from(v: Vec<$t>) -> CpuStorage {
                CpuStorage::$variant(v)
            }
        }
    };
}
element!(f32, F32, F32);
element!(f64, F64, F64);
element!(i64, I64, I64);
