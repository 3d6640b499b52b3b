//! Augmentations: each transform's defining property, on random (never all-zero) inputs.

use models::data::augment::*;
use models::data::layouts::KINECT25;
use models::data::DataError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A random skeleton (T, M, 25, 3) about 3 m in front of the camera, no joint missing.
fn skeleton(rng: &mut ChaCha8Rng, frames: usize, bodies: usize) -> Vec<f32> {
    (0..frames * bodies * 25)
        .flat_map(|_| {
            [
                rng.gen_range(-0.8f32..0.8),
                rng.gen_range(-1.0f32..1.0),
                rng.gen_range(2.5f32..3.5),
            ]
        })
        .collect()
}

fn dist(a: &[f32], b: &[f32]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

#[test]
fn shear_matrix_has_unit_diagonal_and_bounded_off_diagonal() {
    let mut r = rng(1);
    for _ in 0..100 {
        let m = shear_matrix(&mut r, 0.5);
        for (i, row) in m.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                if i == j {
                    assert_eq!(v, 1.0);
                } else {
                    assert!((-0.5..0.5).contains(&v), "{v}");
                }
            }
        }
    }
    // Not the identity: the entries are drawn.
    assert_ne!(shear_matrix(&mut r, 0.5), IDENTITY);
}

#[test]
fn shear_keeps_the_centre_at_the_origin() {
    let mut r = rng(2);
    let dims = SkeletonDims {
        frames: 4,
        bodies: 1,
        joints: 25,
    };
    let src = skeleton(&mut r, 4, 1);
    let centre = skeleton_centre(&src, 1, 25).unwrap();
    let mut out = vec![0.0; src.len()];
    let mut scratch = Scratch::default();
    for _ in 0..20 {
        let p = SkeletonParams {
            matrix: shear_matrix(&mut r, 0.5),
            ..SkeletonParams::identity(4)
        };
        skeleton_view(
            &src,
            dims,
            Some(centre),
            &p,
            KINECT25.mirror_pairs,
            &mut r,
            &mut out,
            &mut scratch,
        )
        .unwrap();
        // The centre was the mean of the first frame's joints; a linear map keeps a
        // zero-mean set zero-mean.
        let first = &out[..25 * 3];
        for k in 0..3 {
            let mean: f32 = first.iter().skip(k).step_by(3).sum::<f32>() / 25.0;
            assert!(mean.abs() < 1e-5, "axis {k}: centre moved to {mean}");
        }
        // And it did change the skeleton.
        assert!(out.iter().zip(&src).any(|(a, b)| (a - b).abs() > 0.1));
    }
}

#[test]
fn rotation_preserves_bone_lengths() {
    let mut r = rng(3);
    let src = skeleton(&mut r, 3, 2);
    for _ in 0..20 {
        let m = rotation_matrix(
            r.gen_range(-1.0..1.0),
            r.gen_range(-1.0..1.0),
            r.gen_range(-1.0..1.0),
        );
        let mut out = src.clone();
        transform_points(&mut out, &m, [0.0; 3], [0.0; 3]);
        for row in 0..6 {
            for (a, b) in [
                (0usize, 1usize),
                (1, 20),
                (20, 4),
                (4, 5),
                (0, 16),
                (16, 17),
            ] {
                let o = row * 75;
                let before = dist(&src[o + 3 * a..], &src[o + 3 * b..]);
                let after = dist(&out[o + 3 * a..], &out[o + 3 * b..]);
                assert!((before - after).abs() < 1e-5 * before.max(1.0));
            }
        }
        assert_ne!(out, src);
    }
}

#[test]
fn flip_swaps_left_and_right_and_twice_is_the_identity() {
    let mut r = rng(4);
    let src = skeleton(&mut r, 3, 2);
    let mut once = src.clone();
    flip_skeleton(&mut once, 25, KINECT25.mirror_pairs).unwrap();
    for row in 0..6 {
        let o = row * 75;
        for &(l, rr) in KINECT25.mirror_pairs {
            for (a, b) in [(l, rr), (rr, l)] {
                assert_eq!(once[o + 3 * a], -src[o + 3 * b]);
                assert_eq!(once[o + 3 * a + 1], src[o + 3 * b + 1]);
                assert_eq!(once[o + 3 * a + 2], src[o + 3 * b + 2]);
            }
        }
        // Joints on the midline only mirror.
        for j in [0, 1, 2, 3, 20] {
            assert_eq!(once[o + 3 * j], -src[o + 3 * j]);
            assert_eq!(once[o + 3 * j + 1], src[o + 3 * j + 1]);
        }
    }
    let mut twice = once.clone();
    flip_skeleton(&mut twice, 25, KINECT25.mirror_pairs).unwrap();
    assert_eq!(twice, src);
}

