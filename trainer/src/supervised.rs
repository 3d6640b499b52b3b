//! Supervised training of the whole model: cross-entropy on C(Z_fusion), end to end.
//!
//! Two uses: the supervised fusion baseline of paper 000 (the same encoders, average fusion,
//! trained from scratch with labels only) and end-to-end fine-tuning of a pre-trained model on
//! a class-stratified fraction of the labels (the semi-supervised protocols of papers 002 and
//! 004). [`classifier_accuracy`] scores the trained classifier itself (not a probe) on clean
//! and degraded test data.
//!
//! Like pre-training, every random choice of a step is keyed by the step (loader batches by
//! epoch and position; dropout counters live in the checkpoint) and the checkpoint holds the
//! model and the AdamW state, so a resumed run computes on the CPU exactly the losses of the
//! uninterrupted one.

use crate::checkpoint;
use crate::config::RunConfig;
use crate::data;
use crate::device::resolve_device;
use crate::error::{TrainerError, TrainerResult};
use crate::eval::{dataset_labels, label_subset, top1, Scenario};
use crate::pretrain::Ending;
use crate::pretrain::{gradient_problem, lr_schedule, metrics_record, split_params, BadSteps};
use crate::progress::Output;
use crate::run_dir::RunDir;
use crate::setup;
use engine::optim::Optimizer;
use engine::Device;
use models::data::degrade::Sensor;
use models::data::format::Dataset;
use models::data::loader::Loader;
use models::inputs::Inputs;
use models::objective::supervised_loss;
use models::rcmcl::Rcmcl;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The checkpoint metadata entry marking a supervised run's checkpoint.
const STAGE: (&str, &str) = ("stage", "supervised");
const FRACTION_KEY: &str = "label_fraction";

/// What a supervised run did.
#[derive(Clone, Debug)]
pub struct SupervisedOutcome {
    /// Steps completed (including those of the run it resumed).
    pub steps: usize,
    pub total_steps: usize,
    pub steps_per_epoch: usize,
    /// Mean cross-entropy over the last epoch's steps of this process (NaN when this process
    /// took no step, e.g. resuming a finished run).
    pub final_loss: f64,
    /// The labelled training samples used (the `label_fraction` subset).
    pub train_samples: usize,
    /// Steps skipped for a non-finite loss or gradient (in this process).
    pub skipped: usize,
    pub seconds: f64,
    /// Training samples per second over this process's steps.
    pub samples_per_s: f64,
    pub device: String,
    pub num_params: usize,
    pub ending: Ending,
}

/// A finished (or interrupted) supervised run: what happened, and the trained model with its
/// dataset and device for the evaluation that follows.
pub struct Supervised {
    pub outcome: SupervisedOutcome,
    pub model: Rcmcl,
    pub dataset: Arc<Dataset>,
    pub device: Device,
}

/// The labelled training samples of a run: the class-stratified, seeded `label_fraction`
/// subset (`trainer::eval::label_subset`) of `train`, or all of it for a fraction of 1. A
/// fraction outside (0, 1] is an error.
pub fn labelled_samples(
    ds: &Dataset,
    train: &[u32],
    label_fraction: f64,
    seed: u64,
) -> TrainerResult<Vec<u32>> {
    if !(label_fraction > 0.0 && label_fraction <= 1.0) {
        return Err(TrainerError::Config(format!(
            "the label fraction must be in (0, 1], got {label_fraction}"
        )));
    }
    if label_fraction == 1.0 {
        return Ok(train.to_vec());
    }
    let labels = dataset_labels(ds, train)?;
    Ok(label_subset(train, &labels, label_fraction, seed))
}

/// Supervised batches: one augmented view per sample, shuffled, full batches only.
pub fn supervised_loader(
    ds: Arc<Dataset>,
    indices: &[u32],
    cfg: &RunConfig,
) -> TrainerResult<Loader> {
    let mods = data::modalities(&ds, false);
    data::training_loader(
        ds,
        indices,
        cfg,
        &mods,
        1,
        "labelled training samples make",
        " (lower train.batch_size or raise the label fraction)",
    )
}

