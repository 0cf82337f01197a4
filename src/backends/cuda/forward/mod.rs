//! The forward on the GPU: the same computation as the CPU backend (`backends/cpu`), as a
//! sequence of kernel launches and cuBLASLt GEMMs on one stream, reading and writing only
//! the shape's arena — so the whole sequence can be captured once as a CUDA graph.
//!
//! In order: the conditioning (`conditioning.rs`: c, every block's modulation and norm
//! affines), the token embedding (`embedding.rs`), the blocks (`block.rs`), the output head
//! (`head.rs`).
//!
//! Why the launches are sound: every view they pass is cut from the arena of the shape
//! being run or from the weights. The weights live as long as the backend; the arena lives
//! in the shape cache beside the graph captured over it, so it outlives every replay; the
//! dit position table is held by the graph that reads it; and every launch is on the compute
//! stream, which the host waits for (through the download) before a forward returns.

mod adaln;
mod block;
mod conditioning;
mod embedding;
mod head;

use super::arena::ForwardArena;
use super::blas::{Blas, Epilogue, GemmShape};
use super::device_slice::{DeviceSlice, Element, Storage};
use super::ops::Ops;
use super::profile::Profiler;
use super::weights::{DeviceLinear, DeviceWeights};
use crate::dtype::DType;
use crate::error::Result;
use crate::model::{Config, Flavor, Gelu};

/// How fc1's bias and GELU are applied: the GEMM's epilogue, then our bias + GELU kernel
/// when `Some(gelu)`. edifice's GELU is the exact erf one, which cuBLASLt has no epilogue for;
/// the fp32 reference path must not rest on the `GELU_BIAS` epilogue's undocumented accuracy;
/// only dit in bf16/fp16 (the storage types other than f32) fuses bias + GELU (tanh) into
/// the GEMM.
fn fc1_activation(flavor: Flavor, dtype: DType) -> (Epilogue, Option<Gelu>) {
    match (flavor.gelu(), dtype) {
        (Gelu::Erf, _) => (Epilogue::None, Some(Gelu::Erf)),
        (Gelu::Tanh, DType::F32) => (Epilogue::None, Some(Gelu::Tanh)),
        (Gelu::Tanh, _) => (Epilogue::GeluBias, None),
    }
}

/// Everything a forward needs besides the arena.
pub struct ForwardContext<'a> {
    /// The config.
    pub config: &'a Config,
    /// Kernels.
    pub ops: &'a Ops,
    /// GEMMs.
    pub blas: &'a mut Blas,
    /// Weights.
    pub weights: &'a DeviceWeights,
    /// dit positions of this forward's grid, fp32 `[N, h]` (`None` for edifice).
    pub positions: Option<DeviceSlice<f32>>,
    /// Times each phase when profiling.
    pub profiler: Option<&'a mut Profiler>,
}

/// The output of a GEMM: the storage type, or fp32 (the residual stream, eps).
pub(super) trait GemmOutput: Element {
    /// The operand type of the output (and of the bias).
    fn gemm_type(dtype: DType) -> DType;
}

impl GemmOutput for Storage {
    fn gemm_type(dtype: DType) -> DType {
        dtype
    }
}

impl GemmOutput for f32 {
    fn gemm_type(_: DType) -> DType {
        DType::F32
    }
}

/// `out [rows, n] = x [rows, k] · weight [n, k]ᵀ` (+ epilogue with `bias [n]`).
pub(super) struct Gemm<O> {
    /// Rows of x and out.
    pub(super) rows: usize,
    /// Output features.
    pub(super) n: usize,
    /// Input features.
    pub(super) k: usize,
    /// The input `[rows, k]`.
    pub(super) x: DeviceSlice<Storage>,
    /// The weight `[n, k]`.
    pub(super) weight: DeviceSlice<Storage>,
    /// The bias `[n]`, when the epilogue adds one.
    pub(super) bias: Option<DeviceSlice<O>>,
    /// The epilogue.
    pub(super) epilogue: Epilogue,
    /// The output `[rows, n]`.
    pub(super) out: DeviceSlice<O>,
}

