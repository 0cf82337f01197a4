//! A byte-bounded least-recently-used cache of the `dit` position tables, one per grid. A
//! server sees whatever grids its clients send, so an unbounded cache would grow without end
//! (a 256×256 grid at h = 1152 is 302 MB of fp32); both backends keep theirs in one of these.

use super::Grid;
use std::collections::HashMap;
use std::sync::Arc;

/// The default budget of a backend's position cache, bytes: 256 MiB (every grid up to 128×128
/// tokens at h = 1152 at once, or a few hundred of the common ones).
pub const DEFAULT_POSITION_CACHE_BYTES: usize = 256 << 20;

struct Entry<V> {
    value: Arc<V>,
    bytes: usize,
    last_use: u64,
}

/// Position tables by grid, holding at most `budget` bytes: inserting evicts the least
/// recently used tables until the new one fits; a table larger than the whole budget is
/// returned but not kept. Values are shared (`Arc`), so an evicted table lives on for as long
/// as someone still holds it — which is how a captured CUDA graph keeps the table it reads.
pub struct PositionCache<V> {
    budget: usize,
    used: usize,
    clock: u64,
    entries: HashMap<Grid, Entry<V>>,
}

impl<V> PositionCache<V> {
    /// An empty cache holding at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        PositionCache {
            budget,
            used: 0,
            clock: 0,
            entries: HashMap::new(),
        }
    }

    /// The table of `grid`, made by `make` (a table of `bytes` bytes) when not cached.
    pub fn get_or_insert_with(
        &mut self,
        grid: Grid,
        bytes: usize,
        make: impl FnOnce() -> V,
    ) -> Arc<V> {
        match self.get_or_try_insert_with(grid, bytes, || Ok::<V, std::convert::Infallible>(make()))
        {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    /// The table of `grid`, made by `make` (a table of `bytes` bytes) when not cached; an
    /// error of `make` is returned and nothing is cached.
    pub fn get_or_try_insert_with<E>(
        &mut self,
        grid: Grid,
        bytes: usize,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        self.clock += 1;
        if let Some(entry) = self.entries.get_mut(&grid) {
            entry.last_use = self.clock;
            return Ok(Arc::clone(&entry.value));
        }
        let value = Arc::new(make()?);
        if bytes > self.budget {
            return Ok(value);
        }
        while self.used + bytes > self.budget {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_use)
                .map(|(grid, _)| *grid)
            else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.used -= evicted.bytes;
            }
        }
        self.used += bytes;
        self.entries.insert(
            grid,
            Entry {
                value: Arc::clone(&value),
                bytes,
                last_use: self.clock,
            },
        );
        Ok(value)
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.used
    }

    /// Whether `grid`'s table is held.
    #[cfg(test)]
    pub fn contains(&self, grid: Grid) -> bool {
        self.entries.contains_key(&grid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(cols: usize) -> Grid {
        Grid::new(1, cols)
    }

    #[test]
    fn evicts_the_least_recently_used_by_bytes() {
        let mut cache = PositionCache::new(100);
        let mut made = 0;
        let mut get = |cache: &mut PositionCache<usize>, cols: usize, bytes: usize| {
            *cache.get_or_insert_with(grid(cols), bytes, || {
                made += 1;
                cols
            })
        };
        assert_eq!(get(&mut cache, 1, 40), 1);
        assert_eq!(get(&mut cache, 2, 40), 2);
        assert_eq!(cache.bytes(), 80);
        // Touch 1, so 2 is the least recently used when 3 needs room.
        assert_eq!(get(&mut cache, 1, 40), 1);
        assert_eq!(get(&mut cache, 3, 30), 3);
        assert!(cache.contains(grid(1)) && cache.contains(grid(3)) && !cache.contains(grid(2)));
        assert_eq!(cache.bytes(), 70);
        // One large table evicts as many as it needs, oldest first.
        assert_eq!(get(&mut cache, 4, 90), 4);
        assert!(!cache.contains(grid(1)) && !cache.contains(grid(3)) && cache.contains(grid(4)));
        assert_eq!(cache.bytes(), 90);
        assert_eq!(made, 4, "a hit must not remake the table");
    }

    #[test]
    fn a_table_larger_than_the_budget_is_returned_but_not_kept() {
        let mut cache = PositionCache::new(100);
        cache.get_or_insert_with(grid(1), 60, || 1);
        assert_eq!(*cache.get_or_insert_with(grid(2), 101, || 2), 2);
        assert!(!cache.contains(grid(2)));
        assert!(
            cache.contains(grid(1)),
            "the oversized table evicts nothing"
        );
        assert_eq!(cache.bytes(), 60);
    }

    #[test]
    fn evicted_tables_live_on_while_held_and_errors_cache_nothing() {
        let mut cache = PositionCache::new(10);
        let held = cache.get_or_insert_with(grid(1), 10, || vec![7u8; 10]);
        cache.get_or_insert_with(grid(2), 10, || vec![8u8; 10]);
        assert!(!cache.contains(grid(1)));
        assert_eq!(held[0], 7, "an evicted table stays valid for its holder");
        let failed = cache.get_or_try_insert_with(grid(3), 5, || Err("no memory"));
        assert_eq!(failed.err(), Some("no memory"));
        assert!(!cache.contains(grid(3)) && cache.contains(grid(2)));
        assert_eq!(cache.bytes(), 10);
    }
}