/// Trains `cfg`'s model with cross-entropy (`models::objective::supervised_loss`) on the
/// labelled training samples of `cfg.data.split` (a class-stratified, seeded `label_fraction`
/// subset of them), one augmented view per sample, with AdamW and the warm-up + cosine
/// schedule of `cfg.train`. Checkpoints go to `run.checkpoint_path()` every
/// `train.checkpoint_every` steps and at the end; metrics.jsonl gets a line every
/// `train.log_every` steps (`{"step","epoch","lr","loss":{"ce"},"total","samples_per_s",
/// "seconds"}`). A step with a non-finite loss or gradient is skipped with a warning (more than
/// `train.max_bad_steps` in a row stop the run). When `stop` becomes true the run saves a
/// checkpoint after the step and ends `Interrupted`.
///
/// `init`: a checkpoint to start from (a pre-training run's checkpoints/last.safetensors): its
/// model parameters and buffers are loaded, not its optimizer state. Its model preset must be
/// this run's (an error says so otherwise), and so must its fusion, except that an
/// average-fusion model ignores the AMG gate of a checkpoint that has one. `resume` continues
/// this run from its own last checkpoint instead (`init` is then not read), which must be a
/// supervised checkpoint written with the same `label_fraction`.
pub fn train_supervised(
    cfg: &RunConfig,
    run: &RunDir,
    init: Option<&Path>,
    label_fraction: f64,
    resume: bool,
    out: Output,
    stop: &AtomicBool,
) -> TrainerResult<Supervised> {
    let device = resolve_device(&cfg.device)?;
    let ds = data::open_dataset(&cfg.data, out)?;
    let (train, _) = data::split_indices(&ds, &cfg.data)?;
    let labelled = labelled_samples(&ds, &train, label_fraction, cfg.seed)?;
    let shape = data::data_shape(&ds)?;
    let model = setup::build_model(cfg, shape, device)?;
    model.set_frozen(false);
    let store = model.store().clone();
    store.set_training(true);
    let num_params = store.num_params();
    let mut opt = setup::optimizer(cfg, model.trainable(), cfg.train.lr)?;
    let loader = supervised_loader(ds.clone(), &labelled, cfg)?;
    let spe = loader.len();
    let total = cfg.train.epochs * spe;
    let schedule = lr_schedule(cfg, spe)?;
    let fraction_text = label_fraction.to_string();

    let mut start = 0;
    if resume {
        let path = run.checkpoint_path();
        let saved = checkpoint::load(&path, &store, Some(&mut opt), None, &cfg.model.preset)?;
        let meta = &saved.metadata;
        if meta.get(STAGE.0).map(String::as_str) != Some(STAGE.1) {
            return Err(TrainerError::Checkpoint {
                path,
                msg:
                    "not written by a supervised or fine-tuning run, so it cannot be resumed as one"
                        .into(),
            });
        }
        if let Some(f) = meta.get(FRACTION_KEY) {
            if f != &fraction_text {
                return Err(TrainerError::Config(format!(
                    "{} was trained with label fraction {f}; resume it with the same fraction (got {fraction_text})",
                    run.path().display()
                )));
            }
        }
        start = saved.step;
        out.say(&format!(
            "resuming {} at step {start} of {total}",
            run.path().display()
        ));
    } else if let Some(init) = init {
        // The model alone: the pre-training's optimizer state belongs to another objective.
        checkpoint::load(init, &store, None, None, &cfg.model.preset)?;
        out.say(&format!("starting from the model in {}", init.display()));
    }
    out.say(&format!(
        "training the `{}` model ({num_params} parameters, fusion {}) with labels on {device}: {} of {} training samples of {} (label fraction {label_fraction}), {} epochs x {spe} steps of {}",
        cfg.model.preset,
        cfg.model.fusion,
        labelled.len(),
        train.len(),
        ds.dir().display(),
        cfg.train.epochs,
        cfg.train.batch_size
    ));

    let mut extra = vec![
        (STAGE.0, STAGE.1.to_string()),
        (FRACTION_KEY, fraction_text.clone()),
    ];
    if let Some(init) = init {
        extra.push(("init", init.display().to_string()));
    }
    let save = |opt: &dyn Optimizer, step: usize| {
        checkpoint::save_state(
            &run.checkpoint_path(),
            &store,
            opt,
            None,
            step,
            &cfg.model.preset,
            &extra,
        )
    };

    let mut metrics = run.metrics()?;
    let bar = out.bar(total as u64, "supervised");
    bar.set_position(start as u64);
    let (names, params) = split_params(model.trainable());
    let began = Instant::now();
    let mut done_here = 0usize;
    let mut bad = BadSteps::default();
    let (mut epoch_sum, mut epoch_count) = (0.0f64, 0usize);
    let mut ending = Ending::Finished;
    let mut batches: Option<models::data::loader::Epoch> = None;
    let mut step = start;
    while step < total {
        let (epoch, pos) = (step / spe, step % spe);
        if pos == 0 || batches.is_none() {
            batches = Some(loader.epoch_from(epoch as u64, pos));
            if pos == 0 {
                (epoch_sum, epoch_count) = (0.0, 0);
            }
        }
        let batch = batches
            .as_mut()
            .and_then(Iterator::next)
            .ok_or_else(|| TrainerError::Config(format!("epoch {epoch} ended early")))??;
        let inputs = Inputs::from_batch(&batch, 0)?.to_device(device)?;
        let lr = schedule.lr_at(step);
        opt.set_lr(lr);
        let loss = supervised_loss(&model, &inputs, &batch.labels)?;
        let ce = loss.item()?;
        let mut problem = (!ce.is_finite()).then(|| format!("loss term ce is {ce}"));
        if problem.is_none() {
            loss.backward()?;
            problem = gradient_problem(&names, &params, cfg.train.grad_clip)?;
        }
        if let Some(p) = problem {
            opt.zero_grad();
            if let Err(e) = bad.skip(step, &p, cfg, run, out) {
                bar.abandon();
                return Err(e);
            }
        } else {
            opt.step()?;
            opt.zero_grad();
            bad.ok();
            epoch_sum += ce;
            epoch_count += 1;
        }
        step += 1;
        done_here += 1;
        let secs = began.elapsed().as_secs_f64();
        let sps = (done_here * cfg.train.batch_size) as f64 / secs.max(1e-9);
        bar.set_message(format!("epoch {} ce {ce:.3} {sps:.1} samples/s", epoch + 1));
        bar.set_position(step as u64);
        if step % cfg.train.log_every == 0 || step == total {
            let values = [("ce".to_string(), ce)];
            metrics.log(&metrics_record(step, epoch, lr, &values, ce, sps, secs))?;
        }
        if step % cfg.train.checkpoint_every == 0 || step == total {
            save(&opt, step)?;
        }
        if stop.load(Ordering::SeqCst) && step < total {
            save(&opt, step)?;
            ending = Ending::Interrupted;
            break;
        }
    }
    bar.finish_and_clear();
    let seconds = began.elapsed().as_secs_f64();
    let outcome = SupervisedOutcome {
        steps: step,
        total_steps: total,
        steps_per_epoch: spe,
        final_loss: if epoch_count == 0 {
            f64::NAN
        } else {
            epoch_sum / epoch_count as f64
        },
        train_samples: labelled.len(),
        skipped: bad.skipped,
        seconds,
        samples_per_s: (done_here * cfg.train.batch_size) as f64 / seconds.max(1e-9),
        device: device.to_string(),
        num_params,
        ending,
    };
    Ok(Supervised {
        outcome,
        model,
        dataset: ds,
        device,
    })
}

