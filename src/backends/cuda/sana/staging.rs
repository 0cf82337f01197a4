//! The host side of a sana forward's inputs and output: pinned staging buffers filled from
//! the request, copied to and from the arena on the copy stream.
//!
//! What is prepared on the host, and why: the patch features (the latent reshuffled into
//! `[tokens, C·p·p]`, [`patch_features`]) so the patch conv is one GEMM; the timestep and
//! guidance features ([`timestep_features`]), which the CPU reference computes in f64 and
//! rounds once (the GPU's fp32 `sinf` at t ≈ 1000 would already differ by 6e-5); and, after
//! the download, the unpatchify of the output rows into `[B, C_out, H, W]`. Each is a pure
//! reshuffle or a B·256-value computation, next to nothing beside the forward. The batch
//! bucket's padding samples are made harmless: zero latents and captions, t = 0, an all-ones
//! mask (every value finite; no real sample reads them).

use super::super::device::device_error;
use super::arena::SanaArena;
use super::shape::SanaSizes;
use crate::error::Result;
use crate::model::sana::embedding::timestep_features;
use crate::model::sana::patches::{patch_features, unpatchify};
use crate::model::sana::tensors::TIME_FREQUENCY_WIDTH;
use crate::model::sana::{SanaInput, SanaShape};
use crate::tensor::Tensor;
use cudarc::driver::{CudaStream, PinnedHostSlice};
use std::sync::Arc;

/// Host-side pinned staging buffers of a sana arena.
pub struct SanaStaging {
    /// Patch features `[R·C·p·p]`.
    pub patches: PinnedHostSlice<f32>,
    /// Timestep features `[B·256]`.
    pub timestep_features: PinnedHostSlice<f32>,
    /// Guidance features `[B·256]`.
    pub guidance_features: PinnedHostSlice<f32>,
    /// Caption embeddings `[B·S·caption]`.
    pub captions: PinnedHostSlice<f32>,
    /// Mask `[B·S]`.
    pub mask: PinnedHostSlice<f32>,
    /// proj_out's rows `[R·p²·C_out]`, read by the host.
    pub out: PinnedHostSlice<f32>,
}

impl SanaStaging {
    /// Pinned buffers for a forward of `s`.
    pub fn new(stream: &Arc<CudaStream>, s: &SanaSizes) -> Result<Self> {
        let ctx = stream.context();
        let pin = |what: &str, e| device_error(&format!("allocating pinned {what}"), e);
        let features = s.batch * TIME_FREQUENCY_WIDTH;
        // SAFETY: pinned host allocations of these lengths; every one is written (staged)
        // before it is read (uploaded), or written by the download before the host reads it.
        unsafe {
            Ok(SanaStaging {
                patches: ctx
                    .alloc_pinned::<f32>(s.token_rows * s.patch_width)
                    .map_err(|e| pin("patches", e))?,
                timestep_features: ctx.alloc_pinned::<f32>(features).map_err(|e| pin("t", e))?,
                guidance_features: ctx
                    .alloc_pinned::<f32>(features)
                    .map_err(|e| pin("guidance", e))?,
                captions: ctx
                    .alloc_pinned::<f32>(s.text_rows * s.caption)
                    .map_err(|e| pin("captions", e))?,
                mask: ctx
                    .alloc_pinned::<f32>(s.batch * s.texts)
                    .map_err(|e| pin("mask", e))?,
                // Read by the host: not write-combined (flags 0), unlike the upload buffers.
                out: ctx
                    .alloc_pinned_with_flags::<f32>(s.token_rows * s.out_width, 0)
                    .map_err(|e| pin("output", e))?,
            })
        }
    }
}

/// The patch features, timestep (and guidance) features, captions and mask of `input`
/// (validated as `shape`) written into `staging` for the arena's sizes `s`.
pub fn stage_inputs(
    staging: &mut SanaStaging,
    s: &SanaSizes,
    input: &SanaInput<'_>,
    shape: SanaShape,
    channels: usize,
    patch: usize,
) -> Result<()> {
    let pinned = |e| device_error("writing pinned staging memory", e);
    let batch = shape.batch;
    let per_patches = s.tokens * s.patch_width;
    let per_x = channels * shape.height * shape.width;
    let patches = staging.patches.as_mut_slice().map_err(pinned)?;
    for (b, rows) in patches.chunks_mut(per_patches).enumerate() {
        if b < batch {
            let x = &input.x.data()[b * per_x..(b + 1) * per_x];
            rows.copy_from_slice(&patch_features(x, channels, shape, patch));
        } else {
            rows.fill(0.0);
        }
    }
    let features = staging.timestep_features.as_mut_slice().map_err(pinned)?;
    fill_features(features, Some(input.t), batch);
    let guidance = staging.guidance_features.as_mut_slice().map_err(pinned)?;
    fill_features(guidance, input.guidance, batch);
    let captions = staging.captions.as_mut_slice().map_err(pinned)?;
    let given = input.captions.data();
    captions[..given.len()].copy_from_slice(given);
    captions[given.len()..].fill(0.0);
    let mask = staging.mask.as_mut_slice().map_err(pinned)?;
    mask.fill(1.0);
    if let Some(given) = input.mask {
        mask[..given.len()].copy_from_slice(given);
    }
    Ok(())
}

