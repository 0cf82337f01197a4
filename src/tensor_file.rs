//! Reading and writing safetensors files, memory-mapped, with errors that name the tensor or
//! the byte range at fault.
//!
//! Used for weights, forward inputs/outputs and sample tensors alike. Reading maps the file
//! (zero copy: tensors are views into the map) and checks the whole header before anything
//! is used, so a truncated or corrupt file is one clear error rather than a crash later.

pub use crate::dtype::DType;
use crate::dtype::{decode_f32, encode_f32};
use crate::error::{Error, Result};
use crate::limits::{bytes_of, check_alloc, checked_product};
use memmap2::{Mmap, MmapMut};
use safetensors::{Dtype, SafeTensors, tensor::TensorInfo};
use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(target_endian = "big")]
compile_error!("safetensors data is little-endian; big-endian hosts are not supported");

impl DType {
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

/// A tensor's bytes: a range of a shared memory map, or owned. Where they live is private
/// (the map is memmap2's type, not this crate's API); [`Bytes::is_mapped`] tells which.
#[derive(Clone)]
pub struct Bytes(Location);

/// Where [`Bytes`] live.
#[derive(Clone)]
enum Location {
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
        match &self.0 {
            Location::Mapped { map, range } => &map[range.clone()],
            Location::Owned(bytes) => bytes,
        }
    }

    /// Whether the bytes are read straight from a mapped file (no copy was made).
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, Location::Mapped { .. })
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Location::Mapped { range, .. } => write!(f, "Mapped({range:?})"),
            Location::Owned(b) => write!(f, "Owned({} bytes)", b.len()),
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
            bytes: Bytes(Location::Owned(bytes.into())),
        }
    }

    /// An F32 tensor from values.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        RawTensor::owned(DType::F32, shape, bytemuck::cast_slice(values).to_vec())
    }

    /// Stores `values` as `dtype` (F32, BF16 or F16; rounding to nearest even). F16 follows
    /// the fp16 overflow policy of [`crate::dtype::f16_saturating`]: finite values beyond ±65504 are stored
    /// as ±65504, not ±inf.
    pub fn from_f32_as(dtype: DType, shape: Vec<usize>, values: &[f32]) -> Self {
        match encode_f32(dtype, values) {
            Some(bytes) => RawTensor::owned(dtype, shape, bytes),
            None => RawTensor::from_f32(shape, values),
        }
    }

    /// An I64 tensor from values.
    pub fn from_i64(shape: Vec<usize>, values: &[i64]) -> Self {
        RawTensor::owned(DType::I64, shape, bytemuck::cast_slice(values).to_vec())
    }

    /// Number of elements; an error when the shape's product overflows `usize` (the fields
    /// are public, so nothing else guarantees it fits).
    pub fn numel(&self) -> Result<usize> {
        checked_product("tensor", &self.shape)
    }

    /// Checks that the bytes hold exactly `numel × dtype.size()` bytes, so a reader never
    /// yields more or fewer values than the shape says.
    fn check_len(&self, name: &str) -> Result<()> {
        let numel = checked_product(name, &self.shape)?;
        let len = self.bytes.as_slice().len();
        if bytes_of(&[numel], self.dtype.size()) != len as u128 {
            return Err(Error::TooLarge {
                what: name.to_string(),
                reason: format!(
                    "shape {:?} of {} needs {numel} × {} bytes but {len} bytes were given",
                    self.shape,
                    self.dtype,
                    self.dtype.size()
                ),
            });
        }
        Ok(())
    }

    /// The values as f32 (converted from BF16/F16; an error for integer tensors, for bytes
    /// that do not match the shape, or for a copy above the allocation budget).
    pub fn to_f32_vec(&self, name: &str) -> Result<Vec<f32>> {
        self.check_len(name)?;
        let numel = self.bytes.as_slice().len() / self.dtype.size();
        check_alloc(name, bytes_of(&[numel], 4))?;
        decode_f32(self.dtype, self.bytes.as_slice()).ok_or_else(|| Error::UnsupportedDtype {
            name: name.to_string(),
            dtype: self.dtype.to_string(),
            expected: "F32, BF16 or F16",
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
        self.check_len(name)?;
        check_alloc(name, self.bytes.as_slice().len() as u128)?;
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
        TensorFile::from_map(path, map)
    }

    /// Validates `bytes` as a safetensors file and copies them into an anonymous map, so
    /// the result behaves exactly like an opened file; `path` only names it in errors.
    /// (For bytes from a request or a fuzzer, with no file behind them.)
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: &[u8]) -> Result<Self> {
        let path = path.into();
        // Validate before copying: a corrupt header is refused without a second allocation.
        let header = validate(&path, bytes)?;
        check_alloc("the safetensors bytes", bytes.len() as u128)?;
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        // `validate` guarantees at least 8 bytes, so the anonymous map is never empty.
        let mut map = MmapMut::map_anon(bytes.len()).map_err(io)?;
        map.copy_from_slice(bytes);
        let map = map.make_read_only().map_err(io)?;
        Ok(TensorFile::with_header(path, map, header))
    }

    fn from_map(path: PathBuf, map: Mmap) -> Result<Self> {
        let header = validate(&path, &map)?;
        Ok(TensorFile::with_header(path, map, header))
    }

    /// A file over `map`, whose `header` [`validate`] read from the same bytes.
    fn with_header(path: PathBuf, map: Mmap, header: Header) -> Self {
        let (data_start, tensors, metadata) = header;
        TensorFile {
            path,
            data_start,
            tensors,
            metadata,
            map: Arc::new(map),
        }
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
            bytes: Bytes(Location::Mapped {
                map: Arc::clone(&self.map),
                range: self.data_start + start..self.data_start + end,
            }),
        })
    }
}

