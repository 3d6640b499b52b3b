//! Checkpoints (safetensors layout with checksums) and .npy export: round trips, every kind of
//! damaged file, shape mismatches, atomic writes, exact .npy headers, and (when python3 with numpy
//! is available) reading the files back with Python.

mod common;
use common::*;
use rcmcl::engine::io::{load_checkpoint, load_npy, npy::npy_header, save_checkpoint, save_npy};
use rcmcl::engine::nn::ParamStore;
use rcmcl::engine::optim::{AdamW, AdamWConfig, Optimizer, Sgd, SgdConfig};
use rcmcl::engine::{DType, Device, Error, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// A small model: f32 and f64 parameters, an f64 and an i64 buffer.
fn model(seed: u64) -> ParamStore {
    let store = ParamStore::new();
    let enc = store.sub("encoder");
    enc.sub("fc")
        .param(
            "weight",
            rand64(&[3, 4], seed).to_dtype(DType::F32).unwrap(),
        )
        .unwrap();
    enc.sub("fc")
        .param("bias", rand64(&[3], seed + 1).to_dtype(DType::F32).unwrap())
        .unwrap();
    store
        .sub("head")
        .param("w", rand64(&[2, 3], seed + 2))
        .unwrap();
    let bn = store.sub("bn");
    bn.buffer("running_mean", rand64(&[3], seed + 3)).unwrap();
    bn.buffer("num_batches_tracked", idx(&[seed as i64], &[]))
        .unwrap();
    store
}

/// One optimizer step with gradients from a made-up loss.
fn train_step(store: &ParamStore, opt: &mut dyn Optimizer) {
    opt.zero_grad();
    let mut loss = Tensor::scalar(0.0, DType::F64, Device::Cpu).unwrap();
    for (i, (_, p)) in store.params().iter().enumerate() {
        let term = p
            .to_dtype(DType::F64)
            .unwrap()
            .add_scalar(i as f64 * 0.3)
            .unwrap()
            .square()
            .unwrap()
            .sum_all()
            .unwrap();
        loss = loss.add(&term).unwrap();
    }
    loss.backward().unwrap();
    opt.step().unwrap();
}

fn bits(t: &Tensor) -> Vec<u64> {
    match t.dtype() {
        DType::F32 => t
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits() as u64)
            .collect(),
        DType::F64 => t
            .to_vec::<f64>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect(),
        DType::I64 => t
            .to_vec::<i64>()
            .unwrap()
            .iter()
            .map(|&v| v as u64)
            .collect(),
    }
}

fn assert_same_tensors(a: &[(String, Tensor)], b: &[(String, Tensor)]) {
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        assert_eq!(ta.dims(), tb.dims(), "{na}");
        assert_eq!(ta.dtype(), tb.dtype(), "{na}");
        assert_eq!(bits(ta), bits(tb), "{na}");
    }
}

fn meta() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("epoch".to_string(), "7".to_string()),
        ("model".to_string(), "tiny".to_string()),
    ])
}

fn checkpoint_error_names(err: Error, file: &Path, tensor: Option<&str>) -> String {
    let msg = err.to_string();
    match &err {
        Error::Checkpoint {
            path, tensor: t, ..
        } => {
            assert_eq!(path, file, "{msg}");
            assert_eq!(t.as_deref(), tensor, "{msg}");
        }
        other => panic!("expected Error::Checkpoint, got {other:?}"),
    }
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    if let Some(t) = tensor {
        assert!(msg.contains(t), "{msg}");
    }
    msg
}

#[test]
fn model_and_optimizer_state_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let store = model(1);
    let mut opt = AdamW::from_store(&store, AdamWConfig::new(0.01)).unwrap();
    train_step(&store, &mut opt);
    train_step(&store, &mut opt);
    let mut all = store.state_tensors();
    all.extend(opt.state_tensors());
    save_checkpoint(&path, &all, &meta()).unwrap();

    let ckpt = load_checkpoint(&path).unwrap();
    assert_eq!(ckpt.metadata(), &meta());
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_same_tensors(&ckpt.tensors(), &sorted);
    assert_eq!(ckpt.names().len(), 5 + 3 * 3);
    assert_eq!(
        ckpt.get("bn.num_batches_tracked").unwrap().dtype(),
        DType::I64
    );
    assert_eq!(
        ckpt.get("adamw.step.head.w")
            .unwrap()
            .to_vec::<i64>()
            .unwrap(),
        vec![2]
    );

    // Restore into a freshly built model and optimizer, then both continue identically.
    let restored = model(99);
    let handle = restored.get("head.w").unwrap();
    ckpt.load_into(&restored).unwrap();
    assert_same_tensors(&restored.state_tensors(), &store.state_tensors());
    assert_eq!(
        bits(&handle),
        bits(&store.get("head.w").unwrap()),
        "handles see the load"
    );
    let mut opt2 = AdamW::from_store(&restored, AdamWConfig::new(0.01)).unwrap();
    opt2.load_state_tensors(&ckpt.tensors()).unwrap();
    train_step(&store, &mut opt);
    train_step(&restored, &mut opt2);
    assert_same_tensors(&restored.params(), &store.params());
    assert_same_tensors(&opt2.state_tensors(), &opt.state_tensors());
}

