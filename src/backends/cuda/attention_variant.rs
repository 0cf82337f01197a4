//! Which instance of the linear-attention kernels runs a problem, and its launch geometry.
//!
//! `kernels/linear_attention/` has one `extern "C"` kernel per pass, storage type and head-dim
//! class (each its own translation unit, so each gets its own register allocation):
//! `linear_attention_partial_<dtype>_d<class>` (pass 1) and
//! `linear_attention_apply_<dtype>_d<class>` (pass 3), class = the head dim padded to 32, 64
//! or 128 ([`attention_padded_head_dim`]); a kernel leaves a head dim of another class alone.
//! The feature map is part of the instance too: φ = ELU + 1 (dit, edifice) has the names
//! above, φ = ReLU (sana) inserts `relu_` after `linear_attention_`
//! (`linear_attention_relu_partial_bf16_d32`), as `kernels/linear_attention/partial.cuh` and
//! `apply.cuh` spell them. Pass 2, `linear_attention_reduce`, is one kernel for all. Launch
//! contract: `kernels/README.md`.

use super::device::device_error;
use super::kernel_constants::{
    ATTENTION_APPLY_TILE, ATTENTION_CHUNK, MAX_HEAD_DIM, THREADS, attention_apply_shared_bytes,
    attention_padded_head_dim,
};
use super::module::Kernels;
use crate::dtype::DType;
use crate::error::Result;
use cudarc::driver::{CudaFunction, LaunchConfig};

/// The kernel of pass 2, shared by every storage type and head dim.
pub(crate) const REDUCE_KERNEL: &str = "linear_attention_reduce";

/// The head-dim classes of the attention kernel instances: the padded head dims.
pub(crate) const HEAD_DIM_CLASSES: [usize; 3] = [32, 64, 128];

/// The feature map φ of a flavor's linear attention (and its denominator ε, fixed per map
/// inside the kernels: `kernels/linear_attention/params.cuh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureMap {
    /// φ = ELU + 1, ε = 1e−6 (dit, edifice).
    EluPlusOne,
    /// φ = ReLU, ε = 1e−15 (sana: diffusers' `SanaLinearAttnProcessor2_0`).
    Relu,
}

impl FeatureMap {
    /// Every feature map, for the tests that check the sources define each instance.
    #[cfg(test)]
    pub(crate) const ALL: [FeatureMap; 2] = [FeatureMap::EluPlusOne, FeatureMap::Relu];

    /// What the kernel names insert after `linear_attention_`.
    fn infix(self) -> &'static str {
        match self {
            FeatureMap::EluPlusOne => "",
            FeatureMap::Relu => "relu_",
        }
    }
}

/// The pass-1 kernel of storage `dtype` and feature map `map` for head dim `d`
/// (1 ≤ d ≤ [`MAX_HEAD_DIM`]).
pub(crate) fn partial_kernel(dtype: DType, map: FeatureMap, d: usize) -> String {
    format!(
        "linear_attention_{}partial_{}_d{}",
        map.infix(),
        dtype.name(),
        attention_padded_head_dim(d)
    )
}

/// The pass-3 kernel of storage `dtype` and feature map `map` for head dim `d`
/// (1 ≤ d ≤ [`MAX_HEAD_DIM`]).
pub(crate) fn apply_kernel(dtype: DType, map: FeatureMap, d: usize) -> String {
    format!(
        "linear_attention_{}apply_{}_d{}",
        map.infix(),
        dtype.name(),
        attention_padded_head_dim(d)
    )
}

/// Every attention kernel a backend of storage `dtype` and feature map `map` loads (for the
/// tests that check the kernel sources define them).
#[cfg(test)]
pub(crate) fn kernel_names(dtype: DType, map: FeatureMap) -> Vec<String> {
    let mut names: Vec<String> = HEAD_DIM_CLASSES
        .iter()
        .flat_map(|&class| {
            [
                partial_kernel(dtype, map, class),
                apply_kernel(dtype, map, class),
            ]
        })
        .collect();
    names.push(REDUCE_KERNEL.to_string());
    names
}

