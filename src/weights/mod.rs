//! Model weights: loading (memory-mapped safetensors, canonical or Axon names), validation
//! against the config's tensor layout, seeded initialisation and saving.

mod axon;
mod infer;
mod init;
pub mod layout;

pub use init::InitKind;
pub use layout::{Role, TensorSpec, tensor_layout};

use crate::config::{Config, ConfigOverrides, Flavor};
use crate::error::{Error, Result};
use crate::tensor::SharedF32;
use crate::tensor_file::{DType, RawTensor, TensorFile, write_tensors};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The metadata key under which a weights file stores its config JSON.
pub const CONFIG_METADATA_KEY: &str = "linear_dit.config";

/// A complete, validated set of weights for one config: every tensor of
/// [`tensor_layout`] present with its exact shape, nothing else.
#[derive(Debug, Clone)]
pub struct Weights {
    config: Config,
    tensors: BTreeMap<String, RawTensor>,
    source: Option<PathBuf>,
    metadata: HashMap<String, String>,
}

impl Weights {
    /// Loads a safetensors weights file, memory-mapped.
    ///
    /// The config comes from the file's `linear_dit.config` metadata; a field set in
    /// `overrides` must agree with it. A file without metadata takes its config from the
    /// tensor shapes, completed by `overrides` (e.g. `num_heads`) and SPEC's defaults.
    /// Edifice (Axon) names are detected and converted; such a file is the `edifice` flavor.
    pub fn load(path: impl AsRef<Path>, overrides: &ConfigOverrides) -> Result<Self> {
        let path = path.as_ref();
        let file = TensorFile::open(path)?;
        let axon = axon::is_axon(&file);
        let tensors = if axon {
            axon::to_canonical(&file)?
        } else {
            file.names()
                .into_iter()
                .map(|name| Ok((name.to_string(), file.tensor(name)?)))
                .collect::<Result<BTreeMap<_, _>>>()?
        };
        let config = match file.metadata().get(CONFIG_METADATA_KEY) {
            Some(json) => {
                let config = Config::from_json(json).map_err(|e| {
                    Error::bad_file(path, format!("metadata `{CONFIG_METADATA_KEY}`: {e}"))
                })?;
                if let Some((field, given, actual)) = overrides.first_conflict(&config) {
                    return Err(Error::config(
                        field,
                        format!("was given as {given} but the weights file says {actual}"),
                    ));
                }
                config
            }
            None => {
                let mut inferred = infer::config_from_shapes(&tensors);
                if axon {
                    inferred.flavor = Flavor::Edifice;
                }
                let config = overrides.apply_to(inferred);
                // Shapes cannot tell num_heads, num_steps or patch_size: say so when the
                // defaults taken for them do not fit.
                config.validate().map_err(|e| match e {
                    Error::InvalidConfig { field, reason } => Error::InvalidConfig {
                        field,
                        reason: format!(
                            "{reason} (the file has no `{CONFIG_METADATA_KEY}` metadata, so num_heads, \
                             num_steps and patch_size were not read from it; give them as flags)"
                        ),
                    },
                    other => other,
                })?;
                config
            }
        };
        if axon && config.flavor != Flavor::Edifice {
            return Err(Error::config(
                "flavor",
                "must be `edifice` for a file with Edifice (Axon) names",
            ));
        }
        let mut weights = Weights::from_tensors(config, tensors)?;
        weights.source = Some(path.to_path_buf());
        weights.metadata = file.metadata().clone();
        tracing::debug!(
            path = %path.display(),
            axon,
            tensors = weights.tensors.len(),
            "loaded weights"
        );
        Ok(weights)
    }

    /// Wraps canonical tensors, checking them against `config`'s layout: a missing, unknown,
    /// mis-shaped or non-float tensor is an error naming it.
    pub fn from_tensors(config: Config, tensors: BTreeMap<String, RawTensor>) -> Result<Self> {
        config.validate()?;
        let layout = tensor_layout(&config);
        for spec in &layout {
            let tensor = tensors
                .get(&spec.name)
                .ok_or_else(|| Error::MissingTensor {
                    name: spec.name.clone(),
                    expected: spec.shape.clone(),
                })?;
            if tensor.shape != spec.shape {
                return Err(Error::ShapeMismatch {
                    name: spec.name.clone(),
                    expected: spec.shape.clone(),
                    actual: tensor.shape.clone(),
                });
            }
            if tensor.dtype == DType::I64 {
                return Err(Error::UnsupportedDtype {
                    name: spec.name.clone(),
                    dtype: tensor.dtype.to_string(),
                    expected: "F32, BF16 or F16",
                });
            }
        }
        if tensors.len() != layout.len() {
            let known: std::collections::HashSet<&str> =
                layout.iter().map(|s| s.name.as_str()).collect();
            if let Some((name, t)) = tensors.iter().find(|(n, _)| !known.contains(n.as_str())) {
                return Err(Error::UnknownTensor {
                    name: name.clone(),
                    shape: t.shape.clone(),
                });
            }
        }
        Ok(Weights {
            config,
            tensors,
            source: None,
            metadata: HashMap::new(),
        })
    }

    /// Fresh weights for `config`, deterministic in `seed` (f32).
    pub fn init(config: &Config, kind: InitKind, seed: u64) -> Result<Self> {
        config.validate()?;
        let tensors = init::init_tensors(config, kind, seed)
            .into_iter()
            .map(|(spec, values)| (spec.name, RawTensor::from_f32(spec.shape, &values)))
            .collect();
        Weights::from_tensors(config.clone(), tensors)
    }

    /// Writes the weights as safetensors, every tensor stored as `dtype` (F32, BF16 or F16),
    /// with the config in the metadata.
    pub fn save(&self, path: impl AsRef<Path>, dtype: DType) -> Result<()> {
        let tensors = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let stored = if t.dtype == dtype {
                    t.clone()
                } else {
                    RawTensor::from_f32_as(dtype, t.shape.clone(), &t.to_f32_vec(name)?)
                };
                Ok((name.clone(), stored))
            })
            .collect::<Result<Vec<_>>>()?;
        let metadata = HashMap::from([(CONFIG_METADATA_KEY.to_string(), self.config.to_json())]);
        write_tensors(path, &tensors, metadata)
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The file these weights were loaded from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The file's string metadata (`linear_dit.config` and any other keys, e.g. the training
    /// schedule and image shape of a trained model); empty for weights made in memory.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Tensor `name` as stored (canonical name).
    pub fn raw(&self, name: &str) -> Result<&RawTensor> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            expected: vec![],
        })
    }

    /// Tensor `name` as f32, zero-copy when the file stores it as aligned F32.
    pub fn f32(&self, name: &str) -> Result<SharedF32> {
        SharedF32::from_raw(name, self.raw(name)?)
    }

    /// All tensors, by canonical name.
    pub fn tensors(&self) -> &BTreeMap<String, RawTensor> {
        &self.tensors
    }

    /// The dtype most of the parameters are stored in.
    pub fn storage_dtype(&self) -> DType {
        let mut counts: HashMap<DType, usize> = HashMap::new();
        for t in self.tensors.values() {
            *counts.entry(t.dtype).or_default() += t.numel();
        }
        counts
            .into_iter()
            .max_by_key(|&(_, n)| n)
            .map_or(DType::F32, |(d, _)| d)
    }
}
