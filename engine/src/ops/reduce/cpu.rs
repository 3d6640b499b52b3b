//! Reference reduction kernels over any set of axes. Each output element folds the elements of
//! its reduced sub-block; outputs are computed in parallel for large inputs. Sums accumulate in
//! f64 so the reference is more accurate than the kernels it checks.

use crate::ops::PARALLEL_THRESHOLD;
use crate::shape::contiguous_strides;
use crate::Float;
use rayon::prelude::*;

/// How an input of shape `dims` splits into kept and reduced axes.
pub struct Plan {
    /// Sizes and input strides of the kept axes (in order); their product is the output size.
    kept: Vec<(usize, usize)>,
    /// Sizes and input strides of the reduced axes.
    reduced: Vec<(usize, usize)>,
    pub out_len: usize,
}

impl Plan {
    pub fn new(dims: &[usize], axes: &[usize]) -> Plan {
        let strides = contiguous_strides(dims);
        let (mut kept, mut reduced) = (Vec::new(), Vec::new());
        for (i, (&d, &s)) in dims.iter().zip(&strides).enumerate() {
            if axes.contains(&i) {
                reduced.push((d, s));
            } else {
                kept.push((d, s));
            }
        }
        let out_len = kept.iter().map(|k| k.0).product();
        Plan {
            kept,
            reduced,
            out_len,
        }
    }

    fn base_offset(&self, mut o: usize) -> usize {
        let mut off = 0;
        for &(d, s) in self.kept.iter().rev() {
            off += (o % d) * s;
            o /= d;
        }
        off
    }

    /// Calls `f` with the input offset of each element reduced into output `o`, in row-major order.
    #[inline]
    fn for_each_reduced(&self, o: usize, mut f: impl FnMut(usize)) {
        let base = self.base_offset(o);
        if self.reduced.is_empty() {
            f(base);
            return;
        }
        let r = self.reduced.len();
        let (last_d, last_s) = self.reduced[r - 1];
        let mut idx = vec![0usize; r];
        let mut off = base;
        loop {
            for j in 0..last_d {
                f(off + j * last_s);
            }
            // Advance the odometer over the other reduced axes.
            let mut k = r - 1;
            loop {
                if k == 0 {
                    return;
                }
                k -= 1;
                let (d, s) = self.reduced[k];
                idx[k] += 1;
                off += s;
                if idx[k] < d {
                    break;
                }
                off -= idx[k] * s;
                idx[k] = 0;
            }
        }
    }
}

fn per_output<T: Send>(plan: &Plan, work: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    if work >= PARALLEL_THRESHOLD {
        (0..plan.out_len).into_par_iter().map(f).collect()
    } else {
        (0..plan.out_len).map(f).collect()
    }
}

pub fn sum<T: Float>(x: &[T], plan: &Plan) -> Vec<T> {
    per_output(plan, x.len(), |o| {
        let mut acc = 0.0f64;
        plan.for_each_reduced(o, |i| acc += x[i].f64());
        T::of(acc)
    })
}

/// Maximum (`largest`) or minimum of each reduced block; NaN propagates.
pub fn extreme<T: Float>(x: &[T], plan: &Plan, largest: bool) -> Vec<T> {
    per_output(plan, x.len(), |o| {
        let mut best: Option<T> = None;
        plan.for_each_reduced(o, |i| {
            let v = x[i];
            best = Some(match best {
                None => v,
                Some(b) if b.is_nan() => b,
                Some(_) if v.is_nan() => v,
                Some(b) => {
                    if (largest && v > b) || (!largest && v < b) {
                        v
                    } else {
                        b
                    }
                }
            });
        });
        best.unwrap_or_else(T::nan)
    })
}

/// Index (along the single reduced axis) of the first maximum of each block.
pub fn argmax<T: Float>(x: &[T], plan: &Plan) -> Vec<i64> {
    per_output(plan, x.len(), |o| {
        let (mut best, mut best_i, mut k) = (T::neg_infinity(), 0i64, 0i64);
        let mut found = false;
        plan.for_each_reduced(o, |i| {
            let v = x[i];
            if !found || v > best || (v.is_nan() && !best.is_nan()) {
                best = v;
                best_i = k;
                found = true;
            }
            k += 1;
        });
        best_i
    })
}
