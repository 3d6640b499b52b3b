//! CUDA launches for this family (kernels/layout.cu).
//!
//! The copies only move elements, so each kernel comes in two element widths (`_b4` for f32,
//! `_b8` for f64 and i64), never per dtype. Before a launch the layout is simplified on the host
//! (size-1 dimensions dropped, neighbours that are contiguous in source and destination merged),
//! so the kernels take at most 8 dimensions, and index arithmetic runs in 32 bits whenever the
//! buffers have fewer than 2^32 elements.
//!
//! - `broadcast_to`, `narrow` and permutes that keep the innermost dimension: one strided copy.
//! - permutes that move the innermost dimension: a tiled transpose through shared memory, which
//!   reads and writes whole 32-element runs (a plain strided copy would read with a stride).
//! - `pad`: one pass writing every output element (the input's element or the padding value).
//! - `concat`: one launch per group of 8 inputs, each input's pointer and run length passed as
//!   kernel arguments.

use crate::cuda::{Arg, CudaStorage};
use crate::shape::{broadcast_strides, contiguous_strides};
use crate::{DType, Error, Result};
use cudarc::driver::LaunchConfig;

/// Every kernel of the family's .cu file that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &[
    "strided_copy_b4",
    "strided_copy_b8",
    "permute_tiled_b4",
    "permute_tiled_b8",
    "pad_b4",
    "pad_b8",
    "concat_b4",
    "concat_b8",
];

/// The most dimensions a layout kernel takes (after simplification).
pub(crate) const MAX_DIMS: usize = 8;

/// Inputs per concat launch (`RCMCL_CONCAT_GROUP` in layout.cu).
const CONCAT_GROUP: usize = 8;

/// Below this size (in elements) along either tile axis, a permute that moves the innermost
/// dimension uses the strided copy: a 32 x 32 tile would leave most of its threads idle.
const TILED_MIN: usize = 8;

/// The kernel `base` for the element width of `dtype`: `_b4` (f32) or `_b8` (f64, i64).
pub(crate) fn width_kernel(base: &str, dtype: DType) -> String {
    match dtype.size_in_bytes() {
        4 => format!("{base}_b4"),
        _ => format!("{base}_b8"),
    }
}

/// The `wide` kernel argument: 1 when some index or offset may not fit in 32 bits (a buffer of
/// 2^32 elements or more among `lens`), so the kernel computes in 64 bits.
pub(crate) fn wide(lens: &[usize]) -> Arg {
    Arg::I32(lens.iter().any(|&n| n > u32::MAX as usize) as i32)
}

/// A layout of `dims` walked by `K` buffers with their element strides, simplified: size-1
/// dimensions dropped and a dimension merged into the one before it wherever every buffer steps
/// through the two as one (stride of the outer = stride of the inner times its size; this covers
/// contiguous runs and broadcast runs of stride 0). The element at each position is unchanged.
/// Never empty: a single element is one dimension of size 1.
#[derive(Debug, PartialEq)]
pub(crate) struct Simplified<const K: usize> {
    pub dims: Vec<usize>,
    pub strides: [Vec<usize>; K],
}

impl<const K: usize> Simplified<K> {
    pub(crate) fn new(dims: &[usize], full: [&[usize]; K]) -> Simplified<K> {
        let mut out: Vec<usize> = Vec::with_capacity(dims.len());
        let mut strides: [Vec<usize>; K] = std::array::from_fn(|_| Vec::new());
        for (k, &d) in dims.iter().enumerate() {
            if d == 1 {
                continue;
            }
            let mergeable = !out.is_empty()
                && (0..K).all(|j| strides[j].last().copied() == Some(full[j][k] * d));
            if mergeable {
                *out.last_mut().expect("checked non-empty") *= d;
                for j in 0..K {
                    *strides[j].last_mut().expect("same length as dims") = full[j][k];
                }
            } else {
                out.push(d);
                for j in 0..K {
                    strides[j].push(full[j][k]);
                }
            }
        }
        if out.is_empty() {
            out.push(1);
            for s in &mut strides {
                s.push(0);
            }
        }
        Simplified { dims: out, strides }
    }

