//! The adaLN column layout (SPEC, "AdaLN-Zero"): how the output of each modulation
//! projection splits into per-sample vectors of width h. Every backend addresses the
//! modulation through these names, never through literal column numbers.

/// One `[B, h]` slice of a block's modulation `adaLN(a(c))`, in column order: the block
/// projection `h → 6h` yields `[shift1, scale1, gate1, shift2, scale2, gate2]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockChunk {
    /// Shift of the norm before attention.
    ShiftAttention,
    /// Scale of the norm before attention.
    ScaleAttention,
    /// Gate of the attention residual.
    GateAttention,
    /// Shift of the norm before the MLP.
    ShiftMlp,
    /// Scale of the norm before the MLP.
    ScaleMlp,
    /// Gate of the MLP residual.
    GateMlp,
}

/// Chunks of width h in one block's modulation (its projection is `h → 6h`).
pub const BLOCK_CHUNKS: usize = 6;

impl BlockChunk {
    /// Column index of the chunk's first value within one sample's `6h` modulation row.
    pub const fn column(self, hidden: usize) -> usize {
        self as usize * hidden
    }
}

/// One `[B, h]` slice of the `dit` final layer's modulation: its projection `h → 2h` yields
/// `[shift, scale]` (SPEC, "Final layer").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalChunk {
    /// Shift of the final norm.
    Shift,
    /// Scale of the final norm.
    Scale,
}

/// Chunks of width h in the final layer's modulation (its projection is `h → 2h`).
pub const FINAL_CHUNKS: usize = 2;

impl FinalChunk {
    /// Column index of the chunk's first value within one sample's `2h` modulation row.
    pub const fn column(self, hidden: usize) -> usize {
        self as usize * hidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_tile_the_modulation_row_in_spec_order() {
        let h = 8;
        let block = [
            BlockChunk::ShiftAttention,
            BlockChunk::ScaleAttention,
            BlockChunk::GateAttention,
            BlockChunk::ShiftMlp,
            BlockChunk::ScaleMlp,
            BlockChunk::GateMlp,
        ];
        assert_eq!(block.len(), BLOCK_CHUNKS);
        for (i, chunk) in block.into_iter().enumerate() {
            assert_eq!(chunk.column(h), i * h);
        }
        assert_eq!(FinalChunk::Shift.column(h), 0);
        assert_eq!(FinalChunk::Scale.column(h), h);
        assert_eq!(FINAL_CHUNKS * h, FinalChunk::Scale.column(h) + h);
    }
}
