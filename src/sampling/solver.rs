//! One denoising step of each sampler, for ε-prediction models. Formulas and sources:
//!
//! With α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t), the data prediction is x̂₀ = (x_t − σ_t ε) / α_t.
//! Stepping from t to s < t (s = "clean" means ᾱ_s = 1):
//!
//! - **DDIM** (Song, Meng & Ermon, "Denoising Diffusion Implicit Models", 2021, eq. 12):
//!   σ = η √((1 − ᾱ_s)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_s),
//!   x_s = α_s x̂₀ + √(1 − ᾱ_s − σ²) ε + σ z.   η = 0 is deterministic.
//! - **DDPM** ancestral (Ho, Jain & Abbeel, 2020, eqs. 6–7; respaced as in Nichol & Dhariwal
//!   2021): with β̃ = 1 − ᾱ_t/ᾱ_s, the posterior mean
//!   μ = (α_s β̃ / (1 − ᾱ_t)) x̂₀ + (√(ᾱ_t/ᾱ_s) (1 − ᾱ_s) / (1 − ᾱ_t)) x_t and variance
//!   β̃ (1 − ᾱ_s)/(1 − ᾱ_t); x_s = μ + √var · z.
//! - **DPM-Solver++(2M)** (Lu et al., "DPM-Solver++", 2022, Algorithm 2): λ = ln(α/σ),
//!   h = λ_s − λ_t, D = x̂₀ on the first step, else D = (1 + 1/2r) x̂₀ − (1/2r) x̂₀_prev with
//!   r = h_prev/h; x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) D.
//!
//! Every sampler's last step (to the clean image) returns x̂₀ itself: the σ_s = 0 limit of
//! each formula ("lower order final" for the multistep solver). Coefficients are f64.

use super::schedule::NoiseSchedule;
use crate::error::{Error, ParseError, Result};

/// Which sampler advances a trajectory.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum SamplerKind {
    /// DDIM with stochasticity η (0 = deterministic).
    Ddim {
        /// η ∈ [0, 1]; 1 matches DDPM's variance.
        eta: f64,
    },
    /// DDPM ancestral sampling.
    Ddpm,
    /// DPM-Solver++(2M), deterministic multistep.
    #[default]
    DpmPp2m,
}

impl SamplerKind {
    /// The command-line spelling.
    pub fn name(&self) -> &'static str {
        match self {
            SamplerKind::Ddim { .. } => "ddim",
            SamplerKind::Ddpm => "ddpm",
            SamplerKind::DpmPp2m => "dpmpp2m",
        }
    }

    /// The complete sampler a command line or a request asks for: `name` as
    /// [`FromStr`](std::str::FromStr) reads it, with DDIM's stochasticity `eta` (absent: 0,
    /// deterministic). `eta` given to any other sampler is an error, not silently dropped.
    pub fn parse(name: &str, eta: Option<f64>) -> Result<Self> {
        name.parse::<SamplerKind>()?.with_eta(eta)
    }

    /// This sampler with DDIM's stochasticity `eta` when given (`None`: unchanged); `eta`
    /// given to any other sampler is an error.
    pub fn with_eta(self, eta: Option<f64>) -> Result<Self> {
        match (self, eta) {
            (SamplerKind::Ddim { .. }, Some(eta)) => Ok(SamplerKind::Ddim { eta }),
            (_, Some(_)) => Err(Error::input("eta", "applies to the ddim sampler only")),
            (kind, None) => Ok(kind),
        }
    }
}

impl std::str::FromStr for SamplerKind {
    type Err = ParseError;

    /// `ddim` (η = 0: deterministic), `ddpm` (ancestral, stochastic) or `dpmpp2m`
    /// (deterministic), case-insensitive.
    fn from_str(s: &str) -> std::result::Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "ddim" => Ok(SamplerKind::Ddim { eta: 0.0 }),
            "ddpm" => Ok(SamplerKind::Ddpm),
            "dpmpp2m" | "dpm++2m" | "dpmpp_2m" | "dpm-solver++" => Ok(SamplerKind::DpmPp2m),
            other => Err(ParseError::new("sampler", other, "ddim, ddpm or dpmpp2m")),
        }
    }
}

/// What a multistep solver remembers between steps.
#[derive(Debug, Clone, Default)]
pub struct SolverMemory {
    previous: Option<(Vec<f32>, f64)>,
}

