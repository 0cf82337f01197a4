//! The caption side of the cross-attention, computed once per caption rather than once per
//! step: the caption projection, its RMSNorm and every block's text keys and values depend only
//! on the caption and the weights — not on the latents, the timestep or the guidance — and a
//! sampling run asks for the same caption at every step (with CFG, the same negative caption
//! too), as does every step of a served request.
//!
//! They are kept in a byte-bounded LRU ([`ByteLru`]) keyed by the caption's exact contents:
//! the rows the mask keeps and their score biases, as f32 bits. Equality of the key is
//! equality of the input, so a hit is the same computation (bit for bit: the same GEMMs on the
//! same rows), and no hash collision can give one request another's text. The lock is held
//! only to look up and to insert, never while computing: the computation itself runs on rayon,
//! whose work stealing could otherwise run another sample's lookup on the thread holding it.

use super::attention::rms_norm_rows;
use super::params::SanaParams;
use super::{RMS_NORM_EPS, kept_captions};
use crate::backends::cpu::activation::gelu_tanh;
use crate::backends::cpu::linear::linear_tokens;
use crate::byte_lru::ByteLru;
use std::sync::{Arc, Mutex};

/// The default budget of a model's text memo, bytes: 256 MiB (a Sana-600M caption of 120 kept
/// tokens takes ≈ 31 MiB: its 28 blocks' keys and values and the caption itself).
pub const DEFAULT_TEXT_MEMO_BYTES: usize = 256 << 20;

/// One caption's keys and values for every block, as the cross-attention reads them.
pub struct TextKeysValues {
    /// Score bias per kept token, `(1 − mask)·(−10000)`.
    pub bias: Vec<f32>,
    /// Per block: keys `[texts, cross]` (qk-normed where the block has the norm), values
    /// `[texts, cross]`.
    pub blocks: Vec<(Vec<f32>, Vec<f32>)>,
}

impl TextKeysValues {
    /// Bytes held, for the memo's budget (with the key of `key_len` values).
    fn bytes(&self, key_len: usize) -> usize {
        let values: usize = self.blocks.iter().map(|(k, v)| k.len() + v.len()).sum();
        (values + self.bias.len() + key_len) * std::mem::size_of::<f32>()
    }

    /// Computes them for the kept `captions` rows and their `bias`.
    fn compute(params: &SanaParams, captions: &[f32], bias: Vec<f32>) -> Self {
        let texts = bias.len();
        let mut text = linear_tokens(captions, texts, &params.caption_first);
        text.iter_mut().for_each(|v| *v = gelu_tanh(*v));
        let mut text = linear_tokens(&text, texts, &params.caption_second);
        rms_norm_rows(&mut text, params.caption_norm.as_slice(), RMS_NORM_EPS);
        let blocks = params
            .blocks
            .iter()
            .map(|block| {
                let mut k = linear_tokens(&text, texts, &block.cross_k);
                let v = linear_tokens(&text, texts, &block.cross_v);
                if let Some((_, norm_k)) = &block.cross_qk_norm {
                    rms_norm_rows(&mut k, norm_k.as_slice(), RMS_NORM_EPS);
                }
                (k, v)
            })
            .collect();
        TextKeysValues { bias, blocks }
    }
}

/// Text keys and values by caption, bounded in bytes.
pub struct TextMemo {
    cache: Mutex<ByteLru<Vec<u32>, TextKeysValues>>,
}

