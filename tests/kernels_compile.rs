//! The kernel compile check, which needs no GPU: every family in kernels/ goes through NVRTC to
//! a CUBIN for sm_80 and sm_90 (ptxas runs inside NVRTC for a CUBIN, so register and resource
//! errors are caught too), and every kernel the engine launches must be in its family's binary.
//!
//! CI installs NVRTC 13.0 from PyPI and sets `RCMCL_REQUIRE_NVRTC=1`, so a missing library fails
//! there; elsewhere the test prints why it was skipped.

mod common;
use common::skip_note;

#[cfg(feature = "cuda")]
#[test]
fn every_kernel_family_compiles_to_cubin_for_sm80_and_sm90() {
    use rcmcl::engine::cuda::compile::{compile_cubin, nvrtc_available, nvrtc_version, FAMILIES};
    if let Err(why) = nvrtc_available() {
        if std::env::var_os("RCMCL_REQUIRE_NVRTC").is_some() {
            panic!("RCMCL_REQUIRE_NVRTC is set but {why}");
        }
        skip_note(&format!("SKIPPED every_kernel_family_compiles: {why}"));
        return;
    }
    let (major, minor) = nvrtc_version().unwrap();
    println!("NVRTC {major}.{minor}");
    let launched = rcmcl::engine::cuda::launched_kernels();
    let mut failures = Vec::new();
    for family in FAMILIES {
        for arch in [80, 90] {
            match compile_cubin(family, arch) {
                Ok(cubin) => {
                    assert!(cubin.starts_with(b"\x7fELF"), "{}: not an ELF", family.file);
                    for name in launched.iter().filter(|(f, _)| *f == family.family) {
                        let symbol = format!("{}\0", name.1);
                        if !contains(&cubin, symbol.as_bytes()) {
                            failures.push(format!(
                                "{}: the engine launches `{}` but the file has no such kernel",
                                family.file, name.1
                            ));
                        }
                    }
                    println!("{} sm_{arch}: {} bytes", family.file, cubin.len());
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
    }
    for (family, name) in &launched {
        if !FAMILIES.iter().any(|f| f.family == *family) {
            failures.push(format!(
                "kernel `{name}` names an unknown family `{family}`"
            ));
        }
    }
    failures.dedup();
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[cfg(feature = "cuda")]
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(not(feature = "cuda"))]
#[test]
fn every_kernel_family_compiles_to_cubin_for_sm80_and_sm90() {
    skip_note("SKIPPED every_kernel_family_compiles: built without the `cuda` feature");
}
