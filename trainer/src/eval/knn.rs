//! The kNN protocol (paper 002; the weighted kNN of InstDisc, Wu et al. 2018, as the skeleton
//! self-supervised works run it): features are L2-normalised, a test sample's k nearest train
//! samples by cosine similarity vote for their class with weight exp(sim / t), and the class
//! with the largest total wins.

use super::metrics::argmax;

/// The default number of neighbours. InstDisc uses 200 on ImageNet's 1.2 M images; our
/// datasets have tens of train samples per class (the synthetic `small` preset about 45, NTU-60
/// about 670), where 200 neighbours would mostly be of other classes, so we take 20.
pub const KNN_DEFAULT_K: usize = 20;

/// The default vote temperature t (InstDisc's `nce_t`, and the contrastive tau of paper 000).
pub const KNN_DEFAULT_T: f64 = 0.07;

/// Top-1 accuracy (%) of the weighted kNN classifier on `test_x` (n_test, dim) with the
/// labelled `train_x` (n_train, dim), both row-major.
///
/// Each row is L2-normalised (an all-zero row stays zero and has similarity 0 to everything);
/// the `k` most similar train rows (all of them when k > n_train; equal similarities are
/// ordered by train index) vote for their labels with weight exp(sim / t); the class with the
/// largest total is the prediction (the lowest class index on ties).
///
/// NaN when the inputs do not fit together: lengths that are not whole rows or differ from the
/// label counts, an empty train or test set, a train label outside `0..classes`, a non-finite
/// feature, `k` = 0, `dim` = 0 or `t` not positive and finite.
#[allow(clippy::too_many_arguments)]
pub fn knn_top1(
    train_x: &[f32],
    train_y: &[i64],
    test_x: &[f32],
    test_y: &[i64],
    dim: usize,
    classes: usize,
    k: usize,
    t: f64,
) -> f64 {
    match knn_predict(train_x, train_y, test_x, dim, classes, k, t) {
        Some(pred) if pred.len() == test_y.len() => {
            let correct = pred.iter().zip(test_y).filter(|(p, y)| p == y).count();
            100.0 * correct as f64 / test_y.len() as f64
        }
        _ => f64::NAN,
    }
}

/// The kNN predictions of `knn_top1`, one class per test row; None where it gives NaN.
pub fn knn_predict(
    train_x: &[f32],
    train_y: &[i64],
    test_x: &[f32],
    dim: usize,
    classes: usize,
    k: usize,
    t: f64,
) -> Option<Vec<i64>> {
    let ok = dim > 0
        && classes > 0
        && k > 0
        && t.is_finite()
        && t > 0.0
        && !train_y.is_empty()
        && train_x.len() == train_y.len() * dim
        && !test_x.is_empty()
        && test_x.len() % dim == 0
        && train_y.iter().all(|&y| (0..classes as i64).contains(&y))
        && train_x.iter().chain(test_x).all(|v| v.is_finite());
    if !ok {
        return None;
    }
    let train = normalised(train_x, dim);
    let test = normalised(test_x, dim);
    let n_test = test.len() / dim;
    // Test rows are independent: split them over the cores (the result does not depend on
    // the split).
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(n_test.div_ceil(64))
        .max(1);
    let rows_per = n_test.div_ceil(threads);
    let mut pred = vec![0i64; n_test];
    std::thread::scope(|scope| {
        for (q, out) in test.chunks(rows_per * dim).zip(pred.chunks_mut(rows_per)) {
            let (train, train_y) = (&train, train_y);
            scope.spawn(move || predict_rows(q, train, train_y, out, dim, classes, k, t));
        }
    });
    Some(pred)
}

/// The kNN prediction of each row of `test` (normalised) into `out`.
#[allow(clippy::too_many_arguments)]
fn predict_rows(
    test: &[f32],
    train: &[f32],
    train_y: &[i64],
    out: &mut [i64],
    dim: usize,
    classes: usize,
    k: usize,
    t: f64,
) {
    let n_train = train_y.len();
    let k = k.min(n_train);
    let mut sims: Vec<(f32, usize)> = Vec::with_capacity(n_train);
    let mut votes = vec![0f64; classes];
    for (q, p) in test.chunks_exact(dim).zip(out) {
        sims.clear();
        sims.extend(
            train
                .chunks_exact(dim)
                .enumerate()
                .map(|(j, r)| (dot(q, r), j)),
        );
        // Most similar first, then the lower train index (similarities are finite; -0 and
        // +0 compare equal).
        let order = |a: &(f32, usize), b: &(f32, usize)| {
            b.0.partial_cmp(&a.0)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.1.cmp(&b.1))
        };
        if k < n_train {
            sims.select_nth_unstable_by(k - 1, order);
        }
        let nearest = &mut sims[..k];
        nearest.sort_unstable_by(order);
        // exp((sim - max) / t): the same argmax as exp(sim / t), without overflow.
        let top = nearest[0].0 as f64;
        votes.fill(0.0);
        for &(s, j) in nearest.iter() {
            votes[train_y[j] as usize] += ((s as f64 - top) / t).exp();
        }
        *p = argmax(&votes).unwrap_or(0) as i64;
    }
}