    /// An error naming `op` when the layout has more dimensions than the kernels take.
    pub(crate) fn check_rank(&self, op: &'static str) -> Result<()> {
        if self.dims.len() > MAX_DIMS {
            return Err(Error::invalid(
                op,
                format!(
                    "on CUDA this op handles at most {MAX_DIMS} dimensions after merging contiguous ones; this layout needs {} ({:?})",
                    self.dims.len(),
                    self.dims
                ),
            ));
        }
        Ok(())
    }

    /// The kernel arguments: rank, 8 dimensions, then 8 strides per buffer (padding unread).
    pub(crate) fn args(&self, op: &'static str) -> Result<Vec<Arg>> {
        self.check_rank(op)?;
        let mut args = vec![Arg::I32(self.dims.len() as i32)];
        push8(&mut args, &self.dims, 1);
        for s in &self.strides {
            push8(&mut args, s, 0);
        }
        Ok(args)
    }
}

/// Appends `v` as 8 `i64` kernel arguments, padded with `fill`.
pub(crate) fn push8(args: &mut Vec<Arg>, v: &[usize], fill: i64) {
    args.extend((0..MAX_DIMS).map(|k| Arg::I64(v.get(k).map_or(fill, |&x| x as i64))));
}

/// `out[i0, .., in] = src[offset + sum(i_k * strides[k])]` for an output of shape `dims`.
fn strided_copy(
    op: &'static str,
    src: &CudaStorage,
    offset: usize,
    dims: &[usize],
    strides: &[usize],
) -> Result<CudaStorage> {
    let gpu = src.gpu().clone();
    let n: usize = dims.iter().product();
    let out = CudaStorage::alloc(&gpu, n, src.dtype())?;
    if n == 0 {
        return Ok(out);
    }
    let layout = Simplified::new(dims, [strides]);
    let mut args = vec![
        src.arg(),
        out.arg(),
        Arg::I64(offset as i64),
        Arg::I64(n as i64),
        wide(&[n, src.len()]),
    ];
    args.extend(layout.args(op)?);
    gpu.launch(
        "layout",
        &width_kernel("strided_copy", src.dtype()),
        gpu.grid_for(n),
        &args,
    )?;
    Ok(out)
}

/// `src` (of shape `in_dims`, a float tensor as on the CPU) broadcast to `out_dims` (checked by
/// the caller): a strided copy with stride 0 along the broadcast dimensions.
pub(crate) fn broadcast(
    src: &CudaStorage,
    in_dims: &[usize],
    out_dims: &[usize],
) -> Result<CudaStorage> {
    if !src.dtype().is_float() {
        return Err(Error::DType {
            op: "broadcast_to",
            got: src.dtype(),
            msg: "expected a floating-point tensor".into(),
        });
    }
    let strides = broadcast_strides(in_dims, out_dims);
    strided_copy("broadcast_to", src, 0, out_dims, &strides)
}

/// The input of shape `dims` with its axes in the order `perm` (a valid permutation).
pub(crate) fn permute(src: &CudaStorage, dims: &[usize], perm: &[usize]) -> Result<CudaStorage> {
    let strides = contiguous_strides(dims);
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let in_strides: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
    let layout = Simplified::new(&out_dims, [&in_strides]);
    let last = layout.dims.len() - 1;
    // The output axis the input is contiguous along (the input's innermost dimension, which
    // keeps stride 1 through the merges).
    let ax = layout.strides[0].iter().position(|&s| s == 1);
    match ax {
        Some(ax)
            if ax != last
                && layout.dims[ax] >= TILED_MIN
                && layout.dims[last] >= TILED_MIN
                && layout.dims.len() <= MAX_DIMS =>
        {
            permute_tiled(src, &layout, ax)
        }
        _ => strided_copy("permute", src, 0, &out_dims, &in_strides),
    }
}

