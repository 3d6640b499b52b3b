//! Training checkpoints: the model's parameters and buffers, the optimizer state, the MoCo key
//! encoder and queues (pre-training only), and the step, in one safetensors file written
//! atomically (`engine::io::save_checkpoint`). Loading refuses a checkpoint that does not fit
//! (another preset, other names or shapes) before the model changes. Pre-training ([`save`]) and supervised training ([`save_state`], without a
//! `Pretrainer`) write the same format, so either can initialise the other's model.

use crate::error::{TrainerError, TrainerResult};
use engine::io::{load_checkpoint, save_checkpoint};
use engine::nn::ParamStore;
use engine::optim::Optimizer;
use models::losses::MocoQueue;
use models::objective::Pretrainer;
use std::collections::BTreeMap;
use std::path::Path;

const FORMAT: &str = "rcmcl-train-v1";
const KEY_PREFIX: &str = "key.";

/// What a checkpoint says about the run that wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct Saved {
    /// Optimizer steps completed.
    pub step: usize,
    pub model_preset: String,
    /// Every metadata entry (format, step, model_preset, and what the writer added).
    pub metadata: BTreeMap<String, String>,
}

/// Writes the pre-training state after `step` completed steps.
pub fn save(
    path: &Path,
    pre: &Pretrainer,
    opt: &dyn Optimizer,
    step: usize,
    model_preset: &str,
) -> TrainerResult<()> {
    save_state(
        path,
        pre.model().store(),
        opt,
        Some(pre),
        step,
        model_preset,
        &[],
    )
}

/// Writes the model in `store`, the optimizer state and (given) the pre-training state after
/// `step` completed steps, with `extra` metadata entries beside the format, step and preset.
pub fn save_state(
    path: &Path,
    store: &ParamStore,
    opt: &dyn Optimizer,
    pre: Option<&Pretrainer>,
    step: usize,
    model_preset: &str,
    extra: &[(&str, String)],
) -> TrainerResult<()> {
    // Made here, not with the run directory, so commands that never train leave none.
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| TrainerError::io(dir, e))?;
    }
    let mut tensors = store.state_tensors();
    tensors.extend(opt.state_tensors());
    let mut meta = BTreeMap::new();
    for (k, v) in extra {
        meta.insert(k.to_string(), v.clone());
    }
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("step".to_string(), step.to_string());
    meta.insert("model_preset".to_string(), model_preset.to_string());
    let Some(pre) = pre else {
        save_checkpoint(path, &tensors, &meta)?;
        return Ok(());
    };
    if let Some(key) = pre.key_store() {
        for (n, t) in key.state_tensors() {
            tensors.push((format!("{KEY_PREFIX}{n}"), t));
        }
    }
    if let Some(queues) = pre.queues() {
        for (i, q) in queues.iter().enumerate() {
            tensors.push((format!("moco.queue{i}"), q.keys().clone()));
            meta.insert(format!("moco.ptr{i}"), q.ptr().to_string());
        }
    }
    save_checkpoint(path, &tensors, &meta)?;
    Ok(())
}

/// Reads the model (and, given, the optimizer and the pre-training state) from `path`. A
/// checkpoint of another model preset, or one that does not fit the model, is an error that
/// says so; nothing is changed then.
pub fn load(
    path: &Path,
    store: &ParamStore,
    opt: Option<&mut dyn Optimizer>,
    pre: Option<&mut Pretrainer>,
    model_preset: &str,
) -> TrainerResult<Saved> {
    let err = |msg: String| TrainerError::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    if !path.is_file() {
        return Err(err("not found".into()));
    }
    let ck = load_checkpoint(path)?;
    let meta = ck.metadata();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(err(format!(
            "not a trainer checkpoint (format {:?}, expected {FORMAT:?})",
            meta.get("format")
        )));
    }
    let saved_preset = meta.get("model_preset").cloned().unwrap_or_default();
    if saved_preset != model_preset {
        return Err(err(format!(
            "written by a `{saved_preset}` model, but this run builds a `{model_preset}` model (use --set model.preset={saved_preset}, or another checkpoint)"
        )));
    }
    let step: usize = meta
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err("no step in the metadata".into()))?;
    ck.load_into(store)
        .map_err(|e| err(format!("does not fit this model: {e}")))?;
    if let Some(opt) = opt {
        opt.load_state_tensors(&ck.tensors())?;
    }
    if let Some(pre) = pre {
        if let Some(key) = pre.key_store() {
            for (n, t) in key.state_tensors() {
                ck.copy_into(&format!("{KEY_PREFIX}{n}"), &t)
                    .map_err(|e| err(format!("MoCo key encoder: {e}")))?;
            }
        }
        if let Some(queues) = pre.queues_mut() {
            for (i, q) in queues.iter_mut().enumerate() {
                let keys = ck.get(&format!("moco.queue{i}"))?;
                let ptr: usize = meta
                    .get(&format!("moco.ptr{i}"))
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| err(format!("no moco.ptr{i} in the metadata")))?;
                let keys = keys.to_device(q.keys().device())?;
                *q = MocoQueue::from_state(keys, ptr)?;
            }
        }
    }
    Ok(Saved {
        step,
        model_preset: saved_preset,
        metadata: meta.clone(),
    })
}