#[test]
fn sgd_momentum_state_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sgd.safetensors");
    let cfg = SgdConfig::new(0.05).momentum(0.9).nesterov(true);
    let store = model(3);
    let mut opt = Sgd::from_store(&store, cfg).unwrap();
    train_step(&store, &mut opt);
    let mut all = store.state_tensors();
    all.extend(opt.state_tensors());
    save_checkpoint(&path, &all, &BTreeMap::new()).unwrap();

    let ckpt = load_checkpoint(&path).unwrap();
    assert!(ckpt.contains("sgd.momentum.encoder.fc.weight"));
    let restored = model(4);
    ckpt.load_into(&restored).unwrap();
    let mut opt2 = Sgd::from_store(&restored, cfg).unwrap();
    opt2.load_state_tensors(&ckpt.tensors()).unwrap();
    train_step(&store, &mut opt);
    train_step(&restored, &mut opt2);
    assert_same_tensors(&restored.params(), &store.params());
}

#[test]
fn optimizer_state_mismatches_are_errors() {
    let store = model(1);
    let mut opt = AdamW::from_store(&store, AdamWConfig::new(0.01)).unwrap();
    train_step(&store, &mut opt);
    let state = opt.state_tensors();
    let mut fresh = AdamW::from_store(&model(2), AdamWConfig::new(0.01)).unwrap();
    // Wrong shape for one moment.
    let mut bad = state.clone();
    bad[0].1 = rand64(&[7], 1).to_dtype(DType::F32).unwrap();
    let err = fresh.load_state_tensors(&bad).unwrap_err().to_string();
    assert!(
        err.contains("adamw.m.encoder.fc.weight") && err.contains("[7]"),
        "{err}"
    );
    // State for a parameter this optimizer does not have.
    let mut extra = state.clone();
    extra.push(("adamw.m.nope".into(), rand64(&[1], 1)));
    let err = fresh.load_state_tensors(&extra).unwrap_err().to_string();
    assert!(err.contains("adamw.m.nope"), "{err}");
    // Half a state.
    let partial: Vec<_> = state
        .iter()
        .filter(|(n, _)| n != "adamw.v.head.w")
        .cloned()
        .collect();
    let err = fresh.load_state_tensors(&partial).unwrap_err().to_string();
    assert!(err.contains("head.w"), "{err}");
    // A failed load installs nothing.
    assert!(fresh.state_tensors().is_empty());
}

#[test]
fn load_into_checks_shapes_dtypes_and_presence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let store = model(1);
    save_checkpoint(&path, &store.state_tensors(), &BTreeMap::new()).unwrap();
    let ckpt = load_checkpoint(&path).unwrap();

    // A model whose head is [3, 2] instead of [2, 3].
    let other = ParamStore::new();
    other
        .sub("encoder")
        .sub("fc")
        .param("weight", rand64(&[3, 4], 5).to_dtype(DType::F32).unwrap())
        .unwrap();
    other.sub("head").param("w", rand64(&[3, 2], 6)).unwrap();
    let before = bits(&other.get("encoder.fc.weight").unwrap());
    let msg = checkpoint_error_names(ckpt.load_into(&other).unwrap_err(), &path, Some("head.w"));
    assert!(msg.contains("[3, 2]") && msg.contains("[2, 3]"), "{msg}");
    assert_eq!(
        bits(&other.get("encoder.fc.weight").unwrap()),
        before,
        "nothing loaded"
    );

    // Same shape, other dtype.
    let other = ParamStore::new();
    other
        .sub("head")
        .param("w", rand64(&[2, 3], 6).to_dtype(DType::F32).unwrap())
        .unwrap();
    let msg = checkpoint_error_names(ckpt.load_into(&other).unwrap_err(), &path, Some("head.w"));
    assert!(msg.contains("f32") && msg.contains("f64"), "{msg}");

    // A tensor the checkpoint lacks.
    let other = ParamStore::new();
    other.sub("tail").param("w", rand64(&[2], 6)).unwrap();
    let msg = checkpoint_error_names(ckpt.load_into(&other).unwrap_err(), &path, Some("tail.w"));
    assert!(msg.contains("missing"), "{msg}");
    checkpoint_error_names(
        ckpt.get("nothing.here").unwrap_err(),
        &path,
        Some("nothing.here"),
    );

    // copy_into on a single tensor.
    let target = rand64(&[2, 3], 8);
    ckpt.copy_into("head.w", &target).unwrap();
    assert_eq!(bits(&target), bits(&store.get("head.w").unwrap()));
}

