//! The parameter store (names, scopes, order, sharing, buffers, train/eval flag) and the
//! initialisers.

mod common;
use common::*;
use rcmcl::engine::nn::{init, Module, ParamStore};
use rcmcl::engine::{DType, Device, Result, Tensor};

#[test]
fn params_get_hierarchical_names_in_registration_order() {
    let store = ParamStore::new();
    let enc = store.sub("encoder");
    let conv = enc.sub("block1").sub("conv");
    conv.param("weight", rand64(&[4, 3], 1)).unwrap();
    conv.param("bias", rand64(&[4], 2)).unwrap();
    store.root().param("scale", rand64(&[1], 3)).unwrap();
    enc.param("gain", rand64(&[2], 4)).unwrap();
    let names: Vec<String> = store.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "encoder.block1.conv.weight",
            "encoder.block1.conv.bias",
            "scale",
            "encoder.gain"
        ]
    );
    assert_eq!(conv.prefix(), "encoder.block1.conv");
    assert_eq!(store.num_params(), 12 + 4 + 1 + 2);
    assert_eq!(store.num_param_tensors(), 4);
    let w = store.get("encoder.block1.conv.weight").unwrap();
    assert_eq!(w.dims(), &[4, 3]);
    assert!(store.get("encoder.block1.conv").is_none());
}

#[test]
fn params_are_leaves_sharing_the_init_storage() {
    let store = ParamStore::new();
    let init = rand64(&[3], 1);
    let p = store.root().param("w", init.clone()).unwrap();
    assert!(p.requires_grad() && p.is_leaf());
    assert!(p.same_storage(&init));
    // The handle returned, the one in the store and a clone of the store all see one tensor.
    let again = store.clone().get("w").unwrap();
    assert!(again.same_storage(&p));
    p.sum_all().unwrap().backward().unwrap();
    assert_eq!(values(&again.grad().unwrap()), vec![1.0; 3]);
    store.zero_grad();
    assert!(p.grad().is_none());
}

