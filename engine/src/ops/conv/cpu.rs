//! CPU reference kernels for 3D convolution and pooling on NCDHW tensors, generic over f32/f64.
//!
//! Convolution lowers each sample to a column matrix (im2col: K = C_in * kt * kh * kw rows, one
//! column per output position, zero where the window reads padding) and multiplies with the
//! engine's CPU GEMM (`matmul::cpu::product`). Samples run in parallel (rayon), each product on
//! one thread. The weight gradient sums per-sample partial products in sample order, so results
//! do not depend on the thread count. Pooling loops directly over windows; the backward passes
//! gather (each input element sums the output gradients of the windows that cover it, in window
//! order), which is the formulation the CUDA kernels use as well.

use crate::ops::matmul::cpu::product;
use crate::Float;
use gemm::Parallelism;
use rayon::prelude::*;

/// The sizes of one 3D convolution: input (n, ci, d, h, w), weight (co, ci, k), output
/// (n, co, o).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub ci: usize,
    pub co: usize,
    /// Input spatial size (D, H, W).
    pub i: [usize; 3],
    /// Kernel size (kt, kh, kw).
    pub k: [usize; 3],
    pub stride: [usize; 3],
    pub pad: [usize; 3],
    /// Output spatial size (Do, Ho, Wo).
    pub o: [usize; 3],
}

impl ConvGeom {
    /// Input elements per sample.
    pub fn in_per_sample(&self) -> usize {
        self.ci * self.i.iter().product::<usize>()
    }
    /// Output positions per sample and channel (Do * Ho * Wo).
    pub fn p(&self) -> usize {
        self.o.iter().product()
    }
    /// Kernel taps per channel pair (kt * kh * kw).
    pub fn kvol(&self) -> usize {
        self.k.iter().product()
    }
    /// The GEMM reduction size C_in * kt * kh * kw.
    pub fn kdim(&self) -> usize {
        self.ci * self.kvol()
    }
}

/// The sizes of one 3D pooling: `planes` = N * C independent (D, H, W) volumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    pub planes: usize,
    pub i: [usize; 3],
    pub k: [usize; 3],
    pub stride: [usize; 3],
    pub pad: [usize; 3],
    pub o: [usize; 3],
}

impl PoolGeom {
    pub fn in_plane(&self) -> usize {
        self.i.iter().product()
    }
    pub fn out_plane(&self) -> usize {
        self.o.iter().product()
    }
    pub fn kvol(&self) -> usize {
        self.k.iter().product()
    }
}

/// The columns of one sample: `cols[k * P + p]`, k = (c, a, b, e) over the kernel, p over the
/// output positions; zero where the tap falls in the padding.
fn im2col<T: Float>(x: &[T], g: &ConvGeom, cols: &mut [T]) {
    let [d, h, w] = g.i;
    let [kt, kh, kw] = g.k;
    let [od, oh, ow] = g.o;
    let p = g.p();
    let mut row = 0;
    for c in 0..g.ci {
        let xc = &x[c * d * h * w..(c + 1) * d * h * w];
        for a in 0..kt {
            for b in 0..kh {
                for e in 0..kw {
                    let dst = &mut cols[row * p..(row + 1) * p];
                    let mut q = 0;
                    for zo in 0..od {
                        let z = (zo * g.stride[0] + a) as isize - g.pad[0] as isize;
                        for yo in 0..oh {
                            let y = (yo * g.stride[1] + b) as isize - g.pad[1] as isize;
                            let inside_zy =
                                z >= 0 && (z as usize) < d && y >= 0 && (y as usize) < h;
                            for xo in 0..ow {
                                let xx = (xo * g.stride[2] + e) as isize - g.pad[2] as isize;
                                dst[q] = if inside_zy && xx >= 0 && (xx as usize) < w {
                                    xc[(z as usize * h + y as usize) * w + xx as usize]
                                } else {
                                    T::zero()
                                };
                                q += 1;
                            }
                        }
                    }
                    row += 1;
                }
            }
        }
    }
}

/// Adds the columns of one sample back onto its input gradient (the transpose of `im2col`).
fn col2im<T: Float>(cols: &[T], g: &ConvGeom, dx: &mut [T]) {
    let [d, h, w] = g.i;
    let [kt, kh, kw] = g.k;
    let [od, oh, ow] = g.o;
    let p = g.p();
    let mut row = 0;
    for c in 0..g.ci {
        let dxc = &mut dx[c * d * h * w..(c + 1) * d * h * w];
        for a in 0..kt {
            for b in 0..kh {
                for e in 0..kw {
                    let src = &cols[row * p..(row + 1) * p];
                    let mut q = 0;
                    for zo in 0..od {
                        let z = (zo * g.stride[0] + a) as isize - g.pad[0] as isize;
                        for yo in 0..oh {
                            let y = (yo * g.stride[1] + b) as isize - g.pad[1] as isize;
                            let inside_zy =
                                z >= 0 && (z as usize) < d && y >= 0 && (y as usize) < h;
                            for xo in 0..ow {
                                let xx = (xo * g.stride[2] + e) as isize - g.pad[2] as isize;
                                if inside_zy && xx >= 0 && (xx as usize) < w {
                                    dxc[(z as usize * h + y as usize) * w + xx as usize] += src[q];
                                }
                                q += 1;
                            }
                        }
                    }
                    row += 1;
                }
            }
        }
    }
}