#[test]
fn bad_save_arguments_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.safetensors");
    let t = rand64(&[2], 1);
    let dup = vec![("a".to_string(), t.clone()), ("a".to_string(), t.clone())];
    checkpoint_error_names(
        save_checkpoint(&path, &dup, &BTreeMap::new()).unwrap_err(),
        &path,
        Some("a"),
    );
    let reserved = BTreeMap::from([("crc32.a".to_string(), "0".to_string())]);
    let err = save_checkpoint(&path, &[("a".into(), t)], &reserved)
        .unwrap_err()
        .to_string();
    assert!(err.contains("crc32.a"), "{err}");
    assert!(!path.exists());
}

#[test]
fn shared_storage_and_scalars_save_fine() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.safetensors");
    let a = rand64(&[2, 3], 1);
    let tensors = vec![
        ("a".to_string(), a.clone()),
        ("a_flat".to_string(), a.reshape([6]).unwrap()),
        (
            "s".to_string(),
            Tensor::scalar(2.5, DType::F32, Device::Cpu).unwrap(),
        ),
        (
            "empty".to_string(),
            Tensor::zeros([0, 4], DType::F64, Device::Cpu).unwrap(),
        ),
    ];
    save_checkpoint(&path, &tensors, &BTreeMap::new()).unwrap();
    let ckpt = load_checkpoint(&path).unwrap();
    assert_eq!(bits(&ckpt.get("a_flat").unwrap()), bits(&a));
    assert_eq!(ckpt.get("a_flat").unwrap().dims(), &[6]);
    assert_eq!(ckpt.get("s").unwrap().dims(), &[] as &[usize]);
    assert_eq!(ckpt.get("s").unwrap().item().unwrap(), 2.5);
    assert_eq!(ckpt.get("empty").unwrap().dims(), &[0, 4]);
}

fn saved_model(dir: &Path) -> (std::path::PathBuf, ParamStore) {
    let path = dir.join("model.safetensors");
    let store = model(1);
    save_checkpoint(&path, &store.state_tensors(), &meta()).unwrap();
    (path, store)
}

#[test]
fn truncated_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = saved_model(dir.path());
    let full = std::fs::read(&path).unwrap();
    for keep in [full.len() - 1, full.len() - 13, full.len() / 2, 20, 9, 7, 3] {
        std::fs::write(&path, &full[..keep]).unwrap();
        let msg = checkpoint_error_names(load_checkpoint(&path).unwrap_err(), &path, None);
        assert!(!msg.is_empty());
    }
    std::fs::write(&path, []).unwrap();
    let msg = checkpoint_error_names(load_checkpoint(&path).unwrap_err(), &path, None);
    assert!(msg.contains("0 bytes"), "{msg}");
}

#[test]
fn garbage_and_missing_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.safetensors");
    std::fs::write(&path, b"this is not a checkpoint at all, just some text").unwrap();
    checkpoint_error_names(load_checkpoint(&path).unwrap_err(), &path, None);
    // A header length pointing far past the end of the file.
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}      ");
    std::fs::write(&path, &bytes).unwrap();
    checkpoint_error_names(load_checkpoint(&path).unwrap_err(), &path, None);
    // Valid JSON header that is not a safetensors header.
    let header = b"{\"a\": 1}";
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    std::fs::write(&path, &bytes).unwrap();
    checkpoint_error_names(load_checkpoint(&path).unwrap_err(), &path, None);

    let missing = dir.path().join("missing.safetensors");
    let err = load_checkpoint(&missing).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