/// The rows of `x` scaled to unit L2 norm (zero rows stay zero).
pub(crate) fn normalised(x: &[f32], dim: usize) -> Vec<f32> {
    let mut out = x.to_vec();
    for row in out.chunks_exact_mut(dim) {
        let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        if norm > 0.0 {
            for v in row.iter_mut() {
                *v = (*v as f64 / norm) as f32;
            }
        }
    }
    out
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums: vectorises, and the order is fixed so results are reproducible.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Train points on the unit circle (2-D) at given angles (degrees), with labels.
    fn circle(angles: &[f64], scale: f32) -> Vec<f32> {
        angles
            .iter()
            .flat_map(|a| {
                let r = a.to_radians();
                [scale * r.cos() as f32, scale * r.sin() as f32]
            })
            .collect()
    }

    #[test]
    fn knn_on_a_hand_made_example() {
        // Class 0 near 0 degrees, class 1 near 90, class 2 at 180; lengths vary to check the
        // normalisation (cosine, not Euclidean).
        let train = [
            circle(&[0.0, 10.0, -10.0], 1.0),
            circle(&[90.0, 80.0], 5.0),
            circle(&[180.0], 0.1),
        ]
        .concat();
        let train_y = [0, 0, 0, 1, 1, 2];
        // Test at 5, 85, 170 degrees (lengths 3, 0.2, 7) and a zero vector.
        let test = [
            circle(&[5.0, 85.0], 3.0),
            circle(&[170.0], 7.0),
            vec![0.0, 0.0],
        ]
        .concat();
        let test_y = [0, 1, 2, 0];
        // k = 1: nearest neighbours 0/10 deg (class 0), 80/90 (class 1), 180 (class 2); the
        // zero vector has similarity 0 to all: the first train row (class 0) wins the tie.
        assert_eq!(
            knn_top1(&train, &train_y, &test, &test_y, 2, 3, 1, 0.07),
            100.0
        );
        assert_eq!(
            knn_predict(&train, &train_y, &test, 2, 3, 1, 0.07).unwrap(),
            [0, 1, 2, 0]
        );
        // k = 6 with a large t: nearly unweighted majority -> class 0 (3 votes) everywhere.
        assert_eq!(
            knn_predict(&train, &train_y, &test, 2, 3, 6, 1e6).unwrap(),
            [0, 0, 0, 0]
        );
        assert_eq!(
            knn_top1(&train, &train_y, &test, &test_y, 2, 3, 6, 1e6),
            50.0
        );
        // k = 3 at 170 deg: neighbours 180 (sim cos 10 = 0.985), 90 (cos 80 = 0.174) and 80
        // (cos 90 = 0); votes: class 2 exp(0.985 / t), class 1 exp(0.174 / t) + exp(0).
        // t = 0.07 and t = 1 (2.68 against 2.19): class 2; t = 10 (1.10 against 2.02): class 1.
        let q = circle(&[170.0], 1.0);
        assert_eq!(
            knn_predict(&train, &train_y, &q, 2, 3, 3, 0.07).unwrap(),
            [2]
        );
        assert_eq!(
            knn_predict(&train, &train_y, &q, 2, 3, 3, 1.0).unwrap(),
            [2]
        );
        assert_eq!(
            knn_predict(&train, &train_y, &q, 2, 3, 3, 10.0).unwrap(),
            [1]
        );
        // k beyond the train set: all of them.
        assert_eq!(
            knn_predict(&train, &train_y, &q, 2, 3, 100, 1e6).unwrap(),
            [0]
        );
    }

    #[test]
    fn knn_refuses_what_does_not_fit() {
        let train = [1.0, 0.0, 0.0, 1.0];
        let y = [0, 1];
        let q = [1.0, 0.1];
        assert!(knn_top1(&train, &y, &q, &[0], 2, 2, 1, 0.07) == 100.0);
        assert!(knn_top1(&train, &y, &q, &[0], 2, 2, 0, 0.07).is_nan());
        assert!(knn_top1(&train, &y, &q, &[0], 2, 2, 1, 0.0).is_nan());
        assert!(
            knn_top1(&train, &y, &q, &[0], 2, 1, 1, 0.07).is_nan(),
            "label 1 of 1 class"
        );
        assert!(knn_top1(&train, &y[..1], &q, &[0], 2, 2, 1, 0.07).is_nan());
        assert!(knn_top1(&train, &y, &q, &[0, 1], 2, 2, 1, 0.07).is_nan());
        assert!(knn_top1(&train, &y, &[f32::NAN, 0.0], &[0], 2, 2, 1, 0.07).is_nan());
        assert!(knn_top1(&train, &y, &[], &[], 2, 2, 1, 0.07).is_nan());
    }

    #[test]
    fn splitting_over_threads_changes_nothing() {
        let mut rng = crate::eval::metrics::SplitMix::new(12);
        let mut uniform = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
                .collect()
        };
        let (dim, classes, n_train, n_test) = (10, 7, 150, 333);
        let train = uniform(n_train * dim);
        let test = uniform(n_test * dim);
        let train_y: Vec<i64> = (0..n_train as i64).map(|i| (i * 5) % classes).collect();
        let pred = knn_predict(&train, &train_y, &test, dim, classes as usize, 9, 0.1).unwrap();
        let mut one = vec![-1; n_test];
        let (a, b) = (normalised(&train, dim), normalised(&test, dim));
        predict_rows(&b, &a, &train_y, &mut one, dim, classes as usize, 9, 0.1);
        assert_eq!(pred, one);
        let mut seen = one.clone();
        seen.sort();
        seen.dedup();
        assert!(seen.len() > 3, "varied predictions: {seen:?}");
    }

    #[test]
    fn the_dot_product_handles_remainders() {
        let a: Vec<f32> = (0..11).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..11).map(|i| 1.0 + i as f32 * 0.5).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert_eq!(dot(&a, &b), want);
    }
}
