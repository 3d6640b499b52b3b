//! CUDA launches for the fused optimizer updates (kernels/optim.cu).
//!
//! One launch updates every CUDA parameter of a group (same device, dtype and, for AdamW, step
//! count, so one set of scalar constants applies) through a device table of `TensorEntry` rows:
//! (parameter, gradient, state pointers, size, first block, flags). The table is uploaded once and
//! kept by the optimizer (`TableCache`); it is uploaded again only when a row changes (a parameter
//! set change, a new gradient buffer, a momentum buffer's first step). The same table form drives
//! the deterministic sum of squares behind gradient clipping.
//!
//! Pointers are read under short read locks and the kernels write parameters and state in place
//! on the device's one stream: every later use of those buffers is ordered after the update.

use super::adamw::AdamWConsts;
use super::sgd::SgdConfig;
use crate::cuda::{gpu, Arg, CudaStorage, Gpu, BLOCK};
use crate::storage::CpuStorage;
use crate::{DType, Device, Error, Result, Storage, Tensor};
use cudarc::driver::LaunchConfig;
use std::collections::HashSet;
use std::sync::Arc;

/// Every kernel of kernels/optim.cu that this module launches (checked by the compile test).
pub(crate) const KERNELS: &[&str] = &[
    "adamw_f32",
    "adamw_f64",
    "sgd_f32",
    "sgd_f64",
    "sumsq_f32",
    "sumsq_f64",
    "sum_partials",
];

const FAMILY: &str = "optim";

/// Elements per block (OPTIM_CHUNK in optim.cu).
const CHUNK: usize = 4096;
/// 64-bit words per table row (`TensorEntry` in optim.cu).
const WORDS: usize = 8;
/// `TensorEntry::flags` bit: SGD's momentum buffer starts this step.
pub(crate) const FIRST_STEP: i64 = 1;

/// One tensor of a multi-tensor launch (device addresses; 0 where a slot is unused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub p: u64,
    pub g: u64,
    pub s1: u64,
    pub s2: u64,
    pub n: usize,
    pub flags: i64,
}

/// The device address of a CUDA tensor on `device` with `dtype`, or an error naming `what`.
pub(crate) fn address(
    op: &'static str,
    what: &str,
    t: &Tensor,
    device: Device,
    dtype: DType,
) -> Result<u64> {
    if t.device() != device {
        return Err(Error::DeviceMismatch {
            op,
            a: device,
            b: t.device(),
        });
    }
    if t.dtype() != dtype {
        return Err(Error::DTypeMismatch {
            op,
            a: dtype,
            b: t.dtype(),
        });
    }
    match &*t.storage() {
        Storage::Cuda(c) => Ok(c.ptr()),
        _ => Err(Error::invalid(
            op,
            format!("{what} is not on a CUDA device"),
        )),
    }
}

/// The table rows of `entries` (empty tensors dropped) and the blocks they need.
fn table_words(entries: &[Entry]) -> (Vec<i64>, usize) {
    let mut words = Vec::with_capacity(entries.len() * WORDS);
    let mut blocks = 0usize;
    for e in entries.iter().filter(|e| e.n > 0) {
        words.extend([
            e.p as i64,
            e.g as i64,
            e.s1 as i64,
            e.s2 as i64,
            e.n as i64,
            blocks as i64,
            e.flags,
            0,
        ]);
        blocks += e.n.div_ceil(CHUNK);
    }
    (words, blocks)
}

fn upload(gpu: &Arc<Gpu>, words: Vec<i64>) -> Result<CudaStorage> {
    CudaStorage::from_cpu(gpu, &CpuStorage::I64(words))
}

/// The device tables of an optimizer's launches, one per launch position (group), kept between
/// steps and uploaded again only when their rows change.
#[derive(Default)]
pub(crate) struct TableCache {
    slots: Vec<Option<(usize, Vec<i64>, CudaStorage)>>,
}

