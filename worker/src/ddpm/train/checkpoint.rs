//! Training checkpoints under `URI/checkpoint/`: `model.mpk` (the raw weights),
//! `ema.mpk`, `optimizer.mpk` (Adam's moments) in `step-N/`, and `state.json`
//! ([`CheckpointState`]), written last, naming that set and each file's sha256
//! ([`sync_store::FileSet`]): a kill mid-save leaves the previous checkpoint whole.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::ddpm::encoding::Encoding;
use crate::ddpm::objective::Objective;
use crate::ddpm::schedule::ScheduleKind;
use crate::ddpm::unet::UNetConfig;
use crate::sync_store;

pub const DIR: &str = "checkpoint";
pub const MODEL: &str = "checkpoint/model.mpk";
pub const EMA: &str = "checkpoint/ema.mpk";
pub const OPTIMIZER: &str = "checkpoint/optimizer.mpk";
pub const STATE: &str = crate::sync_store::CHECKPOINT_STATE;
pub const FORMAT_VERSION: u32 = 1;

/// `--lr`, `--ema`, `--clip` and `--precision` of a run ([`CheckpointState::optimisation`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Optimisation {
    pub lr: f64,
    pub ema_decay: f64,
    pub clip: Option<f64>,
    pub precision: crate::precision::Precision,
}

/// `checkpoint/state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format_version: u32,
    /// Optimizer steps done.
    pub step: u64,
    pub unet: UNetConfig,
    pub encoding: Encoding,
    /// `eps` in checkpoints written before it was recorded.
    #[serde(default)]
    pub objective: Objective,
    pub schedule: ScheduleKind,
    pub timesteps: usize,
    pub seed: u64,
    /// Batch size and horizontal flips: the batch draws follow them (`None` in checkpoints
    /// written before they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flip: Option<bool>,
    pub data_digest: String,
    /// The class table trained with (`None` in checkpoints from before it was recorded):
    /// the network's channels are its classes in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<shared::ClassTable>,
    /// Every step's loss so far.
    pub losses: Vec<f32>,
    /// The optimisation settings of the run that wrote the checkpoint (`None` in checkpoints
    /// written before they were recorded). A resume may change them (a lower `--lr` after
    /// a divergence) and logs the ones it replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimisation: Option<Optimisation>,
    /// Where the weight files are (`None`: directly under `checkpoint/`, the old layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<sync_store::FileSet>,
}

/// The bytes of a checkpoint.
pub struct CheckpointFiles {
    pub state: CheckpointState,
    pub model: Vec<u8>,
    pub ema: Vec<u8>,
    pub optimizer: Vec<u8>,
}

/// Writes the weight files as a new set, then `state.json` naming it, then removes the
/// previous set.
pub fn save(uri: &str, state: &CheckpointState, model: Vec<u8>, ema: Vec<u8>, optimizer: Vec<u8>) -> anyhow::Result<()> {
    let files = [(MODEL, model), (EMA, ema), (OPTIMIZER, optimizer)].map(|(path, bytes)| (file_name(path), bytes));
    let set = sync_store::write_set(uri, DIR, state.step, files.into())?;
    let state = CheckpointState { files: Some(set.clone()), ..state.clone() };
    sync_store::write_file(uri, STATE, serde_json::to_vec_pretty(&state)?)?;
    sync_store::prune_sets(uri, DIR, file_name(STATE), &set)
}

/// `model.mpk` of `checkpoint/model.mpk`.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Reads the checkpoint under `uri`; `None` if there is no `state.json`.
pub fn load(uri: &str) -> anyhow::Result<Option<CheckpointFiles>> {
    let Some(json) = sync_store::read_file(uri, STATE)? else { return Ok(None) };
    let origin = format!("{uri}/{STATE}");
    let v: serde_json::Value = serde_json::from_slice(&json).with_context(|| format!("{origin}: not valid JSON"))?;
    let version = v.get("format_version").and_then(serde_json::Value::as_u64);
    if version != Some(FORMAT_VERSION as u64) {
        anyhow::bail!("{origin}: format_version {version:?}; this worker resumes format_version {FORMAT_VERSION}");
    }
    let state: CheckpointState = serde_json::from_value(v).with_context(|| format!("{origin}: invalid checkpoint state"))?;
    Ok(Some(CheckpointFiles {
        model: sync_store::read_set_file(uri, DIR, state.files.as_ref(), file_name(MODEL))?,
        ema: sync_store::read_set_file(uri, DIR, state.files.as_ref(), file_name(EMA))?,
        optimizer: sync_store::read_set_file(uri, DIR, state.files.as_ref(), file_name(OPTIMIZER))?,
        state,
    }))
}