#[test]
fn duplicate_and_bad_names_are_errors() {
    let store = ParamStore::new();
    let layer = store.sub("fc");
    layer.param("weight", rand64(&[2], 1)).unwrap();
    let err = layer
        .param("weight", rand64(&[2], 2))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'fc.weight'") && err.contains("already"),
        "{err}"
    );
    // Buffers share the namespace.
    let err = layer
        .buffer("weight", rand64(&[2], 3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("'fc.weight'"), "{err}");
    for bad in ["", "a.b", "has space", "x/y"] {
        let err = layer.param(bad, rand64(&[1], 4)).unwrap_err().to_string();
        assert!(err.contains("bad name"), "{bad:?}: {err}");
    }
    let err = store
        .sub("")
        .param("w", rand64(&[1], 5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad name"), "{err}");
    // Integer tensors cannot be trained.
    let err = layer
        .param("idx", idx(&[1, 2], &[2]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("fc.idx"), "{err}");
    assert_eq!(store.num_param_tensors(), 1);
}

#[test]
fn buffers_are_separate_from_params() {
    let store = ParamStore::new();
    let bn = store.sub("bn");
    bn.param("weight", rand64(&[3], 1)).unwrap();
    let mean = bn
        .buffer(
            "running_mean",
            Tensor::zeros([3], DType::F64, Device::Cpu).unwrap(),
        )
        .unwrap();
    bn.buffer("num_batches_tracked", idx(&[0], &[])).unwrap();
    assert!(!mean.requires_grad());
    assert_eq!(store.params().len(), 1);
    let buffers: Vec<String> = store.buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(buffers, ["bn.running_mean", "bn.num_batches_tracked"]);
    let all: Vec<String> = store.state_tensors().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        all,
        ["bn.weight", "bn.running_mean", "bn.num_batches_tracked"]
    );
    assert!(store.is_param("bn.weight") && !store.is_param("bn.running_mean"));
    assert!(store.contains("bn.running_mean"));
    assert_eq!(
        store.num_params(),
        3,
        "buffers are not counted as parameters"
    );
}

/// A layer written against the conventions: parameters from a path, mode from the shared flag.
struct ScaleOrIdentity {
    scale: Tensor,
    training: rcmcl::engine::nn::TrainingFlag,
}

impl Module for ScaleOrIdentity {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.training.is_training() {
            x.mul(&self.scale)
        } else {
            Ok(x.clone())
        }
    }
}

#[test]
fn training_flag_is_shared_by_layers() {
    let store = ParamStore::new();
    let path = store.sub("layer");
    let layer = ScaleOrIdentity {
        scale: path.param("scale", t64(&[2.0], &[1])).unwrap(),
        training: path.training_flag(),
    };
    let x = t64(&[1.0, 3.0], &[2]);
    assert!(store.is_training(), "stores start in training mode");
    assert_eq!(values(&layer.forward(&x).unwrap()), vec![2.0, 6.0]);
    store.clone().set_training(false);
    assert!(!path.is_training());
    assert_eq!(values(&layer.forward(&x).unwrap()), vec![1.0, 3.0]);
    store.set_training(true);
    assert_eq!(values(&layer.forward(&x).unwrap()), vec![2.0, 6.0]);
}

#[test]
fn seeds_depend_on_name_and_base_seed_not_order() {
    let a = ParamStore::with_seed(42);
    let b = ParamStore::with_seed(42);
    let c = ParamStore::with_seed(43);
    let sa = a.sub("enc").seed("weight");
    assert_eq!(sa, b.sub("enc").seed("weight"));
    assert_ne!(sa, c.sub("enc").seed("weight"));
    assert_ne!(sa, a.sub("enc").seed("bias"));
    assert_ne!(sa, a.sub("dec").seed("weight"));
    assert_eq!(sa, a.root().seed("enc.weight"));
}

#[test]
fn init_bounds_follow_pytorch() {
    let dims = [64, 32, 3, 3];
    let fan_in = 32 * 9;
    let fan_out = 64 * 9;
    assert_eq!(init::fans(&dims).unwrap(), (fan_in, fan_out));
    let max_abs = |t: &Tensor| values(t).iter().fold(0.0f64, |m, v| m.max(v.abs()));

    // ReLU gain sqrt(2): bound sqrt(6 / fan_in).
    let w = init::kaiming_uniform(dims, 0.0, 1, DType::F64, Device::Cpu).unwrap();
    let bound = (6.0 / fan_in as f64).sqrt();
    assert!(max_abs(&w) <= bound && max_abs(&w) > 0.95 * bound);
    // a = sqrt(5) (PyTorch's layer default): bound 1 / sqrt(fan_in).
    let w = init::kaiming_uniform(dims, 5f64.sqrt(), 1, DType::F32, Device::Cpu).unwrap();
    let bound = 1.0 / (fan_in as f64).sqrt();
    assert!(max_abs(&w) <= bound * (1.0 + 1e-6) && max_abs(&w) > 0.95 * bound);
    assert_eq!(w.dtype(), DType::F32);

    let w = init::xavier_uniform([20, 30], 1.0, 2, DType::F64, Device::Cpu).unwrap();
    let bound = (6.0f64 / 50.0).sqrt();
    assert!(max_abs(&w) <= bound && max_abs(&w) > 0.95 * bound);
    let mean = values(&w).iter().sum::<f64>() / 600.0;
    assert!(mean.abs() < 0.05 * bound, "{mean}");

    let b = init::fan_in_uniform([10], 25, 3, DType::F64, Device::Cpu).unwrap();
    assert!(max_abs(&b) <= 0.2);
    let u = init::uniform([1000], 2.0, 3.0, 4, DType::F64, Device::Cpu).unwrap();
    assert!(values(&u).iter().all(|v| (2.0..3.0).contains(v)));
    assert_eq!(
        values(&init::zeros([2, 2], DType::F64, Device::Cpu).unwrap()),
        vec![0.0; 4]
    );

    // Same seed, same values; different seed, different values.
    let a = init::kaiming_uniform([4, 4], 0.0, 7, DType::F64, Device::Cpu).unwrap();
    let b = init::kaiming_uniform([4, 4], 0.0, 7, DType::F64, Device::Cpu).unwrap();
    let c = init::kaiming_uniform([4, 4], 0.0, 8, DType::F64, Device::Cpu).unwrap();
    assert_eq!(values(&a), values(&b));
    assert_ne!(values(&a), values(&c));
}

#[test]
fn init_errors() {
    assert!(init::fans(&[5]).is_err());
    assert!(init::kaiming_uniform([5], 0.0, 1, DType::F64, Device::Cpu).is_err());
    assert!(init::xavier_uniform([0, 0], 1.0, 1, DType::F64, Device::Cpu).is_err());
    assert!(init::uniform([2], 1.0, 1.0, 1, DType::F64, Device::Cpu).is_err());
    assert!(init::uniform([2], 0.0, 1.0, 1, DType::I64, Device::Cpu).is_err());
}