impl TableCache {
    /// The device table for `words` at launch position `slot`, uploading it if it changed.
    fn table(&mut self, slot: usize, gpu: &Arc<Gpu>, words: Vec<i64>) -> Result<u64> {
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, || None);
        }
        let cached = &mut self.slots[slot];
        match cached {
            Some((ordinal, w, s)) if *ordinal == gpu.ordinal() && *w == words => Ok(s.ptr()),
            _ => {
                let s = upload(gpu, words.clone())?;
                let ptr = s.ptr();
                *cached = Some((gpu.ordinal(), words, s));
                Ok(ptr)
            }
        }
    }

    /// Drops the tables of launch positions at and beyond `used` (after a step that needed fewer).
    fn truncate(&mut self, used: usize) {
        self.slots.truncate(used);
    }
}

/// One group's launch: the kernel gets (table, rows) and a grid of `blocks` blocks.
type Launch<'a> = dyn Fn(&Arc<Gpu>, Arg, usize, usize) -> Result<()> + 'a;

/// Runs `launch` over `entries` (all on `gpu`) with the cached table of position `slot`. A
/// parameter that appears twice (one tensor under two names) is updated twice, in order, as on
/// the CPU: such a group is launched one tensor at a time.
fn multi_tensor(
    cache: &mut TableCache,
    slot: usize,
    gpu: &Arc<Gpu>,
    entries: &[Entry],
    launch: &Launch<'_>,
) -> Result<()> {
    let mut seen = HashSet::new();
    let distinct = entries.iter().filter(|e| e.n > 0).all(|e| seen.insert(e.p));
    if distinct {
        let (words, blocks) = table_words(entries);
        if blocks == 0 {
            return Ok(());
        }
        let rows = words.len() / WORDS;
        let table = cache.table(slot, gpu, words)?;
        return launch(gpu, Arg::Ptr(table), rows, blocks);
    }
    for e in entries {
        let (words, blocks) = table_words(std::slice::from_ref(e));
        if blocks > 0 {
            // Kept alive until the launch is queued; reuse after that is stream-ordered.
            let table = upload(gpu, words)?;
            launch(gpu, table.arg(), 1, blocks)?;
        }
    }
    Ok(())
}

