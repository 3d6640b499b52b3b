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
    reduced_len: usize,
    /// The reduced axes are the last ones: each output is one contiguous run of the input.
    trailing: bool,
    /// The reduced axes are the first ones: the input is (reduced_len, out_len) rows to add up.
    leading: bool,
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
        let reduced_len = reduced.iter().map(|k| k.0).product();
        let r = axes.len();
        let trailing = axes
            .iter()
            .enumerate()
            .all(|(i, &a)| a == dims.len() - r + i);
        let leading = axes.iter().enumerate().all(|(i, &a)| a == i);
        Plan {
            kept,
            reduced,
            out_len,
            reduced_len,
            trailing,
            leading,
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
        if self.reduced_len == 0 {
            // An empty block: the sum is 0 (callers that need an element reject this earlier).
            return;
        }
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

/// Sum of a contiguous run in f64, with eight independent accumulators so the loop vectorises.
fn sum_run<T: Float>(x: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|v| v.f64()).sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v.f64();
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Elements per parallel task; fixed (not derived from the thread count) so the order of the
/// partial sums, and so the result, is the same on every machine.
const TASK: usize = 1 << 16;

pub fn sum<T: Float>(x: &[T], plan: &Plan) -> Vec<T> {
    let (rows, len) = (plan.out_len, plan.reduced_len);
    if plan.trailing && len > 0 {
        if rows == 1 || len >= TASK {
            // Few long runs: split each run into tasks, add the partial sums in order.
            return (0..rows)
                .map(|r| {
                    let run = &x[r * len..(r + 1) * len];
                    let parts: Vec<f64> = run.par_chunks(TASK).map(sum_run).collect();
                    T::of(parts.iter().sum())
                })
                .collect();
        }
        return per_output(plan, x.len(), |r| {
            T::of(sum_run(&x[r * len..(r + 1) * len]))
        });
    }
    if plan.leading && rows > 0 && len > 0 {
        // (len, rows) row-major: add whole rows into per-task accumulators, then add those in order.
        let rows_per_task = (TASK / rows).max(1);
        let add_rows = |block: &[T]| {
            let mut acc = vec![0.0f64; rows];
            for row in block.chunks_exact(rows) {
                for (a, v) in acc.iter_mut().zip(row) {
                    *a += v.f64();
                }
            }
            acc
        };
        let parts: Vec<Vec<f64>> = if x.len() >= PARALLEL_THRESHOLD {
            x.par_chunks(rows_per_task * rows).map(add_rows).collect()
        } else {
            x.chunks(rows_per_task * rows).map(add_rows).collect()
        };
        let mut total = vec![0.0f64; rows];
        for p in parts {
            total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
        }
        return total.into_iter().map(T::of).collect();
    }
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
