//! A byte-bounded least-recently-used cache: what a backend keeps of values it can remake
//! (position tables per grid, a caption's text keys and values), bounded because a server
//! sees whatever grids and captions its clients send and an unbounded cache would grow
//! without end.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

struct Entry<V> {
    value: Arc<V>,
    bytes: usize,
    last_use: u64,
}

/// Values by key, holding at most `budget` bytes: inserting evicts the least recently used
/// values until the new one fits; a value larger than the whole budget is returned but not
/// kept. Values are shared (`Arc`), so an evicted value lives on for as long as someone still
/// holds it — which is how a captured CUDA graph keeps the position table it reads.
pub struct ByteLru<K, V> {
    budget: usize,
    used: usize,
    clock: u64,
    entries: HashMap<K, Entry<V>>,
}

impl<K: Hash + Eq + Clone, V> ByteLru<K, V> {
    /// An empty cache holding at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        ByteLru {
            budget,
            used: 0,
            clock: 0,
            entries: HashMap::new(),
        }
    }

    /// The value of `key`, made by `make` (a value of `bytes` bytes) when not cached.
    pub fn get_or_insert_with(&mut self, key: K, bytes: usize, make: impl FnOnce() -> V) -> Arc<V> {
        match self.get_or_try_insert_with(key, bytes, || Ok::<V, std::convert::Infallible>(make()))
        {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    /// The value of `key`, made by `make` (a value of `bytes` bytes) when not cached; an
    /// error of `make` is returned and nothing is cached.
    pub fn get_or_try_insert_with<E>(
        &mut self,
        key: K,
        bytes: usize,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        if let Some(value) = self.get(&key) {
            return Ok(value);
        }
        let value = Arc::new(make()?);
        self.insert(key, bytes, Arc::clone(&value));
        Ok(value)
    }

    /// The value of `key`, if held (it becomes the most recently used).
    pub fn get(&mut self, key: &K) -> Option<Arc<V>> {
        self.clock += 1;
        let entry = self.entries.get_mut(key)?;
        entry.last_use = self.clock;
        Some(Arc::clone(&entry.value))
    }

    /// Keeps `value` (of `bytes` bytes) as `key`'s, evicting the least recently used values
    /// until it fits; a value larger than the whole budget is not kept. For callers that
    /// make the value without holding the cache (a lock around it): when two made the same
    /// key, the later one replaces the earlier.
    pub fn insert(&mut self, key: K, bytes: usize, value: Arc<V>) {
        self.clock += 1;
        if let Some(replaced) = self.entries.remove(&key) {
            self.used -= replaced.bytes;
        }
        if bytes > self.budget {
            return;
        }
        while self.used + bytes > self.budget {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_use)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.used -= evicted.bytes;
            }
        }
        self.used += bytes;
        self.entries.insert(
            key,
            Entry {
                value,
                bytes,
                last_use: self.clock,
            },
        );
    }

    /// Drops every value (holders of one keep theirs).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.used = 0;
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.used
    }

    /// Whether `key`'s value is held.
    #[cfg(test)]
    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::Grid;

    fn grid(cols: usize) -> Grid {
        Grid::new(1, cols)
    }

    #[test]
    fn evicts_the_least_recently_used_by_bytes() {
        let mut cache = ByteLru::new(100);
        let mut made = 0;
        let mut get = |cache: &mut ByteLru<Grid, usize>, cols: usize, bytes: usize| {
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
        assert!(cache.contains(&grid(1)) && cache.contains(&grid(3)) && !cache.contains(&grid(2)));
        assert_eq!(cache.bytes(), 70);
        // One large table evicts as many as it needs, oldest first.
        assert_eq!(get(&mut cache, 4, 90), 4);
        assert!(!cache.contains(&grid(1)) && !cache.contains(&grid(3)) && cache.contains(&grid(4)));
        assert_eq!(cache.bytes(), 90);
        assert_eq!(made, 4, "a hit must not remake the table");
    }

    #[test]
    fn a_table_larger_than_the_budget_is_returned_but_not_kept() {
        let mut cache = ByteLru::new(100);
        cache.get_or_insert_with(grid(1), 60, || 1);
        assert_eq!(*cache.get_or_insert_with(grid(2), 101, || 2), 2);
        assert!(!cache.contains(&grid(2)));
        assert!(
            cache.contains(&grid(1)),
            "the oversized table evicts nothing"
        );
        assert_eq!(cache.bytes(), 60);
    }

    #[test]
    fn evicted_tables_live_on_while_held_and_errors_cache_nothing() {
        let mut cache = ByteLru::new(10);
        let held = cache.get_or_insert_with(grid(1), 10, || vec![7u8; 10]);
        cache.get_or_insert_with(grid(2), 10, || vec![8u8; 10]);
        assert!(!cache.contains(&grid(1)));
        assert_eq!(held[0], 7, "an evicted table stays valid for its holder");
        let failed = cache.get_or_try_insert_with(grid(3), 5, || Err("no memory"));
        assert_eq!(failed.err(), Some("no memory"));
        assert!(!cache.contains(&grid(3)) && cache.contains(&grid(2)));
        assert_eq!(cache.bytes(), 10);
    }
}
