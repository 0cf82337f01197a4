//! Typed views of device memory: an address, an element type and a length in elements, so a
//! launcher's signature says what each pointer holds — fp32, the storage type, i64 labels —
//! and checks that it is long enough for the launch. A view does not own its memory: the
//! arena or weight buffer it was cut from must outlive every launch that reads it, which is
//! what the launchers' `# Safety` sections ask of their callers.

use super::device::internal_error;
use crate::dtype::DType;
use crate::error::Result;
use std::marker::PhantomData;

/// An element type a device buffer holds.
pub trait Element {
    /// What the element is, for error messages.
    const NAME: &'static str;
    /// Whether the element is the storage type's (whose size is chosen at start-up).
    const IS_STORAGE: bool = false;
}

/// An element type of one size whatever the storage type.
pub trait FixedElement: Element {
    /// Bytes per element.
    const SIZE: usize;
}

impl Element for f32 {
    const NAME: &'static str = "f32";
}

impl FixedElement for f32 {
    const SIZE: usize = 4;
}

impl Element for i64 {
    const NAME: &'static str = "i64";
}

impl FixedElement for i64 {
    const SIZE: usize = 8;
}

/// Elements of the backend's storage type (fp32, bf16 or fp16, chosen at start-up): weights
/// and the activations the GEMMs read and write.
pub enum Storage {}

impl Element for Storage {
    const NAME: &'static str = "storage-type";
    const IS_STORAGE: bool = true;
}

/// `len` elements of type `T`, `element_bytes` each, at device address `addr`.
pub struct DeviceSlice<T> {
    addr: u64,
    len: usize,
    element_bytes: usize,
    element: PhantomData<T>,
}

impl<T> Clone for DeviceSlice<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for DeviceSlice<T> {}

impl<T> std::fmt::Debug for DeviceSlice<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceSlice({:#x}, {} elements)", self.addr, self.len)
    }
}

impl<T: FixedElement> DeviceSlice<T> {
    /// The view of `len` elements at `addr`: the caller vouches that they lie in one live
    /// allocation (an arena region or a device buffer).
    pub fn new(addr: u64, len: usize) -> Self {
        DeviceSlice::with_element_bytes(addr, len, T::SIZE)
    }
}

impl DeviceSlice<Storage> {
    /// The view of `len` elements of `dtype` at `addr` (see [`DeviceSlice::new`]).
    pub fn storage(addr: u64, len: usize, dtype: DType) -> Self {
        DeviceSlice::with_element_bytes(addr, len, dtype.size())
    }
}

impl<T: Element> DeviceSlice<T> {
    fn with_element_bytes(addr: u64, len: usize, element_bytes: usize) -> Self {
        DeviceSlice {
            addr,
            len,
            element_bytes,
            element: PhantomData,
        }
    }

    /// The device address of the first element.
    pub fn addr(self) -> u64 {
        self.addr
    }

    /// Length, elements.
    #[cfg(test)]
    pub fn len(self) -> usize {
        self.len
    }

    /// Size, bytes.
    #[cfg(test)]
    pub fn bytes(self) -> usize {
        self.len * self.element_bytes
    }

    /// The elements from `start` on (a column of a row-major matrix is such a tail, read at
    /// a stride by the kernel).
    pub fn skip(self, start: usize) -> Result<Self> {
        self.slice(start, self.len.saturating_sub(start))
    }

    /// Elements `start .. start + len`.
    pub fn slice(self, start: usize, len: usize) -> Result<Self> {
        if start.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(internal_error(format!(
                "elements {start}..{} of a {}-element {} buffer",
                start.saturating_add(len),
                self.len,
                T::NAME
            )));
        }
        Ok(DeviceSlice::with_element_bytes(
            self.addr + (start * self.element_bytes) as u64,
            len,
            self.element_bytes,
        ))
    }

    /// Fails (an internal error) when the view holds storage-type elements that are not
    /// `dtype`'s: a kernel instance of one storage type would misread every value.
    pub fn require_type(self, what: &str, dtype: DType) -> Result<()> {
        if T::IS_STORAGE && self.element_bytes != dtype.size() {
            return Err(internal_error(format!(
                "{what}: a buffer of {}-byte elements passed to a {} kernel",
                self.element_bytes,
                dtype.name()
            )));
        }
        Ok(())
    }

    /// Fails (an internal error: the arena layout and the launch disagree) unless the view
    /// holds at least `needed` elements; `what` names the argument.
    pub fn require(self, what: &str, needed: usize) -> Result<()> {
        if self.len < needed {
            return Err(internal_error(format!(
                "{what}: the launch reads {needed} {} elements of a buffer of {}",
                T::NAME,
                self.len
            )));
        }
        Ok(())
    }
}

impl DeviceSlice<f32> {
    /// The same memory seen as storage-type elements, for the fp32 storage type (the upload
    /// buffer doubles as the GEMM input then).
    pub fn as_fp32_storage(self) -> DeviceSlice<Storage> {
        DeviceSlice::storage(self.addr, self.len, DType::F32)
    }
}

/// The device address of an optional buffer: null (0) when absent, as the kernels expect.
pub fn addr_or_null<T: Element>(slice: Option<DeviceSlice<T>>) -> u64 {
    slice.map_or(0, DeviceSlice::addr)
}

/// Elements a kernel reads from a `[batch, stride]` row-major matrix when it takes `width`
/// values of each row from the view's start: every row's stride but the last one's.
pub fn strided_extent(batch: usize, stride: usize, width: usize) -> usize {
    batch.checked_sub(1).map_or(0, |rows| rows * stride + width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_stay_inside_their_buffer() {
        let buffer = DeviceSlice::<f32>::new(0x1000, 10);
        let tail = buffer.skip(4).unwrap();
        assert_eq!((tail.addr(), tail.len()), (0x1010, 6));
        let half = DeviceSlice::storage(0x1000, 10, DType::BF16);
        let part = half.slice(2, 3).unwrap();
        assert_eq!((part.addr(), part.len(), part.bytes()), (0x1004, 3, 6));
        assert!(part.require_type("part", DType::BF16).is_ok());
        assert!(part.require_type("part", DType::F32).is_err());
        assert!(buffer.slice(8, 3).is_err());
        assert!(buffer.slice(usize::MAX, 2).is_err());
        assert!(buffer.skip(11).is_err());
        assert!(buffer.require("x", 10).is_ok());
        assert!(buffer.require("x", 11).is_err());
    }

    #[test]
    fn a_strided_read_ends_inside_the_last_row() {
        assert_eq!(strided_extent(0, 12, 4), 0);
        assert_eq!(strided_extent(1, 12, 4), 4);
        assert_eq!(strided_extent(3, 12, 4), 28);
    }
}
