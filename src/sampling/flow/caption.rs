//! Caption embeddings as the SANA pipelines hand them to the transformer: Gemma-2 hidden
//! states `[S, caption_channels]` and their attention mask, checked once per request and
//! shared by every image and step of it.

use crate::error::{Error, Result};
use crate::model::sana::{MAX_TEXT_TOKENS, SanaConfig};
use crate::tensor::Tensor;

/// One caption: `[S, caption_channels]` embeddings and `[S]` mask values (1 keeps a token,
/// 0 drops it).
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    embeds: Tensor,
    mask: Vec<f32>,
}

impl Caption {
    /// Checks `embeds` (`[S, C]` or `[1, S, C]`) and `mask` (`[S]`, `None`: keep every
    /// token) against `config`. A mask that drops every token is refused: such a caption
    /// attends uniformly to whatever fills its rows, which would make its result depend on
    /// the other captions it is batched with.
    pub fn new(config: &SanaConfig, embeds: Tensor, mask: Option<Vec<f32>>) -> Result<Self> {
        let shape = embeds.shape().to_vec();
        let (texts, width) = match shape.as_slice() {
            [s, c] | [1, s, c] => (*s, *c),
            _ => {
                return Err(Error::input(
                    "prompt_embeds",
                    format!(
                        "has shape {shape:?}; expected [S, caption_channels] or [1, S, caption_channels]"
                    ),
                ));
            }
        };
        if width != config.caption_channels || texts == 0 || texts > MAX_TEXT_TOKENS {
            return Err(Error::input(
                "prompt_embeds",
                format!(
                    "has shape {shape:?}; expected S × {} with 1 ≤ S ≤ {MAX_TEXT_TOKENS}",
                    config.caption_channels
                ),
            ));
        }
        if let Some(i) = embeds.data().iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                name: "prompt_embeds",
                detail: format!("value {i} is {}", embeds.data()[i]),
            });
        }
        let mask = mask.unwrap_or_else(|| vec![1.0; texts]);
        if mask.len() != texts {
            return Err(Error::input(
                "prompt_attention_mask",
                format!("has {} values for S = {texts} caption tokens", mask.len()),
            ));
        }
        if let Some(v) = mask.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(Error::input(
                "prompt_attention_mask",
                format!("holds {v}; a mask entry is 1 (keep) or 0 (drop)"),
            ));
        }
        if mask.iter().all(|&v| v == 0.0) {
            return Err(Error::input(
                "prompt_attention_mask",
                "drops every caption token; keep at least one",
            ));
        }
        let embeds = Tensor::new(vec![texts, width], embeds.into_data())?;
        Ok(Caption { embeds, mask })
    }

    /// Caption tokens S.
    pub fn tokens(&self) -> usize {
        self.mask.len()
    }

    /// `[S, caption_channels]`.
    pub fn embeds(&self) -> &Tensor {
        &self.embeds
    }

    /// `[S]`.
    pub fn mask(&self) -> &[f32] {
        &self.mask
    }
}
