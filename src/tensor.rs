//! Tensors as the harness passes them to and from engines: a dtype, a shape
//! and the values, row-major.

use std::fmt;

use half::f16;

/// Element types the harness moves between files and engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// 32-bit signed integer.
    I32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
        }
    }

    /// The lowercase name used in messages and listings (`f32`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I32 => "i32",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The alignment of every tensor's values: what device DMA needs, and what
/// the plugin ABI promises for data the harness passes.
pub const ALIGN: usize = 64;

/// Values that start at an [`ALIGN`]-byte-aligned address, used as a
/// slice. Built from a `Vec` without copying when the `Vec` is aligned
/// already; otherwise its buffer grows by less than [`ALIGN`] bytes and the
/// values move up within it (`realloc`, then a `memmove`), so even a large
/// tensor never exists twice.
#[derive(Debug)]
pub struct Aligned<T> {
    buf: Vec<T>,
    start: usize,
    len: usize,
}

impl<T: Copy + Default> Aligned<T> {
    /// `values`, aligned.
    pub fn from_vec(mut values: Vec<T>) -> Self {
        let len = values.len();
        if values.as_ptr().align_offset(ALIGN) == 0 {
            return Aligned {
                buf: values,
                start: 0,
                len,
            };
        }
        values.reserve_exact(ALIGN / std::mem::size_of::<T>().max(1));
        let start = values.as_ptr().align_offset(ALIGN);
        // Within the capacity just reserved: no reallocation, the buffer
        // (and so the alignment) stays where it is.
        values.resize(len + start, T::default());
        values.copy_within(0..len, start);
        Aligned {
            buf: values,
            start,
            len,
        }
    }

    /// No values yet, room for `capacity` without moving.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf: Vec<T> =
            Vec::with_capacity(capacity + ALIGN / std::mem::size_of::<T>().max(1));
        let start = buf.as_ptr().align_offset(ALIGN);
        buf.resize(start, T::default());
        Aligned { buf, start, len: 0 }
    }

    /// `len` values from `values`, written once, straight into aligned
    /// memory (`values` may yield fewer; the rest stay default).
    pub(crate) fn from_iter_len(len: usize, values: impl IntoIterator<Item = T>) -> Self {
        let mut a = Aligned::with_capacity(len);
        a.extend(values.into_iter().take(len));
        a
    }

    /// Drops every value, keeping the buffer.
    #[inline]
    pub fn clear(&mut self) {
        self.buf.truncate(self.start);
        self.len = 0;
    }

    /// Appends `values`; if the buffer had to grow and moved off the
    /// alignment, the values move back onto it.
    #[inline]
    pub fn extend(&mut self, values: impl IntoIterator<Item = T>) {
        self.buf.truncate(self.start + self.len);
        self.buf.extend(values);
        self.len = self.buf.len() - self.start;
        if self.buf[self.start..].as_ptr().align_offset(ALIGN) != 0 {
            *self = Aligned::from_vec(std::mem::take(self).into_vec());
        }
    }

    /// An aligned copy of `values` (one memcpy).
    pub fn copied(values: &[T]) -> Self {
        let mut a = Self::with_capacity(values.len());
        a.extend_from_slice(values);
        a
    }

    /// Appends a copy of `values` (a `memcpy`).
    #[inline]
    pub fn extend_from_slice(&mut self, values: &[T]) {
        self.buf.truncate(self.start + self.len);
        self.buf.extend_from_slice(values);
        self.len = self.buf.len() - self.start;
        if self.buf[self.start..].as_ptr().align_offset(ALIGN) != 0 {
            *self = Aligned::from_vec(std::mem::take(self).into_vec());
        }
    }

    /// The values as a `Vec` (moved down to the start of the buffer when
    /// they were shifted).
    pub fn into_vec(mut self) -> Vec<T> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.start + self.len, 0);
        }
        self.buf.truncate(self.len);
        self.buf
    }
}

