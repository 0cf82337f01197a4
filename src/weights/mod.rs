//! Model weights: loading (memory-mapped safetensors, canonical or Axon names), validation
//! against the config's tensor layout, seeded initialisation and saving.

mod axon;
mod diffusers;
mod infer;
mod init;

pub use crate::model::tensors::{Role, TensorSpec, tensor_layout};
pub use diffusers::{SanaWeights, is_diffusers_folder};
pub use init::InitKind;

use crate::error::{Error, Result};
use crate::model::Flavor;
use crate::model::config::{Config, ConfigOverrides, ConfigSources, FieldSource, all_from};
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
    sources: ConfigSources,
}

impl Weights {
    /// Loads a safetensors weights file, memory-mapped.
    ///
    /// The config comes from the file's `linear_dit.config` metadata; a field set in
    /// `overrides` must agree with it. A file without metadata takes its config from the
    /// tensor shapes and `overrides`, which must then give `num_heads` and `num_steps` (no
    /// shape shows them and the forward depends on both: SPEC, "Weights file"); a missing
    /// one is an error naming the field and its flag. Edifice (Axon) names are detected and
    /// converted; such a file is the `edifice` flavor.
    pub fn load(path: impl AsRef<Path>, overrides: &ConfigOverrides) -> Result<Self> {
        Weights::from_file(&TensorFile::open(path)?, overrides)
    }

    /// [`Weights::load`] for an already opened file (e.g. [`TensorFile::from_bytes`]).
    pub fn from_file(file: &TensorFile, overrides: &ConfigOverrides) -> Result<Self> {
        let path = file.path();
        let axon = axon::is_axon(file);
        let tensors = if axon {
            // The import copies every tensor (transposed, concatenated) out of the map.
            let bytes: u128 = file
                .names()
                .into_iter()
                .map(|name| file.tensor(name).map(|t| t.bytes.as_slice().len() as u128))
                .sum::<Result<u128>>()?;
            crate::limits::check_alloc("the Axon import", bytes)?;
            axon::to_canonical(file)?
        } else {
            file.names()
                .into_iter()
                .map(|name| Ok((name.to_string(), file.tensor(name)?)))
                .collect::<Result<BTreeMap<_, _>>>()?
        };
        let (config, sources) = match file.metadata().get(CONFIG_METADATA_KEY) {
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
                (config, all_from(FieldSource::Metadata))
            }
            None => config_without_metadata(&tensors, axon, overrides)?,
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
        weights.sources = sources;
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
        let layout = tensor_layout(&config)?;
        check_tensors(
            &tensors,
            layout.iter().map(|s| (s.name.as_str(), s.shape.as_slice())),
        )?;
        Ok(Weights {
            config,
            tensors,
            source: None,
            metadata: HashMap::new(),
            sources: all_from(FieldSource::Given),
        })
    }

    /// Fresh weights for `config`, deterministic in `seed` (f32); an error, before anything
    /// is allocated, when they would not fit the allocation budget ([`crate::limits`]).
    pub fn init(config: &Config, kind: InitKind, seed: u64) -> Result<Self> {
        config.validate()?;
        let layout = init::planned_layout(config)?;
        let tensors = init::init_tensors(layout, kind, seed)
            .into_iter()
            .map(|(spec, values)| (spec.name, RawTensor::from_f32(spec.shape, &values)))
            .collect();
        Weights::from_tensors(config.clone(), tensors)
    }

