//! 3D convolution and pooling on CUDA against the CPU: forward and every gradient (input,
//! weight, bias; pooling inputs) at odd channel counts (1, 3, 5, 33, 65: partial 64-wide tiles),
//! odd spatial sizes (1, 7, 9, 31), every kernel shape the models use ((1,k,k), (k,1,1),
//! (9,1,1), (2,3,1), (1,1,1)), strides 1 and 2, padding 0 and 1; f32 and f64; run-to-run
//! determinism of the split-K weight gradient. Skips without a GPU.

mod common;
use common::gpu::*;
use rcmcl::engine::ops::conv::{Conv3dParams, Pool3dParams};
use rcmcl::engine::{DType, Device, Tensor};

/// (input dims, weight dims, stride, padding).
type Case = ([usize; 5], [usize; 5], [usize; 3], [usize; 3]);

fn conv_cases() -> Vec<Case> {
    vec![
        ([2, 3, 3, 7, 7], [5, 3, 1, 3, 3], [1, 1, 1], [0, 1, 1]),
        ([1, 5, 7, 3, 3], [3, 5, 3, 1, 1], [1, 1, 1], [1, 0, 0]),
        ([2, 1, 9, 4, 1], [3, 1, 9, 1, 1], [1, 1, 1], [4, 0, 0]),
        ([1, 3, 4, 5, 3], [1, 3, 2, 3, 1], [2, 2, 1], [1, 1, 0]),
        ([2, 3, 1, 7, 9], [5, 3, 1, 1, 1], [1, 2, 2], [0, 0, 0]),
        ([1, 1, 5, 9, 7], [1, 1, 3, 3, 3], [2, 2, 2], [1, 1, 1]),
        ([3, 5, 1, 1, 1], [3, 5, 1, 1, 1], [1, 1, 1], [0, 0, 0]),
        ([1, 3, 2, 2, 2], [5, 3, 3, 3, 3], [1, 1, 1], [1, 1, 1]),
        // Several tiles along every GEMM dimension, partial last tiles.
        ([2, 33, 5, 9, 9], [65, 33, 1, 3, 3], [1, 1, 1], [0, 1, 1]),
        ([3, 65, 7, 7, 7], [33, 65, 3, 1, 1], [2, 1, 1], [1, 0, 0]),
        ([2, 17, 9, 31, 1], [70, 17, 9, 1, 1], [1, 1, 1], [4, 0, 0]),
        ([4, 16, 8, 14, 14], [64, 16, 1, 3, 3], [1, 2, 2], [0, 1, 1]),
    ]
}

#[test]
fn conv3d_forward_and_backward() {
    on_each_gpu("conv3d_forward_and_backward", |device| {
        for (t, (xd, wd, s, p)) in conv_cases().into_iter().enumerate() {
            let params = Conv3dParams::new(s, p);
            let inputs = [
                randn(&xd, 10 + t as u64),
                randn(&wd, 20 + t as u64),
                randn(&[wd[0]], 30 + t as u64),
            ];
            check_agrees(
                &format!("conv3d {xd:?} {wd:?} {s:?} {p:?}"),
                device,
                &inputs,
                |v| v[0].conv3d(&v[1], Some(&v[2]), params),
            );
            check_agrees(
                &format!("conv3d no bias {xd:?} {wd:?}"),
                device,
                &inputs[..2],
                |v| v[0].conv3d(&v[1], None, params),
            );
        }
    });
}

#[test]
fn conv3d_f64() {
    on_each_gpu("conv3d_f64", |device| {
        for (t, (xd, wd, s, p)) in conv_cases().into_iter().enumerate().step_by(3) {
            let params = Conv3dParams::new(s, p);
            let f64s = |dims: &[usize], seed| randn(dims, seed).to_dtype(DType::F64).unwrap();
            let inputs = [
                f64s(&xd, 40 + t as u64),
                f64s(&wd, 50 + t as u64),
                f64s(&[wd[0]], 60 + t as u64),
            ];
            check_agrees(&format!("conv3d f64 {xd:?} {wd:?}"), device, &inputs, |v| {
                v[0].conv3d(&v[1], Some(&v[2]), params)
            });
        }
    });
}

