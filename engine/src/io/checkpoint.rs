//! Checkpoints: named tensors in the safetensors layout (readable by the `safetensors` Python
//! package and most frameworks), with a CRC32 of every tensor's bytes in the header's
//! `__metadata__` under `crc32.<name>`, so a corrupted file is an error naming the tensor rather
//! than silently wrong weights. Writes are atomic; reads map the file and copy the tensors out.

use super::{check_little_endian, decode_le, file_error, write_atomically};
use crate::nn::ParamStore;
use crate::{DType, Device, Result, Storage, Tensor};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLockReadGuard;

/// Header metadata keys under this prefix hold checksums; user metadata may not use it.
const CRC_PREFIX: &str = "crc32.";

fn to_safetensors_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::I64 => Dtype::I64,
    }
}

/// A borrowed tensor for the safetensors serializer.
struct TensorBytes<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: &'a [u8],
}

impl safetensors::View for TensorBytes<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn storage_bytes(s: &Storage) -> &[u8] {
    match s {
        Storage::Cpu(c) => c.as_bytes(),
        #[cfg(feature = "cuda")]
        Storage::Cuda(_) => unreachable!("save_checkpoint copies device tensors to the host first"),
    }
}

/// Writes `tensors` (unique names) and `metadata` to `path` atomically. Keys of `metadata` may
/// not start with `crc32.` (the checksums live there).
pub fn save_checkpoint(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    check_little_endian(path)?;
    if let Some(key) = metadata.keys().find(|k| k.starts_with(CRC_PREFIX)) {
        return Err(file_error(
            path,
            None,
            format!("metadata key '{key}' uses the reserved prefix '{CRC_PREFIX}'"),
        ));
    }
    // Device tensors are copied to the host once, here; host tensors keep their storage.
    let tensors = &tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.detach().to_device(crate::Device::Cpu)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut seen = HashSet::new();
    for (name, _) in tensors {
        if name.is_empty() || name == "__metadata__" {
            return Err(file_error(path, Some(name), "invalid tensor name"));
        }
        if !seen.insert(name.as_str()) {
            return Err(file_error(path, Some(name), "tensor name given twice"));
        }
    }

    // One read guard per distinct storage: tensors may share one (reshapes, tied weights), and
    // taking the same lock twice on one thread is not allowed.
    let mut guards: Vec<RwLockReadGuard<'_, Storage>> = Vec::new();
    let mut guard_of: Vec<usize> = Vec::with_capacity(tensors.len());
    for (i, (_, t)) in tensors.iter().enumerate() {
        let earlier = tensors[..i]
            .iter()
            .position(|(_, u)| u.same_storage(t))
            .map(|j| guard_of[j]);
        guard_of.push(earlier.unwrap_or_else(|| {
            guards.push(t.storage());
            guards.len() - 1
        }));
    }

    let mut header: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, t), &g) in tensors.iter().zip(&guard_of) {
        let bytes = storage_bytes(&guards[g]);
        header.insert(
            format!("{CRC_PREFIX}{name}"),
            format!("{:08x}", crc32fast::hash(bytes)),
        );
        views.push((
            name.as_str(),
            TensorBytes {
                dtype: to_safetensors_dtype(t.dtype()),
                shape: t.dims().to_vec(),
                bytes,
            },
        ));
    }
    let buffer = safetensors::serialize(views, Some(header))
        .map_err(|e| file_error(path, None, format!("cannot serialise: {e}")))?;
    drop(guards);
    write_atomically(path, |w| w.write_all(&buffer))
}

/// The tensors and metadata of a checkpoint file, in memory.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    tensors: BTreeMap<String, Tensor>,
    metadata: BTreeMap<String, String>,
}