/// `y[n] (co x P) = W (co x K) @ cols(x[n]) (K x P) + bias`.
pub fn conv3d<T: Float>(x: &[T], wt: &[T], bias: Option<&[T]>, g: &ConvGeom) -> Vec<T> {
    let (p, kd, co) = (g.p(), g.kdim(), g.co);
    let mut y = vec![T::zero(); g.n * co * p];
    if y.is_empty() {
        return y;
    }
    let per_in = g.in_per_sample();
    y.par_chunks_mut(co * p).enumerate().for_each(|(n, yn)| {
        if let Some(bias) = bias {
            for (c, row) in yn.chunks_mut(p).enumerate() {
                row.fill(bias[c]);
            }
        }
        let mut cols = vec![T::zero(); kd * p];
        im2col(&x[n * per_in..(n + 1) * per_in], g, &mut cols);
        product(
            yn,
            wt,
            &cols,
            (co, p, kd),
            false,
            false,
            bias.is_some(),
            Parallelism::None,
        );
    });
    y
}

/// The input gradient: `dx[n] = col2im(W^T (K x co) @ gy[n] (co x P))`.
pub fn conv3d_input_grad<T: Float>(gy: &[T], wt: &[T], g: &ConvGeom) -> Vec<T> {
    let (p, kd, co) = (g.p(), g.kdim(), g.co);
    let per_in = g.in_per_sample();
    let mut dx = vec![T::zero(); g.n * per_in];
    if dx.is_empty() || p == 0 {
        return dx;
    }
    dx.par_chunks_mut(per_in).enumerate().for_each(|(n, dxn)| {
        let mut cols = vec![T::zero(); kd * p];
        product(
            &mut cols,
            wt,
            &gy[n * co * p..(n + 1) * co * p],
            (kd, p, co),
            true,
            false,
            false,
            Parallelism::None,
        );
        col2im(&cols, g, dxn);
    });
    dx
}

/// The weight gradient: `dW (co x K) = sum_n gy[n] (co x P) @ cols(x[n])^T (P x K)`, the
/// per-sample products added in sample order.
pub fn conv3d_weight_grad<T: Float>(x: &[T], gy: &[T], g: &ConvGeom) -> Vec<T> {
    let (p, kd, co) = (g.p(), g.kdim(), g.co);
    let per_in = g.in_per_sample();
    let len = co * kd;
    if len == 0 || p == 0 || g.n == 0 {
        return vec![T::zero(); len];
    }
    let partials: Vec<Vec<T>> = (0..g.n)
        .into_par_iter()
        .map(|n| {
            let mut cols = vec![T::zero(); kd * p];
            im2col(&x[n * per_in..(n + 1) * per_in], g, &mut cols);
            let mut dw = vec![T::zero(); len];
            product(
                &mut dw,
                &gy[n * co * p..(n + 1) * co * p],
                &cols,
                (co, kd, p),
                false,
                true,
                false,
                Parallelism::None,
            );
            dw
        })
        .collect();
    let mut dw = vec![T::zero(); len];
    for part in &partials {
        for (a, &b) in dw.iter_mut().zip(part) {
            *a += b;
        }
    }
    dw
}

/// The output windows along one axis that cover input position `i`: `o` with
/// `o * s - pad <= i < o * s - pad + k`, clipped to `[0, out)`.
#[inline]
pub fn covering(i: usize, k: usize, s: usize, pad: usize, out: usize) -> std::ops::Range<usize> {
    let ip = i + pad;
    // o >= (ip - k + 1) / s rounded up; o <= ip / s.
    let lo = if ip + 1 >= k {
        (ip + 1 - k).div_ceil(s)
    } else {
        0
    };
    let hi = (ip / s + 1).min(out);
    lo..hi.max(lo)
}