/// Top-1 accuracy (%) of the model's own classifier, C(Z_fusion) (`Rcmcl::classify`), on the
/// dataset samples `indices` under `scenario`, in evaluation mode and without gradients (the
/// store's training flag is restored afterwards). A sensor dropped from every sample of a
/// batch is left out of the model's inputs, as in feature extraction.
pub fn classifier_top1(
    model: &Rcmcl,
    ds: &Arc<Dataset>,
    cfg: &RunConfig,
    indices: &[u32],
    scenario: &Scenario,
    device: Device,
    out: Output,
) -> TrainerResult<f64> {
    let loader = data::eval_loader(ds.clone(), indices, cfg, scenario.degrade.clone())?;
    let classes = ds.spec().classes.len();
    let store = model.store();
    let was_training = store.is_training();
    store.set_training(false);
    let bar = out.bar(loader.len() as u64, &scenario.name);
    let result = engine::no_grad(|| -> TrainerResult<(Vec<f32>, Vec<i64>)> {
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for (done, batch) in loader.epoch(0).enumerate() {
            let batch = batch?;
            let mut inputs = Inputs::from_batch(&batch, 0)?;
            for s in Sensor::ALL {
                if !inputs.has(s) {
                    continue;
                }
                let all_dropped = match &inputs.presence[s as usize] {
                    Some(p) => p.to_f64_vec()?.iter().all(|&v| v <= 0.5),
                    None => false,
                };
                if all_dropped {
                    inputs = inputs.without(s);
                }
            }
            let l = model.classify(&inputs.to_device(device)?)?;
            logits.extend(l.to_f64_vec()?.into_iter().map(|v| v as f32));
            labels.extend(batch.labels.to_vec::<i64>()?);
            bar.set_position(done as u64 + 1);
        }
        Ok((logits, labels))
    });
    store.set_training(was_training);
    bar.finish_and_clear();
    let (logits, labels) = result?;
    Ok(top1(&logits, &labels, classes))
}

/// Accuracy (Top-1 %, of the model's own classifier via `Rcmcl::classify`, not a probe) on the
/// test part of `split` (thinned to `data.max_test`) under each of `scenarios`, in their order
/// (give the clean one first: RDP and RGS are taken against it): what the supervised baseline
/// and fine-tuned models report, and what RGS compares against. Returns (scenario name,
/// Top-1) pairs.
pub fn classifier_accuracy(
    model: &Rcmcl,
    ds: &Arc<Dataset>,
    cfg: &RunConfig,
    split: &str,
    scenarios: &[Scenario],
    device: Device,
    out: Output,
) -> TrainerResult<Vec<(String, f64)>> {
    let mut data_cfg = cfg.data.clone();
    data_cfg.split = split.to_string();
    let (_, test) = data::split_indices(ds, &data_cfg)?;
    scenarios
        .iter()
        .map(|sc| {
            let acc = classifier_top1(model, ds, cfg, &test, sc, device, out)?;
            Ok((sc.name.clone(), acc))
        })
        .collect()
}