impl<T> Default for Aligned<T> {
    fn default() -> Self {
        Aligned {
            buf: Vec::new(),
            start: 0,
            len: 0,
        }
    }
}

impl<T> std::ops::Deref for Aligned<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl<T> std::ops::DerefMut for Aligned<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

impl<T: Copy + Default> Clone for Aligned<T> {
    fn clone(&self) -> Self {
        Aligned::from_vec(self.to_vec())
    }
}

impl<T: PartialEq> PartialEq for Aligned<T> {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl<T: Copy + Default> From<Vec<T>> for Aligned<T> {
    fn from(v: Vec<T>) -> Self {
        Aligned::from_vec(v)
    }
}

impl<T: Copy + Default> FromIterator<T> for Aligned<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Aligned::from_vec(iter.into_iter().collect())
    }
}

/// The values of a tensor, typed, each at an [`ALIGN`]-byte-aligned
/// address.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TensorData {
    /// f32 values.
    F32(Aligned<f32>),
    /// f16 values.
    F16(Aligned<f16>),
    /// i32 values.
    I32(Aligned<i32>),
}

impl TensorData {
    /// The dtype of the values.
    #[inline]
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::I32(_) => DType::I32,
        }
    }

    /// Number of values.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::I32(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the values a copy of `values`, reusing the buffer when the
    /// dtype is the same.
    #[inline]
    pub fn assign(&mut self, values: Values<'_>) {
        match (self, values) {
            (TensorData::F32(a), Values::F32(v)) => {
                a.clear();
                a.extend_from_slice(v);
            }
            (TensorData::F16(a), Values::F16(v)) => {
                a.clear();
                a.extend_from_slice(v);
            }
            (TensorData::I32(a), Values::I32(v)) => {
                a.clear();
                a.extend_from_slice(v);
            }
            (data, values) => *data = values.to_data(),
        }
    }

    /// Makes the values the little-endian `bytes` of `dtype`, reusing the
    /// buffer when the dtype is the same (read in place where the bytes are
    /// aligned, decoded otherwise); `None` (and the values unchanged) when
    /// the byte count is not a whole number of values.
    #[inline]
    pub fn assign_le_bytes(&mut self, dtype: DType, bytes: &[u8]) -> Option<()> {
        if bytes.len() % dtype.size() != 0 {
            return None;
        }
        if let Some(values) = Values::from_le_bytes(dtype, bytes) {
            self.assign(values);
            return Some(());
        }
        match (self, dtype) {
            (TensorData::F32(a), DType::F32) => {
                a.clear();
                a.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
            (TensorData::F16(a), DType::F16) => {
                a.clear();
                a.extend(
                    bytes
                        .chunks_exact(2)
                        .map(|c| f16::from_le_bytes([c[0], c[1]])),
                );
            }
            (TensorData::I32(a), DType::I32) => {
                a.clear();
                a.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
            (data, _) => *data = TensorData::from_le_bytes(dtype, bytes)?,
        }
        Some(())
    }

    /// The values, borrowed.
    #[inline]
    pub fn values(&self) -> Values<'_> {
        match self {
            TensorData::F32(v) => Values::F32(v),
            TensorData::F16(v) => Values::F16(v),
            TensorData::I32(v) => Values::I32(v),
        }
    }

    /// The values as little-endian bytes (what files and C ABIs carry).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            TensorData::F32(v) => bytemuck::cast_slice(v),
            TensorData::F16(v) => bytemuck::cast_slice(v),
            TensorData::I32(v) => bytemuck::cast_slice(v),
        }
    }

    /// Decodes little-endian bytes of `dtype`; `None` when the byte count is
    /// not a whole number of elements.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> Option<Self> {
        if bytes.len() % dtype.size() != 0 {
            return None;
        }
        let n = bytes.len() / dtype.size();
        // Aligned bytes on a little-endian machine are the values: one
        // memcpy.
        if let Some(values) = Values::from_le_bytes(dtype, bytes) {
            return Some(values.to_data());
        }
        Some(match dtype {
            DType::F32 => TensorData::F32(Aligned::from_iter_len(
                n,
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            )),
            DType::F16 => TensorData::F16(Aligned::from_iter_len(
                n,
                bytes
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]])),
            )),
            DType::I32 => TensorData::I32(Aligned::from_iter_len(
                n,
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            )),
        })
    }
}

