//! Resampling tables and the x pass of bilinear image resizing, the loader's hottest loop.
//!
//! Resizing a crop is separable: output rows are blended from two source rows (contiguous, so
//! the compiler vectorises it), then each output pixel of a row is interpolated from two
//! neighbours in that blended row. The second step reads at data-dependent positions, which
//! plain loops can only do one value at a time. When upsampling (crop no wider than the output,
//! the usual case for a random resized crop), eight adjacent output pixels read from at most
//! eight adjacent values and their right neighbours, so on x86-64 with AVX2 one 8-lane load
//! and one lane permutation fetch them all; other pixels take the scalar path, which computes
//! the same expression, so both paths give the same bits.

/// Source index of each output pixel along one axis for nearest resizing of the crop
/// `start..start + len` to `out` pixels (torch's `nearest`: floor(i * len / out)); reversed
/// when flipping.
pub fn nearest_table(out: usize, start: usize, len: usize, flip: bool, table: &mut Vec<usize>) {
    table.clear();
    table.extend((0..out).map(|i| {
        let i = if flip { out - 1 - i } else { i };
        start + (i * len / out).min(len - 1)
    }));
}

/// (index a, weight of a + 1) of each output pixel along one axis for bilinear resizing of a
/// crop of `len` pixels to `out` pixels (half-pixel centres, edges clamped, as torchvision),
/// with `a` relative to the crop; reversed when flipping. At the last pixel the weight is 0.
pub fn linear_table(out: usize, len: usize, flip: bool, table: &mut Vec<(usize, f32)>) {
    table.clear();
    let scale = len as f32 / out as f32;
    table.extend((0..out).map(|i| {
        let i = if flip { out - 1 - i } else { i };
        let s = ((i as f32 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f32);
        let a = s.floor() as usize;
        (a, s - a as f32)
    }));
}

/// Values a blended row needs beyond the crop width: one for `a + 1` at the last pixel, and
/// eight more so an 8-lane load from any tile start stays in bounds.
pub const ROW_PAD: usize = 9;

/// Eight adjacent output pixels that read from `row[k0 + idx[i]]` and the value after it.
#[derive(Clone, Copy, Debug)]
struct Tile {
    x0: usize,
    k0: usize,
    idx: [i32; 8],
    w: [f32; 8],
}

/// The x pass of bilinear resizing from rows of a crop `len` wide (plus `ROW_PAD`) to `out`
/// pixels: `out[x] = row[a] + (row[a + 1] - row[a]) * w` with (a, w) from `linear_table`.
#[derive(Debug, Default)]
pub struct RowResampler {
    cols: Vec<(usize, f32)>,
    tiles: Vec<Tile>,
    /// Output pixels no tile covers.
    loose: Vec<usize>,
    len: usize,
}

impl RowResampler {
    /// Plans bilinear resizing of rows of a crop `len` pixels wide to `out` pixels, flipped
    /// if asked.
    pub fn plan(&mut self, out: usize, len: usize, flip: bool) {
        linear_table(out, len, flip, &mut self.cols);
        self.plan_tiles(len);
    }

    /// Plans nearest resizing (`nearest_table`'s choice, each value copied exactly: weight 0).
    pub fn plan_nearest(&mut self, out: usize, len: usize, flip: bool) {
        let mut idx = Vec::new();
        nearest_table(out, 0, len, flip, &mut idx);
        self.cols.clear();
        self.cols.extend(idx.into_iter().map(|a| (a, 0.0)));
        self.plan_tiles(len);
    }

    fn plan_tiles(&mut self, len: usize) {
        let out = self.cols.len();
        self.len = len;
        self.tiles.clear();
        self.loose.clear();
        let mut x0 = 0;
        while x0 < out {
            let end = (x0 + 8).min(out);
            let cols = &self.cols[x0..end];
            let lo = cols.iter().map(|c| c.0).min().unwrap_or(0);
            let hi = cols.iter().map(|c| c.0).max().unwrap_or(0);
            if end - x0 == 8 && hi - lo < 8 {
                let mut t = Tile {
                    x0,
                    k0: lo,
                    idx: [0; 8],
                    w: [0.0; 8],
                };
                for (i, &(a, w)) in cols.iter().enumerate() {
                    t.idx[i] = (a - lo) as i32;
                    t.w[i] = w;
                }
                self.tiles.push(t);
            } else {
                self.loose.extend(x0..end);
            }
            x0 = end;
        }
    }

    /// Output pixels per row.
    pub fn out_len(&self) -> usize {
        self.cols.len()
    }

    /// Resizes `row` (the crop's values, then `ROW_PAD` more) into `out`.
    pub fn run(&self, row: &[f32], out: &mut [f32]) {
        assert!(row.len() >= self.len + ROW_PAD && out.len() == self.cols.len());
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked above); every tile reads
                // row[k0 .. k0 + 9] with k0 < len, within `len + ROW_PAD` (asserted above),
                // and writes out[x0 .. x0 + 8], within `out` (tiles are planned for it).
                unsafe { self.tiles_avx2(row, out) };
                for &x in &self.loose {
                    out[x] = lerp(row, self.cols[x]);
                }
                return;
            }
        }
        for (o, &c) in out.iter_mut().zip(&self.cols) {
            *o = lerp(row, c);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn tiles_avx2(&self, row: &[f32], out: &mut [f32]) {
        use std::arch::x86_64::*;
        for t in &self.tiles {
            let lo = _mm256_loadu_ps(row.as_ptr().add(t.k0));
            let hi = _mm256_loadu_ps(row.as_ptr().add(t.k0 + 1));
            let idx = _mm256_loadu_si256(t.idx.as_ptr().cast());
            let a = _mm256_permutevar8x32_ps(lo, idx);
            let b = _mm256_permutevar8x32_ps(hi, idx);
            let w = _mm256_loadu_ps(t.w.as_ptr());
            // Same operations in the same order as `lerp`, so the same bits.
            let r = _mm256_add_ps(a, _mm256_mul_ps(_mm256_sub_ps(b, a), w));
            _mm256_storeu_ps(out.as_mut_ptr().add(t.x0), r);
        }
    }
}

#[inline(always)]
fn lerp(row: &[f32], (a, w): (usize, f32)) -> f32 {
    let p = row[a];
    p + (row[a + 1] - p) * w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiled path and the scalar expression agree exactly, flipped or not, up- and
    /// downsampling.
    #[test]
    fn tiles_match_scalar() {
        for (out, len) in [
            (64, 64),
            (64, 37),
            (64, 50),
            (30, 64),
            (13, 5),
            (8, 8),
            (7, 3),
        ] {
            for flip in [false, true] {
                let row: Vec<f32> = (0..len + ROW_PAD)
                    .map(|i| ((i * 37 % 101) as f32).sin())
                    .collect();
                let mut r = RowResampler::default();
                r.plan(out, len, flip);
                let mut got = vec![0.0; out];
                r.run(&row, &mut got);
                let want: Vec<f32> = r.cols.iter().map(|&c| lerp(&row, c)).collect();
                assert_eq!(got, want, "out {out} len {len} flip {flip}");
            }
        }
    }
}