#[test]
fn conv3d_weight_gradient_is_deterministic() {
    on_each_gpu("conv3d_weight_gradient_is_deterministic", |device| {
        // A long reduction (batch * Do * Ho * Wo = 8 * 8 * 28 * 28) so it splits.
        let x = randn(&[8, 16, 8, 28, 28], 1).to_device(device).unwrap();
        let w = randn(&[32, 16, 3, 1, 1], 2)
            .to_device(device)
            .unwrap()
            .with_requires_grad()
            .unwrap();
        let params = Conv3dParams::new([1, 1, 1], [1, 0, 0]);
        let grad = || {
            let w = w.detach().with_requires_grad().unwrap();
            x.conv3d(&w, None, params)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            w.grad().unwrap().to_f64_vec().unwrap()
        };
        let (a, b) = (grad(), grad());
        assert!(
            a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
            "two runs differ"
        );
        let cpu = {
            let w = w
                .to_device(Device::Cpu)
                .unwrap()
                .detach()
                .with_requires_grad()
                .unwrap();
            let x = x.to_device(Device::Cpu).unwrap();
            x.conv3d(&w, None, params)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            w.grad().unwrap()
        };
        let gpu = Tensor::from_vec(
            a.iter().map(|&v| v as f32).collect::<Vec<f32>>(),
            cpu.dims().to_vec(),
            Device::Cpu,
        )
        .unwrap()
        .to_device(device)
        .unwrap();
        assert_agree("split-K weight gradient", &cpu, &gpu);
    });
}

fn pool_cases() -> Vec<([usize; 5], Pool3dParams)> {
    vec![
        ([2, 3, 4, 6, 6], Pool3dParams::new([2, 2, 2])),
        (
            [1, 2, 5, 7, 7],
            Pool3dParams::new([3, 3, 3])
                .with_stride([2, 2, 2])
                .with_padding([1, 1, 1]),
        ),
        (
            [1, 1, 9, 1, 7],
            Pool3dParams::new([3, 1, 2]).with_stride([1, 1, 2]),
        ),
        (
            [2, 5, 1, 31, 33],
            Pool3dParams::new([1, 3, 3])
                .with_stride([1, 1, 1])
                .with_padding([0, 1, 1]),
        ),
        ([1, 3, 7, 1, 1], Pool3dParams::new([1, 1, 1])),
        ([4, 33, 16, 28, 28], Pool3dParams::new([1, 2, 2])),
    ]
}

#[test]
fn pooling_forward_and_backward() {
    on_each_gpu("pooling_forward_and_backward", |device| {
        for (t, (xd, p)) in pool_cases().into_iter().enumerate() {
            // Continuous random values: ties have probability zero.
            let x = randn(&xd, 70 + t as u64);
            let y = check_agrees(
                &format!("max_pool3d {xd:?} {p:?}"),
                device,
                std::slice::from_ref(&x),
                |v| v[0].max_pool3d(p),
            );
            assert_eq!(y.dtype(), DType::F32);
            let (_, gpu_arg) = x
                .to_device(device)
                .unwrap()
                .max_pool3d_with_indices(p)
                .unwrap();
            let (_, cpu_arg) = x.max_pool3d_with_indices(p).unwrap();
            assert_agree("max_pool3d indices", &cpu_arg, &gpu_arg);
            check_agrees(
                &format!("avg_pool3d {xd:?} {p:?}"),
                device,
                std::slice::from_ref(&x),
                |v| v[0].avg_pool3d(p),
            );
            check_agrees(
                &format!("global_avg_pool3d {xd:?}"),
                device,
                std::slice::from_ref(&x),
                |v| v[0].global_avg_pool3d(),
            );
            let x64 = x.to_dtype(DType::F64).unwrap();
            check_agrees(
                &format!("max_pool3d f64 {xd:?}"),
                device,
                std::slice::from_ref(&x64),
                |v| v[0].max_pool3d(p),
            );
            check_agrees(&format!("avg_pool3d f64 {xd:?}"), device, &[x64], |v| {
                v[0].avg_pool3d(p)
            });
        }
    });
}

#[test]
fn max_pool_nan_propagates_on_the_device() {
    on_each_gpu("max_pool_nan_propagates_on_the_device", |device| {
        let x = Tensor::from_vec(
            vec![1.0f32, f32::NAN, 3.0, 2.0],
            [1, 1, 1, 1, 4],
            Device::Cpu,
        )
        .unwrap();
        let (y, arg) = x
            .to_device(device)
            .unwrap()
            .max_pool3d_with_indices(Pool3dParams::new([1, 1, 2]))
            .unwrap();
        let y = y.to_f64_vec().unwrap();
        assert!(y[0].is_nan());
        assert_eq!(y[1], 3.0);
        assert_eq!(arg.to_f64_vec().unwrap(), vec![1.0, 2.0]);
    });
}
