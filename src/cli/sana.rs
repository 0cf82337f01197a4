//! `info` and `forward` for a `sana` model: `--weights` names a diffusers model folder (or a
//! pipeline folder holding `transformer/`) instead of a weights file.

use super::device_flags::DeviceFlags;
use anyhow::{Result, bail};
use linear_dit::model::sana::{SanaInput, sana_tensors};
use linear_dit::tensor_file::{TensorFile, write_tensors};
use linear_dit::weights::SanaWeights;
use linear_dit::{SanaModel, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The inputs a sana forward reads, for error messages.
const INPUTS: &str = "x [B,C,H,W], t [B], encoder_hidden_states [B,S,caption_channels], optional encoder_attention_mask [B,S], guidance [B] for guidance_embeds models";

/// `info --weights DIR`: the diffusers config, exact parameter count and storage dtype.
pub fn info(folder: &Path, json: bool) -> Result<()> {
    let weights = SanaWeights::load(folder)?;
    let config = weights.config();
    let dims = config.dims()?;
    let params = config.param_count()?;
    let tensors = sana_tensors(config)?.len();
    if json {
        let out = serde_json::json!({
            "flavor": "sana",
            "param_count": params,
            "tensors": tensors,
            "hidden_size": dims.hidden,
            "mlp_hidden": dims.ffn_hidden,
            "storage_dtype": weights.storage_dtype().as_str(),
            "config": config,
        });
        println!("{out}");
    } else {
        println!("flavor          sana ({})", weights.folder().display());
        println!(
            "shape           C={} h={} L={} heads={}×{} cross={}×{} m={} p={}",
            dims.in_channels,
            dims.hidden,
            config.num_layers,
            dims.heads,
            dims.head_dim,
            dims.cross_heads,
            dims.cross_head_dim,
            dims.ffn_hidden,
            dims.patch
        );
        println!("captions        {} channels", dims.caption);
        println!(
            "options         qk_norm={} guidance_embeds={} interpolation_scale={:?}",
            config.qk_norm.as_deref().unwrap_or("none"),
            config.guidance_embeds,
            config.interpolation_scale
        );
        println!("param_count     {params} ({tensors} tensors)");
        println!("storage         {}", weights.storage_dtype());
    }
    Ok(())
}

/// `forward --weights DIR --input IN --output OUT`: writes the velocity `v` [B,C,H,W].
pub fn forward(folder: &Path, device: DeviceFlags, input: &Path, output: &Path) -> Result<()> {
    let model = SanaModel::on(
        &SanaWeights::load(folder)?,
        device.backend,
        device.precision,
    )?;
    let file = TensorFile::open(input)?;
    let read = |name: &str| -> Result<Option<Tensor>> {
        if !file.contains(name) {
            return Ok(None);
        }
        Ok(Some(Tensor::from_raw(name, &file.tensor(name)?)?))
    };
    let required = |name: &str| -> Result<Tensor> {
        match read(name)? {
            Some(t) => Ok(t),
            None => bail!(
                "{}: no tensor `{name}` (expected {INPUTS})",
                input.display()
            ),
        }
    };
    let x = required("x")?;
    let t = required("t")?;
    let captions = required("encoder_hidden_states")?;
    // The pipelines hand the mask over as I64 or as floats; either reads as 0/1 floats.
    let mask = match file.contains("encoder_attention_mask") {
        true => {
            let raw = file.tensor("encoder_attention_mask")?;
            let values = match raw.dtype {
                linear_dit::DType::I64 => raw
                    .to_i64_vec("encoder_attention_mask")?
                    .into_iter()
                    .map(|v| v as f32)
                    .collect(),
                _ => raw.to_f32_vec("encoder_attention_mask")?,
            };
            Some(Tensor::new(raw.shape.clone(), values)?)
        }
        false => None,
    };
    let guidance = read("guidance")?;
    for (name, tensor) in [("t", Some(&t)), ("guidance", guidance.as_ref())] {
        if let Some(tensor) = tensor.filter(|t| t.shape().len() != 1) {
            bail!(
                "{}: `{name}` must be 1-D [B]; got shape {:?}",
                input.display(),
                tensor.shape()
            );
        }
    }
    let texts = captions.shape().get(..2).unwrap_or_default();
    if let Some(mask) = mask.as_ref().filter(|m| m.shape() != texts) {
        bail!(
            "{}: `encoder_attention_mask` must be [B,S] = {texts:?} like encoder_hidden_states; got shape {:?}",
            input.display(),
            mask.shape()
        );
    }
    let v = model.forward(&SanaInput {
        x: &x,
        t: t.data(),
        captions: &captions,
        mask: mask.as_ref().map(|m| m.data()),
        guidance: guidance.as_ref().map(|g| g.data()),
    })?;
    write_tensors(output, &[("v".to_string(), v.to_raw())], HashMap::new())?;
    tracing::info!(output = %output.display(), shape = ?v.shape(), "wrote v");
    Ok(())
}