/// Flips one byte of `name`'s data: the tensor's bytes are found in the file by their content.
fn flip_byte_of(path: &Path, tensor: &Tensor) {
    let mut bytes = std::fs::read(path).unwrap();
    let needle: Vec<u8> = match tensor.dtype() {
        DType::F32 => tensor
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F64 => tensor
            .to_vec::<f64>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::I64 => tensor
            .to_vec::<i64>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    };
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("tensor bytes in the file");
    bytes[at + needle.len() / 2] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn corrupted_data_is_an_error_naming_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["head.w", "encoder.fc.bias", "bn.running_mean"] {
        let (path, store) = saved_model(dir.path());
        flip_byte_of(&path, &store.get(name).unwrap());
        let msg = checkpoint_error_names(load_checkpoint(&path).unwrap_err(), &path, Some(name));
        assert!(msg.contains("checksum"), "{msg}");
    }
}

/// A safetensors file written by hand, as another tool would (no checksums).
fn foreign_file(path: &Path, dtype: &str, data: &[u8], shape: &str) {
    let mut header = format!(
        "{{\"x\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[0,{}]}}}}",
        data.len()
    )
    .into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn files_from_other_tools_load_unless_their_dtype_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign.safetensors");
    let data: Vec<u8> = [1.5f64, -2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    foreign_file(&path, "F64", &data, "[2]");
    let ckpt = load_checkpoint(&path).unwrap();
    assert_eq!(values(&ckpt.get("x").unwrap()), vec![1.5, -2.0]);
    assert!(ckpt.metadata().is_empty());

    foreign_file(&path, "BF16", &[0, 0, 0, 0], "[2]");
    let msg = checkpoint_error_names(load_checkpoint(&path).unwrap_err(), &path, Some("x"));
    assert!(msg.contains("BF16"), "{msg}");
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn writes_are_atomic_and_leave_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = saved_model(dir.path());
    assert_eq!(dir_entries(dir.path()), ["model.safetensors"]);
    // Overwriting replaces the content whole.
    let store = model(5);
    save_checkpoint(&path, &store.state_tensors(), &BTreeMap::new()).unwrap();
    assert_eq!(dir_entries(dir.path()), ["model.safetensors"]);
    let ckpt = load_checkpoint(&path).unwrap();
    assert_same_tensors(&ckpt.tensors(), &{
        let mut s = store.state_tensors();
        s.sort_by(|a, b| a.0.cmp(&b.0));
        s
    });
    // A failing rename (the target is a directory) removes the temp file and reports the path.
    let blocked = dir.path().join("blocked");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    let err = save_checkpoint(&blocked, &store.state_tensors(), &BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("blocked"), "{err}");
    assert_eq!(dir_entries(dir.path()), ["blocked", "model.safetensors"]);
    let err = save_npy(&blocked, &rand64(&[2], 1)).unwrap_err();
    assert!(err.to_string().contains("blocked"), "{err}");
    assert_eq!(dir_entries(dir.path()), ["blocked", "model.safetensors"]);
    // A missing directory.
    let nowhere = dir.path().join("no/such/dir/m.safetensors");
    assert!(save_checkpoint(&nowhere, &store.state_tensors(), &BTreeMap::new()).is_err());
}

#[test]
fn npy_header_bytes_match_numpy() {
    // numpy.save(np.zeros((2, 3), '<f4')): the dict, 20 spaces of room for the first dimension
    // to grow to 21 digits, padding to 128 bytes in all, then a newline.
    let header = npy_header(DType::F32, &[2, 3]);
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    let mut want = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
    want.extend_from_slice(dict.as_bytes());
    want.resize(127, b' ');
    want.push(b'\n');
    assert_eq!(header, want);

    let header = npy_header(DType::I64, &[]);
    let dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (), }";
    let mut want = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
    want.extend_from_slice(dict.as_bytes());
    want.resize(127, b' ');
    want.push(b'\n');
    assert_eq!(header, want);

    let header = npy_header(DType::F64, &[7]);
    assert!(String::from_utf8_lossy(&header).contains("'descr': '<f8'"));
    assert!(String::from_utf8_lossy(&header).contains("'shape': (7,)"));
    for dims in [&[][..], &[1], &[123_456_789_012], &[2, 3, 4, 5, 6, 7, 8, 9]] {
        let h = npy_header(DType::F64, dims);
        assert_eq!(h.len() % 64, 0, "{dims:?}");
        assert_eq!(*h.last().unwrap(), b'\n');
        assert_eq!(u16::from_le_bytes([h[8], h[9]]) as usize, h.len() - 10);
    }
}

