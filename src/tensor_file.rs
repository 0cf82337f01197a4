//! Reading and writing safetensors files, memory-mapped, with errors that name the tensor or
//! the byte range at fault.
//!
//! Used for weights, forward inputs/outputs and sample tensors alike. Reading maps the file
//! (zero copy: tensors are views into the map) and checks the whole header before anything
//! is used, so a truncated or corrupt file is one clear error rather than a crash later.

use crate::error::{Error, Result};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors, tensor::TensorInfo};
use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(target_endian = "big")]
compile_error!("safetensors data is little-endian; big-endian hosts are not supported");

/// Element types linear-dit reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// bfloat16.
    BF16,
    /// IEEE binary16.
    F16,
    /// Signed 64-bit integer (class labels).
    I64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::BF16 | DType::F16 => 2,
            DType::I64 => 8,
        }
    }

    /// The safetensors spelling (`F32`, `BF16`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::BF16 => "BF16",
            DType::F16 => "F16",
            DType::I64 => "I64",
        }
    }

    fn from_safetensors(dtype: Dtype) -> Option<DType> {
        match dtype {
            Dtype::F32 => Some(DType::F32),
            Dtype::BF16 => Some(DType::BF16),
            Dtype::F16 => Some(DType::F16),
            Dtype::I64 => Some(DType::I64),
            _ => None,
        }
    }

    fn to_safetensors(self) -> Dtype {
        match self {
            DType::F32 => Dtype::F32,
            DType::BF16 => Dtype::BF16,
            DType::F16 => Dtype::F16,
            DType::I64 => Dtype::I64,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DType {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(DType::F32),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            "f16" | "fp16" | "float16" => Ok(DType::F16),
            other => Err(format!(
                "unknown dtype `{other}` (expected f32, bf16 or f16)"
            )),
        }
    }
}

/// Where a tensor's bytes live: inside a shared memory map, or owned.
#[derive(Clone)]
pub enum Bytes {
    /// A byte range of a mapped file.
    Mapped {
        /// The mapped file.
        map: Arc<Mmap>,
        /// Byte range within the map.
        range: Range<usize>,
    },
    /// Bytes in memory.
    Owned(Arc<[u8]>),
}

impl Bytes {
    /// The raw little-endian bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped { map, range } => &map[range.clone()],
            Bytes::Owned(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bytes::Mapped { range, .. } => write!(f, "Mapped({range:?})"),
            Bytes::Owned(b) => write!(f, "Owned({} bytes)", b.len()),
        }
    }
}

/// One tensor: dtype, shape and its bytes (usually a view into a mapped file).
#[derive(Debug, Clone)]
pub struct RawTensor {
    /// Element type.
    pub dtype: DType,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// The data, `numel × dtype.size()` bytes.
    pub bytes: Bytes,
}

impl RawTensor {
    /// A tensor over owned bytes.
    pub fn owned(dtype: DType, shape: Vec<usize>, bytes: Vec<u8>) -> Self {
        RawTensor {
            dtype,
            shape,
            bytes: Bytes::Owned(bytes.into()),
        }
    }

