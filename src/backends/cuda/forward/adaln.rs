//! Where the adaLN modulation lies on the device: the model's column layout
//! ([`crate::model::adaln`]) applied to the matrices the conditioning computes and the norms
//! and gates read.
//!
//! Every block's adaLN output is one fp32 row per sample of `L·6h` values (all blocks'
//! projections run as one GEMM): block i's chunks start at column `i·6h`. dit's final adaLN
//! is a `[B, 2h]` matrix.

use super::super::device_slice::DeviceSlice;
use super::super::launch_params::ModulationColumns;
use crate::error::Result;
use crate::model::Config;
use crate::model::adaln::{BLOCK_CHUNKS, BlockChunk, FINAL_CHUNKS, FinalChunk};

/// The two branches of a block: each has a norm before it and a gate after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Branch {
    /// Attention: norm1, `gate_msa`.
    Attention,
    /// MLP: norm2, `gate_mlp`.
    Mlp,
}

impl Branch {
    /// The branch's (shift, scale, gate) chunks.
    fn chunks(self) -> (BlockChunk, BlockChunk, BlockChunk) {
        match self {
            Branch::Attention => (
                BlockChunk::ShiftAttention,
                BlockChunk::ScaleAttention,
                BlockChunk::GateAttention,
            ),
            Branch::Mlp => (
                BlockChunk::ShiftMlp,
                BlockChunk::ScaleMlp,
                BlockChunk::GateMlp,
            ),
        }
    }
}

/// The modulation matrix of every block, fp32 `[B, layers·6·hidden]`.
#[derive(Debug, Clone, Copy)]
pub struct BlockModulation {
    matrix: DeviceSlice<f32>,
    layers: usize,
    hidden: usize,
}

impl BlockModulation {
    /// The modulation matrix `matrix` of `config`'s blocks.
    pub fn new(matrix: DeviceSlice<f32>, config: &Config) -> Self {
        BlockModulation {
            matrix,
            layers: config.num_layers,
            hidden: config.hidden_size,
        }
    }

    /// Elements per sample: the adaLN projection's output width.
    pub fn stride(&self) -> usize {
        self.layers * BLOCK_CHUNKS * self.hidden
    }

    /// The shift and scale columns of block `block`'s norm before `branch`.
    pub fn norm_columns(&self, block: usize, branch: Branch) -> Result<ModulationColumns> {
        let (shift, scale, _) = branch.chunks();
        Ok(ModulationColumns {
            matrix: self.block_start(block)?,
            stride: self.stride(),
            shift_col: shift.column(self.hidden),
            scale_col: scale.column(self.hidden),
        })
    }

    /// Block `block`'s gate after `branch`: h values per sample, [`Self::stride`] apart.
    pub fn gate(&self, block: usize, branch: Branch) -> Result<DeviceSlice<f32>> {
        let (_, _, gate) = branch.chunks();
        self.block_start(block)?.skip(gate.column(self.hidden))
    }

    /// The matrix from block `block`'s first column on.
    fn block_start(&self, block: usize) -> Result<DeviceSlice<f32>> {
        self.matrix.skip(block * BLOCK_CHUNKS * self.hidden)
    }
}

/// The shift and scale columns of dit's final adaLN output `[B, 2h]`.
pub fn final_norm_columns(matrix: DeviceSlice<f32>, hidden: usize) -> ModulationColumns {
    ModulationColumns {
        matrix,
        stride: FINAL_CHUNKS * hidden,
        shift_col: FinalChunk::Shift.column(hidden),
        scale_col: FinalChunk::Scale.column(hidden),
    }
}