#[test]
fn npy_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        rand64(&[2, 3], 1).to_dtype(DType::F32).unwrap(),
        rand64(&[4, 1, 5], 2),
        idx(&[-3, 0, 7, i64::MAX, i64::MIN], &[5]),
        Tensor::scalar(4.25, DType::F64, Device::Cpu).unwrap(),
        Tensor::zeros([0, 3], DType::F32, Device::Cpu).unwrap(),
    ];
    for (i, t) in cases.iter().enumerate() {
        let path = dir.path().join(format!("t{i}.npy"));
        save_npy(&path, t).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            bytes.len(),
            npy_header(t.dtype(), t.dims()).len() + t.numel() * t.dtype().size_in_bytes()
        );
        let back = load_npy(&path).unwrap();
        assert_eq!(back.dims(), t.dims());
        assert_eq!(back.dtype(), t.dtype());
        assert_eq!(bits(&back), bits(t));
    }
}

#[test]
fn bad_npy_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.npy");
    let good = dir.path().join("good.npy");
    save_npy(&good, &rand64(&[3, 2], 1)).unwrap();
    let full = std::fs::read(&good).unwrap();
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"not numpy".to_vec(),
        full[..full.len() - 1].to_vec(),
        full[..50].to_vec(),
        String::from_utf8_lossy(&full)
            .replace("<f8", "<f2")
            .into_bytes(),
        String::from_utf8_lossy(&full[..128])
            .replace("False", "True ")
            .into_bytes(),
    ];
    for bytes in cases {
        std::fs::write(&path, &bytes).unwrap();
        let err = load_npy(&path).unwrap_err();
        assert!(err.to_string().contains("bad.npy"), "{err}");
    }
    assert!(load_npy(dir.path().join("missing.npy"))
        .unwrap_err()
        .to_string()
        .contains("missing.npy"));
}

fn python_with_numpy() -> Option<&'static str> {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some("python3")
}

#[test]
fn python_reads_what_we_write() {
    let Some(python) = python_with_numpy() else {
        println!("skipped: python3 with numpy is not available");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = rand64(&[3, 4], 1).to_dtype(DType::F32).unwrap();
    let b = rand64(&[2, 1, 3], 2);
    let c = idx(&[5, -6, 7], &[3]);
    for (name, t) in [("a", &a), ("b", &b), ("c", &c)] {
        save_npy(dir.path().join(format!("{name}.npy")), t).unwrap();
    }
    let ckpt = dir.path().join("m.safetensors");
    let tensors = vec![
        ("a".to_string(), a.clone()),
        ("b".to_string(), b.clone()),
        ("c".to_string(), c.clone()),
    ];
    save_checkpoint(&ckpt, &tensors, &meta()).unwrap();
    // Python checks each .npy against the checkpoint's tensors (parsed with json + numpy, the
    // checksums recomputed with zlib), and that numpy.save writes the very same bytes as we do.
    let script = r#"
import json, struct, sys, zlib, io
import numpy as np
d = sys.argv[1]
raw = open(d + "/m.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
meta = header.pop("__metadata__")
assert meta["epoch"] == "7" and meta["model"] == "tiny", meta
kinds = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}
for name, info in header.items():
    s, e = info["data_offsets"]
    data = raw[8 + n + s: 8 + n + e]
    assert int(meta["crc32." + name], 16) == zlib.crc32(data), name
    arr = np.frombuffer(data, dtype=kinds[info["dtype"]]).reshape(info["shape"])
    npy = np.load(d + "/" + name + ".npy")
    assert npy.dtype == arr.dtype and npy.shape == arr.shape, (name, npy.dtype, npy.shape)
    assert np.array_equal(npy, arr), name
    buf = io.BytesIO()
    np.save(buf, npy)
    assert buf.getvalue() == open(d + "/" + name + ".npy", "rb").read(), name
try:
    from safetensors.numpy import load_file
except ImportError:
    print("the safetensors package is absent: checked with json + numpy only")
else:
    loaded = load_file(d + "/m.safetensors")
    assert sorted(loaded) == sorted(header), sorted(loaded)
    for name in header:
        assert np.array_equal(loaded[name], np.load(d + "/" + name + ".npy")), name
    print("read back with the safetensors package")
np.save(d + "/from_python.npy", np.arange(12, dtype="<f8").reshape(3, 4) / 7)
print("ok")
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let from_python = load_npy(dir.path().join("from_python.npy")).unwrap();
    assert_eq!(from_python.dims(), &[3, 4]);
    let want: Vec<f64> = (0..12).map(|i| i as f64 / 7.0).collect();
    assert_eq!(values(&from_python), want);
}