/// Advances `x` (at timestep `t`) to `s` (`None`: the clean image) given the model's
/// (guided) noise prediction `eps`. `noise` fills a buffer with this step's standard normal
/// noise; it is called only by samplers that need it. With `clip`, x̂₀ is clamped to [−1, 1]
/// (pixel-space models).
#[allow(clippy::too_many_arguments)]
pub fn step(
    kind: SamplerKind,
    schedule: &NoiseSchedule,
    t: usize,
    s: Option<usize>,
    x: &mut [f32],
    eps: &[f32],
    memory: &mut SolverMemory,
    clip: bool,
    noise: impl FnOnce(&mut [f32]),
) {
    let abar_t = schedule.alpha_bar(Some(t));
    let abar_s = schedule.alpha_bar(s);
    let (alpha_t, sigma_t) = (abar_t.sqrt(), (1.0 - abar_t).sqrt());
    let x0: Vec<f32> = x
        .iter()
        .zip(eps)
        .map(|(&x, &e)| {
            let v = (x as f64 - sigma_t * e as f64) / alpha_t;
            (if clip { v.clamp(-1.0, 1.0) } else { v }) as f32
        })
        .collect();
    if s.is_none() {
        x.copy_from_slice(&x0);
        return;
    }
    let (alpha_s, sigma_s) = (abar_s.sqrt(), (1.0 - abar_s).sqrt());
    match kind {
        SamplerKind::Ddim { eta } => {
            let sigma =
                eta * ((1.0 - abar_s) / (1.0 - abar_t)).sqrt() * (1.0 - abar_t / abar_s).sqrt();
            let direction = (1.0 - abar_s - sigma * sigma).max(0.0).sqrt();
            // ε consistent with the (possibly clipped) x̂₀, as DDIM implementations use.
            let mut z = vec![0.0f32; x.len()];
            if sigma > 0.0 {
                noise(&mut z);
            }
            for ((x, &x0), &z) in x.iter_mut().zip(&x0).zip(&z) {
                let e = (*x as f64 - alpha_t * x0 as f64) / sigma_t;
                *x = (alpha_s * x0 as f64 + direction * e + sigma * z as f64) as f32;
            }
        }
        SamplerKind::Ddpm => {
            let beta = 1.0 - abar_t / abar_s;
            let c0 = alpha_s * beta / (1.0 - abar_t);
            let ct = (abar_t / abar_s).sqrt() * (1.0 - abar_s) / (1.0 - abar_t);
            let std = (beta * (1.0 - abar_s) / (1.0 - abar_t)).sqrt();
            let mut z = vec![0.0f32; x.len()];
            noise(&mut z);
            for ((x, &x0), &z) in x.iter_mut().zip(&x0).zip(&z) {
                *x = (c0 * x0 as f64 + ct * *x as f64 + std * z as f64) as f32;
            }
        }
        SamplerKind::DpmPp2m => {
            let lambda = |alpha: f64, sigma: f64| alpha.ln() - sigma.ln();
            let h = lambda(alpha_s, sigma_s) - lambda(alpha_t, sigma_t);
            let decay = sigma_s / sigma_t;
            let gain = -alpha_s * (-h).exp_m1();
            let second_order = memory.previous.as_ref().map(|(prev, h_prev)| {
                let r = h_prev / h;
                (1.0 + 0.5 / r, 0.5 / r, prev)
            });
            for (i, (x, &x0)) in x.iter_mut().zip(&x0).enumerate() {
                let d = match &second_order {
                    Some((a, b, prev)) => a * x0 as f64 - b * prev[i] as f64,
                    None => x0 as f64,
                };
                *x = (decay * *x as f64 + gain * d) as f32;
            }
            memory.previous = Some((x0, h));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::schedule::{ScheduleKind, Spacing};

    /// With the exact ε of a known clean image, every deterministic sampler lands on it.
    #[test]
    fn exact_noise_prediction_recovers_the_clean_image() {
        let schedule = NoiseSchedule::new(ScheduleKind::Linear, 1000).unwrap();
        let clean = [0.3f32, -0.7, 0.05, 0.9];
        let start_noise = [1.2f32, -0.4, 0.3, -1.1];
        for kind in [SamplerKind::Ddim { eta: 0.0 }, SamplerKind::DpmPp2m] {
            let ts = schedule.timesteps(10, Spacing::Trailing).unwrap();
            let abar = schedule.alpha_bar(Some(ts[0]));
            let mut x: Vec<f32> = clean
                .iter()
                .zip(&start_noise)
                .map(|(&c, &n)| (abar.sqrt() * c as f64 + (1.0 - abar).sqrt() * n as f64) as f32)
                .collect();
            let mut memory = SolverMemory::default();
            for (i, &t) in ts.iter().enumerate() {
                let a = schedule.alpha_bar(Some(t));
                let eps: Vec<f32> = x
                    .iter()
                    .zip(&clean)
                    .map(|(&x, &c)| ((x as f64 - a.sqrt() * c as f64) / (1.0 - a).sqrt()) as f32)
                    .collect();
                step(
                    kind,
                    &schedule,
                    t,
                    ts.get(i + 1).copied(),
                    &mut x,
                    &eps,
                    &mut memory,
                    false,
                    |_| unreachable!("deterministic samplers draw no noise"),
                );
            }
            for (a, b) in x.iter().zip(&clean) {
                assert!((a - b).abs() < 1e-4, "{kind:?}: {x:?} vs {clean:?}");
            }
        }
    }
}