/// The pass-1 and pass-3 kernels of one (storage type, head-dim class).
pub(crate) struct AttentionVariant {
    /// Pass 1, and its name (for errors).
    pub(crate) partial: CudaFunction,
    pub(crate) partial_name: String,
    /// Pass 3, and its name.
    pub(crate) apply: CudaFunction,
    pub(crate) apply_name: String,
}

/// The attention kernels of one storage type, every head-dim class, loaded.
pub(crate) struct AttentionKernels {
    /// In the order of [`HEAD_DIM_CLASSES`].
    variants: Vec<AttentionVariant>,
}

impl AttentionKernels {
    /// Looks up the kernels of `dtype` and feature map `map` and raises each apply kernel's
    /// dynamic shared-memory limit to what its class needs (70,144 bytes for class 128, above
    /// the default 48 KB).
    pub(crate) fn load(kernels: &Kernels, dtype: DType, map: FeatureMap) -> Result<Self> {
        let mut variants = Vec::with_capacity(HEAD_DIM_CLASSES.len());
        for class in HEAD_DIM_CLASSES {
            let partial_name = partial_kernel(dtype, map, class);
            let apply_name = apply_kernel(dtype, map, class);
            let partial = kernels.function(&partial_name)?;
            let apply = kernels.function(&apply_name)?;
            let smem = attention_apply_shared_bytes(class) as i32;
            // SAFETY: `apply` is a loaded function; the attribute takes a byte count.
            unsafe {
                cudarc::driver::result::function::set_function_attribute(
                    apply.cu_function(),
                    cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    smem,
                )
            }
            .map_err(|e| device_error("raising the attention kernel's shared memory", e))?;
            variants.push(AttentionVariant {
                partial,
                partial_name,
                apply,
                apply_name,
            });
        }
        Ok(AttentionKernels { variants })
    }

    /// The kernels for head dim `d`; an error for a head dim the kernels do not handle.
    pub(crate) fn for_head_dim(&self, d: usize) -> Result<&AttentionVariant> {
        let class = attention_padded_head_dim(d);
        HEAD_DIM_CLASSES
            .iter()
            .position(|&c| c == class)
            .filter(|_| (1..=MAX_HEAD_DIM).contains(&d))
            .and_then(|i| self.variants.get(i))
            .ok_or_else(|| {
                device_error(
                    "linear attention",
                    format!("head_dim {d} is outside 1…{MAX_HEAD_DIM}, which the kernels handle"),
                )
            })
    }
}

/// The grids of the three passes for one problem: `batch` samples of `tokens` tokens, `heads`
/// heads of `d` channels, `chunk` tokens per pass-1 block.
pub(crate) struct AttentionGeometry {
    /// Pass-1 blocks per (sample, head): `ceil(tokens / chunk)`, the same in all three passes.
    pub(crate) num_chunks: usize,
    /// Pass 1: `(num_chunks, heads, batch)`.
    pub(crate) partial: LaunchConfig,
    /// Pass 2: `(ceil((d² + d) / 256), batch·heads)`.
    pub(crate) reduce: LaunchConfig,
    /// Pass 3: `(ceil(tokens / 128), heads, batch)`, with the class's dynamic shared memory.
    pub(crate) apply: LaunchConfig,
}

