//! Degradations: dropped streams are zeros and reported, frame dropout, joint noise of the
//! requested sigma, point sparsity, mask ratios, depth holes; on random (never all-zero) data.

use models::data::augment::{Scratch, SkeletonDims};
use models::data::degrade::*;
use models::data::Modality;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn random(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(lo..hi)).collect()
}

#[test]
fn fixed_modality_dropout_zeroes_and_reports_exactly_those() {
    let mut r = rng(1);
    let dims_s = [4, 1, 25, 3];
    let dims_d = [4, 1, 6, 5];
    let dims_p = [4, 10, 3];
    let mut s = random(&mut r, 300, 0.5, 1.0);
    let mut d = random(&mut r, 120, 0.5, 4.0);
    let mut p = random(&mut r, 120, -1.0, 1.0);
    let p_before = p.clone();
    let mut streams = vec![
        StreamMut {
            modality: Modality::Skeleton,
            dims: &dims_s,
            data: &mut s,
        },
        StreamMut {
            modality: Modality::Depth,
            dims: &dims_d,
            data: &mut d,
        },
        StreamMut {
            modality: Modality::Points,
            dims: &dims_p,
            data: &mut p,
        },
    ];
    let deg = Degradations {
        modality_drop: Some(ModalityDrop::Fixed(vec![
            Modality::Skeleton,
            Modality::Depth,
        ])),
        ..Degradations::default()
    };
    let mut dropped = [9.0; 3];
    let report = Report {
        dropped: &mut dropped,
        mask: None,
        clean: None,
    };
    deg.apply(&mut streams, &mut r, &mut Scratch::default(), report)
        .unwrap();
    assert_eq!(dropped, [1.0, 1.0, 0.0]);
    assert!(s.iter().all(|&v| v == 0.0));
    assert!(d.iter().all(|&v| v == 0.0));
    assert_eq!(p, p_before);
}

#[test]
fn random_modality_dropout_drops_sensors_whole_and_keeps_one() {
    let ms = [
        Modality::Skeleton,
        Modality::JointState,
        Modality::Depth,
        Modality::Rgb,
        Modality::Points,
    ];
    let all = ModalityDrop::Random {
        p: 1.0,
        keep_one: true,
    };
    let none = ModalityDrop::Random {
        p: 0.0,
        keep_one: true,
    };
    let half = ModalityDrop::Random {
        p: 0.5,
        keep_one: false,
    };
    let mut kept_sensor = [0usize; 3];
    let mut dropped_count = 0;
    for seed in 0..300 {
        let flags = all.choose(&ms, &mut rng(seed));
        // Depth and RGB go together, as do the skeleton and its joint states.
        assert_eq!(flags[0], flags[1]);
        assert_eq!(flags[2], flags[3]);
        let kept: Vec<usize> = [0, 2, 4].into_iter().filter(|&k| !flags[k]).collect();
        assert_eq!(kept.len(), 1, "{flags:?}");
        kept_sensor[kept[0] / 2] += 1;
        assert!(none.choose(&ms, &mut rng(seed)).iter().all(|&f| !f));
        dropped_count += half.choose(&ms, &mut rng(seed))[4] as usize;
    }
    // Every sensor is sometimes the one kept, and p = 0.5 drops about half the time.
    assert!(kept_sensor.iter().all(|&n| n > 50), "{kept_sensor:?}");
    assert!((110..190).contains(&dropped_count), "{dropped_count}");
    assert!(ModalityDrop::Random {
        p: 1.5,
        keep_one: false
    }
    .check()
    .is_err());
}

#[test]
fn frames_from_t0_on_are_zero() {
    let mut r = rng(2);
    let (frames, per) = (10, 7);
    let src = random(&mut r, frames * per, 0.1, 1.0);
    for t0 in [0, 3, 9, 10, 25] {
        let mut data = src.clone();
        zero_from_frame(&mut data, frames, t0).unwrap();
        for t in 0..frames {
            let f = &data[t * per..(t + 1) * per];
            if t >= t0 {
                assert!(f.iter().all(|&v| v == 0.0), "t0 {t0}, frame {t}");
            } else {
                assert_eq!(f, &src[t * per..(t + 1) * per]);
            }
        }
    }
    let mut bad = vec![1.0; 11];
    assert!(zero_from_frame(&mut bad, 10, 3).is_err());
}

