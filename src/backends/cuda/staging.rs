//! The host side of a forward's inputs and output: pinned staging buffers, filled from the
//! request (the batch bucket's padding rows made harmless), copied to and from the arena on
//! the copy stream.

use super::arena::ForwardArena;
use super::device::device_error;
use crate::error::Result;
use crate::model::Input;
use crate::tensor::Tensor;
use cudarc::driver::{CudaStream, PinnedHostSlice};
use std::sync::Arc;

/// Host-side pinned staging buffers of an arena.
pub struct PinnedStaging {
    /// x `[R·D]`.
    pub x: PinnedHostSlice<f32>,
    /// Timesteps `[B]`.
    pub timesteps: PinnedHostSlice<f32>,
    /// Labels `[B]`.
    pub labels: PinnedHostSlice<i64>,
    /// eps `[R·D]`.
    pub eps: PinnedHostSlice<f32>,
}

impl PinnedStaging {
    /// Pinned buffers for `values` input (and output) values and `batch` samples.
    pub fn new(stream: &Arc<CudaStream>, values: usize, batch: usize) -> Result<Self> {
        let ctx = stream.context();
        let pin = |what: &str, e| device_error(&format!("allocating pinned {what}"), e);
        // SAFETY: pinned host allocations of these lengths; every one is written (staged)
        // before it is read (uploaded), or written by the download before the host reads it.
        unsafe {
            Ok(PinnedStaging {
                x: ctx.alloc_pinned::<f32>(values).map_err(|e| pin("x", e))?,
                timesteps: ctx.alloc_pinned::<f32>(batch).map_err(|e| pin("t", e))?,
                labels: ctx.alloc_pinned::<i64>(batch).map_err(|e| pin("y", e))?,
                // Read by the host: not write-combined (flags 0), unlike the upload buffers.
                eps: ctx
                    .alloc_pinned_with_flags::<f32>(values, 0)
                    .map_err(|e| pin("eps", e))?,
            })
        }
    }
}

/// Copies the inputs into the pinned staging buffers, padding the batch bucket with
/// harmless rows (zeros, t = 0, label 0).
pub fn stage_inputs(arena: &mut ForwardArena, input: &Input<'_>, batch: usize) -> Result<()> {
    let pinned = |e| device_error("writing pinned staging memory", e);
    let x = arena.staging.x.as_mut_slice().map_err(pinned)?;
    let n = input.x.data().len();
    x[..n].copy_from_slice(input.x.data());
    x[n..].fill(0.0);
    let timesteps = arena.staging.timesteps.as_mut_slice().map_err(pinned)?;
    timesteps[..batch].copy_from_slice(input.t);
    timesteps[batch..].fill(0.0);
    let labels = arena.staging.labels.as_mut_slice().map_err(pinned)?;
    labels.fill(0);
    if let Some(given) = input.y {
        labels[..batch].copy_from_slice(given);
    }
    Ok(())
}

/// Enqueues the copies of the staged inputs — `input_dim` values per row — into the arena
/// on `stream`.
pub fn upload(arena: &ForwardArena, stream: &CudaStream, input_dim: usize) -> Result<()> {
    let buffers = &arena.buffers;
    let fail = |e| device_error("copying inputs to the GPU", e);
    let staging = &arena.staging;
    let values = arena.batch * arena.tokens * input_dim;
    let x = &staging.x.as_slice().map_err(fail)?[..values];
    let timesteps = staging.timesteps.as_slice().map_err(fail)?;
    let labels = staging.labels.as_slice().map_err(fail)?;
    buffers.x_upload.require("x upload", x.len())?;
    buffers.timesteps.require("t upload", timesteps.len())?;
    buffers.labels.require("y upload", labels.len())?;
    // SAFETY: each destination is an arena buffer of the arena the caller keeps alive, at
    // least as long as its pinned source (checked above); the sources stay untouched until
    // the host waits for the copy stream.
    unsafe {
        let stream = stream.cu_stream();
        use cudarc::driver::result::memcpy_htod_async;
        memcpy_htod_async(buffers.x_upload.addr(), x, stream).map_err(fail)?;
        memcpy_htod_async(buffers.timesteps.addr(), timesteps, stream).map_err(fail)?;
        memcpy_htod_async(buffers.labels.addr(), labels, stream).map_err(fail)?;
    }
    Ok(())
}

/// Enqueues the copy of the first `n` values of eps from the arena into pinned staging on
/// `stream`.
pub fn download(arena: &mut ForwardArena, stream: &CudaStream, n: usize) -> Result<()> {
    let fail = |e| device_error("copying eps from the GPU", e);
    let source = arena.buffers.eps;
    source.require("eps download", n)?;
    let eps = arena.staging.eps.as_mut_slice().map_err(fail)?;
    let capacity = eps.len();
    let destination = eps.get_mut(..n).ok_or_else(|| {
        device_error(
            "copying eps from the GPU",
            format!("{n} values into {capacity}"),
        )
    })?;
    // SAFETY: `destination` is pinned and `n` long; `source` holds the forward's output, at
    // least `n` values (checked above), in the arena the caller keeps alive.
    unsafe {
        cudarc::driver::result::memcpy_dtoh_async(destination, source.addr(), stream.cu_stream())
    }
    .map_err(fail)
}

/// eps `[batch, tokens, input_dim]`, read from pinned staging once the download has run.
pub fn read_eps(
    arena: &ForwardArena,
    batch: usize,
    tokens: usize,
    input_dim: usize,
) -> Result<Tensor> {
    let eps = arena
        .staging
        .eps
        .as_slice()
        .map_err(|e| device_error("reading the output", e))?;
    let n = batch * tokens * input_dim;
    Tensor::new(vec![batch, tokens, input_dim], eps[..n].to_vec())
}