impl TextMemo {
    /// An empty memo holding at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        TextMemo {
            cache: Mutex::new(ByteLru::new(budget)),
        }
    }

    /// The keys and values of one sample's caption `[S, C_cap]` under `mask` (`None`: all
    /// kept), computed unless held.
    pub fn get(
        &self,
        params: &SanaParams,
        captions: &[f32],
        mask: Option<&[f32]>,
    ) -> Arc<TextKeysValues> {
        let (rows, bias) = kept_captions(captions, mask, params.config.caption_channels);
        let key: Vec<u32> = rows.iter().chain(&bias).map(|v| v.to_bits()).collect();
        if let Some(held) = self.lock().get(&key) {
            return held;
        }
        let computed = Arc::new(TextKeysValues::compute(params, &rows, bias));
        let bytes = computed.bytes(key.len());
        self.lock().insert(key, bytes, Arc::clone(&computed));
        computed
    }

    /// Drops every caption held.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.lock().bytes()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ByteLru<Vec<u32>, TextKeysValues>> {
        // The cache is consistent between calls (each call's update is one method of it), so
        // a panic elsewhere while it was held leaves nothing half-done.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::super::SanaCpu;
    use crate::model::sana::{SanaInput, validate_sana};
    use crate::tensor::Tensor;
    use crate::tensor_file::TensorFile;
    use crate::weights::SanaWeights;
    use std::path::PathBuf;

    fn fixture(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sana/mask")
            .join(path)
    }

    #[test]
    fn each_caption_is_computed_once_and_a_hit_is_the_same_forward() {
        let weights = SanaWeights::load(fixture("transformer")).unwrap();
        let model = SanaCpu::new(&weights).unwrap();
        let file = TensorFile::open(fixture("input.safetensors")).unwrap();
        let read = |name: &str| Tensor::from_raw(name, &file.tensor(name).unwrap()).unwrap();
        let (x, t, captions) = (read("x"), read("t"), read("encoder_hidden_states"));
        let mask = read("encoder_attention_mask");
        let forward = |t: &[f32], mask: &[f32]| {
            let input = SanaInput {
                x: &x,
                t,
                captions: &captions,
                mask: Some(mask),
                guidance: None,
            };
            let shape = validate_sana(weights.config(), &input).unwrap();
            model.forward(&input, shape).unwrap()
        };
        assert_eq!(model.text.bytes(), 0);
        let first = forward(t.data(), mask.data());
        let held = model.text.bytes();
        assert!(held > 0, "the first forward fills the memo");
        // Another step of the same run: another timestep, the same captions.
        let later_t: Vec<f32> = t.data().iter().map(|t| t * 0.5).collect();
        forward(&later_t, mask.data());
        assert_eq!(model.text.bytes(), held, "the same captions are a hit");
        let again = forward(t.data(), mask.data());
        assert_eq!(
            first.data(),
            again.data(),
            "a hit computes the same forward"
        );
        // A different mask is a different caption, and gets its own entry.
        let mut other = mask.data().to_vec();
        let last = other.iter().rposition(|&m| m != 0.0).unwrap();
        other[last] = 0.0;
        forward(t.data(), &other);
        assert!(
            model.text.bytes() > held,
            "a new caption is computed and kept"
        );
        // The memo changes nothing: a fresh model gives the first answer bit for bit.
        let fresh = SanaCpu::new(&weights).unwrap();
        let input = SanaInput {
            x: &x,
            t: t.data(),
            captions: &captions,
            mask: Some(mask.data()),
            guidance: None,
        };
        let shape = validate_sana(weights.config(), &input).unwrap();
        assert_eq!(fresh.forward(&input, shape).unwrap().data(), first.data());
    }

    #[test]
    fn the_memo_is_bounded_in_bytes() {
        let weights = SanaWeights::load(fixture("transformer")).unwrap();
        let mut model = SanaCpu::new(&weights).unwrap();
        let file = TensorFile::open(fixture("input.safetensors")).unwrap();
        let read = |name: &str| Tensor::from_raw(name, &file.tensor(name).unwrap()).unwrap();
        let captions = read("encoder_hidden_states");
        let width = weights.config().caption_channels;
        let texts = captions.shape()[1];
        let one = &captions.data()[..texts * width];
        let entry = {
            model.text.get(&model.params, one, None);
            model.text.bytes()
        };
        // Room for two captions: a third evicts the least recently used.
        model.text = super::TextMemo::new(2 * entry);
        for scale in [1.0f32, 2.0, 3.0] {
            let scaled: Vec<f32> = one.iter().map(|v| v * scale).collect();
            model.text.get(&model.params, &scaled, None);
            assert!(model.text.bytes() <= 2 * entry);
        }
        assert_eq!(model.text.bytes(), 2 * entry);
        model.text.clear();
        assert_eq!(model.text.bytes(), 0);
    }
}
