//! CUDA launches for this family (kernels/reduce.cu): sum, max and min over any set of axes, and
//! argmax along one axis.
//!
//! The input's dimensions are first simplified: size-1 dimensions dropped, neighbouring dimensions
//! of the same kind (kept or reduced) merged. The last group of reduced dimensions is then reduced
//! as (outer, n, inner) by one of the layouts of reduce.cu (rows, cols or mid), and the result
//! takes its place; repeated until no reduced group is left. A long extent (more than one chunk)
//! is first reduced to one partial result per chunk, kept in place of the extent, so very long
//! reductions are two (or more) launches rather than atomics. Every choice depends only on the
//! shape, so results are the same bits on every run. Sums of f32 keep their partial results in f64.

use crate::cuda::{Arg, CudaStorage, Gpu, BLOCK};
use crate::{DType, Error, Result};
use cudarc::driver::LaunchConfig;

/// Every kernel of the family's .cu file that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &[
    "reduce_rows_f32_f32",
    "reduce_rows_f32_f64",
    "reduce_rows_f64_f32",
    "reduce_rows_f64_f64",
    "reduce_mid_f32_f32",
    "reduce_mid_f32_f64",
    "reduce_mid_f64_f32",
    "reduce_mid_f64_f64",
    "argmax_rows_f32",
    "argmax_rows_f64",
    "argmax_mid_f32",
    "argmax_mid_f64",
];

/// Rows up to this long go to groups of lanes within a warp; longer ones to a block per chunk.
const WARP_ROW_MAX: usize = 512;
/// Elements of a row one block reduces (a chunk); a longer row is reduced in several passes.
const ROW_CHUNK: usize = 16384;
/// About this many elements per block of the mid layout (W columns times chunk positions).
const MID_CHUNK: usize = 16384;
/// A middle extent with at least this many outputs, or at most `COLS_SHORT_N` long, goes to one
/// thread per output (enough threads already; no shared-memory combine).
const COLS_MIN_OUTPUTS: usize = 1 << 18;
const COLS_SHORT_N: usize = 64;

/// `ReduceCode` in reduce.cu.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReduceOp {
    Sum = 0,
    Max = 1,
    Min = 2,
}

