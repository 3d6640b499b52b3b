//! The CUDA backend's plumbing: device detection, host/device transfers, constructors on the
//! device, the caching allocator, output poisoning and the kernel cache. Op agreement lives in
//! the tests/cuda_<family>.rs files.

mod common;

use common::gpu::on_each_gpu;
use rcmcl::engine::{DType, Device, Error, Tensor};

#[test]
fn asking_for_a_missing_device_is_an_error_never_a_panic() {
    // Ordinal 4096 never exists; with no driver or GPU, every ordinal is an error too.
    let err = Device::cuda(4096).expect_err("no machine has 4097 GPUs");
    let Error::CudaUnavailable(msg) = &err else {
        panic!("expected CudaUnavailable, got {err}")
    };
    assert!(!msg.is_empty());
    let x = Tensor::ones([3], DType::F32, Device::Cpu).unwrap();
    assert!(x.to_device(Device::Cuda(4096)).is_err());
    if Device::cuda_devices().is_empty() {
        assert_eq!(Device::best(), Device::Cpu);
        let why = Device::cuda_unavailable_reason().expect("no device, so a reason");
        println!("no CUDA device here: {why}");
        assert!(Tensor::zeros([2], DType::F32, Device::Cuda(0)).is_err());
    } else {
        assert_eq!(Device::best(), Device::Cuda(0));
    }
}

#[test]
fn values_survive_a_round_trip_through_the_device_in_every_dtype() {
    on_each_gpu("values_survive_a_round_trip", |dev| {
        for &n in common::gpu::ODD_SIZES {
            let f: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
            let d: Vec<f64> = (0..n).map(|i| (i as f64 * 0.11).cos() / 7.0).collect();
            let l: Vec<i64> = (0..n as i64).map(|i| i * 7919 - 40_000).collect();
            let back = |t: Tensor| t.to_device(dev).unwrap().to_device(Device::Cpu).unwrap();
            let tf = Tensor::from_vec(f.clone(), [n], Device::Cpu).unwrap();
            assert_eq!(back(tf).to_vec::<f32>().unwrap(), f);
            let td = Tensor::from_vec(d.clone(), [n], Device::Cpu).unwrap();
            assert_eq!(back(td).to_vec::<f64>().unwrap(), d);
            let tl = Tensor::from_vec(l.clone(), [n], Device::Cpu).unwrap();
            assert_eq!(back(tl).to_vec::<i64>().unwrap(), l);
            // Reading straight from a device tensor copies to the host too.
            let on_dev = Tensor::from_vec(f.clone(), [n], dev).unwrap();
            assert_eq!(on_dev.device(), dev);
            assert_eq!(on_dev.to_vec::<f32>().unwrap(), f);
        }
    });
}

#[test]
fn constructors_and_dtype_conversions_run_on_the_device() {
    on_each_gpu("constructors_and_dtype_conversions", |dev| {
        for dtype in [DType::F32, DType::F64, DType::I64] {
            let t = Tensor::full([33, 31], -2.5, dtype, dev).unwrap();
            assert_eq!(t.device(), dev);
            let want = if dtype == DType::I64 { -2.0 } else { -2.5 };
            assert!(
                t.to_f64_vec().unwrap().iter().all(|&v| v == want),
                "{dtype}"
            );
            let z = Tensor::zeros([1023], dtype, dev).unwrap();
            assert!(z.to_f64_vec().unwrap().iter().all(|&v| v == 0.0));
        }
        let values: Vec<f64> = (0..4097).map(|i| (i as f64 - 2048.0) * 0.75).collect();
        let cpu = Tensor::from_vec(values.clone(), [4097], Device::Cpu).unwrap();
        let gpu = cpu.to_device(dev).unwrap();
        for dtype in [DType::F32, DType::I64, DType::F64] {
            let want = cpu.to_dtype(dtype).unwrap().to_f64_vec().unwrap();
            let got = gpu.to_dtype(dtype).unwrap();
            assert_eq!(got.device(), dev);
            assert_eq!(got.to_f64_vec().unwrap(), want, "f64 -> {dtype}");
        }
    });
}

