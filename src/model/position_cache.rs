//! The `dit` position tables, one per grid, in a [`ByteLru`]: a 256×256 grid at h = 1152 is
//! 302 MB of fp32, so both backends keep theirs bounded.

use super::Grid;
use crate::byte_lru::ByteLru;

/// The default budget of a backend's position cache, bytes: 256 MiB (every grid up to 128×128
/// tokens at h = 1152 at once, or a few hundred of the common ones).
pub const DEFAULT_POSITION_CACHE_BYTES: usize = 256 << 20;

/// Position tables by grid.
pub type PositionCache<V> = ByteLru<Grid, V>;