fn grid(blocks: usize) -> Result<LaunchConfig> {
    if blocks > i32::MAX as usize {
        return Err(Error::invalid(
            "optimizer",
            format!("{blocks} blocks exceed the CUDA grid limit"),
        ));
    }
    Ok(LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// A scalar in the element type: rounded from f64 as the CPU's `T::of`.
fn scalar(dtype: DType, x: f64) -> Arg {
    match dtype {
        DType::F32 => Arg::F32(x as f32),
        _ => Arg::F64(x),
    }
}

/// The tensors of one fused launch, grouped by the caller (same device, dtype and constants).
pub(crate) struct Group {
    pub ordinal: usize,
    pub dtype: DType,
    pub entries: Vec<Entry>,
}

/// One fused AdamW launch over `group`, its table at position `slot` of `cache`.
pub(crate) fn adamw(
    cache: &mut TableCache,
    slot: usize,
    group: &Group,
    c: &AdamWConsts,
) -> Result<()> {
    let gpu = gpu(group.ordinal)?;
    let dtype = group.dtype;
    // `1 - (1 - beta1)` and the lerp form are decided in the element type, as on the CPU.
    let (keep1, lerp_low) = match dtype {
        DType::F32 => {
            let omb1 = c.one_minus_beta1 as f32;
            (Arg::F32(1.0 - omb1), omb1 < 0.5)
        }
        _ => (Arg::F64(1.0 - c.one_minus_beta1), c.one_minus_beta1 < 0.5),
    };
    let kernel = format!("adamw_{}", suffix(dtype)?);
    let launch = |gpu: &Arc<Gpu>, table: Arg, rows: usize, blocks: usize| {
        gpu.launch(
            FAMILY,
            &kernel,
            grid(blocks)?,
            &[
                table,
                Arg::I64(rows as i64),
                scalar(dtype, c.decay),
                scalar(dtype, c.one_minus_beta1),
                keep1,
                Arg::I32(lerp_low as i32),
                scalar(dtype, c.beta2),
                scalar(dtype, c.one_minus_beta2),
                scalar(dtype, c.step_size),
                scalar(dtype, c.bias_correction2_sqrt),
                scalar(dtype, c.eps),
            ],
        )
    };
    multi_tensor(cache, slot, &gpu, &group.entries, &launch)
}

/// One fused SGD launch over `group` (entries without a momentum buffer have `s1 == 0`; the
/// `FIRST_STEP` flag starts a buffer), its table at position `slot` of `cache`.
pub(crate) fn sgd(cache: &mut TableCache, slot: usize, group: &Group, c: &SgdConfig) -> Result<()> {
    let gpu = gpu(group.ordinal)?;
    let dtype = group.dtype;
    // The CPU decides `weight_decay != 0` in the element type.
    let decay = match dtype {
        DType::F32 => c.weight_decay as f32 != 0.0,
        _ => c.weight_decay != 0.0,
    };
    let kernel = format!("sgd_{}", suffix(dtype)?);
    let launch = |gpu: &Arc<Gpu>, table: Arg, rows: usize, blocks: usize| {
        gpu.launch(
            FAMILY,
            &kernel,
            grid(blocks)?,
            &[
                table,
                Arg::I64(rows as i64),
                scalar(dtype, c.lr),
                scalar(dtype, c.weight_decay),
                Arg::I32(decay as i32),
                scalar(dtype, c.momentum),
                scalar(dtype, 1.0 - c.dampening),
                Arg::I32(c.nesterov as i32),
            ],
        )
    };
    multi_tensor(cache, slot, &gpu, &group.entries, &launch)
}

/// Forgets the tables of launch positions at and beyond `used`.
pub(crate) fn retire_tables(cache: &mut TableCache, used: usize) {
    cache.truncate(used);
}

fn suffix(dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("f32"),
        DType::F64 => Ok("f64"),
        DType::I64 => Err(Error::DType {
            op: "optimizer",
            got: DType::I64,
            msg: "expected a floating-point tensor".into(),
        }),
    }
}

/// The sum of the squares of every element of `tensors` (all on CUDA device `ordinal`, float
/// dtypes), in f64: per-chunk partial sums (one block each, a fixed reduction order), then one
/// block adds the partials in a fixed order. Deterministic; reads the one result back.
pub(crate) fn sum_of_squares(ordinal: usize, tensors: &[Tensor]) -> Result<f64> {
    const OP: &str = "grad_norm";
    let gpu = gpu(ordinal)?;
    let device = Device::Cuda(ordinal);
    let mut by_dtype: Vec<(DType, Vec<Entry>)> = Vec::new();
    for t in tensors {
        let dtype = t.dtype();
        suffix(dtype)?;
        let p = address(OP, "a gradient", t, device, dtype)?;
        let entry = Entry {
            p,
            g: 0,
            s1: 0,
            s2: 0,
            n: t.numel(),
            flags: 0,
        };
        match by_dtype.iter_mut().find(|(d, _)| *d == dtype) {
            Some((_, list)) => list.push(entry),
            None => by_dtype.push((dtype, vec![entry])),
        }
    }
    let tables: Vec<(DType, Vec<i64>, usize)> = by_dtype
        .into_iter()
        .map(|(d, list)| {
            let (words, blocks) = table_words(&list);
            (d, words, blocks)
        })
        .collect();
    let total: usize = tables.iter().map(|t| t.2).sum();
    if total == 0 {
        return Ok(0.0);
    }
    let partial = CudaStorage::alloc(&gpu, total, DType::F64)?;
    let mut offset = 0usize;
    for (dtype, words, blocks) in tables {
        if blocks == 0 {
            continue;
        }
        let rows = words.len() / WORDS;
        let table = upload(&gpu, words)?;
        gpu.launch(
            FAMILY,
            &format!("sumsq_{}", suffix(dtype)?),
            grid(blocks)?,
            &[
                table.arg(),
                Arg::I64(rows as i64),
                Arg::Ptr(partial.ptr() + (offset * 8) as u64),
            ],
        )?;
        offset += blocks;
    }
    let out = CudaStorage::alloc(&gpu, 1, DType::F64)?;
    gpu.launch(
        FAMILY,
        "sum_partials",
        LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (1024, 1, 1),
            shared_mem_bytes: 0,
        },
        &[partial.arg(), Arg::I64(total as i64), out.arg()],
    )?;
    match out.to_cpu()? {
        CpuStorage::F64(v) => Ok(v[0]),
        other => Err(Error::invalid(
            OP,
            format!("the device sum came back as {}", other.dtype()),
        )),
    }
}