/// Borrowed typed values: what [`TensorData`] holds, or little-endian bytes
/// from a C caller read in place.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Values<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// f16 values.
    F16(&'a [f16]),
    /// i32 values.
    I32(&'a [i32]),
}

impl<'a> Values<'a> {
    /// The dtype of the values.
    #[inline]
    pub fn dtype(self) -> DType {
        match self {
            Values::F32(_) => DType::F32,
            Values::F16(_) => DType::F16,
            Values::I32(_) => DType::I32,
        }
    }

    /// Number of values.
    #[inline]
    pub fn len(self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::F16(v) => v.len(),
            Values::I32(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Little-endian bytes of `dtype` read in place, without a copy: `None`
    /// where that is impossible (bytes not aligned for the type, not a
    /// whole number of values, or a big-endian machine), and the caller
    /// decodes them with [`TensorData::from_le_bytes`] instead.
    #[inline]
    pub fn from_le_bytes(dtype: DType, bytes: &'a [u8]) -> Option<Self> {
        if cfg!(target_endian = "big") {
            return None;
        }
        Some(match dtype {
            DType::F32 => Values::F32(bytemuck::try_cast_slice(bytes).ok()?),
            DType::F16 => Values::F16(bytemuck::try_cast_slice(bytes).ok()?),
            DType::I32 => Values::I32(bytemuck::try_cast_slice(bytes).ok()?),
        })
    }

    /// An owned, aligned copy.
    pub(crate) fn to_data(self) -> TensorData {
        match self {
            Values::F32(v) => TensorData::F32(Aligned::copied(v)),
            Values::F16(v) => TensorData::F16(Aligned::copied(v)),
            Values::I32(v) => TensorData::I32(Aligned::copied(v)),
        }
    }
}

/// A borrowed tensor: a shape and values that live elsewhere (a
/// [`Tensor`], or a C caller's buffer for the length of a call).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorView<'a> {
    /// Dimensions, outermost first.
    pub shape: &'a [usize],
    /// The values.
    pub values: Values<'a>,
}

impl TensorView<'_> {
    /// The dtype of the values.
    #[inline]
    pub fn dtype(&self) -> DType {
        self.values.dtype()
    }

    /// The number of values the shape calls for (`usize::MAX` when that
    /// overflows, which no data can match).
    #[inline]
    pub fn numel(&self) -> usize {
        self.shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX)
    }

    /// Checks that the number of values matches the shape; `what` names the
    /// tensor in the error.
    ///
    /// # Errors
    /// [`Error::ByteCount`](crate::Error::ByteCount) when they differ.
    pub fn validate(&self, what: &str) -> crate::Result<()> {
        if self.numel() != self.values.len() {
            return Err(crate::Error::ByteCount {
                what: what.to_string(),
                dtype: self.dtype(),
                shape: self.shape.to_vec(),
                expected: self.numel(),
                found: self.values.len(),
            });
        }
        Ok(())
    }

    /// An owned copy.
    pub fn to_tensor(&self) -> Tensor {
        Tensor {
            shape: self.shape.to_vec(),
            data: self.values.to_data(),
        }
    }
}

/// A tensor: a shape and typed values, row-major.
///
/// The fields are public and not checked against each other, so that a
/// harness can hand an engine exactly the malformed tensor it wants to test
/// (ten values for a shape of nine, say). [`Tensor::validate`] checks them.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The values.
    pub data: TensorData,
}

