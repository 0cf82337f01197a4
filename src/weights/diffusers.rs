//! A diffusers model folder of a `sana` model, as `save_pretrained` writes it: `config.json`
//! and `diffusion_pytorch_model.safetensors`, or shards listed by
//! `diffusion_pytorch_model.safetensors.index.json`; or a pipeline folder holding it under
//! `transformer/`. Every file is memory-mapped; the tensors are checked against the one
//! table of [`crate::model::sana::tensors`].

use crate::error::{Error, Result};
use crate::model::sana::{SanaConfig, sana_tensors};
use crate::tensor::SharedF32;
use crate::tensor_file::{DType, RawTensor, TensorFile};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The single-file weights of a diffusers model folder.
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";
/// The shard index of a sharded diffusers model folder.
pub const INDEX_FILE: &str = "diffusion_pytorch_model.safetensors.index.json";
/// The sub-folder of a pipeline folder that holds the transformer.
pub const PIPELINE_TRANSFORMER: &str = "transformer";

/// A validated `sana` model: its config and every tensor of its table, nothing else.
#[derive(Debug, Clone)]
pub struct SanaWeights {
    config: SanaConfig,
    tensors: BTreeMap<String, RawTensor>,
    folder: PathBuf,
}

impl SanaWeights {
    /// Loads the model folder `path` (or the `transformer/` of a pipeline folder).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let folder = model_folder(path.as_ref())?;
        let config_path = folder.join("config.json");
        let json = std::fs::read_to_string(&config_path).map_err(|source| Error::Io {
            path: config_path.clone(),
            source,
        })?;
        let config = SanaConfig::from_json(&json)
            .map_err(|e| Error::bad_file(&config_path, e.to_string()))?;
        let tensors = read_tensors(&folder)?;
        let mut weights = SanaWeights::from_tensors(config, tensors)?;
        weights.folder = folder;
        tracing::debug!(folder = %weights.folder.display(), tensors = weights.tensors.len(), "loaded sana weights");
        Ok(weights)
    }

    /// Wraps tensors named as diffusers names them, checking them against `config`'s table:
    /// a missing, unknown, mis-shaped or integer tensor is an error naming it.
    pub fn from_tensors(config: SanaConfig, tensors: BTreeMap<String, RawTensor>) -> Result<Self> {
        let table = sana_tensors(&config)?;
        super::check_tensors(
            &tensors,
            table.iter().map(|s| (s.name.as_str(), s.shape.as_slice())),
        )?;
        Ok(SanaWeights {
            config,
            tensors,
            folder: PathBuf::new(),
        })
    }

    /// The config.
    pub fn config(&self) -> &SanaConfig {
        &self.config
    }

    /// The folder the weights were loaded from (empty for [`SanaWeights::from_tensors`]).
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Every tensor by name.
    pub fn tensors(&self) -> &BTreeMap<String, RawTensor> {
        &self.tensors
    }

    /// Tensor `name` as stored: its dtype, shape and bytes (a view of the map), for a backend
    /// that uploads the stored encoding without an f32 copy.
    pub fn raw(&self, name: &str) -> Result<&RawTensor> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            expected: Vec::new(),
        })
    }

    /// Tensor `name` as f32 (a view of the map for aligned F32, converted otherwise).
    pub fn f32(&self, name: &str) -> Result<SharedF32> {
        let raw = self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            expected: Vec::new(),
        })?;
        SharedF32::from_raw(name, raw)
    }

    /// Whether the model has tensor `name` (optional parameters: biases, qk norms).
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The storage dtype: the one holding most of the parameters.
    pub fn storage_dtype(&self) -> DType {
        super::storage_dtype(&self.tensors)
    }
}

/// Whether `path` is a folder holding a diffusers model (or pipeline) config.
pub fn is_diffusers_folder(path: &Path) -> bool {
    path.join("config.json").is_file()
        || path
            .join(PIPELINE_TRANSFORMER)
            .join("config.json")
            .is_file()
}

/// The model folder: `path` itself when it holds `config.json`, else its `transformer/`.
fn model_folder(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Err(Error::bad_file(
            path,
            "is not a folder; a sana model is a diffusers folder (config.json + safetensors)",
        ));
    }
    if path.join("config.json").is_file() {
        return Ok(path.to_path_buf());
    }
    let transformer = path.join(PIPELINE_TRANSFORMER);
    if transformer.join("config.json").is_file() {
        return Ok(transformer);
    }
    Err(Error::bad_file(
        path,
        "holds neither config.json nor transformer/config.json",
    ))
}

/// The folder's tensors: from the single file, or from every shard of the index.
fn read_tensors(folder: &Path) -> Result<BTreeMap<String, RawTensor>> {
    let single = folder.join(WEIGHTS_FILE);
    if single.is_file() {
        let file = TensorFile::open(&single)?;
        return file
            .names()
            .into_iter()
            .map(|name| Ok((name.to_string(), file.tensor(name)?)))
            .collect();
    }
    let index_path = folder.join(INDEX_FILE);
    if !index_path.is_file() {
        return Err(Error::bad_file(
            folder,
            format!("holds neither {WEIGHTS_FILE} nor {INDEX_FILE}"),
        ));
    }
    let index = std::fs::read_to_string(&index_path).map_err(|source| Error::Io {
        path: index_path.clone(),
        source,
    })?;
    let weight_map = shard_map(&index).map_err(|reason| Error::bad_file(&index_path, reason))?;
    let mut shards: HashMap<&str, TensorFile> = HashMap::new();
    let mut tensors = BTreeMap::new();
    for (name, shard) in &weight_map {
        if !shards.contains_key(shard.as_str()) {
            shards.insert(shard, TensorFile::open(folder.join(shard))?);
        }
        let file = &shards[shard.as_str()];
        if !file.contains(name) {
            return Err(Error::bad_file(
                file.path(),
                format!("has no tensor `{name}`, which {INDEX_FILE} places there"),
            ));
        }
        tensors.insert(name.clone(), file.tensor(name)?);
    }
    // A tensor in a shard that the index does not list would be silently dropped.
    for file in shards.values() {
        if let Some(extra) = file
            .names()
            .into_iter()
            .find(|n| !weight_map.contains_key(*n))
        {
            return Err(Error::bad_file(
                file.path(),
                format!("holds tensor `{extra}`, which {INDEX_FILE} does not list"),
            ));
        }
    }
    Ok(tensors)
}

/// The index's `weight_map` (tensor → shard file name). Shard names must be plain file
/// names in the folder: an index cannot point outside it.
fn shard_map(index: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value = serde_json::from_str(index).map_err(|e| e.to_string())?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or("has no `weight_map` object")?;
    map.iter()
        .map(|(name, shard)| {
            let shard = shard
                .as_str()
                .ok_or_else(|| format!("`weight_map.{name}` is not a file name"))?;
            let plain = Path::new(shard).file_name().is_some_and(|f| f == shard)
                && shard != ".."
                && shard != ".";
            if !plain {
                return Err(format!(
                    "`weight_map.{name}` is `{shard}`; a shard must be a file in the model folder"
                ));
            }
            Ok((name.clone(), shard.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_cannot_leave_the_folder() {
        for bad in ["../x.safetensors", "/etc/passwd", "a/b.safetensors", ".."] {
            let index = format!(r#"{{"weight_map": {{"w": "{bad}"}}}}"#);
            assert!(shard_map(&index).is_err(), "{bad}");
        }
        let ok = shard_map(r#"{"metadata": {}, "weight_map": {"w": "m-00001.safetensors"}}"#);
        assert_eq!(ok.unwrap()["w"], "m-00001.safetensors");
    }
}
