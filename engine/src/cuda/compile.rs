//! NVRTC compilation of the kernel families straight to CUBIN, with an on-disk cache.
//!
//! CUBIN rather than PTX: a PTX made by an NVRTC newer than the driver fails to load
//! (CUDA_ERROR_UNSUPPORTED_PTX_VERSION), while a CUBIN for the device's own architecture loads on
//! any driver that supports the architecture. The cache key hashes everything that changes the
//! binary (source, options, architecture, NVRTC version), so a second run loads without compiling.
//!
//! Nothing here needs a GPU: the kernel compile check runs these functions on machines without one.

use crate::{Error, Result};
use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};
pub use kernels::{KernelSource, ALL as FAMILIES};
use std::ffi::CString;
use std::path::PathBuf;

/// The environment variable naming the CUBIN cache folder; `off` disables the cache.
pub const CACHE_ENV: &str = "RCMCL_KERNEL_CACHE";

/// Bumped when the way binaries are produced changes in a way the key would not see.
const CACHE_FORMAT: u32 = 1;

/// Whether the NVRTC library can be loaded; the error says what to install.
pub fn nvrtc_available() -> std::result::Result<(), String> {
    // SAFETY: only tries to dlopen the library.
    if unsafe { nvrtc_sys::is_culib_present() } {
        Ok(())
    } else {
        Err("the NVRTC library (libnvrtc.so.13) was not found: install the CUDA 13 toolkit or the `nvidia-cuda-nvrtc` Python package and put its lib folder on LD_LIBRARY_PATH".into())
    }
}

/// NVRTC's version as (major, minor).
pub fn nvrtc_version() -> Result<(i32, i32)> {
    nvrtc_available().map_err(Error::CudaUnavailable)?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two valid out-pointers.
    unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| Error::cuda("asking NVRTC for its version", e))?;
    Ok((major, minor))
}

/// The options every family is compiled with, for architecture `arch` (90 for sm_90).
pub fn options(arch: u32) -> Vec<String> {
    vec![
        format!("--gpu-architecture=sm_{arch}"),
        "--std=c++17".into(),
        // Line tables let profilers map time back to the .cu lines; they do not slow the code.
        "--generate-line-info".into(),
    ]
}

/// Compiles one family to a CUBIN for `arch`, without the cache. A compile error carries
/// NVRTC's log and the family's file name.
pub fn compile_cubin(k: &KernelSource, arch: u32) -> Result<Vec<u8>> {
    nvrtc_available().map_err(Error::CudaUnavailable)?;
    let failed = |what: &str, e: nvrtc::NvrtcError| Error::cuda(format!("{what} {}", k.file), e);
    let src = CString::new(kernels::full_source(k))
        .map_err(|_| Error::invalid("nvrtc", format!("{} contains a NUL byte", k.file)))?;
    let name = CString::new(k.file).expect("file names have no NUL");
    let prog = nvrtc::create_program(&src, Some(&name)).map_err(|e| failed("creating", e))?;
    let opts = options(arch);
    // SAFETY: `prog` is live until destroy_program below; options are plain strings.
    let outcome = unsafe { nvrtc::compile_program(prog, &opts) };
    let result = match outcome {
        Ok(()) => read_cubin(prog).map_err(|e| failed("reading the CUBIN of", e)),
        Err(_) => {
            // SAFETY: as above.
            let log = unsafe { nvrtc::get_program_log(prog) }
                .map(|chars| {
                    let bytes: Vec<u8> = chars
                        .iter()
                        .map(|&c| c as u8)
                        .take_while(|&b| b != 0)
                        .collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                })
                .unwrap_or_else(|e| format!("(no log: {e:?})"));
            Err(Error::KernelCompile {
                file: k.file.to_string(),
                arch: format!("sm_{arch}"),
                log,
            })
        }
    };
    // SAFETY: created above, destroyed once.
    let _ = unsafe { nvrtc::destroy_program(prog) };
    result
}

fn read_cubin(prog: nvrtc_sys::nvrtcProgram) -> std::result::Result<Vec<u8>, nvrtc::NvrtcError> {
    let mut size = 0usize;
    // SAFETY: `prog` compiled successfully; the buffer has the size NVRTC reports.
    unsafe {
        nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size).result()?;
        let mut cubin = vec![0u8; size];
        nvrtc_sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut _).result()?;
        Ok(cubin)
    }
}

/// The cache folder: `$RCMCL_KERNEL_CACHE`, else `$XDG_CACHE_HOME/rcmcl/kernels`, else
/// `~/.cache/rcmcl/kernels`; `None` when the cache is off or no folder can be named.
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os(CACHE_ENV) {
        Some(v) if v == "off" || v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|base| base.join("rcmcl").join("kernels")),
    }
}

/// FNV-1a, 64 bits: a stable hash (std's hasher may change between Rust releases).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The cache file of a family for `arch` under the current NVRTC.
pub fn cache_path(k: &KernelSource, arch: u32) -> Result<Option<PathBuf>> {
    let Some(dir) = cache_dir() else {
        return Ok(None);
    };
    let (major, minor) = nvrtc_version()?;
    let key = fnv1a(&[
        kernels::full_source(k).as_bytes(),
        options(arch).join(" ").as_bytes(),
        format!("sm_{arch} nvrtc {major}.{minor} format {CACHE_FORMAT}").as_bytes(),
    ]);
    Ok(Some(
        dir.join(format!("{}-sm{arch}-{key:016x}.cubin", k.family)),
    ))
}

/// The family's CUBIN from the cache, or compiled (and stored) when absent.
pub fn cached_cubin(k: &KernelSource, arch: u32) -> Result<Vec<u8>> {
    if let Some(path) = cache_path(k, arch)? {
        if let Ok(bytes) = std::fs::read(&path) {
            if bytes.starts_with(b"\x7fELF") {
                return Ok(bytes);
            }
        }
    }
    compile_and_store(k, arch)
}

/// Compiles the family and writes it to the cache (atomically: a temporary file renamed into
/// place, so a concurrent or interrupted run never sees half a binary). A cache that cannot be
/// written only costs compile time on the next run.
pub fn compile_and_store(k: &KernelSource, arch: u32) -> Result<Vec<u8>> {
    let cubin = compile_cubin(k, arch)?;
    if let Some(path) = cache_path(k, arch)? {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let stored = path
            .parent()
            .map(std::fs::create_dir_all)
            .unwrap_or(Ok(()))
            .and_then(|_| std::fs::write(&tmp, &cubin))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if stored.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(cubin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_hash_is_stable_and_separates_parts() {
        assert_eq!(fnv1a(&[b"abc"]), fnv1a(&[b"abc"]));
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        assert_ne!(fnv1a(&[b"sm_80"]), fnv1a(&[b"sm_90"]));
    }
}