impl Tensor {
    /// An f32 tensor.
    pub fn f32(shape: impl Into<Vec<usize>>, values: Vec<f32>) -> Self {
        Tensor {
            shape: shape.into(),
            data: TensorData::F32(values.into()),
        }
    }

    /// An f32 tensor with every value `value`.
    pub fn full(shape: impl Into<Vec<usize>>, value: f32) -> Self {
        let shape = shape.into();
        let n = shape.iter().product();
        Tensor {
            shape,
            data: TensorData::F32(Aligned::from_iter_len(n, std::iter::repeat_n(value, n))),
        }
    }

    /// The dtype of the values.
    #[inline]
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The number of values the shape calls for (`usize::MAX` when that
    /// overflows, which no data can match).
    #[inline]
    pub fn numel(&self) -> usize {
        self.view().numel()
    }

    /// Checks that the number of values matches the shape; `what` names the
    /// tensor in the error.
    ///
    /// # Errors
    /// [`Error::ByteCount`](crate::Error::ByteCount) when they differ.
    pub fn validate(&self, what: &str) -> crate::Result<()> {
        self.view().validate(what)
    }

    /// The tensor, borrowed.
    #[inline]
    pub fn view(&self) -> TensorView<'_> {
        TensorView {
            shape: &self.shape,
            values: self.data.values(),
        }
    }

    /// The values converted to f32 (f16 widened, i32 cast).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.to_vec(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The f32 values, if the tensor is f32.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }
}

/// A named tensor's description: what an engine lists for its inputs,
/// outputs and refittable weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The name (for weights, the ONNX initializer name).
    pub name: String,
    /// The element type.
    pub dtype: DType,
    /// The shape; `None` for a dimension the model leaves symbolic (a
    /// dynamic batch, say).
    pub shape: Vec<Option<usize>>,
}

impl TensorInfo {
    /// The shape with every dimension known, or `None` if any is symbolic.
    pub fn static_shape(&self) -> Option<Vec<usize>> {
        self.shape.iter().copied().collect()
    }

    /// The shape as text: `[1, 1, 3, 3]`, with `?` for a symbolic dimension.
    pub fn shape_text(&self) -> String {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|d| d.map_or_else(|| "?".to_string(), |d| d.to_string()))
            .collect();
        format!("[{}]", dims.join(", "))
    }
}

/// Checks inputs against an engine's declared inputs: their count, and each
/// one's dtype, shape (a declared `None` takes any size) and value count.
///
/// # Errors
/// [`Error::InputCount`](crate::Error::InputCount),
/// [`Error::DTypeMismatch`](crate::Error::DTypeMismatch),
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) or
/// [`Error::ByteCount`](crate::Error::ByteCount) naming the input.
pub fn check_inputs(infos: &[TensorInfo], inputs: &[Tensor]) -> crate::Result<()> {
    if inputs.len() != infos.len() {
        return Err(crate::Error::InputCount {
            expected: infos.len(),
            found: inputs.len(),
        });
    }
    for (info, t) in infos.iter().zip(inputs) {
        let what = || format!("input '{}'", info.name);
        if t.dtype() != info.dtype {
            return Err(crate::Error::DTypeMismatch {
                what: what(),
                expected: info.dtype,
                found: t.dtype().to_string(),
            });
        }
        let fits = t.shape.len() == info.shape.len()
            && info
                .shape
                .iter()
                .zip(&t.shape)
                .all(|(d, &f)| d.is_none_or(|d| d == f) && f > 0);
        if !fits {
            return Err(crate::Error::ShapeMismatch {
                what: format!("{} (declared {})", what(), info.shape_text()),
                expected: info.shape.iter().map(|d| d.unwrap_or(0)).collect(),
                found: t.shape.clone(),
            });
        }
        if t.numel() != t.data.len() {
            t.validate(&what())?;
        }
    }
    Ok(())
}