/// What [`validate`] reads off a header: where the data starts, the tensors, the metadata.
type Header = (usize, HashMap<String, TensorInfo>, HashMap<String, String>);

/// Checks a whole safetensors buffer: the header length, the header JSON (no duplicate key
/// at any level, which `serde_json` would silently resolve to the last one), that every
/// declared tensor lies inside the buffer (truncation is reported with the missing byte
/// range), then the safetensors crate's checks (dtypes, contiguous in-order offsets, byte
/// counts that match the shapes, products that do not overflow, no trailing bytes).
fn validate(path: &Path, buffer: &[u8]) -> Result<Header> {
    let len = buffer.len();
    let Some(prefix) = buffer.get(..8) else {
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
    // `len - 8` cannot underflow (at least 8 bytes), and a header length within the buffer
    // fits usize, so the casts below are exact.
    if header_len > (len - 8) as u64 {
        return Err(Error::bad_file(
            path,
            format!(
                "truncated or corrupt: the header claims bytes 8..{} but the file has {len} bytes",
                u128::from(header_len) + 8
            ),
        ));
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(Error::bad_file(
            path,
            format!(
                "corrupt: a header of {header_len} bytes (more than {MAX_HEADER_BYTES}; a \
                 header takes about 100 bytes per tensor)"
            ),
        ));
    }
    let data_start = 8 + header_len as usize;
    let header = &buffer[8..data_start];
    let entries = serde_json::from_slice::<HeaderOffsets>(header)
        .map_err(|e| Error::bad_file(path, format!("corrupt header (bytes 8..{data_start}): {e}")))?
        .0;
    for (name, [start, end]) in entries {
        let Some(end) = end else {
            continue; // Malformed entries are reported by the full validation below.
        };
        let start = start.unwrap_or(0);
        // u128: offsets near u64::MAX must not wrap into a range that looks in bounds.
        let file_end = data_start as u128 + u128::from(end);
        if file_end > len as u128 {
            return Err(Error::bad_file(
                path,
                format!(
                    "truncated: tensor `{name}` occupies file bytes {}..{file_end} but the file ends at byte {len}",
                    data_start as u128 + u128::from(start),
                ),
            ));
        }
    }
    let (_, metadata) = SafeTensors::read_metadata(buffer)
        .map_err(|e| Error::bad_file(path, format!("not a valid safetensors file: {e}")))?;
    let tensors = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, info.clone()))
        .collect();
    Ok((
        data_start,
        tensors,
        metadata.metadata().clone().unwrap_or_default(),
    ))
}

/// The largest header read: 16 MiB, room for some 150,000 tensors (real checkpoints hold
/// a few thousand per file; the format itself allows 100 MB). Parsing is proportional to it.
const MAX_HEADER_BYTES: u64 = 16 << 20;

/// The header's tensor entries with their `data_offsets` (`None` where not a u64), parsed
/// with duplicate keys refused at every level: serde_json lets the last of two equal keys
/// win, so a header with two entries for one tensor (or one metadata key twice) would be
/// read differently by different readers. Keeps only the offsets, so memory stays small
/// whatever the header holds.
struct HeaderOffsets(Vec<(String, [Option<u64>; 2])>);

