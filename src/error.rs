//! The library's error type: every failure names what went wrong and where.
//!
//! Nothing in the library panics on bad input, files or devices; each such failure is one
//! variant here, with enough context (field, tensor, byte range, shape) to act on it.

use std::path::PathBuf;

/// Every error the library returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration field has an invalid value.
    #[error("invalid config: `{field}` {reason}")]
    InvalidConfig {
        /// The offending field, as named in the weights-file metadata.
        field: &'static str,
        /// Why the value is rejected.
        reason: String,
    },

    /// A forward input (x, t, y, grid) is malformed.
    #[error("invalid input: `{name}` {reason}")]
    InvalidInput {
        /// Which input: `x`, `t`, `y`, `grid`, ...
        name: &'static str,
        /// Why it is rejected.
        reason: String,
    },

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A safetensors file is malformed, truncated or holds the wrong tensors.
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (names the tensor or the byte range).
        reason: String,
    },

    /// A tensor the model needs is absent.
    #[error("missing tensor `{name}` (expected shape {expected:?})")]
    MissingTensor {
        /// Canonical tensor name.
        name: String,
        /// The shape the config requires.
        expected: Vec<usize>,
    },

    /// A tensor the model does not know is present.
    #[error("unknown tensor `{name}` (shape {shape:?}) is not part of this model")]
    UnknownTensor {
        /// The tensor's name in the file.
        name: String,
        /// Its shape in the file.
        shape: Vec<usize>,
    },

    /// A tensor has the wrong shape for the config.
    #[error("tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Canonical tensor name.
        name: String,
        /// The shape the config requires.
        expected: Vec<usize>,
        /// The shape found.
        actual: Vec<usize>,
    },

    /// A tensor is stored in a dtype the model cannot use.
    #[error("tensor `{name}` has dtype {dtype}, expected one of {expected}")]
    UnsupportedDtype {
        /// Tensor name.
        name: String,
        /// The dtype found.
        dtype: String,
        /// What would be accepted.
        expected: &'static str,
    },

    /// A backend cannot run here (no GPU, missing library, not compiled in).
    #[error("backend `{backend}` is not available: {reason}")]
    BackendUnavailable {
        /// The backend asked for.
        backend: &'static str,
        /// Why it cannot run.
        reason: String,
    },

    /// A device-side failure (driver, kernel launch, library call).
    #[error("{backend} backend: {reason}")]
    Device {
        /// The backend that failed.
        backend: &'static str,
        /// What failed.
        reason: String,
    },

    /// A size from outside (a shape, a grid, a config, a request) overflows or needs more
    /// memory than the allocation budget allows (see [`crate::limits`]).
    #[error("`{what}` is too large: {reason}")]
    TooLarge {
        /// What was asked for: `x`, `the forward`, `init`, ...
        what: String,
        /// The sizes, and what they would need against which limit.
        reason: String,
    },

    /// A forward produced a non-finite value, so its output must not be trusted.
    #[error("non-finite value in `{name}` ({detail})")]
    NonFinite {
        /// The tensor that holds the value.
        name: &'static str,
        /// Where it first appears.
        detail: String,
    },

    /// A name or spelling (a sampler, a device, a grid, …) did not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// A value spelled as text (a command-line flag, a request field, a metadata entry) that
/// names nothing its type knows: the one error of every `FromStr` in the crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}` (expected {expected})")]
pub struct ParseError {
    /// What was being parsed: `sampler`, `backend`, `grid`, …
    pub what: &'static str,
    /// The text as given.
    pub value: String,
    /// The spellings accepted.
    pub expected: &'static str,
}

impl ParseError {
    /// `value` is not a `what`; `expected` lists the accepted spellings.
    pub fn new(what: &'static str, value: impl Into<String>, expected: &'static str) -> Self {
        ParseError {
            what,
            value: value.into(),
            expected,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub(crate) fn input(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            name,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::InvalidConfig`].
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::BadFile`].
    pub(crate) fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