/// How one pass reduces the extent (outer, n, inner).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// inner == 1, a few rows per warp: `width` lanes per row (a power of two up to 32).
    WarpRows { width: usize },
    /// inner == 1: one block per `chunk` elements of a row.
    BlockRows { chunk: usize },
    /// One thread per output.
    Cols,
    /// A block per W columns and `chunk` positions.
    Mid { w: usize, chunk: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pass {
    outer: usize,
    n: usize,
    inner: usize,
    layout: Layout,
    /// Partial results per output (1: the pass finishes the extent).
    chunks: usize,
}

impl Pass {
    fn new(outer: usize, n: usize, inner: usize) -> Pass {
        let (layout, chunks) = if inner == 1 {
            if n <= WARP_ROW_MAX {
                let width = n.next_power_of_two().min(32);
                (Layout::WarpRows { width }, 1)
            } else {
                (
                    Layout::BlockRows { chunk: ROW_CHUNK },
                    n.div_ceil(ROW_CHUNK),
                )
            }
        } else if n <= COLS_SHORT_N || outer * inner >= COLS_MIN_OUTPUTS {
            (Layout::Cols, 1)
        } else {
            let w = inner.min(32);
            let chunk = MID_CHUNK / w;
            (Layout::Mid { w, chunk }, n.div_ceil(chunk))
        };
        Pass {
            outer,
            n,
            inner,
            layout,
            chunks,
        }
    }

    fn out_len(&self) -> usize {
        self.outer * self.chunks * self.inner
    }

    /// Whether the kernel is a rows kernel (else mid).
    fn is_rows(&self) -> bool {
        matches!(
            self.layout,
            Layout::WarpRows { .. } | Layout::BlockRows { .. }
        )
    }

    /// The layout arguments after the pointers: rows kernels take (rows, n, width, chunk,
    /// chunks), mid kernels (outer, n, inner, w, chunk, chunks); width / w 0 selects the other
    /// variant (block rows, cols).
    fn args(&self) -> Vec<Arg> {
        let i = |v: usize| Arg::I64(v as i64);
        let (width, chunk) = match self.layout {
            Layout::WarpRows { width } => (width, self.n),
            Layout::BlockRows { chunk } => (0, chunk),
            Layout::Cols => (0, self.n),
            Layout::Mid { w, chunk } => (w, chunk),
        };
        let mut args = vec![i(self.outer), i(self.n)];
        if !self.is_rows() {
            args.push(i(self.inner));
        }
        args.extend([Arg::I32(width as i32), i(chunk), i(self.chunks)]);
        args
    }

    fn grid(&self, gpu: &Gpu) -> LaunchConfig {
        let per_block = BLOCK as usize;
        let blocks = match self.layout {
            Layout::WarpRows { width } => self.outer.div_ceil(per_block / width),
            Layout::BlockRows { .. } => self.outer * self.chunks,
            Layout::Cols => (self.outer * self.inner).div_ceil(per_block),
            Layout::Mid { w, .. } => self.outer * self.inner.div_ceil(w) * self.chunks,
        };
        LaunchConfig {
            // Every kernel loops over its blocks' work, so the grid may be capped.
            grid_dim: (blocks.clamp(1, gpu.sm_count() * 16) as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// The dimensions without size-1 ones, neighbours of the same kind merged: (size, reduced).
fn groups(dims: &[usize], axes: &[usize]) -> Vec<(usize, bool)> {
    let mut groups: Vec<(usize, bool)> = Vec::new();
    for (i, &d) in dims.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let reduced = axes.contains(&i);
        match groups.last_mut() {
            Some(last) if last.1 == reduced => last.0 *= d,
            _ => groups.push((d, reduced)),
        }
    }
    groups
}

/// The passes that reduce `axes` of a non-empty tensor of shape `dims`, in order.
fn passes(dims: &[usize], axes: &[usize]) -> Vec<Pass> {
    let mut groups = groups(dims, axes);
    let mut passes = Vec::new();
    while let Some(g) = groups.iter().rposition(|d| d.1) {
        let size = |r: &[(usize, bool)]| r.iter().map(|d| d.0).product::<usize>();
        let pass = Pass::new(size(&groups[..g]), groups[g].0, size(&groups[g + 1..]));
        passes.push(pass);
        if pass.chunks > 1 {
            groups[g].0 = pass.chunks;
        } else {
            groups.remove(g);
            // The kept groups on either side are now neighbours.
            if g > 0 && g < groups.len() {
                let d = groups.remove(g).0;
                groups[g - 1].0 *= d;
            }
        }
    }
    passes
}

fn float_dtype(op: &'static str, x: &CudaStorage) -> Result<&'static str> {
    match x.dtype() {
        DType::F32 => Ok("f32"),
        DType::F64 => Ok("f64"),
        DType::I64 => Err(Error::DType {
            op,
            got: DType::I64,
            msg: "expected a floating-point tensor".into(),
        }),
    }
}

fn suffix(dtype: DType) -> &'static str {
    if dtype == DType::F32 {
        "f32"
    } else {
        "f64"
    }
}

/// `op` over `axes` (sorted, distinct) of `x`, shaped `dims`; the result has the kept dimensions'
/// elements in order. A sum over no elements is 0 (the caller rejects empty max/min).
pub(crate) fn reduce(
    op: ReduceOp,
    x: &CudaStorage,
    dims: &[usize],
    axes: &[usize],
) -> Result<CudaStorage> {
    let name = match op {
        ReduceOp::Sum => "sum",
        ReduceOp::Max => "max",
        ReduceOp::Min => "min",
    };
    float_dtype(name, x)?;
    let gpu = x.gpu().clone();
    let dtype = x.dtype();
    let out_len: usize = dims
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .product();
    if x.is_empty() {
        return CudaStorage::zeros(&gpu, out_len, dtype);
    }
    let passes = passes(dims, axes);
    if passes.is_empty() {
        // Only size-1 axes are reduced: every output is its one input.
        return x.duplicate();
    }
    // Partial sums of f32 travel in f64.
    let partial = if op == ReduceOp::Sum {
        DType::F64
    } else {
        dtype
    };
    let mut current: Option<CudaStorage> = None;
    for (i, pass) in passes.iter().enumerate() {
        let input = current.as_ref().unwrap_or(x);
        let out_dtype = if i + 1 == passes.len() {
            dtype
        } else {
            partial
        };
        let out = CudaStorage::alloc(&gpu, pass.out_len(), out_dtype)?;
        let kernel = format!(
            "reduce_{}_{}_{}",
            if pass.is_rows() { "rows" } else { "mid" },
            suffix(input.dtype()),
            suffix(out_dtype)
        );
        let mut args = vec![input.arg(), out.arg()];
        args.extend(pass.args());
        args.push(Arg::I32(op as i32));
        gpu.launch("reduce", &kernel, pass.grid(&gpu), &args)?;
        current = Some(out);
    }
    Ok(current.expect("at least one pass"))
}

/// The position of the first maximum (or first NaN) along `axis` of `x`, shaped `dims`, as i64.
pub(crate) fn argmax(x: &CudaStorage, dims: &[usize], axis: usize) -> Result<CudaStorage> {
    let t = float_dtype("argmax", x)?;
    let gpu = x.gpu().clone();
    let n = dims[axis];
    let out_len = x.len().checked_div(n).unwrap_or(0);
    if x.is_empty() || n == 1 {
        return CudaStorage::zeros(&gpu, out_len, DType::I64);
    }
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    // One axis: every pass reduces the same extent, down to one partial per output.
    let mut pass = Pass::new(outer, n, inner);
    let mut partial: Option<(CudaStorage, CudaStorage)> = None;
    loop {
        let last = pass.chunks == 1;
        let out_i = CudaStorage::alloc(&gpu, pass.out_len(), DType::I64)?;
        let out_v = if last {
            None
        } else {
            Some(CudaStorage::alloc(&gpu, pass.out_len(), x.dtype())?)
        };
        let (xv, xi) = match &partial {
            Some((v, i)) => (v.arg(), i.arg()),
            None => (x.arg(), Arg::Ptr(0)),
        };
        let mut args = vec![
            xv,
            xi,
            out_v.as_ref().map_or(Arg::Ptr(0), |v| v.arg()),
            out_i.arg(),
        ];
        args.extend(pass.args());
        let kernel = format!("argmax_{}_{t}", if pass.is_rows() { "rows" } else { "mid" });
        gpu.launch("reduce", &kernel, pass.grid(&gpu), &args)?;
        match out_v {
            None => return Ok(out_i),
            Some(v) => {
                partial = Some((v, out_i));
                pass = Pass::new(outer, pass.chunks, inner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_drop_ones_and_merge_neighbours() {
        assert_eq!(
            groups(&[2, 1, 3, 4, 5], &[2, 3]),
            vec![(2, false), (12, true), (5, false)]
        );
        assert_eq!(groups(&[1, 1], &[0]), vec![]);
        assert_eq!(groups(&[3, 1, 4], &[1]), vec![(12, false)]);
        assert_eq!(
            groups(&[2, 3, 4, 5], &[0, 2]),
            vec![(2, true), (3, false), (4, true), (5, false)]
        );
    }

    #[test]
    fn passes_reduce_the_last_group_first_and_chunk_long_extents() {
        // A sum of everything: 10^7 elements in 611 chunks, then those.
        let p = passes(&[10_000_000], &[0]);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].layout, Layout::BlockRows { chunk: ROW_CHUNK });
        assert_eq!((p[0].outer, p[0].chunks), (1, 611));
        assert_eq!(p[1].n, 611);
        assert_eq!(p[1].chunks, 1);
        // Rows of 33: a warp per row.
        let p = passes(&[7, 33], &[1]);
        assert_eq!(p[0].layout, Layout::WarpRows { width: 32 });
        assert_eq!(p[0].out_len(), 7);
        let p = passes(&[7, 3], &[1]);
        assert_eq!(p[0].layout, Layout::WarpRows { width: 4 });
        // Axes 0 and 2 of (2, 3, 4, 5): axis 2 first (outer 6, inner 5), then axis 0 (inner 15).
        let p = passes(&[2, 3, 4, 5], &[0, 2]);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].outer, p[0].n, p[0].inner), (6, 4, 5));
        assert_eq!((p[1].outer, p[1].n, p[1].inner), (1, 2, 15));
        // A long middle axis with few outputs: mid, chunked.
        let p = passes(&[3, 100_000, 40], &[1]);
        assert_eq!(p[0].layout, Layout::Mid { w: 32, chunk: 512 });
        assert_eq!(p[0].chunks, 100_000usize.div_ceil(512));
        assert_eq!((p[1].n, p[1].inner, p[1].chunks), (196, 40, 1));
        // Many outputs: one thread each.
        let p = passes(&[1000, 300, 1000], &[1]);
        assert_eq!(p[0].layout, Layout::Cols);
        // Every pass list ends with the full output size.
        for (dims, axes) in [
            (vec![5, 6, 7], vec![0, 1, 2]),
            (vec![5, 6, 7], vec![1]),
            (vec![50_000, 3], vec![0]),
            (vec![3, 40_000, 2, 9], vec![1, 3]),
        ] {
            let p = passes(&dims, &axes);
            let kept: usize = (0..dims.len())
                .filter(|i| !axes.contains(i))
                .map(|i| dims[i])
                .product();
            assert_eq!(p.last().unwrap().out_len(), kept, "{dims:?} {axes:?}");
            assert_eq!(p.last().unwrap().chunks, 1);
        }
    }
}
