//! Caption embeddings as the SANA pipelines hand them to the transformer: Gemma-2 hidden
//! states `[S, caption_channels]` and their attention mask, checked once per request and
//! shared by every image and step of it.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::model::sana::{MAX_TEXT_TOKENS, SanaConfig};
use crate::tensor::Tensor;
use crate::tensor_file::TensorFile;

/// The tensor of a captions file that holds the embeddings.
pub const CAPTION_EMBEDS: &str = "prompt_embeds";

/// The tensor of a captions file that holds the mask (optional).
pub const CAPTION_MASK: &str = "prompt_attention_mask";

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
        Caption::named(config, embeds, mask, "prompt_embeds")
    }

    /// [`Caption::new`] with errors naming the captions `what`.
    fn named(
        config: &SanaConfig,
        embeds: Tensor,
        mask: Option<Vec<f32>>,
        what: &'static str,
    ) -> Result<Self> {
        let shape = embeds.shape().to_vec();
        let (texts, width) = match shape.as_slice() {
            [s, c] | [1, s, c] => (*s, *c),
            _ => {
                return Err(Error::input(
                    what,
                    format!(
                        "`{CAPTION_EMBEDS}` has shape {shape:?}; expected [S, caption_channels] or [1, S, caption_channels]"
                    ),
                ));
            }
        };
        if width != config.caption_channels || texts == 0 || texts > MAX_TEXT_TOKENS {
            return Err(Error::input(
                what,
                format!(
                    "`{CAPTION_EMBEDS}` has shape {shape:?}; expected S × {} with 1 ≤ S ≤ {MAX_TEXT_TOKENS}",
                    config.caption_channels
                ),
            ));
        }
        if let Some(i) = embeds.data().iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                name: what,
                detail: format!("value {i} is {}", embeds.data()[i]),
            });
        }
        let mask = mask.unwrap_or_else(|| vec![1.0; texts]);
        if mask.len() != texts {
            return Err(Error::input(
                what,
                format!(
                    "`{CAPTION_MASK}` has {} values for S = {texts} caption tokens",
                    mask.len()
                ),
            ));
        }
        if let Some(v) = mask.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(Error::input(
                what,
                format!("`{CAPTION_MASK}` holds {v}; a mask entry is 1 (keep) or 0 (drop)"),
            ));
        }
        if mask.iter().all(|&v| v == 0.0) {
            return Err(Error::input(
                what,
                format!("`{CAPTION_MASK}` drops every caption token; keep at least one"),
            ));
        }
        let embeds = Tensor::new(vec![texts, width], embeds.into_data())?;
        Ok(Caption { embeds, mask })
    }

    /// The captions of a safetensors file as the SANA pipelines' `encode_prompt` returns
    /// them: [`CAPTION_EMBEDS`] (F32/BF16/F16 `[S, caption_channels]` or `[1, S, …]`) and,
    /// optionally, [`CAPTION_MASK`] (I64 or float `[S]` or `[1, S]`). Any other tensor is
    /// refused by name, so a misspelt mask is not silently ignored. Errors name the file as
    /// `what` (e.g. `prompt_embeds`, `negative_embeds`).
    pub fn from_file(config: &SanaConfig, file: &TensorFile, what: &'static str) -> Result<Self> {
        if let Some(other) = file
            .names()
            .into_iter()
            .find(|n| *n != CAPTION_EMBEDS && *n != CAPTION_MASK)
        {
            return Err(Error::input(
                what,
                format!(
                    "holds a tensor `{other}`; a captions file (negative captions too) holds `{CAPTION_EMBEDS}` and optionally `{CAPTION_MASK}`"
                ),
            ));
        }
        if !file.contains(CAPTION_EMBEDS) {
            return Err(Error::input(
                what,
                format!("has no tensor `{CAPTION_EMBEDS}`"),
            ));
        }
        let raw = file.tensor(CAPTION_EMBEDS)?;
        if raw.dtype == DType::I64 {
            return Err(Error::input(
                what,
                format!("`{CAPTION_EMBEDS}` is I64; caption embeddings are F32, BF16 or F16"),
            ));
        }
        let embeds = Tensor::from_raw(CAPTION_EMBEDS, &raw)?;
        let mask = match file.contains(CAPTION_MASK) {
            false => None,
            true => {
                let raw = file.tensor(CAPTION_MASK)?;
                if !matches!(raw.shape.as_slice(), [_] | [1, _]) {
                    return Err(Error::input(
                        what,
                        format!(
                            "`{CAPTION_MASK}` has shape {:?}; expected [S] or [1, S]",
                            raw.shape
                        ),
                    ));
                }
                Some(match raw.dtype {
                    DType::I64 => raw
                        .to_i64_vec(CAPTION_MASK)?
                        .into_iter()
                        .map(|v| v as f32)
                        .collect(),
                    _ => raw.to_f32_vec(CAPTION_MASK)?,
                })
            }
        };
        Caption::named(config, embeds, mask, what)
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