#[test]
fn a_gradient_flows_back_across_to_device() {
    on_each_gpu("a_gradient_flows_back_across_to_device", |dev| {
        let x = Tensor::from_vec(vec![1.0f32, -2.0, 3.5], [3], Device::Cpu)
            .unwrap()
            .with_requires_grad()
            .unwrap();
        let on_dev = x.to_device(dev).unwrap();
        let g = Tensor::from_vec(vec![0.5f32, 2.0, -1.0], [3], dev).unwrap();
        on_dev.backward_with(&g).unwrap();
        let grad = x.grad().expect("x requires a gradient");
        assert_eq!(grad.device(), Device::Cpu);
        assert_eq!(grad.to_vec::<f32>().unwrap(), vec![0.5, 2.0, -1.0]);
    });
}

#[cfg(feature = "cuda")]
mod allocator {
    use super::*;
    use rcmcl::engine::cuda;

    #[test]
    fn freed_blocks_are_reused_and_counted() {
        on_each_gpu("freed_blocks_are_reused_and_counted", |dev| {
            // An odd size no other test uses, so parallel tests do not take our block.
            let n = 777_777;
            let a = Tensor::zeros([n], DType::F32, dev).unwrap();
            let mid = cuda::memory_stats(dev).unwrap();
            assert!(mid.in_use_bytes >= n * 4);
            assert!(mid.peak_bytes >= n * 4);
            drop(a);
            let freed = cuda::memory_stats(dev).unwrap();
            assert!(
                freed.cached_bytes >= n * 4,
                "the block went back to the cache"
            );
            let hits = freed.cache_hits;
            let b = Tensor::zeros([n], DType::F32, dev).unwrap();
            let again = cuda::memory_stats(dev).unwrap();
            assert!(
                again.cache_hits > hits,
                "the second allocation came from the cache"
            );
            drop(b);
            cuda::empty_cache(dev).unwrap();
            let emptied = cuda::memory_stats(dev).unwrap();
            assert!(emptied.driver_frees > again.driver_frees);
        });
    }

    #[test]
    fn asking_for_more_memory_than_the_device_has_is_a_clear_error() {
        on_each_gpu("asking_for_more_memory_than_the_device_has", |dev| {
            // 2^40 f32 = 4 TiB: more than any GPU has.
            let err = Tensor::zeros([1usize << 40], DType::F32, dev).expect_err("4 TiB");
            match &err {
                Error::OutOfMemory { requested, .. } => assert_eq!(*requested, 4usize << 40),
                other => panic!("expected OutOfMemory, got {other}"),
            }
            let msg = err.to_string();
            assert!(
                msg.contains("out of memory") && msg.contains("bytes"),
                "{msg}"
            );
            // The device still works afterwards.
            let t = Tensor::ones([5], DType::F32, dev).unwrap();
            assert_eq!(t.to_vec::<f32>().unwrap(), vec![1.0; 5]);
        });
    }

    #[test]
    fn poisoned_outputs_read_back_as_nan() {
        on_each_gpu("poisoned_outputs_read_back_as_nan", |dev| {
            assert!(
                cuda::poison_outputs(),
                "the GPU tests run with poisoning on"
            );
            let Device::Cuda(i) = dev else { unreachable!() };
            let gpu = cuda::gpu(i).unwrap();
            let s = cuda::CudaStorage::alloc(&gpu, 1023, DType::F32).unwrap();
            let t = Tensor::from_storage(rcmcl::engine::Storage::Cuda(s), [1023]).unwrap();
            assert!(t.to_vec::<f32>().unwrap().iter().all(|v| v.is_nan()));
        });
    }

    #[test]
    fn the_kernel_cache_stores_each_family_once() {
        use cuda::compile;
        if let Err(why) = compile::nvrtc_available() {
            common::skip_note(&format!(
                "SKIPPED the_kernel_cache_stores_each_family_once: {why}"
            ));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // The cache folder comes from the environment; this is the only test that sets it.
        std::env::set_var(compile::CACHE_ENV, dir.path());
        let family = compile::FAMILIES
            .iter()
            .find(|f| f.family == "convert")
            .unwrap();
        let path = compile::cache_path(family, 90).unwrap().expect("cache on");
        assert!(path.starts_with(dir.path()));
        assert!(!path.exists());
        let first = compile::cached_cubin(family, 90).unwrap();
        assert!(path.exists(), "compiling stored the binary");
        assert_eq!(std::fs::read(&path).unwrap(), first);
        // A different architecture is a different entry.
        assert_ne!(compile::cache_path(family, 80).unwrap().unwrap(), path);
        // A damaged entry is not trusted: it is not an ELF, so it is compiled again.
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(compile::cached_cubin(family, 90).unwrap(), first);
        std::env::remove_var(compile::CACHE_ENV);
    }
}