impl<'de> Deserialize<'de> for HeaderOffsets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = HeaderOffsets;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut seen = HashSet::new();
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "__metadata__" {
                        map.next_value_seed(NoDuplicates)?;
                    } else {
                        let offsets = map.next_value_seed(EntryOffsets)?;
                        entries.push((key.clone(), offsets));
                    }
                    if !seen.insert(key.clone()) {
                        return Err(duplicate(&key));
                    }
                }
                Ok(HeaderOffsets(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

fn duplicate<E: serde::de::Error>(key: &str) -> E {
    E::custom(format!("duplicate key `{key}`"))
}

/// Walks any JSON value, refusing duplicate object keys at every level; keeps nothing.
/// (serde_json's recursion limit bounds the nesting.)
struct NoDuplicates;

impl<'de> DeserializeSeed<'de> for NoDuplicates {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value without duplicate keys")
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicates)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value_seed(NoDuplicates)?;
            if !seen.insert(key.clone()) {
                return Err(duplicate(&key));
            }
        }
        Ok(())
    }
}

/// One tensor entry: its two `data_offsets` where they are u64s; any other value (or field)
/// is only walked for duplicates and left to the full validation.
struct EntryOffsets;

impl<'de> DeserializeSeed<'de> for EntryOffsets {
    type Value = [Option<u64>; 2];

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntryOffsets {
    type Value = [Option<u64>; 2];

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a tensor entry")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        let mut offsets = [None, None];
        while let Some(key) = map.next_key::<String>()? {
            if key == "data_offsets" {
                offsets = map.next_value_seed(FirstTwoU64)?;
            } else {
                map.next_value_seed(NoDuplicates)?;
            }
            if !seen.insert(key.clone()) {
                return Err(duplicate(&key));
            }
        }
        Ok(offsets)
    }

    // Not an object: nothing to extract; the full validation rejects it.
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok([None, None])
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok([None, None])
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
        Ok([None, None])
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok([None, None])
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
        Ok([None, None])
    }

    fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
        Ok([None, None])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<Self::Value, A::Error> {
        NoDuplicates.visit_seq(seq)?;
        Ok([None, None])
    }
}

/// The first two elements of an array, where they are u64s; the rest is walked.
struct FirstTwoU64;

impl<'de> DeserializeSeed<'de> for FirstTwoU64 {
    type Value = [Option<u64>; 2];

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FirstTwoU64 {
    type Value = [Option<u64>; 2];

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("data offsets")
    }

    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut first = [None, None];
        let mut i = 0;
        while let Some(value) = seq.next_element_seed(MaybeU64)? {
            if let Some(slot) = first.get_mut(i) {
                *slot = value;
            }
            i += 1;
        }
        Ok(first)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Self::Value, A::Error> {
        NoDuplicates.visit_map(map)?;
        Ok([None, None])
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok([None, None])
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok([None, None])
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
        Ok([None, None])
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok([None, None])
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
        Ok([None, None])
    }

    fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
        Ok([None, None])
    }
}

/// A u64, or `None` for any other value (walked for duplicates).
struct MaybeU64;

impl<'de> DeserializeSeed<'de> for MaybeU64 {
    type Value = Option<u64>;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MaybeU64 {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an offset")
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<Self::Value, A::Error> {
        NoDuplicates.visit_seq(seq)?;
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Self::Value, A::Error> {
        NoDuplicates.visit_map(map)?;
        Ok(None)
    }
}

/// The safetensors bytes of `tensors` (name, tensor) with string `metadata`.
pub fn serialize_tensors(
    tensors: &[(String, RawTensor)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    check_writable(tensors)?;
    let views = tensors.iter().map(|(name, t)| (name.as_str(), View(t)));
    let metadata = (!metadata.is_empty()).then_some(metadata);
    safetensors::serialize(views, metadata)
        .map_err(|e| Error::input("tensors", format!("cannot serialise as safetensors: {e}")))
}

/// Writes `tensors` (name, tensor) and string `metadata` to `path` as safetensors (mode
/// 0644), streamed to the file (no second copy of the data in memory).
pub fn write_tensors(
    path: impl AsRef<Path>,
    tensors: &[(String, RawTensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    check_writable(tensors)?;
    let views = tensors.iter().map(|(name, t)| (name.as_str(), View(t)));
    let metadata = (!metadata.is_empty()).then_some(metadata);
    safetensors::serialize_to_file(views, metadata, path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(source) => Error::Io {
            path: path.to_path_buf(),
            source,
        },
        other => Error::input(
            "tensors",
            format!("cannot serialise as safetensors: {other}"),
        ),
    })?;
    // The writer goes through a private temporary file (renamed over `path`, so a mapped
    // old file is never truncated), which leaves it 0600: give it the usual 0644.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(
            |source| Error::Io {
                path: path.to_path_buf(),
                source,
            },
        )?;
    }
    Ok(())
}

/// The safetensors writer multiplies shapes unchecked: check every tensor's bytes against
/// its checked shape product first.
fn check_writable(tensors: &[(String, RawTensor)]) -> Result<()> {
    tensors.iter().try_for_each(|(name, t)| t.check_len(name))
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
