//! The forward on the GPU: the same computation as the CPU backend (`backends/cpu`), as a
//! sequence of kernel launches and cuBLASLt GEMMs on one stream, reading and writing only
//! the plan's arena — so the whole sequence can be captured once as a CUDA graph.

use super::blas::{Blas, Epilogue, GemmShape, GemmType};
use super::ops::{Ops, StorageType};
use super::plan::Plan;
use super::profile::Profiler;
use super::weights::{DeviceLinear, DeviceWeights};
use crate::error::Result;
use crate::model::{Config, Flavor};

fn gemm_type(dtype: StorageType) -> GemmType {
    match dtype {
        StorageType::F32 => GemmType::F32,
        StorageType::Bf16 => GemmType::Bf16,
        StorageType::F16 => GemmType::F16,
    }
}

/// How fc1's bias and GELU are applied: the GEMM's epilogue, then our bias + GELU kernel
/// when `Some(tanh)`. edifice's GELU is the exact erf one, which cuBLASLt has no epilogue for;
/// the fp32 reference path must not rest on the `GELU_BIAS` epilogue's undocumented accuracy;
/// only dit in bf16/fp16 fuses bias + GELU (tanh) into the GEMM.
fn fc1_activation(flavor: Flavor, dtype: StorageType) -> (Epilogue, Option<bool>) {
    match (flavor, dtype) {
        (Flavor::Edifice, _) => (Epilogue::None, Some(false)),
        (Flavor::Dit, StorageType::F32) => (Epilogue::None, Some(true)),
        (Flavor::Dit, StorageType::Bf16 | StorageType::F16) => (Epilogue::GeluBias, None),
    }
}

/// LayerNorm epsilon of the flavor.
fn eps(flavor: Flavor) -> f32 {
    match flavor {
        Flavor::Dit => 1e-6,
        Flavor::Edifice => 1e-5,
    }
}

/// Everything a forward needs besides the plan.
pub struct Device<'a> {
    /// The config.
    pub config: &'a Config,
    /// Kernels.
    pub ops: &'a Ops,
    /// GEMMs.
    pub blas: &'a mut Blas,
    /// Weights.
    pub weights: &'a DeviceWeights,
    /// dit positions of this plan's grid, fp32 `[N, h]` (0 for edifice).
    pub positions: u64,
    /// Times each phase when profiling.
    pub profiler: Option<&'a mut Profiler>,
}