/// Visits every output position of a plane with the in-bounds input taps of its window, in
/// (a, b, e) order: `f(out_index, &[(input_index)...])` through a reusable buffer.
fn for_each_window(g: &PoolGeom, mut f: impl FnMut(usize, &[usize])) {
    let [d, h, w] = g.i;
    let mut taps = Vec::with_capacity(g.kvol());
    let mut q = 0;
    for zo in 0..g.o[0] {
        for yo in 0..g.o[1] {
            for xo in 0..g.o[2] {
                taps.clear();
                for a in 0..g.k[0] {
                    let z = (zo * g.stride[0] + a) as isize - g.pad[0] as isize;
                    if z < 0 || z as usize >= d {
                        continue;
                    }
                    for b in 0..g.k[1] {
                        let y = (yo * g.stride[1] + b) as isize - g.pad[1] as isize;
                        if y < 0 || y as usize >= h {
                            continue;
                        }
                        for e in 0..g.k[2] {
                            let x = (xo * g.stride[2] + e) as isize - g.pad[2] as isize;
                            if x < 0 || x as usize >= w {
                                continue;
                            }
                            taps.push((z as usize * h + y as usize) * w + x as usize);
                        }
                    }
                }
                f(q, &taps);
                q += 1;
            }
        }
    }
}

/// Max pooling: each window's maximum (padding never wins; the first NaN of a window wins and
/// propagates) and the flat index within the input plane of the element chosen (the first of
/// equal maxima).
pub fn max_pool3d<T: Float>(x: &[T], g: &PoolGeom) -> (Vec<T>, Vec<i64>) {
    let (ip, op) = (g.in_plane(), g.out_plane());
    let mut y = vec![T::zero(); g.planes * op];
    let mut arg = vec![0i64; g.planes * op];
    if y.is_empty() {
        return (y, arg);
    }
    y.par_chunks_mut(op)
        .zip(arg.par_chunks_mut(op))
        .enumerate()
        .for_each(|(pl, (yp, ap))| {
            let xp = &x[pl * ip..(pl + 1) * ip];
            for_each_window(g, |q, taps| {
                let mut best = T::neg_infinity();
                let mut at = taps.first().copied().unwrap_or(0);
                for &t in taps {
                    let v = xp[t];
                    if !best.is_nan() && (v > best || v.is_nan()) {
                        best = v;
                        at = t;
                    }
                }
                yp[q] = best;
                ap[q] = at as i64;
            });
        });
    (y, arg)
}

/// Gathers, for every input element of a plane, the output gradients of the windows that cover
/// it, weighted by `take(out_index, in_index)` (None: not taken).
fn gather_back<T: Float>(
    gy: &[T],
    g: &PoolGeom,
    take: impl Fn(usize, usize, usize) -> Option<T> + Sync,
) -> Vec<T> {
    let (ip, op) = (g.in_plane(), g.out_plane());
    let mut dx = vec![T::zero(); g.planes * ip];
    if dx.is_empty() {
        return dx;
    }
    let [_, h, w] = g.i;
    dx.par_chunks_mut(ip).enumerate().for_each(|(pl, dxp)| {
        let gp = &gy[pl * op..(pl + 1) * op];
        for (i, v) in dxp.iter_mut().enumerate() {
            let (z, y, x) = (i / (h * w), (i / w) % h, i % w);
            let mut acc = T::zero();
            for zo in covering(z, g.k[0], g.stride[0], g.pad[0], g.o[0]) {
                for yo in covering(y, g.k[1], g.stride[1], g.pad[1], g.o[1]) {
                    for xo in covering(x, g.k[2], g.stride[2], g.pad[2], g.o[2]) {
                        let q = (zo * g.o[1] + yo) * g.o[2] + xo;
                        if let Some(scale) = take(pl * op + q, i, q) {
                            acc += gp[q] * scale;
                        }
                    }
                }
            }
            *v = acc;
        }
    });
    dx
}

/// Max pooling backward: each input element gets the gradients of the windows that chose it.
pub fn max_pool3d_grad<T: Float>(gy: &[T], arg: &[i64], g: &PoolGeom) -> Vec<T> {
    gather_back(gy, g, |flat_q, i, _| {
        (arg[flat_q] == i as i64).then_some(T::one())
    })
}

/// Average pooling, padding counted as zeros (PyTorch's default `count_include_pad=True`):
/// every window's sum over its in-bounds taps divided by kt * kh * kw.
pub fn avg_pool3d<T: Float>(x: &[T], g: &PoolGeom) -> Vec<T> {
    let (ip, op) = (g.in_plane(), g.out_plane());
    let mut y = vec![T::zero(); g.planes * op];
    if y.is_empty() {
        return y;
    }
    let inv = T::one() / T::of(g.kvol() as f64);
    y.par_chunks_mut(op).enumerate().for_each(|(pl, yp)| {
        let xp = &x[pl * ip..(pl + 1) * ip];
        for_each_window(g, |q, taps| {
            let mut s = T::zero();
            for &t in taps {
                s += xp[t];
            }
            yp[q] = s * inv;
        });
    });
    y
}

/// Average pooling backward: each input element gets `g / (kt * kh * kw)` from every window
/// that covers it.
pub fn avg_pool3d_grad<T: Float>(gy: &[T], g: &PoolGeom) -> Vec<T> {
    let inv = T::one() / T::of(g.kvol() as f64);
    gather_back(gy, g, |_, _, _| Some(inv))
}
