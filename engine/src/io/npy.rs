//! NumPy `.npy` files (format 1.0; 2.0 when a header is too long for it), written byte for byte
//! as `numpy.save` writes them: little-endian `<f4` / `<f8` / `<i8`, C order, the header padded
//! with spaces to a multiple of 64 bytes and ended by a newline.

use super::{check_little_endian, decode_le, file_error, write_atomically};
use crate::{DType, Device, Result, Tensor};
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";
/// numpy leaves room for the first dimension to grow to this many digits in place.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;
const ALIGN: usize = 64;

fn descr(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I64 => "<i8",
    }
}

/// Python's `repr` of the shape tuple: `()`, `(3,)`, `(2, 3)`.
fn shape_repr(dims: &[usize]) -> String {
    match dims {
        [] => "()".into(),
        [d] => format!("({d},)"),
        _ => {
            let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// The complete header (magic, version, length, dict, padding) for a tensor.
pub fn npy_header(dtype: DType, dims: &[usize]) -> Vec<u8> {
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        descr(dtype),
        shape_repr(dims)
    );
    if let Some(first) = dims.first() {
        let digits = first.to_string().len();
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }
    // Version 1.0 stores the header length in 2 bytes, 2.0 in 4.
    let pad_for = |len_bytes: usize| {
        let unpadded = MAGIC.len() + 2 + len_bytes + dict.len() + 1;
        ALIGN - unpadded % ALIGN
    };
    let (major, len_bytes) = if dict.len() + 1 + pad_for(2) <= u16::MAX as usize {
        (1u8, 2)
    } else {
        (2u8, 4)
    };
    let padded_len = dict.len() + pad_for(len_bytes) + 1;
    let mut out = Vec::with_capacity(MAGIC.len() + 2 + len_bytes + padded_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[major, 0]);
    if len_bytes == 2 {
        out.extend_from_slice(&(padded_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(padded_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(out.len() + pad_for(len_bytes), b' ');
    out.push(b'\n');
    out
}

/// Writes `tensor` to `path` as a `.npy` file, atomically.
pub fn save_npy(path: impl AsRef<Path>, tensor: &Tensor) -> Result<()> {
    let path = path.as_ref();
    check_little_endian(path)?;
    let header = npy_header(tensor.dtype(), tensor.dims());
    let tensor = tensor.to_device(crate::Device::Cpu)?;
    let storage = tensor.storage();
    let bytes = storage
        .as_cpu()
        .expect("copied to the host above")
        .as_bytes();
    write_atomically(path, |w| {
        w.write_all(&header)?;
        w.write_all(bytes)
    })
}

/// The value of `key` in a numpy header dict: the text after `'key':` up to the next top-level
/// comma (a shape tuple's commas are inside parentheses).
fn dict_value<'a>(dict: &'a str, key: &str) -> Option<&'a str> {
    let start = dict.find(&format!("'{key}':"))? + key.len() + 3;
    let rest = &dict[start..];
    let mut depth = 0;
    for (i, ch) in rest.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

/// Reads a `.npy` file of `<f4`, `<f8` or `<i8` elements in C order.
pub fn load_npy(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    check_little_endian(path)?;
    let bytes = std::fs::read(path).map_err(|source| crate::Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |msg: &str| file_error(path, None, format!("not a readable .npy file: {msg}"));
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad("missing the NumPy magic string"));
    }
    let (header_len, dict_start) = match bytes[MAGIC.len()] {
        1 => (
            u16::from_le_bytes([bytes[8], bytes[9]]) as usize,
            MAGIC.len() + 4,
        ),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            MAGIC.len() + 6,
        ),
        v => return Err(bad(&format!("unsupported format version {v}"))),
    };
    let data_start = dict_start + header_len;
    let dict = bytes
        .get(dict_start..data_start)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated or non-text header"))?;
    let dtype = match dict_value(dict, "descr") {
        Some("'<f4'") => DType::F32,
        Some("'<f8'") => DType::F64,
        Some("'<i8'") => DType::I64,
        Some(other) => {
            return Err(bad(&format!(
                "unsupported dtype {other} ('<f4', '<f8' and '<i8' are)"
            )))
        }
        None => return Err(bad("the header has no 'descr'")),
    };
    match dict_value(dict, "fortran_order") {
        Some("False") => {}
        Some(_) => return Err(bad("Fortran-order arrays are not supported")),
        None => return Err(bad("the header has no 'fortran_order'")),
    }
    let shape_text = dict_value(dict, "shape").ok_or_else(|| bad("the header has no 'shape'"))?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| bad("the shape is not a tuple"))?;
    let dims = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad(&format!("bad shape {shape_text}")))?;
    let numel = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad("the shape overflows"))?;
    let data = &bytes[data_start..];
    if Some(data.len()) != numel.checked_mul(dtype.size_in_bytes()) {
        return Err(bad(&format!(
            "{} data bytes for a {dtype} array of shape {dims:?}",
            data.len()
        )));
    }
    let tensor = match dtype {
        DType::F32 => Tensor::from_vec(decode_le(data, f32::from_le_bytes), dims, Device::Cpu),
        DType::F64 => Tensor::from_vec(decode_le(data, f64::from_le_bytes), dims, Device::Cpu),
        DType::I64 => Tensor::from_vec(decode_le(data, i64::from_le_bytes), dims, Device::Cpu),
    };
    tensor.map_err(|e| file_error(path, None, e.to_string()))
}