    /// Writes the weights as safetensors, every tensor stored as `dtype` (F32, BF16 or F16),
    /// with the config in the metadata.
    pub fn save(&self, path: impl AsRef<Path>, dtype: DType) -> Result<()> {
        // Tensors stored in another dtype are converted in memory first; the file itself is
        // streamed.
        let converted: u128 = self
            .tensors
            .values()
            .filter(|t| t.dtype != dtype)
            .map(|t| (t.bytes.as_slice().len() / t.dtype.size()) as u128 * dtype.size() as u128)
            .sum();
        crate::limits::check_alloc("saving the weights", converted)?;
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

    /// Where each config field came from: the file's metadata, its tensor shapes, the
    /// overrides, or a default (weights made in memory: all `Given`).
    pub fn config_sources(&self) -> &ConfigSources {
        &self.sources
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
        storage_dtype(&self.tensors)
    }
}

/// Checks `tensors` against a model's table of (name, shape): every entry present with its
/// exact shape and a float dtype, and nothing else; the error names the tensor.
pub(crate) fn check_tensors<'a>(
    tensors: &BTreeMap<String, RawTensor>,
    table: impl ExactSizeIterator<Item = (&'a str, &'a [usize])> + Clone,
) -> Result<()> {
    for (name, shape) in table.clone() {
        let tensor = tensors.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            expected: shape.to_vec(),
        })?;
        if tensor.shape != shape {
            return Err(Error::ShapeMismatch {
                name: name.to_string(),
                expected: shape.to_vec(),
                actual: tensor.shape.clone(),
            });
        }
        if tensor.dtype == DType::I64 {
            return Err(Error::UnsupportedDtype {
                name: name.to_string(),
                dtype: tensor.dtype.to_string(),
                expected: "F32, BF16 or F16",
            });
        }
    }
    if tensors.len() != table.len() {
        let known: std::collections::HashSet<&str> = table.map(|(name, _)| name).collect();
        if let Some((name, t)) = tensors.iter().find(|(n, _)| !known.contains(n.as_str())) {
            return Err(Error::UnknownTensor {
                name: name.clone(),
                shape: t.shape.clone(),
            });
        }
    }
    Ok(())
}

/// The dtype holding most of the parameters.
pub(crate) fn storage_dtype(tensors: &BTreeMap<String, RawTensor>) -> DType {
    let mut counts: HashMap<DType, usize> = HashMap::new();
    for t in tensors.values() {
        // Bytes over the element size: already checked against the shape at load.
        *counts.entry(t.dtype).or_default() += t.bytes.as_slice().len() / t.dtype.size();
    }
    counts
        .into_iter()
        .max_by_key(|&(_, n)| n)
        .map_or(DType::F32, |(d, _)| d)
}

/// The config of a file without `linear_dit.config` metadata: the fields the shapes show,
/// `overrides` over them, and SPEC's default only for `patch_size` (which the forward does
/// not use). `num_heads` and `num_steps` must be given.
fn config_without_metadata(
    tensors: &BTreeMap<String, RawTensor>,
    axon: bool,
    overrides: &ConfigOverrides,
) -> Result<(Config, ConfigSources)> {
    let mut shapes = infer::fields_from_shapes(tensors);
    if axon {
        shapes.flavor = Some(Flavor::Edifice);
    }
    let hidden = overrides.hidden_size.or(shapes.hidden_size);
    let required = |field: &'static str, flag: &str, value: Option<usize>| {
        value.ok_or_else(|| {
            let hint = match (field, hidden) {
                ("num_heads", Some(h)) => format!(" (a divisor of hidden_size = {h})"),
                _ => String::new(),
            };
            Error::config(
                field,
                format!(
                    "is not known: the weights file has no `{CONFIG_METADATA_KEY}` metadata and \
                     no tensor shape determines it, but the forward depends on it; give it with \
                     {flag}{hint}"
                ),
            )
        })
    };
    let num_heads = required("num_heads", "--num-heads", overrides.num_heads)?;
    let num_steps = required("num_steps", "--num-steps", overrides.num_steps)?;
    let given = overrides.set_fields();
    let from_shapes = shapes.set_fields();
    let config = Config {
        num_heads,
        num_steps,
        ..overrides.apply_to(shapes.apply_to(Config::recommended()))
    };
    let sources = std::array::from_fn(|i| {
        let field = crate::model::config::CONFIG_FIELDS[i];
        let source = if given[i] {
            FieldSource::Given
        } else if from_shapes[i] || field == "num_classes" {
            // Absent class tensors are an inference too: unconditional.
            FieldSource::Inferred
        } else {
            FieldSource::Default
        };
        (field, source)
    });
    config.validate().map_err(|e| match e {
        Error::InvalidConfig { field, reason } => Error::InvalidConfig {
            field,
            reason: format!(
                "{reason} (the file has no `{CONFIG_METADATA_KEY}` metadata: the config comes \
                 from its tensor shapes and the flags)"
            ),
        },
        other => other,
    })?;
    Ok((config, sources))
}
