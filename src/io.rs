//! Tensor files: `.npy` for inputs and outputs, `.safetensors` for weight
//! sets (keyed by initializer name, the format checkpoints come in).

use std::path::Path;

use half::f16;
use npyz::{TypeChar, WriterBuilder};
use safetensors::{Dtype, SafeTensors};

use crate::tensor::{DType, Tensor, TensorData};
use crate::{Error, Result};

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| Error::Io {
        op: "read",
        path: path.to_path_buf(),
        error,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|error| Error::Io {
        op: "write",
        path: path.to_path_buf(),
        error,
    })
}

/// A named set of weights, in name order: one refit's worth.
pub(crate) type WeightSet = Vec<(String, Tensor)>;

/// Reads a `.safetensors` file, tensors sorted by name.
///
/// # Errors
/// [`Error::Io`] for an unreadable file, [`Error::WeightsFile`] for one
/// that is not valid safetensors or holds a dtype other than F32, F16, I32
/// (naming the tensor and its dtype).
pub fn read_weights(path: &Path) -> Result<WeightSet> {
    let bytes = read(path)?;
    let bad = |reason: String| Error::WeightsFile {
        path: path.to_path_buf(),
        reason,
    };
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let mut out = Vec::with_capacity(st.len());
    for (name, view) in st.iter() {
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::I32 => DType::I32,
            other => {
                return Err(bad(format!(
                    "tensor '{name}' has dtype {other:?}; supported: F32, F16, I32"
                )))
            }
        };
        let data = TensorData::from_le_bytes(dtype, view.data()).ok_or_else(|| {
            bad(format!(
                "tensor '{name}' is not a whole number of {dtype} values"
            ))
        })?;
        out.push((
            name.to_string(),
            Tensor {
                shape: view.shape().to_vec(),
                data,
            },
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Writes tensors to a `.safetensors` file.
///
/// # Errors
/// [`Error::WeightsFile`] when a tensor's values do not match its shape;
/// [`Error::Io`] when the file cannot be written.
pub fn write_weights<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
) -> Result<()> {
    let bad = |reason: String| Error::WeightsFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut views = Vec::new();
    for (name, t) in tensors {
        let dtype = match t.dtype() {
            DType::F32 => Dtype::F32,
            DType::F16 => Dtype::F16,
            DType::I32 => Dtype::I32,
        };
        let view = safetensors::tensor::TensorView::new(dtype, t.shape.clone(), t.data.as_bytes())
            .map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        views.push((name.to_string(), view));
    }
    let bytes = safetensors::serialize(views, None).map_err(|e| bad(e.to_string()))?;
    write(path, &bytes)
}

/// A parser's diagnostic on one line: the position (`--> line:column`)
/// and the expectation (`= expected ...`) of a multi-line report, or its
/// lines joined.
fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() <= 1 {
        return lines.first().map_or_else(String::new, |l| l.to_string());
    }
    let position = lines
        .iter()
        .find_map(|l| l.strip_prefix("-->"))
        .map(|p| p.trim().replacen(':', " column ", 1));
    let expectation = lines
        .iter()
        .find_map(|l| l.strip_prefix('='))
        .map(str::trim);
    match (position, expectation) {
        (Some(p), Some(e)) => format!("header at line {p}: {e}"),
        _ => lines
            .iter()
            .filter(|l| {
                !l.chars()
                    .all(|c| c == '|' || c == '^' || c == '-' || c == ' ')
            })
            .copied()
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Reads an `.npy` file holding f32, f16 or i32 values in C order.
///
/// # Errors
/// [`Error::Io`] for an unreadable file, [`Error::NpyFile`] for a file
/// that is not `.npy`, is Fortran-ordered, is shorter than its shape says,
/// or holds another dtype (naming it).
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = read(path)?;
    let bad = |reason: String| Error::NpyFile {
        path: path.to_path_buf(),
        reason,
    };
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| {
        bad(format!(
            "not a valid .npy file: {}",
            one_line(&e.to_string())
        ))
    })?;
    if npy.order() == npyz::Order::Fortran {
        return Err(bad(
            "Fortran-ordered arrays are not supported; save it in C order".into(),
        ));
    }
    let descr = match npy.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        other => other.descr(),
    };
    let dtype = match npy.dtype() {
        npyz::DType::Plain(ts) => match (ts.type_char(), ts.size_field()) {
            (TypeChar::Float, 4) => Some(DType::F32),
            (TypeChar::Float, 2) => Some(DType::F16),
            (TypeChar::Int, 4) => Some(DType::I32),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| {
        bad(format!(
            "dtype {descr} is not supported; expected float32 (<f4), float16 (<f2) or int32 (<i4)"
        ))
    })?;
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("dimension {d} is too large"))))
        .collect::<Result<_>>()?;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|n| {
            n.checked_mul(dtype.size())
                .is_some_and(|b| b <= bytes.len())
        })
        .ok_or_else(|| {
            bad(format!(
                "shape {shape:?} needs more data than the file's {} bytes",
                bytes.len()
            ))
        })?;
    let short = |e: std::io::Error| bad(format!("shape {shape:?} ({numel} values): {e}"));
    let data = match dtype {
        DType::F32 => TensorData::F32(npy.into_vec::<f32>().map_err(short)?.into()),
        DType::F16 => TensorData::F16(npy.into_vec::<f16>().map_err(short)?.into()),
        DType::I32 => TensorData::I32(npy.into_vec::<i32>().map_err(short)?.into()),
    };
    Ok(Tensor { shape, data })
}

/// Encodes `values` of `shape` as `.npy` bytes.
fn encode_npy<T: npyz::AutoSerialize + Copy>(
    shape: &[u64],
    values: &[T],
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(buf)
        .begin_nd()?;
    w.extend(values.iter().copied())?;
    w.finish()
}

/// Writes a tensor to an `.npy` file (C order, little-endian).
///
/// # Errors
/// [`Error::ByteCount`] when the values do not match the shape,
/// [`Error::Io`] when the file cannot be written.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    t.validate(&path.display().to_string())?;
    let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
    let mut buf = Vec::new();
    let io = |error| Error::Io {
        op: "write",
        path: path.to_path_buf(),
        error,
    };
    match &t.data {
        TensorData::F32(v) => encode_npy(&shape, v, &mut buf),
        TensorData::F16(v) => encode_npy(&shape, v, &mut buf),
        TensorData::I32(v) => encode_npy(&shape, v, &mut buf),
    }
    .map_err(io)?;
    write(path, &buf)
}