impl ForwardContext<'_> {
    /// Enqueues the whole forward of `arena` (inputs already in its upload buffers).
    pub fn enqueue(&mut self, arena: &ForwardArena) -> Result<()> {
        conditioning::enqueue(self, arena)?;
        self.mark("conditioning")?;
        embedding::enqueue(self, arena)?;
        let weights = self.weights;
        for (index, block) in weights.blocks.iter().enumerate() {
            block::enqueue(self, arena, index, block)?;
        }
        head::enqueue(self, arena)
    }

    /// Ends phase `name` (profiling only).
    fn mark(&mut self, name: &'static str) -> Result<()> {
        match self.profiler.as_deref_mut() {
            Some(profiler) => profiler.mark(name),
            None => Ok(()),
        }
    }

    /// The LayerNorm epsilon of this model.
    fn eps(&self) -> f32 {
        self.config.flavor.layer_norm_eps()
    }

    /// `out = x · Wᵀ` (+ epilogue) for `rows` rows, in the storage type.
    fn linear(
        &mut self,
        rows: usize,
        x: DeviceSlice<Storage>,
        w: &DeviceLinear,
        epilogue: Epilogue,
        out: DeviceSlice<Storage>,
    ) -> Result<()> {
        self.gemm(Gemm {
            rows,
            n: w.out,
            k: w.inp,
            x,
            weight: w.weight.slice(),
            bias: (epilogue != Epilogue::None).then(|| w.bias.slice()),
            epilogue,
            out,
        })
    }

    /// `out = x · Wᵀ` with fp32 output (the residual stream), no epilogue.
    fn linear_f32_out(
        &mut self,
        rows: usize,
        x: DeviceSlice<Storage>,
        w: &DeviceLinear,
        out: DeviceSlice<f32>,
    ) -> Result<()> {
        self.gemm(Gemm {
            rows,
            n: w.out,
            k: w.inp,
            x,
            weight: w.weight.slice(),
            bias: None,
            epilogue: Epilogue::None,
            out,
        })
    }

    /// Enqueues `gemm` after checking its views against its extents.
    fn gemm<O: GemmOutput>(&mut self, gemm: Gemm<O>) -> Result<()> {
        checked_gemm(self.blas, self.ops.dtype, gemm)
    }
}

/// Enqueues `gemm` in storage type `dtype` on `blas` after checking its views against its
/// extents (shared by every flavor's forward: the views are the only thing the unsafe GEMM
/// call trusts).
pub(super) fn checked_gemm<O: GemmOutput>(
    blas: &mut Blas,
    dtype: DType,
    gemm: Gemm<O>,
) -> Result<()> {
    let Gemm {
        rows,
        n,
        k,
        x,
        weight,
        bias,
        epilogue,
        out,
    } = gemm;
    x.require("GEMM x", rows * k)?;
    x.require_type("GEMM x", dtype)?;
    weight.require("GEMM weight", n * k)?;
    weight.require_type("GEMM weight", dtype)?;
    out.require("GEMM out", rows * n)?;
    out.require_type("GEMM out", dtype)?;
    if let Some(bias) = bias {
        bias.require("GEMM bias", n)?;
        bias.require_type("GEMM bias", dtype)?;
    }
    if (epilogue != Epilogue::None) != bias.is_some() {
        return Err(super::device::internal_error(format!(
            "a GEMM with epilogue {epilogue:?} and {} bias",
            if bias.is_some() { "a" } else { "no" }
        )));
    }
    let shape = GemmShape {
        rows,
        n,
        k,
        input: dtype,
        output: O::gemm_type(dtype),
        epilogue,
    };
    let bias = bias.map(DeviceSlice::addr);
    // SAFETY: views of the arena and weights (see the module docs), of the lengths this
    // shape implies (checked above).
    unsafe { blas.linear(shape, x.addr(), weight.addr(), bias, out.addr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dit_in_16_bits_uses_the_gelu_epilogue() {
        assert_eq!(
            fc1_activation(Flavor::Dit, DType::F32),
            (Epilogue::None, Some(Gelu::Tanh))
        );
        for dtype in [DType::BF16, DType::F16] {
            assert_eq!(
                fc1_activation(Flavor::Dit, dtype),
                (Epilogue::GeluBias, None)
            );
        }
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            assert_eq!(
                fc1_activation(Flavor::Edifice, dtype),
                (Epilogue::None, Some(Gelu::Erf))
            );
        }
    }
}