impl AttentionGeometry {
    /// The launch geometry of one problem (see [`AttentionGeometry`]).
    pub(crate) fn new(batch: usize, tokens: usize, heads: usize, d: usize, chunk: usize) -> Self {
        let num_chunks = tokens.div_ceil(chunk);
        let block = (THREADS, 1, 1);
        AttentionGeometry {
            num_chunks,
            partial: LaunchConfig {
                grid_dim: (num_chunks as u32, heads as u32, batch as u32),
                block_dim: block,
                shared_mem_bytes: 0,
            },
            reduce: LaunchConfig {
                grid_dim: (
                    ((d * d + d) as u32).div_ceil(THREADS),
                    (batch * heads) as u32,
                    1,
                ),
                block_dim: block,
                shared_mem_bytes: 0,
            },
            apply: LaunchConfig {
                grid_dim: (
                    (tokens as u32).div_ceil(ATTENTION_APPLY_TILE),
                    heads as u32,
                    batch as u32,
                ),
                block_dim: block,
                shared_mem_bytes: attention_apply_shared_bytes(d) as u32,
            },
        }
    }
}

/// Most pass-1 chunks per (sample, head): bounds the partial-sum buffer for long sequences.
const MAX_ATTENTION_CHUNKS: usize = 64;

/// Tokens per pass-1 block: [`ATTENTION_CHUNK`], or more for sequences longer than
/// 64 chunks of it. It depends on the token count only — never on the batch — so a
/// sample's attention sums in the same order whatever else shares its batch.
pub fn attention_chunk(tokens: usize) -> usize {
    let chunk = tokens.div_ceil(MAX_ATTENTION_CHUNKS).max(ATTENTION_CHUNK);
    chunk.div_ceil(128) * 128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_head_dim_gets_the_instance_of_its_class() {
        let dtype = DType::BF16;
        for (d, class) in [
            (1, 32),
            (5, 32),
            (32, 32),
            (33, 64),
            (64, 64),
            (72, 128),
            (128, 128),
        ] {
            assert_eq!(
                partial_kernel(dtype, FeatureMap::EluPlusOne, d),
                format!("linear_attention_partial_bf16_d{class}")
            );
            assert_eq!(
                apply_kernel(dtype, FeatureMap::EluPlusOne, d),
                format!("linear_attention_apply_bf16_d{class}")
            );
            assert_eq!(
                partial_kernel(dtype, FeatureMap::Relu, d),
                format!("linear_attention_relu_partial_bf16_d{class}")
            );
            assert_eq!(
                apply_kernel(dtype, FeatureMap::Relu, d),
                format!("linear_attention_relu_apply_bf16_d{class}")
            );
        }
        assert_eq!(
            kernel_names(DType::F16, FeatureMap::EluPlusOne),
            [
                "linear_attention_partial_f16_d32",
                "linear_attention_apply_f16_d32",
                "linear_attention_partial_f16_d64",
                "linear_attention_apply_f16_d64",
                "linear_attention_partial_f16_d128",
                "linear_attention_apply_f16_d128",
                "linear_attention_reduce",
            ]
        );
    }

    #[test]
    fn geometry_follows_the_launch_contract() {
        let g = AttentionGeometry::new(2, 300, 3, 72, 256);
        assert_eq!(g.num_chunks, 2);
        assert_eq!(g.partial.grid_dim, (2, 3, 2));
        assert_eq!(g.reduce.grid_dim, (21, 6, 1));
        assert_eq!(g.apply.grid_dim, (3, 3, 2));
        assert_eq!(g.apply.shared_mem_bytes, 70_144);
        for config in [g.partial, g.reduce, g.apply] {
            assert_eq!(config.block_dim, (256, 1, 1));
        }
        assert_eq!(g.partial.shared_mem_bytes, 0);
        assert_eq!(
            AttentionGeometry::new(1, 1, 1, 33, 256)
                .apply
                .shared_mem_bytes,
            18_688
        );
    }

    #[test]
    fn the_chunk_depends_on_the_token_count_only() {
        assert_eq!(attention_chunk(1), 256);
        assert_eq!(attention_chunk(256 * 64), 256);
        assert_eq!(attention_chunk(256 * 64 + 1), 384);
        assert!(attention_chunk(1 << 20).is_multiple_of(128));
    }
}
