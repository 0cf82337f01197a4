//! Flow-matching sampling for the `sana` flavor, as diffusers' SANA pipelines run it: the
//! schedules and steps of flow-Euler, flow DPM-Solver++(2M) and SANA-Sprint's SCM,
//! classifier-free guidance against negative captions (or Sprint's embedded guidance), and
//! trajectories that advance together in batched forwards across latent sizes and caption
//! lengths.

mod batch;
mod caption;
mod kind;
mod params;
mod schedule;
mod solver;
mod trajectory;

pub use batch::{
    SanaRequest, SanaStepBatch, SanaStepRows, request_sana_trajectories, run_to_end, sample_sana,
    stack_latents, step_all_sana,
};
pub use caption::{CAPTION_EMBEDS, CAPTION_MASK, Caption};
pub use kind::FlowSamplerKind;
pub use params::{DEFAULT_SANA_GUIDANCE, FlowParams, FlowPlan, SCM_SIGMA_DATA};
pub use schedule::{
    DEFAULT_FLOW_SHIFT, FLOW_TRAIN_STEPS, FlowSchedule, SCM_INTERMEDIATE_ANGLE, SCM_MAX_ANGLE,
};
pub use solver::{FlowSolverMemory, dpmpp2m_step, euler_step, scm_step};
pub use trajectory::{FlowNoise, SanaTrajectory};