    /// An F32 tensor from values.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        RawTensor::owned(DType::F32, shape, bytemuck::cast_slice(values).to_vec())
    }

    /// Stores `values` as `dtype` (F32, BF16 or F16; rounding to nearest even).
    pub fn from_f32_as(dtype: DType, shape: Vec<usize>, values: &[f32]) -> Self {
        let bytes = match dtype {
            DType::F32 | DType::I64 => return RawTensor::from_f32(shape, values),
            DType::BF16 => values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
            DType::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        };
        RawTensor::owned(dtype, shape, bytes)
    }

    /// An I64 tensor from values.
    pub fn from_i64(shape: Vec<usize>, values: &[i64]) -> Self {
        RawTensor::owned(DType::I64, shape, bytemuck::cast_slice(values).to_vec())
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32 (converted from BF16/F16; an error for integer tensors).
    pub fn to_f32_vec(&self, name: &str) -> Result<Vec<f32>> {
        let bytes = self.bytes.as_slice();
        Ok(match self.dtype {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::I64 => {
                return Err(Error::UnsupportedDtype {
                    name: name.to_string(),
                    dtype: self.dtype.to_string(),
                    expected: "F32, BF16 or F16",
                });
            }
        })
    }

    /// The values as i64 (an error for float tensors).
    pub fn to_i64_vec(&self, name: &str) -> Result<Vec<i64>> {
        if self.dtype != DType::I64 {
            return Err(Error::UnsupportedDtype {
                name: name.to_string(),
                dtype: self.dtype.to_string(),
                expected: "I64",
            });
        }
        Ok(self
            .bytes
            .as_slice()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }
}

/// An opened, fully validated safetensors file.
pub struct TensorFile {
    path: PathBuf,
    map: Arc<Mmap>,
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
    metadata: HashMap<String, String>,
}

impl TensorFile {
    /// Maps `path` and validates its header and every tensor's byte range.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        // SAFETY: the map is read-only; as with every memory-mapped loader, the file must not
        // be truncated by another process while it is mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        check_extent(&path, &map)?;
        let (header_len, metadata) = SafeTensors::read_metadata(&map)
            .map_err(|e| Error::bad_file(&path, format!("not a valid safetensors file: {e}")))?;
        let tensors = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        Ok(TensorFile {
            path,
            data_start: 8 + header_len,
            tensors,
            metadata: metadata.metadata().clone().unwrap_or_default(),
            map: Arc::new(map),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `__metadata__` string map.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Names of all tensors, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Whether the file holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The shape of tensor `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|info| info.shape.as_slice())
    }

    /// A zero-copy view of tensor `name`; an error if it is absent or of an unsupported dtype.
    pub fn tensor(&self, name: &str) -> Result<RawTensor> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::bad_file(&self.path, format!("has no tensor named `{name}`")))?;
        let dtype = DType::from_safetensors(info.dtype).ok_or_else(|| Error::UnsupportedDtype {
            name: name.to_string(),
            dtype: format!("{:?}", info.dtype),
            expected: "F32, BF16, F16 or I64",
        })?;
        let (start, end) = info.data_offsets;
        Ok(RawTensor {
            dtype,
            shape: info.shape.clone(),
            bytes: Bytes::Mapped {
                map: Arc::clone(&self.map),
                range: self.data_start + start..self.data_start + end,
            },
        })
    }
}

/// Checks that the header and every declared tensor lie inside the file, so truncation is
/// reported with the byte range that is missing.
fn check_extent(path: &Path, map: &[u8]) -> Result<()> {
    let len = map.len();
    let Some(prefix) = map.get(..8) else {
        return Err(Error::bad_file(
            path,
            format!(
                "truncated: {len} bytes, but a safetensors file starts with an 8-byte header length"
            ),
        ));
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(prefix);
    let header_len = u64::from_le_bytes(n);
    if header_len > (len as u64).saturating_sub(8) {
        return Err(Error::bad_file(
            path,
            format!(
                "truncated or corrupt: the header claims bytes 8..{} but the file has {len} bytes",
                header_len.saturating_add(8)
            ),
        ));
    }
    let header = &map[8..8 + header_len as usize];
    let json: serde_json::Value = serde_json::from_slice(header).map_err(|e| {
        Error::bad_file(
            path,
            format!("corrupt header (bytes 8..{}): {e}", 8 + header_len),
        )
    })?;
    let data_start = 8 + header_len as usize;
    let Some(entries) = json.as_object() else {
        return Err(Error::bad_file(path, "corrupt header: not a JSON object"));
    };
    for (name, entry) in entries {
        if name == "__metadata__" {
            continue;
        }
        let Some(end) = entry
            .get("data_offsets")
            .and_then(|o| o.get(1))
            .and_then(serde_json::Value::as_u64)
        else {
            continue; // Malformed entries are reported by the full validation.
        };
        let start = entry["data_offsets"][0].as_u64().unwrap_or(0);
        if data_start as u64 + end > len as u64 {
            return Err(Error::bad_file(
                path,
                format!(
                    "truncated: tensor `{name}` occupies file bytes {}..{} but the file ends at byte {len}",
                    data_start as u64 + start,
                    data_start as u64 + end
                ),
            ));
        }
    }
    Ok(())
}

/// The safetensors bytes of `tensors` (name, tensor) with string `metadata`.
pub fn serialize_tensors(
    tensors: &[(String, RawTensor)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let views = tensors.iter().map(|(name, t)| (name.as_str(), View(t)));
    let metadata = (!metadata.is_empty()).then_some(metadata);
    safetensors::serialize(views, metadata)
        .map_err(|e| Error::input("tensors", format!("cannot serialise as safetensors: {e}")))
}

/// Writes `tensors` (name, tensor) and string `metadata` to `path` as safetensors.
pub fn write_tensors(
    path: impl AsRef<Path>,
    tensors: &[(String, RawTensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let bytes = serialize_tensors(tensors, metadata)?;
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Adapter from [`RawTensor`] to safetensors' `View`.
struct View<'a>(&'a RawTensor);

impl safetensors::View for View<'_> {
    fn dtype(&self) -> Dtype {
        self.0.dtype.to_safetensors()
    }

    fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(self.0.bytes.as_slice())
    }

    fn data_len(&self) -> usize {
        self.0.bytes.as_slice().len()
    }
}
