//! Elementwise math of the model, written so the compiler vectorises it: a polynomial `exp`
//! (Cephes' `expf` scheme, ≤ 2 ulp on the clamped range), and the activations built on it.

/// ln 2 split in a high part exact in f32 and a low correction (Cody–Waite reduction).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 × 2²³: adding and subtracting it rounds an f32 of magnitude < 2²² to an integer.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// e^x for x in [-87, 88] (inputs outside are clamped: the result stays finite and normal).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    // The integer n sits in the low mantissa bits of `shifted`: reading it there, rather than
    // with `n as i32` (a saturating conversion the compiler will not vectorise), keeps the
    // whole function in SIMD registers.
    let n_int = (shifted.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let p = p * r * r + r + 1.0;
    p * f32::from_bits(((n_int + 127) as u32) << 23)
}

/// φ(z) = ELU(z) + 1: z + 1 for z > 0, e^z otherwise (the linear-attention feature map).
#[inline(always)]
pub fn phi(z: f32) -> f32 {
    if z > 0.0 { z + 1.0 } else { exp(z) }
}

/// SiLU(x) = x · sigmoid(x).
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// GELU, tanh approximation: 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))).
///
/// Computed as x · sigmoid(2y), which equals 0.5x(1 + tanh y) exactly and needs one `exp`.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let y = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    x / (1.0 + exp(-2.0 * y))
}

/// GELU, exact: 0.5x(1 + erf(x/√2)).
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_its_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let rel = ((exp(x) as f64) - (x as f64).exp()).abs() / (x as f64).exp();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert!(exp(-1000.0) > 0.0 && exp(1000.0).is_finite());
    }

    #[test]
    fn activations_match_their_definitions() {
        for i in -400..=400 {
            let x = i as f32 * 0.025;
            let xd = x as f64;
            let tanh_ref = 0.5
                * xd
                * (1.0
                    + ((2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd.powi(3))).tanh());
            assert!(
                (gelu_tanh(x) as f64 - tanh_ref).abs() < 1e-6 * (1.0 + xd.abs()),
                "gelu_tanh({x})"
            );
            let erf_ref = 0.5 * xd * (1.0 + libm::erf(xd / std::f64::consts::SQRT_2));
            assert!(
                (gelu_erf(x) as f64 - erf_ref).abs() < 1e-6 * (1.0 + xd.abs()),
                "gelu_erf({x})"
            );
            let silu_ref = xd / (1.0 + (-xd).exp());
            assert!(
                (silu(x) as f64 - silu_ref).abs() < 1e-6 * (1.0 + xd.abs()),
                "silu({x})"
            );
            let phi_ref = if xd > 0.0 { xd + 1.0 } else { xd.exp() };
            assert!((phi(x) as f64 - phi_ref).abs() < 1e-6 * phi_ref, "phi({x})");
        }
    }
}
