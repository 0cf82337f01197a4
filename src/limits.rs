//! Resource limits: checked size arithmetic and the process-wide allocation budget.
//!
//! Every size that comes from outside (a tensor shape, a grid, a config field, a request's
//! image count, a benchmark's token count) goes through these functions before it is
//! multiplied, allocated or handed to unsafe code. A product that overflows is an error, and
//! so is an estimate above the budget: the caller is refused with "needs 3.2 TiB; the limit is
//! 18.0 GiB" instead of the process starting to allocate and aborting.
//!
//! The budget is per allocation plan, not a running total: a forward, a weights init or a
//! benchmark estimates what it will hold at its peak and asks once. Its default is three
//! quarters of the machine's physical memory (16 GiB where that cannot be read); the
//! `LINEAR_DIT_MAX_MEMORY` environment variable (bytes, or with a `K`/`M`/`G`/`T` suffix)
//! or [`set_max_alloc_bytes`] (the CLI's `--max-memory`) changes it.

use crate::error::{Error, Result};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The budget used when physical memory cannot be read: 16 GiB.
pub const FALLBACK_MAX_ALLOC_BYTES: u64 = 16 << 30;

/// The environment variable that sets the budget.
pub const MAX_MEMORY_ENV: &str = "LINEAR_DIT_MAX_MEMORY";

/// 0 = not set explicitly: use the default.
static OVERRIDE: AtomicU64 = AtomicU64::new(0);

/// The allocation budget in bytes.
pub fn max_alloc_bytes() -> u64 {
    match OVERRIDE.load(Ordering::Relaxed) {
        0 => default_budget(),
        set => set,
    }
}

/// Sets the allocation budget for the whole process (bytes, at least 1).
pub fn set_max_alloc_bytes(bytes: u64) {
    OVERRIDE.store(bytes.max(1), Ordering::Relaxed);
}

fn default_budget() -> u64 {
    static DEFAULT: OnceLock<u64> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        if let Some(value) = std::env::var(MAX_MEMORY_ENV).ok().filter(|v| !v.is_empty()) {
            match parse_bytes(&value) {
                Ok(bytes) => return bytes,
                Err(e) => tracing::warn!(
                    variable = MAX_MEMORY_ENV,
                    %e,
                    "ignored; using the default allocation budget"
                ),
            }
        }
        physical_memory().map_or(FALLBACK_MAX_ALLOC_BYTES, |total| total / 4 * 3)
    })
}

/// Total physical memory in bytes (Linux: `/proc/meminfo`).
fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Parses a byte count: `123`, `512M`, `16G`, `1.5T` (binary units, case-insensitive, an
/// optional trailing `B` or `iB`).
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let stripped = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (number, scale) = match stripped.chars().last() {
        Some('k') => (&stripped[..stripped.len() - 1], 1u64 << 10),
        Some('m') => (&stripped[..stripped.len() - 1], 1 << 20),
        Some('g') => (&stripped[..stripped.len() - 1], 1 << 30),
        Some('t') => (&stripped[..stripped.len() - 1], 1 << 40),
        _ => (stripped, 1),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{t}` is not a byte count (e.g. 512M, 16G)"))?;
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("`{t}` is not a byte count between 1 and 2^64"));
    }
    Ok(bytes as u64)
}

/// `bytes` for people: `512 B`, `48.0 MiB`, `3.2 TiB`.
pub fn format_bytes(bytes: u128) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The product of `dims`, or an error naming `what` when it overflows `usize`.
pub fn checked_product(what: &str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::TooLarge {
            what: what.to_string(),
            reason: format!("its sizes {dims:?} multiply past 2^64"),
        })
}

/// Refuses `what` when it needs more than the budget. `bytes` is a u128 so that callers can
/// sum estimates without overflow; compute it with [`bytes_of`].
pub fn check_alloc(what: &str, bytes: u128) -> Result<()> {
    let limit = max_alloc_bytes();
    if bytes > u128::from(limit) {
        return Err(Error::TooLarge {
            what: what.to_string(),
            reason: format!(
                "needs {}; the limit is {} (set {MAX_MEMORY_ENV} or --max-memory to change it)",
                format_bytes(bytes),
                format_bytes(u128::from(limit))
            ),
        });
    }
    Ok(())
}

/// `elements × bytes_per_element` for a product of sizes, exact in u128 (no overflow for up
/// to two u64 factors; saturates beyond, which any budget refuses).
pub fn bytes_of(dims: &[usize], bytes_per_element: usize) -> u128 {
    dims.iter()
        .try_fold(bytes_per_element as u128, |acc, &d| {
            acc.checked_mul(d as u128)
        })
        .unwrap_or(u128::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_that_wrap_are_errors() {
        assert_eq!(checked_product("x", &[2, 3, 4]).unwrap(), 24);
        let err = checked_product("x", &[1, 4611686018427387905, 4]).unwrap_err();
        assert!(err.to_string().contains("2^64"), "{err}");
        assert_eq!(bytes_of(&[usize::MAX, usize::MAX, 4], 4), u128::MAX);
    }

    #[test]
    fn budget_refusal_names_sizes() {
        let err = check_alloc("the forward", 3_518_437_208_883_200).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("3.1 PiB") && msg.contains("limit"), "{msg}");
        check_alloc("a small thing", 1024).unwrap();
    }

    #[test]
    fn byte_counts_parse() {
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("16GiB").unwrap(), 16 << 30);
        assert_eq!(parse_bytes("1.5t").unwrap(), 3 << 39);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("0").is_err());
        assert_eq!(format_bytes(48 << 20), "48.0 MiB");
    }
}
