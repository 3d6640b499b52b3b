//! Point-cloud ops on CUDA against the CPU reference: FPS and ball query indices compared
//! exactly (the distance arithmetic is rounded identically on both devices) at odd sizes and on
//! every FPS kernel variant (registers K = 1..32, the global-scratch one), with and without a
//! seeded start, f32 and f64; grouping and neighbourhood max-pool forward and backward with
//! `check_agrees` (repeated indices, so the backward's atomics accumulate). Skips without a GPU.

mod common;
use common::gpu::*;
use rcmcl::engine::ops::pointnet::{
    ball_query, farthest_point_sample, group_points, group_points_grad, neighbour_max_pool,
};
use rcmcl::engine::{DType, Device, Tensor};

fn f64s(t: Tensor) -> Tensor {
    t.to_dtype(DType::F64).unwrap()
}

fn rand_idx(b: usize, m: usize, s: usize, n: usize, seed: u64) -> Tensor {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let v: Vec<i64> = (0..b * m * s)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as i64
        })
        .collect();
    Tensor::from_vec(v, [b, m, s], Device::Cpu).unwrap()
}

#[test]
fn fps_indices_match_the_cpu_exactly() {
    on_each_gpu("fps_indices_match_the_cpu_exactly", |device| {
        // 16384 is the 32-per-thread register kernel, 20000 the global-scratch one.
        let sizes: Vec<usize> = ODD_SIZES
            .iter()
            .copied()
            .chain([2048, 16384, 20000])
            .collect();
        for (k, &n) in sizes.iter().enumerate() {
            for &m in &[1usize, 31, 200] {
                let m = m.min(n);
                let pts = randn(&[3, n, 3], 100 + k as u64);
                for seed in [None, Some(5u64)] {
                    check_agrees(
                        &format!("fps n {n} m {m} {seed:?}"),
                        device,
                        std::slice::from_ref(&pts),
                        |t| farthest_point_sample(&t[0], m, seed),
                    );
                    check_agrees(
                        &format!("fps f64 n {n} m {m} {seed:?}"),
                        device,
                        &[f64s(pts.clone())],
                        |t| farthest_point_sample(&t[0], m, seed),
                    );
                }
            }
        }
        // Duplicates: after the distinct points, index 0 repeats on both devices.
        let p: Vec<f32> = (0..40).flat_map(|i| [(i % 3) as f32, 0.0, 1.0]).collect();
        let pts = Tensor::from_vec(p, [1, 40, 3], Device::Cpu).unwrap();
        let got = check_agrees("fps duplicates", device, &[pts], |t| {
            farthest_point_sample(&t[0], 10, None)
        });
        assert_eq!(
            got.to_vec::<i64>().unwrap(),
            vec![0, 2, 1, 0, 0, 0, 0, 0, 0, 0]
        );
    });
}

#[test]
fn ball_query_indices_match_the_cpu_exactly() {
    on_each_gpu("ball_query_indices_match_the_cpu_exactly", |device| {
        for (k, &n) in ODD_SIZES.iter().enumerate() {
            for &m in &[1usize, 31] {
                for &ns in &[1usize, 16, 33] {
                    let pts = randn(&[2, n, 3], 200 + k as u64);
                    // Centres: the first m points where there are enough, else random ones.
                    let ctr = if m <= n {
                        pts.narrow(1, 0, m).unwrap()
                    } else {
                        randn(&[2, m, 3], 300)
                    };
                    for radius in [0.05, 0.8] {
                        let name = format!("ball_query n {n} m {m} ns {ns} r {radius}");
                        check_agrees(&name, device, &[pts.clone(), ctr.clone()], |t| {
                            ball_query(&t[0], &t[1], radius, ns)
                        });
                        check_agrees(
                            &format!("{name} f64"),
                            device,
                            &[f64s(pts.clone()), f64s(ctr.clone())],
                            |t| ball_query(&t[0], &t[1], radius, ns),
                        );
                    }
                }
            }
        }
    });
}

#[test]
fn grouping_forward_and_backward_agree() {
    on_each_gpu("grouping_forward_and_backward_agree", |device| {
        for &(b, c, n, m, s) in &[
            (1usize, 1usize, 1usize, 1usize, 1usize),
            (2, 3, 33, 31, 16),
            (2, 5, 1023, 31, 33),
            (1, 4, 4097, 33, 16),
        ] {
            let f = randn(&[b, c, n], 400 + n as u64);
            let ix = rand_idx(b, m, s, n, 500 + m as u64);
            let name = format!("group_points {b}x{c}x{n} by {m}x{s}");
            check_agrees(&name, device, &[f.clone(), ix.clone()], |t| {
                group_points(&t[0], &t[1])
            });
            check_agrees(
                &format!("{name} f64"),
                device,
                &[f64s(f), ix.clone()],
                |t| group_points(&t[0], &t[1]),
            );
            let g = randn(&[b, c, m, s], 600);
            check_agrees(&format!("{name} grad op"), device, &[g, ix], |t| {
                group_points_grad(&t[0], &t[1], n)
            });
        }
    });
}

#[test]
fn neighbour_max_pool_forward_and_backward_agree() {
    on_each_gpu("neighbour_max_pool_forward_and_backward_agree", |device| {
        for &(b, c, m, s) in &[
            (1usize, 1usize, 1usize, 1usize),
            (2, 3, 31, 16),
            (2, 7, 33, 33),
            (1, 3, 1023, 5),
            (1, 1, 1, 4097),
        ] {
            let x = randn(&[b, c, m, s], 700 + s as u64);
            let name = format!("max_pool {b}x{c}x{m}x{s}");
            check_agrees(&name, device, std::slice::from_ref(&x), |t| {
                Ok(neighbour_max_pool(&t[0])?.0)
            });
            check_agrees(
                &format!("{name} argmax"),
                device,
                std::slice::from_ref(&x),
                |t| Ok(neighbour_max_pool(&t[0])?.1),
            );
            check_agrees(&format!("{name} f64"), device, &[f64s(x)], |t| {
                Ok(neighbour_max_pool(&t[0])?.0)
            });
        }
        // Ties and NaN: the lowest position; the first NaN.
        let x = Tensor::from_vec(
            vec![1.0f32, 3.0, 3.0, 2.0, 0.0, f32::NAN, 4.0, f32::NAN],
            [1, 1, 2, 4],
            Device::Cpu,
        )
        .unwrap();
        let (v, a) = neighbour_max_pool(&x.to_device(device).unwrap()).unwrap();
        assert_eq!(a.to_vec::<i64>().unwrap(), vec![1, 1]);
        let v = v.to_vec::<f32>().unwrap();
        assert_eq!(v[0], 3.0);
        assert!(v[1].is_nan());
    });
}