impl Device<'_> {
    /// Ends phase `name` (profiling only).
    fn mark(&mut self, name: &'static str) -> Result<()> {
        match self.profiler.as_deref_mut() {
            Some(profiler) => profiler.mark(name),
            None => Ok(()),
        }
    }

    /// `out = x · Wᵀ` (+ epilogue) for `rows` rows.
    fn linear(
        &mut self,
        rows: usize,
        x: u64,
        w: &DeviceLinear,
        epilogue: Epilogue,
        out: u64,
    ) -> Result<()> {
        let t = gemm_type(self.ops.dtype);
        let shape = GemmShape {
            rows,
            n: w.out,
            k: w.inp,
            input: t,
            output: t,
            epilogue,
        };
        let bias = (epilogue != Epilogue::None).then(|| w.bias.addr());
        // SAFETY: x, w, bias and out are arena/weight buffers sized for this shape.
        unsafe { self.blas.linear(shape, x, w.weight.addr(), bias, out) }
    }

    /// Enqueues the whole forward of `plan` (inputs already in its upload buffers).
    pub fn enqueue(&mut self, plan: &Plan) -> Result<()> {
        let c = self.config;
        let b = plan.buffers;
        let (batch, tokens) = (plan.batch, plan.tokens);
        let rows = batch * tokens;
        let (h, layers) = (c.hidden_size, c.num_layers);
        let edifice = c.flavor == Flavor::Edifice;
        let eps = eps(c.flavor);
        let ops = self.ops;
        let w = self.weights;

        // Conditioning: c = t_emb(t) + y_emb(y), per sample.
        if edifice {
            ops.timestep_features_edifice(b.t, b.features, batch, h / 2, c.num_steps as f32)?;
        } else {
            ops.timestep_features_dit(b.t, b.features, batch)?;
        }
        small_mlp(
            ops,
            &w.t_mlp,
            b.features,
            b.hidden,
            b.condition,
            batch,
            false,
        )?;
        if let Some(table) = &w.class_table {
            ops.add_class_embedding(b.condition, table.addr(), b.y, batch, h)?;
        }
        if let (Some(mlp), Some(classes)) = (&w.class_mlp, c.num_classes) {
            ops.class_onehot(b.y, b.onehot, batch, classes)?;
            small_mlp(ops, mlp, b.onehot, b.class_hidden, b.condition, batch, true)?;
        }

        // Every block's modulation in one launch: adaLN(a(c)), a = SiLU for dit.
        let stride = layers * 6 * h;
        ops.small_linear(
            b.condition,
            w.adaln_weight.addr(),
            w.adaln_bias.addr(),
            b.modulation,
            batch,
            h,
            stride,
            !edifice,
            false,
        )?;
        for (i, block) in w.blocks.iter().enumerate() {
            let base = b.modulation + (i * 6 * h * 4) as u64;
            let (g1, b1, g2, b2) = match &block.norms {
                Some([g1, b1, g2, b2]) => (g1.addr(), b1.addr(), g2.addr(), b2.addr()),
                None => (0, 0, 0, 0),
            };
            let (s1, t1) = b.affine(2 * i, batch, h);
            ops.modulation_affine(base, stride, 0, h, g1, b1, s1, t1, batch, h)?;
            let (s2, t2) = b.affine(2 * i + 1, batch, h);
            ops.modulation_affine(base, stride, 3 * h, 4 * h, g2, b2, s2, t2, batch, h)?;
        }
        let (final_scale, final_shift) = b.affine(2 * layers, batch, h);
        match (&w.final_adaln, &w.final_norm) {
            (Some(adaln), _) => {
                small_layer(
                    ops,
                    adaln,
                    b.condition,
                    b.final_modulation,
                    batch,
                    true,
                    false,
                )?;
                ops.modulation_affine(
                    b.final_modulation,
                    2 * h,
                    0,
                    h,
                    0,
                    0,
                    final_scale,
                    final_shift,
                    batch,
                    h,
                )?;
            }
            (None, Some([gamma, beta])) => {
                ops.modulation_affine(
                    0,
                    0,
                    0,
                    0,
                    gamma.addr(),
                    beta.addr(),
                    final_scale,
                    final_shift,
                    batch,
                    h,
                )?;
            }
            (None, None) => {}
        }

        self.mark("conditioning")?;

        // Tokens: x = x_embedder(x_in) + bias + positions (fp32 residual stream).
        if ops.dtype != StorageType::F32 {
            ops.cast_in(b.x_upload, b.x_in, (rows * c.input_dim) as u64)?;
        }
        self.linear_f32_out(rows, b.x_in, &w.x_embedder, b.x)?;
        let (table, table_rows) = match &w.pos_embed {
            Some(vector) => (vector.addr(), 1),
            None => (self.positions, tokens),
        };
        ops.embed_add(b.x, w.x_embedder.bias.addr(), table, rows, h, table_rows)?;
        self.mark("embed")?;

        let (s, t) = b.affine(0, batch, h);
        ops.norm_modulate(b.x, b.u, s, t, rows, h, tokens, eps)?;
        self.mark("norm_modulate")?;
        for (i, block) in w.blocks.iter().enumerate() {
            let gates = b.modulation + (i * 6 * h * 4) as u64;
            self.linear(rows, b.u, &block.qkv, Epilogue::Bias, b.qkv)?;
            self.mark("gemm_qkv")?;
            ops.linear_attention(
                b.qkv,
                b.partial,
                b.state,
                b.attention,
                batch,
                tokens,
                c.num_heads,
                c.head_dim(),
                plan.attention_chunk,
            )?;
            self.mark("linear_attention")?;
            self.linear(rows, b.attention, &block.proj, Epilogue::None, b.y_out)?;
            self.mark("gemm_proj")?;
            let (s2, t2) = b.affine(2 * i + 1, batch, h);
            let gate1 = gates + (2 * h * 4) as u64;
            ops.residual_norm_modulate(
                b.x,
                b.y_out,
                block.proj.bias.addr(),
                gate1,
                stride,
                b.u,
                s2,
                t2,
                rows,
                h,
                tokens,
                eps,
            )?;
            self.mark("residual_norm_modulate")?;
            let (epilogue, gelu_kernel) = fc1_activation(c.flavor, ops.dtype);
            self.linear(rows, b.u, &block.fc1, epilogue, b.mlp)?;
            if let Some(tanh) = gelu_kernel {
                ops.bias_gelu(b.mlp, block.fc1.bias.addr(), rows, block.fc1.out, tanh)?;
            }
            self.mark("gemm_fc1")?;
            self.linear(rows, b.mlp, &block.fc2, Epilogue::None, b.y_out)?;
            self.mark("gemm_fc2")?;
            let (s_next, t_next) = b.affine(
                if i + 1 < layers {
                    2 * (i + 1)
                } else {
                    2 * layers
                },
                batch,
                h,
            );
            let gate2 = gates + (5 * h * 4) as u64;
            ops.residual_norm_modulate(
                b.x,
                b.y_out,
                block.fc2.bias.addr(),
                gate2,
                stride,
                b.u,
                s_next,
                t_next,
                rows,
                h,
                tokens,
                eps,
            )?;
            self.mark("residual_norm_modulate")?;
        }

        // eps = final_linear(u) + bias, written in fp32.
        let t = gemm_type(ops.dtype);
        let shape = GemmShape {
            rows,
            n: c.input_dim,
            k: h,
            input: t,
            output: GemmType::F32,
            epilogue: Epilogue::Bias,
        };
        // SAFETY: arena and weight buffers sized for this shape.
        unsafe {
            self.blas.linear(
                shape,
                b.u,
                w.final_weight.addr(),
                Some(w.final_bias_f32.addr()),
                b.out,
            )
        }?;
        self.mark("gemm_out")
    }

    /// A GEMM with fp32 output (the residual stream), no epilogue.
    fn linear_f32_out(&mut self, rows: usize, x: u64, w: &DeviceLinear, out: u64) -> Result<()> {
        let shape = GemmShape {
            rows,
            n: w.out,
            k: w.inp,
            input: gemm_type(self.ops.dtype),
            output: GemmType::F32,
            epilogue: Epilogue::None,
        };
        // SAFETY: arena and weight buffers sized for this shape.
        unsafe { self.blas.linear(shape, x, w.weight.addr(), None, out) }
    }
}