#[test]
fn joint_noise_has_the_requested_sigma() {
    let mut r = rng(3);
    for sigma in [0.02f32, 0.1] {
        let n = 30_000;
        let src = random(&mut r, n * 3, 0.5, 3.0);
        let mut data = src.clone();
        // Every tenth joint missing: it must stay missing.
        for j in (0..n).step_by(10) {
            data[3 * j..3 * j + 3].fill(0.0);
        }
        let missing = data.clone();
        let dims = [n, 1, 1, 3];
        let deg = Degradations {
            joint_noise: Some(sigma),
            ..Degradations::default()
        };
        let mut streams = [StreamMut {
            modality: Modality::Skeleton,
            dims: &dims,
            data: &mut data,
        }];
        let mut dropped = [0.0];
        let report = Report {
            dropped: &mut dropped,
            mask: None,
            clean: None,
        };
        deg.apply(&mut streams, &mut r, &mut Scratch::default(), report)
            .unwrap();
        let mut diffs = Vec::new();
        for j in 0..n {
            let (a, b) = (&data[3 * j..3 * j + 3], &src[3 * j..3 * j + 3]);
            if j % 10 == 0 {
                assert_eq!(a, &missing[3 * j..3 * j + 3]);
            } else {
                diffs.extend((0..3).map(|k| f64::from(a[k] - b[k])));
            }
        }
        let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
        let std =
            (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / diffs.len() as f64).sqrt();
        assert!(mean.abs() < 0.05 * f64::from(sigma), "mean {mean}");
        assert!(
            (std / f64::from(sigma) - 1.0).abs() < 0.02,
            "std {std} for sigma {sigma}"
        );
    }
}

#[test]
fn sparsity_keeps_the_requested_fraction_of_distinct_points() {
    let mut r = rng(4);
    let (frames, points) = (6, 100);
    let src = random(&mut r, frames * points * 3, -1.0, 1.0);
    for d in [0.3f32, 0.5, 0.7] {
        let mut data = src.clone();
        let dims = [frames, points, 3];
        let deg = Degradations {
            point_sparsity: Some(d),
            ..Degradations::default()
        };
        let mut streams = [StreamMut {
            modality: Modality::Points,
            dims: &dims,
            data: &mut data,
        }];
        let mut dropped = [0.0];
        let report = Report {
            dropped: &mut dropped,
            mask: None,
            clean: None,
        };
        deg.apply(&mut streams, &mut r, &mut Scratch::default(), report)
            .unwrap();
        let keep = ((1.0 - d) * points as f32).round() as usize;
        for (f, s) in data.chunks(points * 3).zip(src.chunks(points * 3)) {
            let originals: Vec<&[f32]> = s.chunks(3).collect();
            let mut distinct: Vec<&[f32]> = f.chunks(3).collect();
            assert!(distinct.iter().all(|p| originals.contains(p)));
            distinct.sort_by(|a, b| a.partial_cmp(b).unwrap());
            distinct.dedup();
            assert_eq!(distinct.len(), keep, "D = {d}");
        }
    }
}

#[test]
fn masks_have_the_requested_ratio() {
    let mut r = rng(5);
    let dims = SkeletonDims {
        frames: 20,
        bodies: 2,
        joints: 25,
    };
    let cells = 20 * 2 * 25;
    let mut mask = vec![0.0; cells];
    let mut s = Scratch::default();
    for ratio in [0.0f32, 0.1, 0.4, 0.9, 1.0] {
        skeleton_mask(MaskKind::Joints, ratio, dims, &mut r, &mut mask, &mut s).unwrap();
        let n = mask.iter().filter(|&&m| m == 1.0).count();
        assert_eq!(n, (ratio * cells as f32).round() as usize);
        assert!(mask.iter().all(|&m| m == 0.0 || m == 1.0));

        skeleton_mask(MaskKind::Frames, ratio, dims, &mut r, &mut mask, &mut s).unwrap();
        let frames: Vec<bool> = mask.chunks(50).map(|f| f[0] == 1.0).collect();
        for (f, &on) in mask.chunks(50).zip(&frames) {
            assert!(f.iter().all(|&m| (m == 1.0) == on), "a frame half masked");
        }
        let n = frames.iter().filter(|&&on| on).count();
        assert_eq!(n, (ratio * 20.0).round() as usize);
    }
    // Different draws mask different joints.
    let mut other = vec![0.0; cells];
    skeleton_mask(MaskKind::Joints, 0.4, dims, &mut r, &mut mask, &mut s).unwrap();
    skeleton_mask(MaskKind::Joints, 0.4, dims, &mut r, &mut other, &mut s).unwrap();
    assert_ne!(mask, other);
    assert!(skeleton_mask(MaskKind::Joints, 1.2, dims, &mut r, &mut mask, &mut s).is_err());
}