/// diffusers' timestep features of `values[b]` for the first `batch` rows of `out`
/// (`[B, 256]`), t = 0 for the padding rows and for every row without `values`.
fn fill_features(out: &mut [f32], values: Option<&[f32]>, batch: usize) {
    for (b, row) in out.chunks_mut(TIME_FREQUENCY_WIDTH).enumerate() {
        let t = values.and_then(|v| v.get(b)).copied().filter(|_| b < batch);
        row.copy_from_slice(&timestep_features(t.unwrap_or(0.0)));
    }
}

/// Enqueues the copies of the staged inputs into the arena on `stream`.
pub fn upload(arena: &SanaArena, stream: &CudaStream) -> Result<()> {
    let fail = |e| device_error("copying inputs to the GPU", e);
    let (b, st) = (&arena.buffers, &arena.staging);
    let sources = [
        (b.patches_upload, st.patches.as_slice().map_err(fail)?),
        (
            b.timestep_features,
            st.timestep_features.as_slice().map_err(fail)?,
        ),
        (
            b.guidance_features,
            st.guidance_features.as_slice().map_err(fail)?,
        ),
        (b.captions_upload, st.captions.as_slice().map_err(fail)?),
        (b.mask, st.mask.as_slice().map_err(fail)?),
    ];
    for (destination, source) in &sources {
        destination.require("sana upload", source.len())?;
    }
    for (destination, source) in sources {
        // SAFETY: each destination is an arena buffer of the arena the caller keeps alive,
        // at least as long as its pinned source (checked above); the sources stay untouched
        // until the host waits for the copy stream.
        unsafe {
            cudarc::driver::result::memcpy_htod_async(
                destination.addr(),
                source,
                stream.cu_stream(),
            )
        }
        .map_err(fail)?;
    }
    Ok(())
}

/// Enqueues the copy of the output rows from the arena into pinned staging on `stream`.
pub fn download(arena: &mut SanaArena, stream: &CudaStream) -> Result<()> {
    let fail = |e| device_error("copying the output from the GPU", e);
    let source = arena.buffers.out;
    let destination = arena.staging.out.as_mut_slice().map_err(fail)?;
    source.require("output download", destination.len())?;
    // SAFETY: `destination` is pinned; `source` holds at least as many values (checked
    // above), in the arena the caller keeps alive.
    unsafe {
        cudarc::driver::result::memcpy_dtoh_async(destination, source.addr(), stream.cu_stream())
    }
    .map_err(fail)
}

/// The velocity `[B, C_out, H, W]` of the first `shape.batch` samples, from pinned staging
/// once the download has run.
pub fn read_output(
    arena: &SanaArena,
    shape: SanaShape,
    out_channels: usize,
    patch: usize,
) -> Result<Tensor> {
    let rows = arena
        .staging
        .out
        .as_slice()
        .map_err(|e| device_error("reading the output", e))?;
    let per_sample = arena.sizes.tokens * arena.sizes.out_width;
    let mut data = Vec::with_capacity(shape.batch * out_channels * shape.height * shape.width);
    for sample in rows.chunks(per_sample).take(shape.batch) {
        data.extend(unpatchify(sample, out_channels, shape, patch));
    }
    Tensor::new(
        vec![shape.batch, out_channels, shape.height, shape.width],
        data,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_rows_get_the_features_of_t_0() {
        let mut out = vec![f32::NAN; 3 * TIME_FREQUENCY_WIDTH];
        fill_features(&mut out, Some(&[500.0, 20.0]), 2);
        assert_eq!(&out[..256], &timestep_features(500.0));
        assert_eq!(&out[256..512], &timestep_features(20.0));
        assert_eq!(&out[512..], &timestep_features(0.0));
        fill_features(&mut out, None, 2);
        assert!(out.chunks(256).all(|row| row == timestep_features(0.0)));
    }
}