/// Reads and verifies a checkpoint written by [`save_checkpoint`]. Files without any checksums
/// (written by other tools) are accepted unverified; in a file with checksums every tensor must
/// have a matching one. Any defect is an `Error::Checkpoint` naming the file (and the tensor).
pub fn load_checkpoint(path: impl AsRef<Path>) -> Result<Checkpoint> {
    let path = path.as_ref();
    check_little_endian(path)?;
    let file = File::open(path).map_err(|source| crate::Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let len = file
        .metadata()
        .map_err(|source| crate::Error::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if len < 8 {
        return Err(file_error(
            path,
            None,
            format!("not a checkpoint: the file holds {len} bytes, fewer than a header needs"),
        ));
    }
    // SAFETY: the map is only read, and everything is copied out before it is dropped. Another
    // process truncating the file meanwhile is outside what a checkpoint reader can guard against.
    let map = unsafe { Mmap::map(&file) }.map_err(|source| crate::Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |e: safetensors::SafeTensorError| {
        file_error(
            path,
            None,
            format!("not a valid checkpoint (truncated or corrupted?): {e}"),
        )
    };
    let (_, header) = SafeTensors::read_metadata(&map).map_err(bad)?;
    let st = SafeTensors::deserialize(&map).map_err(bad)?;

    let mut metadata = BTreeMap::new();
    let mut checksums = HashMap::new();
    for (k, v) in header.metadata().iter().flatten() {
        match k.strip_prefix(CRC_PREFIX) {
            Some(name) => {
                let crc = u32::from_str_radix(v, 16).map_err(|_| {
                    file_error(path, Some(name), format!("unreadable checksum '{v}'"))
                })?;
                checksums.insert(name.to_string(), crc);
            }
            None => {
                metadata.insert(k.clone(), v.clone());
            }
        }
    }

    let mut tensors = BTreeMap::new();
    for (name, view) in st.iter() {
        let bytes = view.data();
        match checksums.get(name) {
            Some(&want) => {
                let got = crc32fast::hash(bytes);
                if got != want {
                    return Err(file_error(
                        path,
                        Some(name),
                        format!("checksum mismatch (stored {want:08x}, data has {got:08x}): the file is corrupted"),
                    ));
                }
            }
            None if !checksums.is_empty() => {
                return Err(file_error(path, Some(name), "tensor has no checksum"));
            }
            None => {}
        }
        let shape = view.shape().to_vec();
        let tensor = match view.dtype() {
            Dtype::F32 => {
                Tensor::from_vec(decode_le(bytes, f32::from_le_bytes), shape, Device::Cpu)
            }
            Dtype::F64 => {
                Tensor::from_vec(decode_le(bytes, f64::from_le_bytes), shape, Device::Cpu)
            }
            Dtype::I64 => {
                Tensor::from_vec(decode_le(bytes, i64::from_le_bytes), shape, Device::Cpu)
            }
            other => {
                return Err(file_error(
                    path,
                    Some(name),
                    format!("unsupported dtype {other:?} (f32, f64 and i64 are)"),
                ))
            }
        }
        .map_err(|e| file_error(path, Some(name), e.to_string()))?;
        tensors.insert(name.to_string(), tensor);
    }
    if let Some(name) = checksums.keys().find(|n| !tensors.contains_key(*n)) {
        return Err(file_error(
            path,
            Some(name),
            "the header has a checksum for this tensor but no tensor: the file is corrupted",
        ));
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        tensors,
        metadata,
    })
}

impl Checkpoint {
    /// The file this checkpoint was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.tensors.keys().map(String::as_str).collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The tensor `name`, or an error naming the file and the tensor.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| file_error(&self.path, Some(name), "the checkpoint has no such tensor"))
    }

    /// Every tensor with its name, sorted by name (for `Optimizer::load_state_tensors`).
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect()
    }

    /// The user metadata given to `save_checkpoint` (checksums are not included).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Checks that the checkpoint has tensor `name` with `target`'s shape and dtype.
    fn source_for(&self, name: &str, target: &Tensor) -> Result<&Tensor> {
        let src = self
            .tensors
            .get(name)
            .ok_or_else(|| file_error(&self.path, Some(name), "missing from the checkpoint"))?;
        if src.dims() != target.dims() || src.dtype() != target.dtype() {
            return Err(file_error(
                &self.path,
                Some(name),
                format!(
                    "expected {} {:?}, found {} {:?}",
                    target.dtype(),
                    target.dims(),
                    src.dtype(),
                    src.dims()
                ),
            ));
        }
        Ok(src)
    }

    /// Copies tensor `name` into `target`'s storage (shape and dtype must match), so every handle
    /// on `target` sees the loaded values.
    pub fn copy_into(&self, name: &str, target: &Tensor) -> Result<()> {
        let src = self.source_for(name, target)?;
        let values = src.to_device(target.device())?.storage().try_clone()?;
        *target.storage_mut() = values;
        Ok(())
    }

    /// Loads every parameter and buffer of `store` from the tensors of the same names. All are
    /// checked before any is copied, so a failed load leaves the store unchanged. Tensors the
    /// store does not have (optimizer state, say) are ignored.
    pub fn load_into(&self, store: &ParamStore) -> Result<()> {
        let targets = store.state_tensors();
        let sources = targets
            .iter()
            .map(|(name, t)| self.source_for(name, t))
            .collect::<Result<Vec<_>>>()?;
        for ((_, target), src) in targets.iter().zip(sources) {
            let values = src.to_device(target.device())?.storage().try_clone()?;
            *target.storage_mut() = values;
        }
        Ok(())
    }
}
