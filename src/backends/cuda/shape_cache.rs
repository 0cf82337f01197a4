//! The forward shapes prepared so far — each an arena with its staging and its graph — up to
//! [`MAX_SHAPES`] of them, the oldest dropped first.

use super::arena::{ForwardArena, batch_bucket};
use super::device::device_error;
use super::graph::GraphCapture;
use crate::error::Result;
use std::collections::HashMap;

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
pub struct PreparedShape {
    /// Its buffers and staging.
    pub arena: ForwardArena,
    /// Its graph.
    pub graph: GraphCapture,
}

/// The prepared shapes, in the order they were made.
#[derive(Default)]
pub struct ShapeCache {
    shapes: HashMap<ShapeKey, PreparedShape>,
    order: Vec<ShapeKey>,
}

impl ShapeCache {
    /// Whether `key` is prepared.
    pub fn contains(&self, key: ShapeKey) -> bool {
        self.shapes.contains_key(&key)
    }

    /// Adds the shape `key` with the arena `make` allocates — first dropping the oldest
    /// shape when [`MAX_SHAPES`] are kept, so that its memory is free for the new arena.
    pub fn insert_with(
        &mut self,
        key: ShapeKey,
        make: impl FnOnce() -> Result<ForwardArena>,
    ) -> Result<()> {
        if self.shapes.len() >= MAX_SHAPES {
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
    pub fn get_mut(&mut self, key: ShapeKey) -> Result<&mut PreparedShape> {
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
