//! The CUDA C sources of every GPU kernel, embedded at build time so the engine needs no files
//! (and no nvcc) at run time. NVRTC compiles them on first use; see `engine::cuda::compile`.
//!
//! Each family is one `.cu` file. The shared prelude (`prelude.cuh`: integer types, warp and block
//! reductions, the counter-based random hash) is prepended to every family before compiling, with
//! a `#line` directive so compiler messages name the family's own file and line.

/// One kernel family: a `.cu` file of `extern "C"` kernels.
#[derive(Clone, Copy, Debug)]
pub struct KernelSource {
    /// The family name the engine asks for (`"elementwise"`, `"reduce"`, ...).
    pub family: &'static str,
    /// The file it came from, for error messages.
    pub file: &'static str,
    /// The CUDA C source, without the prelude.
    pub source: &'static str,
}

/// Definitions every family can use; prepended before compiling.
pub const PRELUDE: &str = include_str!("../prelude.cuh");

macro_rules! family {
    ($name:literal) => {
        KernelSource {
            family: $name,
            file: concat!("kernels/", $name, ".cu"),
            source: include_str!(concat!("../", $name, ".cu")),
        }
    };
}

/// Every kernel family.
pub const ALL: &[KernelSource] = &[
    family!("convert"),
    family!("elementwise"),
    family!("reduce"),
    family!("layout"),
    family!("index"),
    family!("softmax"),
    family!("norm"),
    family!("random"),
    family!("optim"),
    family!("matmul"),
    family!("pointnet"),
    family!("graph"),
    family!("conv3d"),
    family!("infonce"),
    family!("barlow"),
];

/// The family called `family`, if there is one.
pub fn find(family: &str) -> Option<&'static KernelSource> {
    ALL.iter().find(|k| k.family == family)
}

/// The text NVRTC compiles for a family: the prelude, then the family's file with line numbers
/// that match the file on disk.
pub fn full_source(k: &KernelSource) -> String {
    format!(
        "#line 1 \"kernels/prelude.cuh\"\n{PRELUDE}\n#line 1 \"{}\"\n{}",
        k.file, k.source
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_found_and_non_empty() {
        for k in ALL {
            assert!(find(k.family).is_some());
            assert!(
                k.source.contains("extern \"C\""),
                "{} has no kernels",
                k.file
            );
            assert!(full_source(k).contains(k.source));
        }
    }
}
