//! Counter-based random numbers (Philox4x32-10, Salmon et al., "Parallel Random Numbers: As
//! Easy as 1, 2, 3", SC 2011).
//!
//! A counter-based generator is a pure function of (key, counter): the value for a given
//! seed, stream and index is the same whatever order, thread or batch asks for it. That is
//! what makes a diffusion request's noise independent of what else shares its batch, and
//! weight initialisation independent of the number of threads.

use std::f64::consts::PI;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds: 128-bit counter and 64-bit key to 128 random bits.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// A stream of standard normal values addressed by (seed, stream, index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormalStream {
    key: [u32; 2],
    stream: u64,
}

impl NormalStream {
    /// The stream `stream` of generator `seed`.
    pub fn new(seed: u64, stream: u64) -> Self {
        NormalStream {
            key: [seed as u32, (seed >> 32) as u32],
            stream,
        }
    }

    /// Standard normal values for indices `start .. start + out.len()` of this stream.
    ///
    /// Each counter yields four 32-bit words, i.e. two Box–Muller pairs: index `i` is lane
    /// `i % 4` of counter `i / 4`. The transcendental functions are `libm`'s, computed in f64,
    /// so the values are bit-identical on every platform.
    pub fn fill(&self, start: u64, out: &mut [f32]) {
        let mut index = start;
        let mut rest = out;
        while !rest.is_empty() {
            let lanes = self.block(index / 4);
            let lane = (index % 4) as usize;
            let take = (4 - lane).min(rest.len());
            let (head, tail) = rest.split_at_mut(take);
            head.copy_from_slice(&lanes[lane..lane + take]);
            rest = tail;
            index += take as u64;
        }
    }

    /// The standard normal value at `index`.
    pub fn at(&self, index: u64) -> f32 {
        self.block(index / 4)[(index % 4) as usize]
    }

    /// The four normal values of counter `block`.
    fn block(&self, block: u64) -> [f32; 4] {
        let words = philox4x32_10(
            [
                block as u32,
                (block >> 32) as u32,
                self.stream as u32,
                (self.stream >> 32) as u32,
            ],
            self.key,
        );
        let mut out = [0.0; 4];
        for pair in 0..2 {
            // Uniforms in the open interval (0, 1): ln(0) never happens.
            let u1 = (f64::from(words[2 * pair]) + 0.5) / 4_294_967_296.0;
            let u2 = (f64::from(words[2 * pair + 1]) + 0.5) / 4_294_967_296.0;
            let radius = libm::sqrt(-2.0 * libm::log(u1));
            let angle = 2.0 * PI * u2;
            out[2 * pair] = (radius * libm::cos(angle)) as f32;
            out[2 * pair + 1] = (radius * libm::sin(angle)) as f32;
        }
        out
    }

    /// A uniform value in [0, 1) at `index` (independent of the normal values).
    pub fn uniform_at(&self, index: u64) -> f64 {
        let words = philox4x32_10(
            [
                index as u32,
                (index >> 32) as u32,
                self.stream as u32,
                ((self.stream >> 32) as u32) ^ 0x8000_0000,
            ],
            self.key,
        );
        let bits = (u64::from(words[0]) << 21) ^ u64::from(words[1] >> 11);
        (bits & ((1 << 53) - 1)) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_known_answers() {
        // Random123's kat_vectors for philox4x32 with 10 rounds.
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn normals_have_unit_moments_and_are_addressable() {
        let s = NormalStream::new(42, 7);
        let mut v = vec![0.0f32; 200_000];
        s.fill(0, &mut v);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
        assert_eq!(s.at(12_345), v[12_345]);
        assert_ne!(NormalStream::new(43, 7).at(0), v[0]);
        assert_ne!(NormalStream::new(42, 8).at(0), v[0]);
    }
}
