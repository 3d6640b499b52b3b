//! The trainer's data: finding or generating the dataset, choosing the samples of a split, and
//! the loaders for pre-training and evaluation.

use crate::config::{DataConfig, RunConfig};
use crate::error::{TrainerError, TrainerResult};
use crate::progress::Output;
use models::data::degrade::{Degradations, Sensor};
use models::data::format::{Dataset, Verify};
use models::data::loader::{Augmentations, Loader, LoaderConfig};
use models::data::synthetic::{write_dataset, SynthConfig};
use models::data::Modality;
use models::rcmcl::DataShape;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where generated datasets live: the config's `cache_dir`, else `$RCMCL_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/rcmcl`, else `~/.cache/rcmcl`, else `./.rcmcl-cache`.
pub fn cache_dir(cfg: &DataConfig) -> PathBuf {
    if !cfg.cache_dir.is_empty() {
        return PathBuf::from(&cfg.cache_dir);
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("RCMCL_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("rcmcl")))
        .or_else(|| env("HOME").map(|p| p.join(".cache").join("rcmcl")))
        .unwrap_or_else(|| PathBuf::from(".rcmcl-cache"))
}

/// The dataset of a run: `data.dir`, or the synthetic preset from the cache (generated there
/// on first use, with a progress bar).
pub fn open_dataset(cfg: &DataConfig, out: Output) -> TrainerResult<Arc<Dataset>> {
    let dir = if cfg.dir.is_empty() {
        let dir = cache_dir(cfg).join(format!("synthetic-{}", cfg.synth_preset));
        if !dir.join("header.json").exists() {
            generate(&cfg.synth_preset, &dir, false, out)?;
        }
        dir
    } else {
        PathBuf::from(&cfg.dir)
    };
    if !dir.exists() {
        return Err(TrainerError::Config(format!(
            "data.dir {} does not exist (generate one with `trainer synth`, import NTU with `trainer import-ntu`, or leave data.dir empty for the synthetic default)",
            dir.display()
        )));
    }
    Ok(Arc::new(Dataset::open(&dir, Verify::Checksums)?))
}

/// Generates the synthetic preset `preset` into `dir`.
pub fn generate(preset: &str, dir: &Path, replace: bool, out: Output) -> TrainerResult<()> {
    let cfg = SynthConfig::preset(preset)?;
    out.say(&format!(
        "generating the synthetic `{preset}` dataset ({} samples) into {}",
        cfg.num_samples(),
        dir.display()
    ));
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| TrainerError::io(parent, e))?;
    }
    let bar = out.bar(cfg.num_samples() as u64, "synth");
    write_dataset(&cfg, dir, replace, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    Ok(())
}

/// The train and test sample indices of the configured split, thinned evenly to
/// `max_train` / `max_test` when those are set.
pub fn split_indices(ds: &Dataset, cfg: &DataConfig) -> TrainerResult<(Vec<u32>, Vec<u32>)> {
    let split = ds.split(&cfg.split).ok_or_else(|| {
        let names: Vec<&str> = ds.splits().iter().map(|s| s.name.as_str()).collect();
        TrainerError::Config(format!(
            "data.split {:?}: the dataset at {} has splits {names:?}",
            cfg.split,
            ds.dir().display()
        ))
    })?;
    Ok((
        thin(&split.train, cfg.max_train),
        thin(&split.test, cfg.max_test),
    ))
}

/// `n` evenly spaced entries of `v` (all of it when n is 0 or large).
fn thin(v: &[u32], n: usize) -> Vec<u32> {
    if n == 0 || n >= v.len() {
        return v.to_vec();
    }
    (0..n).map(|i| v[i * v.len() / n]).collect()
}

/// The streams the model reads, among those the dataset has: RGB, depth, the 25-joint
/// skeleton (plus the 17- and 15-joint ones for multi-skeleton views), points.
pub fn modalities(ds: &Dataset, multi_view: bool) -> Vec<Modality> {
    let mut want = vec![
        Modality::Skeleton,
        Modality::Depth,
        Modality::Rgb,
        Modality::Points,
    ];
    if multi_view {
        want.extend([Modality::Skeleton17, Modality::Skeleton15]);
    }
    want.into_iter()
        .filter(|&m| ds.spec().dims_of(m).is_some())
        .collect()
}

/// The sensors the dataset has data for, in `Sensor::ALL` order.
pub fn sensors(ds: &Dataset) -> Vec<Sensor> {
    let mods = modalities(ds, false);
    Sensor::ALL
        .into_iter()
        .filter(|&s| mods.iter().any(|&m| Sensor::of(m) == s))
        .collect()
}

/// The model's data shape from the dataset: the 25-joint skeleton's (T, M, J) and the classes.
pub fn data_shape(ds: &Dataset) -> TrainerResult<DataShape> {
    let dims = ds.spec().dims_of(Modality::Skeleton).ok_or_else(|| {
        TrainerError::Config(format!(
            "the dataset at {} has no skeleton stream; the model's decoder and skeleton encoder need one",
            ds.dir().display()
        ))
    })?;
    Ok(DataShape {
        frames: dims[0],
        bodies: dims[1],
        joints: dims[2],
        classes: ds.spec().classes.len(),
        rgb: ds.spec().dims_of(Modality::Rgb).is_some(),
    })
}

/// Pre-training batches: two augmented views, shuffled, full batches only.
pub fn pretrain_loader(
    ds: Arc<Dataset>,
    indices: &[u32],
    cfg: &RunConfig,
) -> TrainerResult<Loader> {
    let mods = modalities(&ds, cfg.objective.multi_view);
    training_loader(ds, indices, cfg, &mods, 2, "training samples make", "")
}

/// Training batches of `views` augmented views of `modalities`, shuffled, full batches only;
/// an error when `indices` (described by `what`) fill no batch, ending with `hint`.
pub fn training_loader(
    ds: Arc<Dataset>,
    indices: &[u32],
    cfg: &RunConfig,
    modalities: &[Modality],
    views: usize,
    what: &str,
    hint: &str,
) -> TrainerResult<Loader> {
    let mut lc = LoaderConfig::new(modalities, cfg.train.batch_size);
    lc.views = views;
    lc.drop_last = true;
    lc.seed = cfg.seed;
    lc.threads = cfg.data.threads;
    lc.augment = Some(Augmentations::default());
    let loader = Loader::new(ds, indices, lc)?;
    if loader.is_empty() {
        return Err(TrainerError::Config(format!(
            "{} {what} no full batch of {}{hint}",
            indices.len(),
            cfg.train.batch_size
        )));
    }
    Ok(loader)
}

/// Evaluation batches: one plain view in dataset order, with optional degradations.
pub fn eval_loader(
    ds: Arc<Dataset>,
    indices: &[u32],
    cfg: &RunConfig,
    degrade: Option<Degradations>,
) -> TrainerResult<Loader> {
    let mods = modalities(&ds, false);
    let mut lc = LoaderConfig::new(&mods, cfg.train.batch_size.max(2));
    lc.shuffle = false;
    lc.seed = cfg.seed ^ 0xe7a1;
    lc.threads = cfg.data.threads;
    lc.degrade = degrade;
    Ok(Loader::new(ds, indices, lc)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_spreads_over_the_list() {
        let v: Vec<u32> = (0..10).collect();
        assert_eq!(thin(&v, 0), v);
        assert_eq!(thin(&v, 5), vec![0, 2, 4, 6, 8]);
        assert_eq!(thin(&v, 20), v);
    }
}
