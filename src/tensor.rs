//! Host tensors: the owned f32 [`Tensor`] that crosses the public API, and [`SharedF32`], a
//! read-only f32 buffer that is a zero-copy view of a mapped weights file whenever possible.

use crate::error::{Error, Result};
use crate::limits::{bytes_of, check_alloc, checked_product};
use crate::tensor_file::{Bytes, DType, RawTensor};
use std::sync::Arc;

/// An owned, row-major f32 tensor on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// Wraps `data` as a tensor of `shape`; an error when the element count differs or the
    /// shape's product overflows (a wrapped product must never pass for a small tensor).
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let numel = checked_product("tensor", &shape)?;
        if numel != data.len() {
            return Err(Error::input(
                "tensor",
                format!(
                    "shape {shape:?} holds {numel} elements but {} values were given",
                    data.len()
                ),
            ));
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros, for sizes the program chose itself (tests, examples, buffers of
    /// an already validated forward).
    ///
    /// # Panics
    ///
    /// When the shape's product overflows `usize`. For sizes from outside (a request, a
    /// file), use [`Tensor::try_zeros`].
    pub fn zeros(shape: Vec<usize>) -> Self {
        match Tensor::try_zeros(shape) {
            Ok(t) => t,
            Err(e) => panic!("Tensor::zeros: {e}"),
        }
    }

    /// A tensor of zeros; an error naming the sizes when their product overflows or the
    /// buffer (4 bytes per element) is above the allocation budget ([`crate::limits`]).
    pub fn try_zeros(shape: Vec<usize>) -> Result<Self> {
        let numel = checked_product("tensor", &shape)?;
        check_alloc("tensor", bytes_of(&shape, 4))?;
        Ok(Tensor {
            shape,
            data: vec![0.0; numel],
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor, returning its values.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Reads an F32/BF16/F16 tensor (converted to f32); its bytes must match its shape.
    pub fn from_raw(name: &str, raw: &RawTensor) -> Result<Self> {
        // `to_f32_vec` checks the byte count against the checked shape product.
        Ok(Tensor {
            shape: raw.shape.clone(),
            data: raw.to_f32_vec(name)?,
        })
    }

    /// As an F32 [`RawTensor`] for writing to a file.
    pub fn to_raw(&self) -> RawTensor {
        RawTensor::from_f32(self.shape.clone(), &self.data)
    }
}

/// A read-only f32 buffer shared between threads: a view into a mapped file when the file
/// stores the tensor as aligned F32, otherwise converted once into memory.
#[derive(Clone)]
pub struct SharedF32(Storage);

#[derive(Clone)]
enum Storage {
    Mapped(Bytes),
    Owned(Arc<[f32]>),
}

impl SharedF32 {
    /// Views (or converts) `raw` as f32.
    pub fn from_raw(name: &str, raw: &RawTensor) -> Result<Self> {
        if raw.dtype == DType::F32
            && bytemuck::try_cast_slice::<u8, f32>(raw.bytes.as_slice()).is_ok()
        {
            return Ok(SharedF32(Storage::Mapped(raw.bytes.clone())));
        }
        Ok(SharedF32(Storage::Owned(raw.to_f32_vec(name)?.into())))
    }

    /// Owns `values`.
    pub fn from_vec(values: Vec<f32>) -> Self {
        SharedF32(Storage::Owned(values.into()))
    }

    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        match &self.0 {
            // Alignment and length were checked in `from_raw`, and the bytes are immutable.
            Storage::Mapped(bytes) => bytemuck::cast_slice(bytes.as_slice()),
            Storage::Owned(values) => values,
        }
    }

    /// Whether the values are read straight from a mapped file (no copy was made).
    pub fn is_zero_copy(&self) -> bool {
        matches!(&self.0, Storage::Mapped(bytes) if bytes.is_mapped())
    }
}

impl std::fmt::Debug for SharedF32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SharedF32({} values, zero_copy: {})",
            self.as_slice().len(),
            self.is_zero_copy()
        )
    }
}
