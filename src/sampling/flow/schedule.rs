//! The timesteps and sigmas an S-step flow-matching sampler visits, computed as diffusers'
//! schedulers compute them (same formulas, same points of rounding to f32), so a run here
//! and a run of a SANA pipeline evaluate the transformer at the same timesteps.
//!
//! With N = 1000 training timesteps and shift s, the shift map is σ ↦ sσ / (1 + (s − 1)σ).
//!
//! - **flow-dpmpp2m** (`DPMSolverMultistepScheduler.set_timesteps` with `use_flow_sigmas`):
//!   α_i = linspace(1, 1/N, S + 1); σ = reverse(shift(1 − α))[.. S], then a final σ = 0; the
//!   transformer's timesteps are ⌊σ_i N⌋ (diffusers casts them to int64).
//! - **flow-euler** (`FlowMatchEulerDiscreteScheduler`): the training sigmas are
//!   shift(linspace(1, N, N)/N) in f32, so σ_max = 1 and σ_min = shift(1/N); then
//!   σ = shift(linspace(σ_max N, σ_min N, S)/N) — shifted a second time, as diffusers does —
//!   a final σ = 0, and timesteps σ_i N in f32.
//! - **scm** (`SCMScheduler`, trigflow): angles linspace(1.5708, 0, S + 1), or
//!   [1.5708, 1.3, 0] for S = 2 (`SanaSprintPipeline`'s `intermediate_timesteps`); the
//!   transformer gets t = sin θ / (cos θ + sin θ) ∈ [0, 1].

use super::kind::FlowSamplerKind;
use crate::error::{Error, Result};

/// Training timesteps of the SANA schedulers (`num_train_timesteps`).
pub const FLOW_TRAIN_STEPS: usize = 1000;

/// The shift `SanaPipeline` ships with (`flow_shift`; 6.0 for the 4K models).
pub const DEFAULT_FLOW_SHIFT: f64 = 3.0;

/// The first SCM angle (`max_timesteps`): diffusers' 1.57080, π/2 rounded to 5 decimals
/// (just above π/2: pure noise), not π/2 itself.
#[allow(clippy::approx_constant)]
pub const SCM_MAX_ANGLE: f64 = 1.57080;

/// The middle angle of a 2-step SCM run (`intermediate_timesteps`).
pub const SCM_INTERMEDIATE_ANGLE: f64 = 1.3;

/// What an S-step sampler visits.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSchedule {
    kind: FlowSamplerKind,
    /// `[S]`: the timestep the transformer receives at each step, before the model's
    /// `timestep_scale`.
    timesteps: Vec<f32>,
    /// `[S + 1]`: σ_i of each step and the final one (flow samplers), or the trigflow angles
    /// θ_i (scm).
    sigmas: Vec<f32>,
}

/// σ ↦ sσ / (1 + (s − 1)σ), in f64.
fn shift_sigma(shift: f64, sigma: f64) -> f64 {
    shift * sigma / (1.0 + (shift - 1.0) * sigma)
}

/// numpy's `linspace(start, end, n)` (n ≥ 1), in f64: `start + i·step`, the last point `end`.
fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    (0..n)
        .map(|i| {
            if i + 1 == n {
                end
            } else {
                start + i as f64 * step
            }
        })
        .collect()
}

impl FlowSchedule {
    /// The schedule of `kind` over `steps` steps with `shift` (ignored by scm).
    pub fn new(kind: FlowSamplerKind, steps: usize, shift: f64) -> Result<Self> {
        if steps == 0 || steps > FLOW_TRAIN_STEPS {
            return Err(Error::input(
                "steps",
                format!("is {steps}; it must lie in 1..={FLOW_TRAIN_STEPS}"),
            ));
        }
        if !(shift.is_finite() && shift > 0.0 && shift <= 100.0) {
            return Err(Error::input(
                "shift",
                format!("is {shift}; it must be a finite number in (0, 100]"),
            ));
        }
        let n = FLOW_TRAIN_STEPS as f64;
        let (timesteps, sigmas) = match kind {
            FlowSamplerKind::DpmPp2m => {
                let alphas = linspace(1.0, 1.0 / n, steps + 1);
                let mut sigmas: Vec<f64> = alphas
                    .iter()
                    .rev()
                    .map(|a| shift_sigma(shift, 1.0 - a))
                    .take(steps)
                    .collect();
                let timesteps = sigmas.iter().map(|s| (s * n).trunc() as f32).collect();
                sigmas.push(0.0);
                (timesteps, sigmas.iter().map(|&s| s as f32).collect())
            }
            FlowSamplerKind::Euler => {
                // The training sigmas are f32 tensors in diffusers: σ_min is their last.
                let train_min = 1.0f32 / FLOW_TRAIN_STEPS as f32;
                let s = shift as f32;
                let sigma_min = f64::from(s * train_min / (1.0 + (s - 1.0) * train_min));
                let sigma_max = 1.0;
                let mut sigmas: Vec<f32> = linspace(sigma_max * n, sigma_min * n, steps)
                    .iter()
                    .map(|t| shift_sigma(shift, t / n) as f32)
                    .collect();
                let timesteps = sigmas.iter().map(|s| s * FLOW_TRAIN_STEPS as f32).collect();
                sigmas.push(0.0);
                (timesteps, sigmas)
            }
            FlowSamplerKind::Scm => {
                let angles: Vec<f32> = if steps == 2 {
                    vec![SCM_MAX_ANGLE as f32, SCM_INTERMEDIATE_ANGLE as f32, 0.0]
                } else {
                    linspace(SCM_MAX_ANGLE, 0.0, steps + 1)
                        .iter()
                        .map(|&a| a as f32)
                        .collect()
                };
                let timesteps = angles[..steps]
                    .iter()
                    .map(|&a| a.sin() / (a.cos() + a.sin()))
                    .collect();
                (timesteps, angles)
            }
        };
        Ok(FlowSchedule {
            kind,
            timesteps,
            sigmas,
        })
    }

    /// The sampler this schedule is for.
    pub fn kind(&self) -> FlowSamplerKind {
        self.kind
    }

    /// Steps S.
    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    /// `[S]`: the transformer's timestep at each step, before `timestep_scale`.
    pub fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    /// `[S + 1]`: σ_i (flow samplers) or θ_i (scm), the last one 0.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schedule_descends_to_zero() {
        for kind in [
            FlowSamplerKind::Euler,
            FlowSamplerKind::DpmPp2m,
            FlowSamplerKind::Scm,
        ] {
            for steps in [1, 2, 3, 20, 50] {
                let s = FlowSchedule::new(kind, steps, DEFAULT_FLOW_SHIFT).unwrap();
                assert_eq!(s.timesteps().len(), steps);
                assert_eq!(s.sigmas().len(), steps + 1);
                assert_eq!(*s.sigmas().last().unwrap(), 0.0, "{kind} {steps}");
                assert!(s.sigmas().windows(2).all(|w| w[0] > w[1]), "{kind} {steps}");
            }
        }
    }

    #[test]
    fn bad_steps_and_shifts_are_refused() {
        for steps in [0, FLOW_TRAIN_STEPS + 1] {
            assert!(FlowSchedule::new(FlowSamplerKind::Euler, steps, 3.0).is_err());
        }
        for shift in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            let err = FlowSchedule::new(FlowSamplerKind::DpmPp2m, 20, shift).unwrap_err();
            assert!(err.to_string().contains("shift"), "{err}");
        }
    }
}