#[test]
fn masking_reports_the_mask_and_the_clean_skeleton() {
    let mut r = rng(6);
    let dims = [8, 1, 25, 3];
    let src = random(&mut r, 8 * 25 * 3, 0.2, 2.0);
    let mut data = src.clone();
    let deg = Degradations {
        joint_noise: Some(0.05),
        skeleton_mask: Some(SkeletonMask {
            modality: Modality::Skeleton,
            kind: MaskKind::Joints,
            ratio: 0.25,
        }),
        ..Degradations::default()
    };
    deg.check(&[Modality::Skeleton]).unwrap();
    assert!(deg.check(&[Modality::Points]).is_err());
    let mut streams = [StreamMut {
        modality: Modality::Skeleton,
        dims: &dims,
        data: &mut data,
    }];
    let (mut dropped, mut mask, mut clean) = ([0.0], vec![0.0; 200], vec![0.0; 600]);
    let report = Report {
        dropped: &mut dropped,
        mask: Some(&mut mask),
        clean: Some(&mut clean),
    };
    deg.apply(&mut streams, &mut r, &mut Scratch::default(), report)
        .unwrap();
    assert_eq!(
        clean, src,
        "the target is the skeleton before any degradation"
    );
    assert_eq!(mask.iter().filter(|&&m| m == 1.0).count(), 50);
    for (p, &m) in data.chunks(3).zip(&mask) {
        if m == 1.0 {
            assert_eq!(p, [0.0; 3]);
        } else {
            assert!(p.iter().all(|&v| v != 0.0));
        }
    }
    let mut data2 = src.clone();
    apply_skeleton_mask(&mut data2, &mask).unwrap();
    assert!(apply_skeleton_mask(&mut data2, &mask[..10]).is_err());
}

#[test]
fn depth_holes_only_zero_pixels_in_blobs() {
    let mut r = rng(7);
    let (frames, h, w) = (5, 40, 50);
    let src = random(&mut r, frames * h * w, 0.5, 4.0);
    let mut data = src.clone();
    let holes = DepthHoles::default();
    depth_holes(&mut data, frames, h, w, &holes, &mut r).unwrap();
    for (f, s) in data.chunks(h * w).zip(src.chunks(h * w)) {
        let zeros = f.iter().filter(|&&v| v == 0.0).count();
        // At least one disc of radius >= 2 px, at most three of radius <= 6 px.
        assert!((4..=3 * 37 * 4).contains(&zeros), "{zeros} zeros");
        for (a, b) in f.iter().zip(s) {
            assert!(*a == 0.0 || a == b);
        }
    }
    let bad = DepthHoles {
        max_holes: 0,
        ..DepthHoles::default()
    };
    assert!(depth_holes(&mut data, frames, h, w, &bad, &mut r).is_err());
    assert!(depth_holes(&mut data, frames, h + 1, w, &holes, &mut r).is_err());
}

#[test]
fn degradations_draw_the_same_for_the_same_seed() {
    let src = random(&mut rng(8), 4 * 30 * 3, -1.0, 1.0);
    let dims = [4, 30, 3];
    let deg = Degradations {
        point_sparsity: Some(0.5),
        ..Degradations::default()
    };
    let run = |seed| {
        let mut data = src.clone();
        let mut streams = [StreamMut {
            modality: Modality::Points,
            dims: &dims,
            data: &mut data,
        }];
        let mut dropped = [0.0];
        let report = Report {
            dropped: &mut dropped,
            mask: None,
            clean: None,
        };
        deg.apply(
            &mut streams,
            &mut rng(seed),
            &mut Scratch::default(),
            report,
        )
        .unwrap();
        data
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}