/// The tiled transpose: output axis `ax` is the input's contiguous one, the last output axis the
/// output's.
fn permute_tiled(src: &CudaStorage, layout: &Simplified<1>, ax: usize) -> Result<CudaStorage> {
    const TILE: usize = 32;
    let gpu = src.gpu().clone();
    let n = src.len();
    let out = CudaStorage::alloc(&gpu, n, src.dtype())?;
    let last = layout.dims.len() - 1;
    let (dx, dy) = (layout.dims[ax], layout.dims[last]);
    let tiles = dx.div_ceil(TILE) * dy.div_ceil(TILE) * (n / (dx * dy));
    let cfg = LaunchConfig {
        grid_dim: (tiles.clamp(1, gpu.sm_count() * 16) as u32, 1, 1),
        // 32 x 8 threads: the kernel is written for exactly this block.
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut args = vec![
        src.arg(),
        out.arg(),
        wide(&[n]),
        Arg::I32(layout.dims.len() as i32),
        Arg::I32(ax as i32),
    ];
    push8(&mut args, &layout.dims, 1);
    push8(&mut args, &layout.strides[0], 0);
    gpu.launch(
        "layout",
        &width_kernel("permute_tiled", src.dtype()),
        cfg,
        &args,
    )?;
    Ok(out)
}

/// The box `starts[k] .. starts[k] + out_dims[k]` of an input of shape `dims` (checked by the
/// caller).
pub(crate) fn crop(
    src: &CudaStorage,
    dims: &[usize],
    starts: &[usize],
    out_dims: &[usize],
) -> Result<CudaStorage> {
    let strides = contiguous_strides(dims);
    let offset = starts.iter().zip(&strides).map(|(a, s)| a * s).sum();
    strided_copy("narrow", src, offset, out_dims, &strides)
}

/// The input of shape `dims` surrounded by `pads[k] = (before, after)` elements of `value`
/// (converted to the dtype as the CPU converts it: `as f32`, `as i64`).
pub(crate) fn pad(
    src: &CudaStorage,
    dims: &[usize],
    pads: &[(usize, usize)],
    value: f64,
) -> Result<CudaStorage> {
    let gpu = src.gpu().clone();
    // As on the CPU, an unpadded dimension merges into the one before it: padding a dimension
    // by p rows of a whole block is padding the merged dimension by p * block elements.
    let mut d: Vec<usize> = Vec::with_capacity(dims.len());
    let mut p: Vec<(usize, usize)> = Vec::with_capacity(dims.len());
    for (&n, &(lo, hi)) in dims.iter().zip(pads) {
        match (d.last_mut(), p.last_mut()) {
            (Some(pd), Some(pp)) if lo == 0 && hi == 0 => {
                *pd *= n;
                pp.0 *= n;
                pp.1 *= n;
            }
            _ => {
                d.push(n);
                p.push((lo, hi));
            }
        }
    }
    let out_dims: Vec<usize> = d.iter().zip(&p).map(|(n, (lo, hi))| lo + n + hi).collect();
    let n: usize = out_dims.iter().product();
    if d.is_empty() {
        // A 0-dimensional tensor has nothing to pad (the caller returns early for it anyway).
        return src.duplicate();
    }
    if d.len() > MAX_DIMS {
        return Err(Error::invalid(
            "pad",
            format!(
                "on CUDA pad handles at most {MAX_DIMS} padded dimensions (unpadded ones merge into the one before); this needs {} ({d:?})",
                d.len()
            ),
        ));
    }
    let out = CudaStorage::alloc(&gpu, n, src.dtype())?;
    if n == 0 {
        return Ok(out);
    }
    let fill = match src.dtype() {
        DType::F32 => (value as f32).to_bits() as u64,
        DType::F64 => value.to_bits(),
        DType::I64 => (value as i64) as u64,
    };
    let lo: Vec<usize> = p.iter().map(|p| p.0).collect();
    let mut args = vec![
        src.arg(),
        out.arg(),
        Arg::I64(n as i64),
        Arg::U64(fill),
        wide(&[n, src.len()]),
        Arg::I32(d.len() as i32),
    ];
    push8(&mut args, &out_dims, 1);
    push8(&mut args, &lo, 0);
    push8(&mut args, &d, 1);
    gpu.launch(
        "layout",
        &width_kernel("pad", src.dtype()),
        gpu.grid_for(n),
        &args,
    )?;
    Ok(out)
}

/// Joins inputs along one axis: each input is its storage and its `run` (the size of the concat
/// axis times the product of the dimensions after it), the contiguous block it contributes to
/// each of the `outer` output rows. All inputs share a device and dtype (checked by the caller).
pub(crate) fn concat(inputs: &[(&CudaStorage, usize)], outer: usize) -> Result<CudaStorage> {
    let first = inputs[0].0;
    let gpu = first.gpu().clone();
    let block: usize = inputs.iter().map(|(_, run)| run).sum();
    let total = outer * block;
    let out = CudaStorage::alloc(&gpu, total, first.dtype())?;
    if total == 0 {
        return Ok(out);
    }
    let kernel = width_kernel("concat", first.dtype());
    let mut col0 = 0;
    for group in inputs.chunks(CONCAT_GROUP) {
        let width: usize = group.iter().map(|(_, run)| run).sum();
        if width > 0 {
            let mut args = vec![
                out.arg(),
                Arg::I64(outer as i64),
                Arg::I64(block as i64),
                Arg::I64(col0 as i64),
                Arg::I64(width as i64),
                wide(&[total]),
                Arg::I32(group.len() as i32),
            ];
            // Unused pointer slots repeat the first input (never read).
            args.extend((0..CONCAT_GROUP).map(|k| group.get(k).unwrap_or(&group[0]).0.arg()));
            let runs: Vec<usize> = group.iter().map(|(_, run)| *run).collect();
            push8(&mut args, &runs, 0);
            gpu.launch("layout", &kernel, gpu.grid_for(outer * width), &args)?;
        }
        col0 += width;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_simplify_as_the_cpu_does() {
        // A contiguous tensor is one dimension.
        let s = Simplified::new(&[2, 3, 4], [&[12, 4, 1]]);
        assert_eq!((s.dims.clone(), s.strides[0].clone()), (vec![24], vec![1]));
        // The transpose of the last two axes of [2, 3, 4]: nothing merges.
        let s = Simplified::new(&[2, 4, 3], [&[12, 1, 4]]);
        assert_eq!(s.dims, vec![2, 4, 3]);
        // [A, B, C] -> [B, A, C]: C stays contiguous.
        let s = Simplified::new(&[3, 2, 4], [&[4, 12, 1]]);
        assert_eq!(
            (s.dims.clone(), s.strides[0].clone()),
            (vec![3, 2, 4], vec![4, 12, 1])
        );
        // Broadcasting [3, 1] to [2, 3, 5]: the leading and trailing broadcast dims stay apart.
        let s = Simplified::new(&[2, 3, 5], [&[0, 1, 0]]);
        assert_eq!(s.dims, vec![2, 3, 5]);
        // Broadcasting [5] to [2, 3, 5]: the two broadcast dims merge.
        let s = Simplified::new(&[2, 3, 5], [&[0, 0, 1]]);
        assert_eq!(
            (s.dims.clone(), s.strides[0].clone()),
            (vec![6, 5], vec![0, 1])
        );
        // Size-1 dimensions vanish; one element is a single dimension of size 1.
        let s = Simplified::new(&[1, 1], [&[1, 1]]);
        assert_eq!(s.dims, vec![1]);
        // Two buffers merge only where both can.
        let s = Simplified::new(&[2, 3, 4], [&[12, 4, 1], &[0, 4, 1]]);
        assert_eq!(s.dims, vec![2, 12]);
        assert_eq!(s.strides, [vec![12, 1], vec![0, 1]]);
    }

    #[test]
    fn layouts_beyond_eight_dimensions_are_refused() {
        let dims = [2usize; 10];
        // Every other axis reversed: nothing merges.
        let strides: Vec<usize> = (0..10).map(|k| 1usize << (9 - (k ^ 1))).collect();
        let s = Simplified::new(&dims, [&strides]);
        assert_eq!(s.dims.len(), 10);
        let e = s.args("permute").unwrap_err().to_string();
        assert!(e.contains("at most 8 dimensions"), "{e}");
    }

    #[test]
    fn kernel_names_follow_the_element_width() {
        assert_eq!(width_kernel("pad", DType::F32), "pad_b4");
        assert_eq!(width_kernel("pad", DType::F64), "pad_b8");
        assert_eq!(width_kernel("pad", DType::I64), "pad_b8");
        for name in ["strided_copy", "permute_tiled", "pad", "concat"] {
            for dt in [DType::F32, DType::F64] {
                assert!(KERNELS.contains(&width_kernel(name, dt).as_str()));
            }
        }
    }
}
