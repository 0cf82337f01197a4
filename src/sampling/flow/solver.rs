//! One step of each flow-matching sampler, as diffusers' schedulers take it. The model
//! predicts the velocity v (flow matching: x_σ = (1 − σ) x₀ + σ ε, v = ε − x₀), so the data
//! prediction is x̂₀ = x − σ v.
//!
//! - **flow-euler** (`FlowMatchEulerDiscreteScheduler.step`): x' = x + (σ' − σ) v.
//! - **flow-dpmpp2m** (`DPMSolverMultistepScheduler`, `dpmsolver++`, `midpoint`, flow
//!   sigmas): α = 1 − σ, λ = ln α − ln σ, h = λ' − λ; first order (the first step and, with
//!   a final σ of 0, the last one): x' = (σ'/σ) x − α' (e^{−h} − 1) x̂₀; second order, with
//!   r = h_prev / h and D₁ = (x̂₀ − x̂₀_prev) / r: x' = (σ'/σ) x − α'(e^{−h} − 1)(x̂₀ + D₁/2).
//!   At σ' = 0 the first-order step is x̂₀ itself.
//! - **scm** (`SCMScheduler.step`, trigflow, σ_d = `sigma_data`): with F the pipeline's
//!   converted prediction, x̂₀ = cos θ · x − sin θ · F and x' = cos θ' · x̂₀ + sin θ' · σ_d z.
//!
//! Coefficients are f64; latents stay f32, as diffusers upcasts them.

/// What the multistep solver keeps between the steps of one trajectory.
#[derive(Debug, Clone, Default)]
pub struct FlowSolverMemory {
    /// The previous step's x̂₀ (DPM-Solver++(2M)).
    previous_x0: Option<Vec<f32>>,
}

/// α, σ and λ of a flow sigma (λ = +∞ at σ = 0).
fn alpha_sigma_lambda(sigma: f64) -> (f64, f64, f64) {
    let alpha = 1.0 - sigma;
    (alpha, sigma, alpha.ln() - sigma.ln())
}

/// Euler from σ to σ': `x += (σ' − σ) v`.
pub fn euler_step(sigma: f32, sigma_next: f32, x: &mut [f32], v: &[f32]) {
    let dt = sigma_next - sigma;
    for (x, &v) in x.iter_mut().zip(v) {
        *x += dt * v;
    }
}

/// DPM-Solver++(2M) from `sigmas[i]` to `sigmas[i + 1]` with `sigmas[i − 1]` for the
/// second-order correction. `last` selects the first-order update ("lower order final").
pub fn dpmpp2m_step(
    sigmas: &[f32],
    i: usize,
    x: &mut [f32],
    v: &[f32],
    memory: &mut FlowSolverMemory,
) {
    let sigma = f64::from(sigmas[i]);
    let x0: Vec<f32> = x.iter().zip(v).map(|(&x, &v)| x - sigmas[i] * v).collect();
    let last = i + 2 == sigmas.len();
    let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(f64::from(sigmas[i + 1]));
    let (_, sigma_s, lambda_s) = alpha_sigma_lambda(sigma);
    let h = lambda_t - lambda_s;
    let ratio = (sigma_t / sigma_s) as f32;
    let decay = (alpha_t * ((-h).exp() - 1.0)) as f32;
    match memory.previous_x0.as_deref().filter(|_| !last && i > 0) {
        None => {
            for (x, &d) in x.iter_mut().zip(&x0) {
                *x = ratio * *x - decay * d;
            }
        }
        Some(prev) => {
            let (_, _, lambda_prev) = alpha_sigma_lambda(f64::from(sigmas[i - 1]));
            let r = (lambda_s - lambda_prev) / h;
            let half_d1 = (0.5 / r) as f32;
            for ((x, &d0), &m1) in x.iter_mut().zip(&x0).zip(prev) {
                *x = ratio * *x - decay * d0 - decay * half_d1 * (d0 - m1);
            }
        }
    }
    memory.previous_x0 = Some(x0);
}

/// The SCM step from angle θ to θ' given the converted prediction `f`; `noise` fills a
/// standard normal draw, used only when θ' > 0. Returns x̂₀ (what the last step keeps).
pub fn scm_step(
    theta: f32,
    theta_next: f32,
    sigma_data: f32,
    x: &mut [f32],
    f: &[f32],
    noise: impl FnOnce(&mut [f32]),
) -> Vec<f32> {
    let (c, s) = (theta.cos(), theta.sin());
    let x0: Vec<f32> = x.iter().zip(f).map(|(&x, &f)| c * x - s * f).collect();
    if theta_next == 0.0 {
        x.copy_from_slice(&x0);
    } else {
        noise(x);
        let (c1, s1) = (theta_next.cos(), theta_next.sin());
        for (x, &d) in x.iter_mut().zip(&x0) {
            *x = c1 * d + s1 * sigma_data * *x;
        }
    }
    x0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On an exact flow x_σ = (1 − σ) x₀ + σ ε with the true velocity ε − x₀, every solver
    /// lands on x₀ (the ODE is a straight line).
    #[test]
    fn straight_line_flows_are_solved_exactly() {
        let (x0, eps) = ([0.3f32, -1.2, 0.7], [1.1f32, 0.4, -0.9]);
        let v: Vec<f32> = eps.iter().zip(&x0).map(|(e, x)| e - x).collect();
        let sigmas = [1.0f32, 0.8, 0.45, 0.1, 0.0];
        let at = |s: f32| -> Vec<f32> {
            x0.iter()
                .zip(&eps)
                .map(|(x, e)| (1.0 - s) * x + s * e)
                .collect()
        };
        let mut euler = at(sigmas[0]);
        let mut dpm = at(0.9);
        let dpm_sigmas = [0.9f32, 0.8, 0.45, 0.1, 0.0];
        let mut memory = FlowSolverMemory::default();
        for i in 0..sigmas.len() - 1 {
            euler_step(sigmas[i], sigmas[i + 1], &mut euler, &v);
            dpmpp2m_step(&dpm_sigmas, i, &mut dpm, &v, &mut memory);
            let want = at(dpm_sigmas[i + 1]);
            for (a, b) in dpm.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "dpm step {i}: {a} vs {b}");
            }
        }
        for (a, b) in euler.iter().zip(&x0) {
            assert!((a - b).abs() < 1e-6, "euler {a} vs {b}");
        }
    }

    #[test]
    fn scm_last_step_keeps_x0_and_draws_no_noise() {
        let mut x = vec![1.0f32, 2.0];
        let theta = 1.2f32;
        let x0 = scm_step(theta, 0.0, 0.5, &mut x, &[0.5, -0.5], |_| {
            panic!("no noise at θ' = 0")
        });
        assert_eq!(x, x0);
        assert!((x0[0] - (theta.cos() - 0.5 * theta.sin())).abs() < 1e-6);
    }
}
