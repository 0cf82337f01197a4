//! The forward shapes prepared so far — each an arena with its staging and its graph — up to
//! [`MAX_SHAPES`] of them, the oldest dropped first. Generic over the key and the arena, so
//! the dit/edifice forward (keyed by [`ShapeKey`]) and sana's (keyed by batch bucket, latent
//! grid and text length) share it.

use super::arena::{ForwardArena, batch_bucket};
use super::device::device_error;
use super::graph::GraphCapture;
use crate::error::Result;
use std::collections::HashMap;
use std::hash::Hash;

/// Forward shapes (and their graphs) kept at once; the oldest is dropped beyond this.
pub const MAX_SHAPES: usize = 16;

/// A forward shape: the batch bucket and the tokens per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShapeKey {
    /// The batch bucket ([`batch_bucket`]).
    pub batch_bucket: usize,
    /// Tokens per sample.
    pub tokens: usize,
}

impl ShapeKey {
    /// The shape that serves `batch` samples of `tokens` tokens.
    pub fn new(batch: usize, tokens: usize) -> Self {
        ShapeKey {
            batch_bucket: batch_bucket(batch),
            tokens,
        }
    }
}

/// A prepared forward shape.
pub struct PreparedShape<A = ForwardArena> {
    /// Its buffers and staging.
    pub arena: A,
    /// Its graph.
    pub graph: GraphCapture,
}

/// The prepared shapes, in the order they were made.
pub struct ShapeCache<K = ShapeKey, A = ForwardArena> {
    shapes: HashMap<K, PreparedShape<A>>,
    order: Vec<K>,
}

impl<K, A> Default for ShapeCache<K, A> {
    fn default() -> Self {
        ShapeCache {
            shapes: HashMap::new(),
            order: Vec::new(),
        }
    }
}

impl<K: Copy + Eq + Hash + std::fmt::Debug, A> ShapeCache<K, A> {
    /// Whether `key` is prepared.
    pub fn contains(&self, key: K) -> bool {
        self.shapes.contains_key(&key)
    }

    /// Adds the shape `key` with the arena `make` allocates — first dropping the oldest
    /// shape when [`MAX_SHAPES`] are kept, so that its memory is free for the new arena.
    pub fn insert_with(&mut self, key: K, make: impl FnOnce() -> Result<A>) -> Result<()> {
        if self.shapes.len() >= MAX_SHAPES && !self.order.is_empty() {
            let oldest = self.order.remove(0);
            self.shapes.remove(&oldest);
        }
        let arena = make()?;
        let graph = GraphCapture::default();
        self.shapes.insert(key, PreparedShape { arena, graph });
        self.order.push(key);
        Ok(())
    }

    /// The shape `key`, which the forward's first step prepared if it was missing.
    pub fn get_mut(&mut self, key: K) -> Result<&mut PreparedShape<A>> {
        self.shapes
            .get_mut(&key)
            .ok_or_else(|| device_error("the forward", format!("no arena for {key:?}")))
    }

    /// Drops every captured graph.
    pub fn drop_graphs(&mut self) {
        for shape in self.shapes.values_mut() {
            shape.graph.drop_graph();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_shape_goes_first_beyond_the_limit() {
        let mut cache: ShapeCache<usize, usize> = ShapeCache::default();
        for key in 0..MAX_SHAPES + 2 {
            cache.insert_with(key, || Ok(key * 10)).unwrap();
        }
        assert!(!cache.contains(0) && !cache.contains(1));
        assert_eq!(
            cache.get_mut(MAX_SHAPES + 1).unwrap().arena,
            (MAX_SHAPES + 1) * 10
        );
        assert!(cache.get_mut(0).is_err());
    }
}
