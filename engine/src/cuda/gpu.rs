//! One open CUDA device: its context, its one stream, its allocator, its compiled kernel modules
//! and its cuBLAS handle. Devices are opened once per process and live until it exits.

use super::alloc::{Allocator, MemoryStats};
use super::compile;
use crate::{Error, Result};
use cudarc::cublas;
use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

pub struct Gpu {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// Compute capability as one number: 90 for sm_90.
    arch: u32,
    name: String,
    sm_count: usize,
    pub(super) alloc: Mutex<Allocator>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    blas: Mutex<Option<BlasHandle>>,
}

/// A cuBLAS handle bound to the device's stream.
struct BlasHandle(cublas::sys::cublasHandle_t);
// SAFETY: the handle is only used under the `blas` mutex, with the context bound to the thread.
unsafe impl Send for BlasHandle {}

type Opened = std::result::Result<Arc<Gpu>, String>;

/// The open device `ordinal`, opening it on first use. A device that cannot be opened gives a
/// `CudaUnavailable` error saying what is missing (driver library, device, NVRTC); the answer is
/// remembered, so asking again costs nothing.
pub fn gpu(ordinal: usize) -> Result<Arc<Gpu>> {
    static OPENED: OnceLock<Mutex<HashMap<usize, Opened>>> = OnceLock::new();
    let mut map = OPENED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let entry = map.entry(ordinal).or_insert_with(|| {
        // cudarc panics where a library symbol is missing; a panic here is an unusable device,
        // never a crash of the caller.
        std::panic::catch_unwind(|| Gpu::open(ordinal))
            .unwrap_or_else(|_| Err("the CUDA libraries failed to load (a panic in cudarc)".into()))
    });
    match entry {
        Ok(g) => {
            g.bind()?;
            Ok(g.clone())
        }
        Err(msg) => Err(Error::CudaUnavailable(msg.clone())),
    }
}

impl Gpu {
    fn open(ordinal: usize) -> Opened {
        // SAFETY: these only try to dlopen the libraries.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("the CUDA driver library (libcuda.so) was not found: no NVIDIA driver is installed, or its folder is not on LD_LIBRARY_PATH".into());
        }
        cudarc::driver::result::init()
            .map_err(|e| format!("the CUDA driver failed to initialise ({e:?}): no usable GPU"))?;
        let count = CudaContext::device_count()
            .map_err(|e| format!("the CUDA driver cannot count devices ({e:?})"))?;
        if ordinal >= count.max(0) as usize {
            return Err(format!(
                "there is no CUDA device {ordinal}: the driver sees {count} device(s)"
            ));
        }
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err("the NVRTC library (libnvrtc.so.13) was not found: install the CUDA 13 toolkit or the `nvidia-cuda-nvrtc` Python package and put its lib folder on LD_LIBRARY_PATH".into());
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| format!("cannot create a context on CUDA device {ordinal} ({e:?})"))?;
        // Our allocator and single stream order every use; per-allocation events would only cost.
        // SAFETY: called before any allocation on this context.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| format!("cannot create a stream on CUDA device {ordinal} ({e:?})"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| format!("cannot read the compute capability ({e:?})"))?;
        let sm_count = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| format!("cannot read the multiprocessor count ({e:?})"))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        Ok(Arc::new(Gpu {
            ordinal,
            ctx,
            stream,
            arch: (major * 10 + minor) as u32,
            name,
            sm_count: sm_count.max(1) as usize,
            alloc: Mutex::new(Allocator::default()),
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            blas: Mutex::new(None),
        }))
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The device's name as the driver reports it ("NVIDIA H100 80GB HBM3").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Compute capability as one number (90 for sm_90).
    pub fn arch(&self) -> u32 {
        self.arch
    }

    pub fn sm_count(&self) -> usize {
        self.sm_count
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Makes this device's context current on the calling thread (cheap when it already is).
    pub fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| Error::cuda(format!("binding cuda:{} to this thread", self.ordinal), e))
    }

    pub fn synchronize(&self) -> Result<()> {
        self.bind()?;
        self.stream.synchronize().map_err(|e| {
            Error::cuda(
                format!(
                    "waiting for cuda:{} (an earlier kernel may have failed)",
                    self.ordinal
                ),
                e,
            )
        })
    }

    /// (free, total) bytes of device memory, as the driver reports them.
    pub fn mem_info(&self) -> (usize, usize) {
        self.ctx.mem_get_info().unwrap_or((0, 0))
    }

    pub(super) fn lock_alloc(&self) -> MutexGuard<'_, Allocator> {
        self.alloc.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn memory_stats(&self) -> MemoryStats {
        self.lock_alloc().stats()
    }

    pub fn reset_peak(&self) {
        self.lock_alloc().reset_peak();
    }

    /// The kernel `name` of `family`, compiling and loading the family's module on first use.
    pub fn function(&self, family: &'static str, name: &str) -> Result<CudaFunction> {
        let key = format!("{family}::{name}");
        if let Some(f) = self
            .functions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(f.clone());
        }
        let module = self.module(family)?;
        let f = module.load_function(name).map_err(|e| {
            Error::cuda(format!("finding kernel `{name}` in kernels/{family}.cu"), e)
        })?;
        self.functions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, f.clone());
        Ok(f)
    }

    fn module(&self, family: &'static str) -> Result<Arc<CudaModule>> {
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = modules.get(family) {
            return Ok(m.clone());
        }
        let source = kernels::find(family).ok_or_else(|| {
            Error::invalid("cuda", format!("no kernel family `{family}` in kernels/"))
        })?;
        let cubin = compile::cached_cubin(source, self.arch)?;
        let module = match self.ctx.load_module(cudarc::nvrtc::Ptx::from_binary(cubin)) {
            Ok(m) => m,
            Err(_) => {
                // A damaged cache entry: compile afresh and overwrite it.
                let cubin = compile::compile_and_store(source, self.arch)?;
                self.ctx
                    .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
                    .map_err(|e| Error::cuda(format!("loading the CUBIN of {}", source.file), e))?
            }
        };
        modules.insert(family, module.clone());
        Ok(module)
    }

    /// Runs `f` with this device's cuBLAS handle (created on first use, bound to the stream,
    /// TF32 off: products are true fp32 unless a caller switches the math mode).
    pub fn with_blas<R>(
        &self,
        f: impl FnOnce(cublas::sys::cublasHandle_t) -> Result<R>,
    ) -> Result<R> {
        self.bind()?;
        let mut slot = self.blas.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            if !unsafe { cublas::sys::is_culib_present() } {
                return Err(Error::CudaUnavailable(
                    "the cuBLAS library (libcublas.so.13) was not found: install the CUDA 13 toolkit or the `nvidia-cublas` Python package and put its lib folder on LD_LIBRARY_PATH".into(),
                ));
            }
            let handle = cublas::result::create_handle()
                .map_err(|e| Error::cuda("creating a cuBLAS handle", e))?;
            // SAFETY: a fresh handle and this device's live stream.
            unsafe {
                cublas::result::set_stream(handle, self.stream.cu_stream() as _)
                    .map_err(|e| Error::cuda("binding cuBLAS to the stream", e))?;
                cublas::sys::cublasSetMathMode(
                    handle,
                    cublas::sys::cublasMath_t::CUBLAS_DEFAULT_MATH,
                )
                .result()
                .map_err(|e| Error::cuda("setting the cuBLAS math mode", e))?;
            }
            *slot = Some(BlasHandle(handle));
        }
        f(slot.as_ref().expect("set above").0)
    }
}
