//! Where the adaLN modulation lies: one place for the column layout of the modulation
//! matrices the conditioning computes and the norms and gates read.
//!
//! Every block's adaLN output is one fp32 row per sample of `L·6h` values: block i's six
//! chunks of h — shift, scale and gate of the attention branch, then of the MLP branch
//! (DiT's `chunk(6)` order) — start at column `i·6h`. dit's final adaLN is a `[B, 2h]`
//! matrix: shift, then scale.

use super::super::device_slice::DeviceSlice;
use super::super::launch_params::ModulationColumns;
use crate::error::Result;
use crate::model::Config;

/// Chunks of h per block in the modulation matrix.
const BLOCK_CHUNKS: usize = 6;

/// The two branches of a block: each has a norm before it and a gate after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Branch {
    /// Attention: norm1, `gate_msa`.
    Attention,
    /// MLP: norm2, `gate_mlp`.
    Mlp,
}

impl Branch {
    /// The branch's first chunk (its shift; scale and gate follow).
    fn first_chunk(self) -> usize {
        match self {
            Branch::Attention => 0,
            Branch::Mlp => 3,
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
        let h = self.hidden;
        let first = branch.first_chunk();
        Ok(ModulationColumns {
            matrix: self.block_start(block)?,
            stride: self.stride(),
            shift_col: first * h,
            scale_col: (first + 1) * h,
        })
    }

    /// Block `block`'s gate after `branch`: h values per sample, [`Self::stride`] apart.
    pub fn gate(&self, block: usize, branch: Branch) -> Result<DeviceSlice<f32>> {
        let gate_chunk = branch.first_chunk() + 2;
        self.block_start(block)?.skip(gate_chunk * self.hidden)
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
        stride: 2 * hidden,
        shift_col: 0,
        scale_col: hidden,
    }
}
