//! Diffusion sampling for ε-prediction models: noise schedules, samplers (DDPM, DDIM,
//! DPM-Solver++(2M)), classifier-free guidance, deterministic per-request noise, and the
//! step-level API through which many independent requests advance in one batched forward.
//! [`flow`] samples the flow-matching `sana` flavor.

mod batch;
mod description;
pub mod flow;
pub mod metadata;
mod schedule;
mod solver;
mod trajectory;

pub use batch::{StepBatch, StepEps, group_by_grid, sample, stack_images, step_all};
pub use description::{DEFAULT_GUIDANCE, ModelDescription};
pub use schedule::{NoiseSchedule, ScheduleKind, Spacing};
pub use solver::SamplerKind;
pub use trajectory::{
    NoiseKey, SamplingParams, SamplingPlan, Trajectory, check_sampling_size, image_classes,
    request_trajectories,
};
