//! Fused CPU update kernels: one pass over each parameter, reading its gradient and updating the
//! parameter and its optimizer state in place. Large parameters are split into chunks updated in
//! parallel; every element's arithmetic is the same either way, so results do not depend on the
//! thread count. The order of operations follows PyTorch's single-tensor (CPU) implementations.

use crate::ops::PARALLEL_THRESHOLD;
use crate::storage::{CpuStorage, Storage};
use crate::Float;
use rayon::prelude::*;

/// Elements per parallel task: big enough that scheduling is noise, small enough to balance.
const CHUNK: usize = 1 << 14;

/// Float element types whose CPU storage the optimizers can borrow mutably.
pub(crate) trait OptFloat: Float {
    fn of_storage(s: &Storage) -> Option<&[Self]>;
    fn of_storage_mut(s: &mut Storage) -> Option<&mut [Self]>;
}

macro_rules! opt_float {
    ($t:ty, $variant:ident) => {
        impl OptFloat for $t {
            fn of_storage(s: &Storage) -> Option<&[Self]> {
                match s {
                    Storage::Cpu(CpuStorage::$variant(v)) => Some(v),
                    _ => None,
                }
            }
            fn of_storage_mut(s: &mut Storage) -> Option<&mut [Self]> {
                match s {
                    Storage::Cpu(CpuStorage::$variant(v)) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
opt_float!(f32, F32);
opt_float!(f64, F64);

/// SGD hyper-parameters for one step, in the parameter's element type.
#[derive(Clone, Copy)]
pub(crate) struct SgdStep<T> {
    pub lr: T,
    pub weight_decay: T,
    pub momentum: T,
    /// `1 - dampening`.
    pub keep: T,
    pub nesterov: bool,
    /// The momentum buffer is empty: it starts as the first (decayed) gradient, undampened.
    pub first: bool,
}

/// `d = g + wd * p; buf = first ? d : momentum * buf + (1 - dampening) * d;
/// d = nesterov ? d + momentum * buf : buf; p -= lr * d` (momentum 0: `p -= lr * d`).
#[inline]
fn sgd_serial<T: Float>(p: &mut [T], g: &[T], buf: Option<&mut [T]>, c: &SgdStep<T>) {
    let decay = c.weight_decay != T::zero();
    match buf {
        None => {
            for (p, &g) in p.iter_mut().zip(g) {
                let d = if decay { g + c.weight_decay * *p } else { g };
                *p -= c.lr * d;
            }
        }
        Some(buf) => {
            for ((p, &g), b) in p.iter_mut().zip(g).zip(buf) {
                let d = if decay { g + c.weight_decay * *p } else { g };
                *b = if c.first {
                    d
                } else {
                    c.momentum * *b + c.keep * d
                };
                let d = if c.nesterov { d + c.momentum * *b } else { *b };
                *p -= c.lr * d;
            }
        }
    }
}

pub(crate) fn sgd<T: Float>(p: &mut [T], g: &[T], buf: Option<&mut [T]>, c: &SgdStep<T>) {
    if p.len() < PARALLEL_THRESHOLD {
        return sgd_serial(p, g, buf, c);
    }
    match buf {
        None => p
            .par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(p, g)| sgd_serial(p, g, None, c)),
        Some(buf) => p
            .par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(buf.par_chunks_mut(CHUNK))
            .for_each(|((p, g), b)| sgd_serial(p, g, Some(b), c)),
    }
}

/// AdamW hyper-parameters for one step, in the parameter's element type. The bias corrections
/// are computed in f64 (as PyTorch computes them in Python floats) and then converted.
#[derive(Clone, Copy)]
pub(crate) struct AdamWStep<T> {
    /// `1 - lr * weight_decay`: the decoupled decay, applied before the Adam update.
    pub decay: T,
    pub one_minus_beta1: T,
    pub beta2: T,
    pub one_minus_beta2: T,
    /// `lr / (1 - beta1^t)`.
    pub step_size: T,
    /// `sqrt(1 - beta2^t)`.
    pub bias_correction2_sqrt: T,
    pub eps: T,
}

/// `p *= 1 - lr*wd; m = lerp(m, g, 1 - b1); v = b2*v + (1 - b2)*g*g;
/// p -= step_size * m / (sqrt(v) / sqrt(bc2) + eps)`.
#[inline]
fn adamw_serial<T: Float>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], c: &AdamWStep<T>) {
    let half = T::of(0.5);
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
        *p *= c.decay;
        // torch.lerp's formula: the form used depends on which side of 0.5 the weight falls.
        *m = if c.one_minus_beta1 < half {
            *m + c.one_minus_beta1 * (g - *m)
        } else {
            g - (g - *m) * (T::one() - c.one_minus_beta1)
        };
        *v = *v * c.beta2 + c.one_minus_beta2 * g * g;
        let denom = v.sqrt() / c.bias_correction2_sqrt + c.eps;
        // addcdiv's order: (value * m) / denom.
        *p -= c.step_size * *m / denom;
    }
}

pub(crate) fn adamw<T: Float>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], c: &AdamWStep<T>) {
    if p.len() < PARALLEL_THRESHOLD {
        return adamw_serial(p, g, m, v, c);
    }
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| adamw_serial(p, g, m, v, c));
}

/// Sum of squares accumulated in f64. Chunk sums are added in a fixed order, so the result is
/// the same whatever the thread count.
pub(crate) fn sum_of_squares(s: &CpuStorage) -> f64 {
    fn sq<T: Float>(v: &[T]) -> f64 {
        let chunk = |c: &[T]| c.iter().map(|x| x.f64() * x.f64()).sum::<f64>();
        if v.len() < PARALLEL_THRESHOLD {
            chunk(v)
        } else {
            let parts: Vec<f64> = v.par_chunks(CHUNK).map(chunk).collect();
            parts.iter().sum()
        }
    }
    match s {
        CpuStorage::F32(v) => sq(v),
        CpuStorage::F64(v) => sq(v),
        CpuStorage::I64(v) => v.iter().map(|&x| (x as f64) * (x as f64)).sum(),
    }
}
