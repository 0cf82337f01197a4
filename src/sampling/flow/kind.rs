//! Which flow-matching sampler advances a `sana` trajectory, and how it is spelled.

use crate::error::ParseError;

/// A sampler for flow-matching (velocity-prediction) models, each the scheduler diffusers'
/// SANA pipelines use for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowSamplerKind {
    /// Flow-matching Euler: diffusers' `FlowMatchEulerDiscreteScheduler` with `shift`.
    Euler,
    /// DPM-Solver++(2M) on flow sigmas: diffusers' `DPMSolverMultistepScheduler` with
    /// `use_flow_sigmas`, `prediction_type = "flow_prediction"`, `flow_shift`,
    /// `lower_order_final` and a final sigma of 0 — what `SanaPipeline` ships with.
    #[default]
    DpmPp2m,
    /// SANA-Sprint's consistency sampler: diffusers' `SCMScheduler` (`trigflow`), 1–4 steps,
    /// for `guidance_embeds` models.
    Scm,
}

impl FlowSamplerKind {
    /// The command-line spelling.
    pub fn name(&self) -> &'static str {
        match self {
            FlowSamplerKind::Euler => "flow-euler",
            FlowSamplerKind::DpmPp2m => "flow-dpmpp2m",
            FlowSamplerKind::Scm => "scm",
        }
    }
}

impl std::fmt::Display for FlowSamplerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FlowSamplerKind {
    type Err = ParseError;

    /// `flow-euler`, `flow-dpmpp2m` or `scm`, case-insensitive.
    fn from_str(s: &str) -> std::result::Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "flow-euler" | "flow_euler" => Ok(FlowSamplerKind::Euler),
            "flow-dpmpp2m" | "flow_dpmpp2m" | "flow-dpm++2m" => Ok(FlowSamplerKind::DpmPp2m),
            "scm" => Ok(FlowSamplerKind::Scm),
            other => Err(ParseError::new(
                "sampler",
                other,
                "flow-euler, flow-dpmpp2m or scm",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in [
            FlowSamplerKind::Euler,
            FlowSamplerKind::DpmPp2m,
            FlowSamplerKind::Scm,
        ] {
            assert_eq!(kind.name().parse::<FlowSamplerKind>().unwrap(), kind);
        }
        let err = "ddim".parse::<FlowSamplerKind>().unwrap_err().to_string();
        assert!(err.contains("flow-euler, flow-dpmpp2m or scm"), "{err}");
    }
}
