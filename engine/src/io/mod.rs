//! Files: model/optimizer checkpoints (safetensors layout, checksummed, written atomically) and
//! NumPy `.npy` export for inspecting tensors with other tools.

pub mod checkpoint;
pub mod npy;

pub use checkpoint::{load_checkpoint, save_checkpoint, Checkpoint};
pub use npy::{load_npy, save_npy};

use crate::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An `Error::Checkpoint` about the file `path` (and the tensor, when one is at fault).
pub(crate) fn file_error(path: &Path, tensor: Option<&str>, msg: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        tensor: tensor.map(str::to_string),
        msg: msg.into(),
    }
}

/// Writes `path` so that it either keeps its old content or has the complete new one, even if
/// the process dies midway: the bytes go to a temporary file in the same directory, which is
/// flushed to disk, renamed over `path`, and the directory entry is flushed too. The temporary
/// file is removed when anything fails.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let Some(file_name) = path.file_name() else {
        return Err(file_error(path, None, "not a file path"));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        write(&mut w)?;
        w.flush()?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        sync_dir(&dir)
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&temp);
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Makes a rename durable: on Unix the directory entry is only on disk once the directory is synced.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Checkpoints and .npy files store little-endian bytes, which is the in-memory layout here.
pub(crate) fn check_little_endian(path: &Path) -> Result<()> {
    if cfg!(target_endian = "big") {
        return Err(file_error(
            path,
            None,
            "tensor files are little-endian; big-endian hosts are not supported",
        ));
    }
    Ok(())
}

/// Little-endian elements from bytes of any alignment (the map gives no alignment guarantee).
pub(crate) fn decode_le<T, const N: usize>(bytes: &[u8], from_le: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| from_le(c.try_into().expect("chunks_exact yields N bytes")))
        .collect()
}