#[test]
fn flip_refuses_pairs_beyond_the_joints() {
    let mut data = vec![1.0; 2 * 17 * 3];
    let err = flip_skeleton(&mut data, 17, KINECT25.mirror_pairs).unwrap_err();
    assert!(matches!(err, DataError::Invalid(_)), "{err}");
}

#[test]
fn mirror_reflects_without_repeating_the_edge() {
    let got: Vec<usize> = (-4..14).map(|i| mirror(i, 10)).collect();
    assert_eq!(got, [4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 8, 7, 6, 5]);
    assert_eq!(mirror(-7, 1), 0);
    assert_eq!(mirror(25, 4), 1);
}

#[test]
fn temporal_crop_pads_by_mirroring() {
    // Frame t holds the value 10 + t in each of its two entries.
    let frames = 10;
    let src: Vec<f32> = (0..frames).flat_map(|t| [10.0 + t as f32; 2]).collect();
    let mut dst = vec![0.0; src.len()];
    let value = |dst: &[f32], j: usize| dst[2 * j] - 10.0;

    // Starting 3 frames before the clip: frames -3, -2, -1 read 3, 2, 1.
    temporal_crop(&src, frames, Window { start: -3, len: 10 }, &mut dst).unwrap();
    let got: Vec<f32> = (0..frames).map(|j| value(&dst, j)).collect();
    assert_eq!(got, [3.0, 2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);

    // Running 2 frames past the end: frames 10, 11 read 8, 7.
    temporal_crop(&src, frames, Window { start: 2, len: 10 }, &mut dst).unwrap();
    let got: Vec<f32> = (0..frames).map(|j| value(&dst, j)).collect();
    assert_eq!(got, [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 8.0, 7.0]);

    // A shorter window is stretched over the clip, interpolating linearly.
    temporal_crop(&src, frames, Window { start: 0, len: 4 }, &mut dst).unwrap();
    for j in 0..frames {
        let want = j as f32 * 3.0 / 9.0;
        assert!((value(&dst, j) - want).abs() < 1e-5);
    }
}

#[test]
fn temporal_crop_windows_stay_within_the_padding() {
    let mut r = rng(5);
    let crop = TemporalCrop::default();
    for _ in 0..1000 {
        let w = crop.sample(&mut r, 50);
        assert!((25..=50).contains(&w.len), "{w:?}");
        assert!(w.start >= -6 && w.start + w.len as isize <= 56, "{w:?}");
    }
}

#[test]
fn temporal_blur_keeps_constant_trajectories_and_missing_joints() {
    let frames = 12;
    let mut r = rng(6);
    // Body 0 still (every frame the same), body 1 missing.
    let pose = skeleton(&mut r, 1, 1);
    let mut data = Vec::new();
    for _ in 0..frames {
        data.extend_from_slice(&pose);
        data.extend(std::iter::repeat_n(0.0, 75));
    }
    let before = data.clone();
    temporal_blur(&mut data, frames, 1.5, &mut Scratch::default()).unwrap();
    for (a, b) in data.iter().zip(&before) {
        assert!((a - b).abs() < 1e-5);
    }
    // A moving joint is smoothed: a single spike gets spread out.
    let mut spike = vec![1.0f32; frames * 3];
    spike[6 * 3] = 5.0;
    temporal_blur(&mut spike, frames, 1.0, &mut Scratch::default()).unwrap();
    assert!(spike[6 * 3] < 5.0 && spike[5 * 3] > 1.0 && spike[7 * 3] > 1.0);
}

#[test]
fn joint_state_view_follows_its_skeleton() {
    let (frames, joints) = (6, 25);
    let states: Vec<u8> = (0..frames * joints).map(|i| (i % 3) as u8).collect();
    let skel: Vec<f32> = (0..frames * joints)
        .flat_map(|i| [1.0 + i as f32, 2.0, 3.0])
        .collect();
    let p = SkeletonParams {
        window: Window { start: -2, len: 6 },
        flip: true,
        ..SkeletonParams::identity(frames)
    };
    let mut out = vec![0.0; states.len()];
    joint_state_view(&states, frames, joints, &p, KINECT25.mirror_pairs, &mut out).unwrap();
    let dims = SkeletonDims {
        frames,
        bodies: 1,
        joints,
    };
    let mut sk_out = vec![0.0; skel.len()];
    skeleton_view(
        &skel,
        dims,
        None,
        &p,
        KINECT25.mirror_pairs,
        &mut rng(0),
        &mut sk_out,
        &mut Scratch::default(),
    )
    .unwrap();
    // Recover, for each output joint, which source joint it came from (the first coordinate
    // is 1 + source index, negated by the flip), and check the state came from there.
    for (k, &s) in out.iter().enumerate() {
        let source = (-sk_out[3 * k] - 1.0).round() as usize;
        assert_eq!(s, f32::from(states[source]), "output joint {k}");
    }
}

#[test]
fn skeleton_sampling_is_reproducible_and_varied() {
    let aug = SkeletonAug::default();
    let a = aug.sample(&mut rng(9), 32);
    assert_eq!(a, aug.sample(&mut rng(9), 32));
    assert_ne!(a, aug.sample(&mut rng(10), 32));
    let flips = (0..400)
        .filter(|&s| aug.sample(&mut rng(s), 32).flip)
        .count();
    assert!((150..250).contains(&flips), "{flips} flips of 400");
}

#[test]
fn random_resized_crop_boxes_fit_and_respect_the_ranges() {
    let mut r = rng(11);
    for _ in 0..500 {
        let b = random_resized_crop(&mut r, 48, 64, (0.3, 1.0), (0.75, 4.0 / 3.0));
        assert!(b.height > 0 && b.width > 0);
        assert!(b.top + b.height <= 48 && b.left + b.width <= 64, "{b:?}");
        let area = (b.height * b.width) as f32 / (48.0 * 64.0);
        assert!((0.25..=1.0).contains(&area), "{b:?}: area {area}");
        let aspect = b.width as f32 / b.height as f32;
        assert!((0.65..=1.5).contains(&aspect), "{b:?}: aspect {aspect}");
    }
}

fn image_dims(frames: usize, channels: usize, height: usize, width: usize) -> ImageDims {
    ImageDims {
        frames,
        channels,
        height,
        width,
    }
}

#[test]
fn identity_views_are_the_record_in_metres_and_unit_range() {
    let mut r = rng(12);
    let (t, h, w) = (3, 5, 7);
    let depth: Vec<u16> = (0..t * h * w).map(|_| r.gen_range(0..5000)).collect();
    let rgb: Vec<u8> = (0..t * 3 * h * w).map(|_| r.gen()).collect();
    let p = RgbdParams::identity(t, h, w);
    let mut s = Scratch::default();
    let mut out = vec![0.0; t * h * w];
    depth_view(&depth, image_dims(t, 1, h, w), &p, (h, w), &mut out, &mut s).unwrap();
    for (o, &d) in out.iter().zip(&depth) {
        assert_eq!(*o, f32::from(d) * 0.001);
    }
    let mut out = vec![0.0; t * 3 * h * w];
    rgb_view(
        &rgb,
        image_dims(t, 3, h, w),
        &p,
        None,
        (h, w),
        &mut out,
        &mut s,
    )
    .unwrap();
    for (o, &c) in out.iter().zip(&rgb) {
        assert!((o - f32::from(c) / 255.0).abs() < 1e-6);
    }
}

#[test]
fn crops_have_the_requested_output_shape_and_flip_mirrors() {
    let mut r = rng(13);
    let (t, h, w) = (4, 20, 30);
    let rgb: Vec<u8> = (0..t * 3 * h * w).map(|_| r.gen()).collect();
    let depth: Vec<u16> = (0..t * h * w).map(|_| r.gen_range(1..5000)).collect();
    let aug = RgbdAug::default();
    let mut s = Scratch::default();
    for (oh, ow) in [(20, 30), (16, 16), (9, 41)] {
        let p = aug.sample(&mut r, t, h, w);
        let mut out = vec![f32::NAN; t * 3 * oh * ow];
        rgb_view(
            &rgb,
            image_dims(t, 3, h, w),
            &p,
            None,
            (oh, ow),
            &mut out,
            &mut s,
        )
        .unwrap();
        assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
        let mut dout = vec![f32::NAN; t * oh * ow];
        depth_view(
            &depth,
            image_dims(t, 1, h, w),
            &p,
            (oh, ow),
            &mut dout,
            &mut s,
        )
        .unwrap();
        // Nearest: every depth is one of the stored ones.
        assert!(dout
            .iter()
            .all(|v| depth.iter().any(|&d| f32::from(d) * 0.001 == *v)));
        // The same geometry flipped gives each row reversed.
        let flipped = RgbdParams {
            flip: !p.flip,
            ..p.clone()
        };
        let mut fout = vec![0.0; dout.len()];
        depth_view(
            &depth,
            image_dims(t, 1, h, w),
            &flipped,
            (oh, ow),
            &mut fout,
            &mut s,
        )
        .unwrap();
        for (a, b) in dout.chunks(ow).zip(fout.chunks(ow)) {
            let rev: Vec<f32> = b.iter().rev().copied().collect();
            assert_eq!(a, rev.as_slice());
        }
    }
    // A wrong output size is an error, not a panic.
    let p = RgbdParams::identity(t, h, w);
    let mut out = vec![0.0; 5];
    assert!(rgb_view(
        &rgb,
        image_dims(t, 3, h, w),
        &p,
        None,
        (h, w),
        &mut out,
        &mut s
    )
    .is_err());
}

#[test]
fn colour_jitter_keeps_values_in_range() {
    let mut r = rng(14);
    let (t, h, w) = (3, 8, 8);
    let rgb: Vec<u8> = (0..t * 3 * h * w).map(|_| r.gen()).collect();
    let p = RgbdParams::identity(t, h, w);
    let mut s = Scratch::default();
    let mut plain = vec![0.0; rgb.len()];
    rgb_view(
        &rgb,
        image_dims(t, 3, h, w),
        &p,
        None,
        (h, w),
        &mut plain,
        &mut s,
    )
    .unwrap();
    let mut out = vec![0.0; rgb.len()];
    for (b, c, sat) in [
        (1.4, 1.4, 1.4),
        (0.6, 0.6, 0.6),
        (1.4, 0.6, 0.0),
        (2.0, 2.0, 2.0),
    ] {
        let j = JitterParams {
            brightness: b,
            contrast: c,
            saturation: sat,
        };
        rgb_view(
            &rgb,
            image_dims(t, 3, h, w),
            &p,
            Some(&j),
            (h, w),
            &mut out,
            &mut s,
        )
        .unwrap();
        assert!(out.iter().all(|v| (0.0..=1.0).contains(v)), "{j:?}");
        assert_ne!(out, plain);
    }
    // Factors of one leave the image as it is.
    let one = JitterParams {
        brightness: 1.0,
        contrast: 1.0,
        saturation: 1.0,
    };
    rgb_view(
        &rgb,
        image_dims(t, 3, h, w),
        &p,
        Some(&one),
        (h, w),
        &mut out,
        &mut s,
    )
    .unwrap();
    for (a, b) in out.iter().zip(&plain) {
        assert!((a - b).abs() < 1e-6);
    }
    // Brightness alone scales (then clamps).
    let bright = JitterParams {
        brightness: 0.5,
        ..one
    };
    rgb_view(
        &rgb,
        image_dims(t, 3, h, w),
        &p,
        Some(&bright),
        (h, w),
        &mut out,
        &mut s,
    )
    .unwrap();
    for (a, b) in out.iter().zip(&plain) {
        assert!((a - 0.5 * b).abs() < 1e-6);
    }
}

#[test]
fn depth_noise_leaves_holes_and_stays_non_negative() {
    let mut r = rng(15);
    let mut data: Vec<f32> = (0..10_000)
        .map(|i| {
            if i % 7 == 0 {
                0.0
            } else {
                r.gen_range(0.5..4.5)
            }
        })
        .collect();
    let before = data.clone();
    depth_noise(&mut data, 0.01, &mut r);
    let mut moved = 0;
    for (a, b) in data.iter().zip(&before) {
        if *b == 0.0 {
            assert_eq!(*a, 0.0);
        } else {
            assert!(*a >= 0.0 && (a - b).abs() < 0.05);
            moved += usize::from(a != b);
        }
    }
    assert!(moved > 8000);
}

/// A random point-cloud clip (T, P, 3) with all points distinct.
fn cloud(rng: &mut ChaCha8Rng, frames: usize, points: usize) -> Vec<f32> {
    (0..frames * points)
        .flat_map(|_| {
            [
                rng.gen_range(-1.0f32..1.0),
                rng.gen_range(-1.0f32..1.0),
                rng.gen_range(2.0f32..4.0),
            ]
        })
        .collect()
}

#[test]
fn point_scaling_stays_within_its_bounds() {
    let mut r = rng(16);
    let src = cloud(&mut r, 4, 50);
    let aug = PointsAug::default();
    let mut s = Scratch::default();
    let mut out = vec![0.0; src.len()];
    for _ in 0..20 {
        let p = aug.sample(&mut r);
        assert!(p.scale.iter().all(|s| (0.9..=1.1).contains(s)));
        let only_scale = PointsParams {
            scale: p.scale,
            ..PointsParams::identity()
        };
        points_view(&src, 50, &only_scale, &mut r, &mut out, &mut s).unwrap();
        let c = centroid(&src);
        for (a, b) in out.chunks(3).zip(src.chunks(3)) {
            for k in 0..3 {
                let ratio = (a[k] - c[k]) / (b[k] - c[k]);
                if (b[k] - c[k]).abs() > 1e-2 {
                    assert!((0.9 - 1e-3..=1.1 + 1e-3).contains(&ratio), "{ratio}");
                }
            }
        }
        let moved = centroid(&out);
        assert!(
            (0..3).all(|k| (moved[k] - c[k]).abs() < 1e-4),
            "the centroid moved"
        );
    }
}

#[test]
fn point_rotation_is_about_the_vertical_axis() {
    let mut r = rng(17);
    let src = cloud(&mut r, 2, 40);
    let p = PointsParams {
        angle: 0.7,
        ..PointsParams::identity()
    };
    let mut out = vec![0.0; src.len()];
    points_view(&src, 40, &p, &mut r, &mut out, &mut Scratch::default()).unwrap();
    let c = centroid(&src);
    for (a, b) in out.chunks(3).zip(src.chunks(3)) {
        assert!((a[1] - b[1]).abs() < 1e-5, "height changed");
        let ra = ((a[0] - c[0]).powi(2) + (a[2] - c[2]).powi(2)).sqrt();
        let rb = ((b[0] - c[0]).powi(2) + (b[2] - c[2]).powi(2)).sqrt();
        assert!((ra - rb).abs() < 1e-4, "distance from the axis changed");
    }
}

#[test]
fn point_dropout_keeps_the_count_and_only_original_points() {
    let mut r = rng(18);
    let (frames, points) = (5, 64);
    let src = cloud(&mut r, frames, points);
    for fraction in [0.0, 0.1, 0.5, 0.9, 1.0] {
        let mut data = src.clone();
        drop_points(&mut data, points, fraction, &mut r, &mut Scratch::default()).unwrap();
        assert_eq!(data.len(), src.len());
        let keep = (((1.0 - fraction) * points as f32).round() as usize).max(1);
        for (f, s) in data.chunks(points * 3).zip(src.chunks(points * 3)) {
            let originals: Vec<&[f32]> = s.chunks(3).collect();
            for p in f.chunks(3) {
                assert!(originals.contains(&p), "a point that was not in its frame");
            }
            let mut distinct: Vec<&[f32]> = f.chunks(3).collect();
            distinct.sort_by(|a, b| a.partial_cmp(b).unwrap());
            distinct.dedup();
            assert_eq!(distinct.len(), keep, "fraction {fraction}");
        }
    }
    let mut data = src.clone();
    assert!(drop_points(&mut data, points, 1.5, &mut r, &mut Scratch::default()).is_err());
}

#[test]
fn point_jitter_is_clipped_and_skips_missing_points() {
    let mut r = rng(19);
    // Big enough for several noise blocks; every seventh point missing.
    let mut data = cloud(&mut r, 8, 300);
    for p in data.chunks_mut(3).step_by(7) {
        p.fill(0.0);
    }
    let before = data.clone();
    jitter_points(&mut data, 0.05, 0.02, &mut r);
    let mut unmoved = 0;
    for (a, b) in data.chunks(3).zip(before.chunks(3)) {
        if b == [0.0; 3] {
            assert_eq!(a, [0.0; 3]);
            continue;
        }
        for k in 0..3 {
            assert!((a[k] - b[k]).abs() <= 0.02 + 1e-6);
            unmoved += usize::from(a[k] == b[k]);
        }
    }
    // A 12-bit quantile is never exactly 0, so every present coordinate moves.
    assert_eq!(unmoved, 0);
}

#[test]
fn bad_shapes_are_errors() {
    let mut s = Scratch::default();
    let dims = SkeletonDims {
        frames: 2,
        bodies: 1,
        joints: 25,
    };
    let mut out = vec![0.0; 10];
    let p = SkeletonParams::identity(2);
    let src = vec![1.0; 150];
    assert!(skeleton_view(&src, dims, None, &p, &[], &mut rng(0), &mut out, &mut s).is_err());
    assert!(SkeletonDims::from_dims(&[2, 1, 25]).is_err());
    let mut pts = vec![1.0; 20];
    assert!(drop_points(&mut pts, 3, 0.5, &mut rng(0), &mut s).is_err());
    let bad = SkeletonAug {
        flip_p: 1.5,
        ..SkeletonAug::default()
    };
    assert!(bad.check().is_err());
    assert!(SkeletonAug::default().check().is_ok());
    assert!(RgbdAug::default().check().is_ok());
    assert!(PointsAug::default().check().is_ok());
}
