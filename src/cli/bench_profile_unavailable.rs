//! `bench --profile` in a build without the `cuda` feature: the phase timers are the CUDA
//! backend's, so asking for them is an error that says why.

use super::device_flags::DeviceFlags;
use anyhow::{Result, bail};
use linear_dit::{Config, Input, Model, Weights};
use serde_json::Value;

/// The backend `--profile` would time; this build has none, so no value exists.
pub enum Profiler {}

impl Profiler {
    /// Always an error: there is no CUDA backend to profile.
    pub fn new(_weights: &Weights, _device: &DeviceFlags) -> Result<Self> {
        bail!("--profile needs --backend cuda, and this binary was built without the cuda feature")
    }

    /// Never called: no `Profiler` exists.
    pub fn model(&self, _config: &Config) -> Model {
        match *self {}
    }

    /// Never called: no `Profiler` exists.
    pub fn report(
        &self,
        _input: &Input<'_>,
        _config: &Config,
        _ms_per_forward: f64,
    ) -> Result<Value> {
        match *self {}
    }
}
