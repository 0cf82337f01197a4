//! Noise schedules of ε-prediction diffusion, and the timesteps an S-step sampler visits.
//!
//! - Linear β (Ho et al., "Denoising Diffusion Probabilistic Models", 2020; DiT's schedule):
//!   β_t = linspace(1e-4, 0.02, T).
//! - Cosine (Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", 2021):
//!   ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T) + s)/(1 + s) · π/2), s = 0.008, β_t ≤ 0.999.
//!
//! Everything is computed in f64: the products of ~1000 factors lose precision in f32.

use crate::error::{Error, ParseError, Result};

/// Which β schedule the model was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScheduleKind {
    /// β linear from 1e-4 to 0.02 (DDPM, DiT).
    #[default]
    Linear,
    /// The cosine schedule of improved DDPM.
    Cosine,
}

impl std::str::FromStr for ScheduleKind {
    type Err = ParseError;

    fn from_str(s: &str) -> std::result::Result<Self, ParseError> {
        match s {
            "linear" => Ok(ScheduleKind::Linear),
            "cosine" => Ok(ScheduleKind::Cosine),
            other => Err(ParseError::new("schedule", other, "linear or cosine")),
        }
    }
}

/// How an S-step sampler picks its timesteps among the T training steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spacing {
    /// t_i = round(T − i·T/S) − 1: starts at T−1 (Lin et al., "Common Diffusion Noise
    /// Schedules and Sample Steps are Flawed", 2023, Table 2). The default.
    #[default]
    Trailing,
    /// t_i = (S−1−i)·⌊T/S⌋ (DDIM's original choice; never visits T−1).
    Leading,
    /// t_i = round(linspace(T−1, 0, S)).
    Linspace,
}

impl std::str::FromStr for Spacing {
    type Err = ParseError;

    fn from_str(s: &str) -> std::result::Result<Self, ParseError> {
        match s {
            "trailing" => Ok(Spacing::Trailing),
            "leading" => Ok(Spacing::Leading),
            "linspace" => Ok(Spacing::Linspace),
            other => Err(ParseError::new(
                "spacing",
                other,
                "trailing, leading or linspace",
            )),
        }
    }
}

/// ᾱ_t for t = 0 … T−1 of a training schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    /// The schedule `kind` over `num_steps` training steps.
    pub fn new(kind: ScheduleKind, num_steps: usize) -> Result<Self> {
        if num_steps == 0 {
            return Err(Error::config("num_steps", "must be at least 1"));
        }
        let t_max = num_steps as f64;
        let betas: Vec<f64> = match kind {
            ScheduleKind::Linear => (0..num_steps)
                .map(|i| {
                    let frac = if num_steps == 1 {
                        0.0
                    } else {
                        i as f64 / (t_max - 1.0)
                    };
                    1e-4 + (0.02 - 1e-4) * frac
                })
                .collect(),
            ScheduleKind::Cosine => {
                let f = |t: f64| {
                    let s = 0.008;
                    (((t / t_max) + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (0..num_steps)
                    .map(|i| (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(0.999))
                    .collect()
            }
        };
        let mut product = 1.0;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                product *= 1.0 - b;
                product
            })
            .collect();
        Ok(NoiseSchedule { alphas_cumprod })
    }

    /// Training steps T.
    pub fn num_steps(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// ᾱ_t; `None` (the clean image, "t = −1") is 1.
    pub fn alpha_bar(&self, t: Option<usize>) -> f64 {
        t.map_or(1.0, |t| self.alphas_cumprod[t])
    }

    /// The `steps` timesteps an inference sampler visits, from noisiest to cleanest; an error
    /// unless 1 ≤ steps ≤ T.
    pub fn timesteps(&self, steps: usize, spacing: Spacing) -> Result<Vec<usize>> {
        let t_max = self.num_steps();
        if steps == 0 || steps > t_max {
            return Err(Error::input(
                "steps",
                format!("is {steps}; it must lie in [1, num_steps = {t_max}]"),
            ));
        }
        let ts: Vec<usize> = (0..steps)
            .map(|i| match spacing {
                Spacing::Trailing => {
                    let t =
                        (t_max as f64 - i as f64 * t_max as f64 / steps as f64).round() as usize;
                    t.saturating_sub(1)
                }
                Spacing::Leading => (steps - 1 - i) * (t_max / steps),
                Spacing::Linspace => {
                    if steps == 1 {
                        t_max - 1
                    } else {
                        ((t_max - 1) as f64 * (steps - 1 - i) as f64 / (steps - 1) as f64).round()
                            as usize
                    }
                }
            })
            .collect();
        Ok(ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_schedule_matches_ddpm() {
        let s = NoiseSchedule::new(ScheduleKind::Linear, 1000).unwrap();
        assert!((s.alpha_bar(Some(0)) - 0.9999).abs() < 1e-12);
        // ᾱ_999 of DDPM's schedule is about 4.0e-5.
        assert!(
            (s.alpha_bar(Some(999)) - 4.035e-5).abs() < 1e-7,
            "{}",
            s.alpha_bar(Some(999))
        );
        let c = NoiseSchedule::new(ScheduleKind::Cosine, 1000).unwrap();
        assert!(c.alpha_bar(Some(0)) > 0.9999 && c.alpha_bar(Some(999)) < 1e-4);
    }

    #[test]
    fn spacings_are_strictly_decreasing_and_in_range() {
        let s = NoiseSchedule::new(ScheduleKind::Linear, 1000).unwrap();
        assert_eq!(
            s.timesteps(4, Spacing::Trailing).unwrap(),
            vec![999, 749, 499, 249]
        );
        assert_eq!(
            s.timesteps(4, Spacing::Leading).unwrap(),
            vec![750, 500, 250, 0]
        );
        assert_eq!(
            s.timesteps(4, Spacing::Linspace).unwrap(),
            vec![999, 666, 333, 0]
        );
        for steps in [1, 7, 20, 999, 1000] {
            for spacing in [Spacing::Trailing, Spacing::Leading, Spacing::Linspace] {
                let ts = s.timesteps(steps, spacing).unwrap();
                assert_eq!(ts.len(), steps);
                assert!(
                    ts.windows(2).all(|w| w[0] > w[1]),
                    "{spacing:?} {steps}: {ts:?}"
                );
                assert!(ts[0] < 1000);
            }
        }
        assert!(s.timesteps(0, Spacing::Trailing).is_err());
        assert!(s.timesteps(1001, Spacing::Trailing).is_err());
    }
}