/// `out (+)= a(x) Wᵀ + b` for one Linear on a few fp32 rows (`a` = SiLU when `silu_input`).
fn small_layer(
    ops: &Ops,
    linear: &DeviceLinear,
    x: u64,
    out: u64,
    rows: usize,
    silu_input: bool,
    accumulate: bool,
) -> Result<()> {
    let (weight, bias) = (linear.weight.addr(), linear.bias.addr());
    ops.small_linear(
        x, weight, bias, out, rows, linear.inp, linear.out, silu_input, accumulate,
    )
}

/// `out (+)= SiLU(x W0ᵀ + b0) W1ᵀ + b1` on a few fp32 rows: the timestep and class MLPs.
fn small_mlp(
    ops: &Ops,
    (first, second): &(DeviceLinear, DeviceLinear),
    x: u64,
    hidden: u64,
    out: u64,
    rows: usize,
    accumulate: bool,
) -> Result<()> {
    small_layer(ops, first, x, hidden, rows, false, false)?;
    small_layer(ops, second, hidden, out, rows, true, accumulate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dit_in_16_bits_uses_the_gelu_epilogue() {
        assert_eq!(
            fc1_activation(Flavor::Dit, StorageType::F32),
            (Epilogue::None, Some(true))
        );
        for dtype in [StorageType::Bf16, StorageType::F16] {
            assert_eq!(
                fc1_activation(Flavor::Dit, dtype),
                (Epilogue::GeluBias, None)
            );
        }
        for dtype in [StorageType::F32, StorageType::Bf16, StorageType::F16] {
            assert_eq!(
                fc1_activation(Flavor::Edifice, dtype),
                (Epilogue::None, Some(false))
            );
        }
    }
}
