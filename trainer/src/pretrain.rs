//! `trainer pretrain`: self-supervised pre-training with L_total, checkpointed and resumable.
//!
//! Every random choice of a step is keyed by the step (loader batches by epoch and position,
//! masks and sensor drops by step) and the checkpoint holds every piece of state (parameters,
//! batch-norm statistics, dropout counters, AdamW moments, the MoCo key encoder and queues), so
//! a run resumed from a checkpoint computes on the CPU exactly the losses the uninterrupted run
//! computes.

use crate::checkpoint;
use crate::config::RunConfig;
use crate::data;
use crate::device::resolve_device;
use crate::error::{TrainerError, TrainerResult};
use crate::progress::Output;
use crate::run_dir::RunDir;
use crate::setup;
use engine::optim::{clip_grad_norm, grad_norm, LrSchedule, Optimizer};
use engine::{Device, Tensor};
use models::data::format::Dataset;
use models::inputs::Inputs;
use models::objective::Pretrainer;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How a pre-training run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every step ran.
    Finished,
    /// Stopped by Ctrl-C after a checkpoint.
    Interrupted,
}

/// What a pre-training run did.
#[derive(Clone, Debug)]
pub struct PretrainOutcome {
    pub ending: Ending,
    /// Steps completed (including those of the run it resumed).
    pub steps: usize,
    pub total_steps: usize,
    pub steps_per_epoch: usize,
    /// Steps skipped for a non-finite loss or gradient.
    pub skipped: usize,
    /// Mean of each loss term (unweighted) and of L_total over the last epoch's steps of this
    /// process.
    pub final_losses: Vec<(String, f64)>,
    /// Training samples per second over this process's steps.
    pub samples_per_s: f64,
    pub seconds: f64,
    pub device: String,
    pub num_params: usize,
}

/// A finished (or interrupted) pre-training: what happened, and the trained model with its
/// dataset and device for the evaluation that follows.
pub struct Pretrained {
    pub outcome: PretrainOutcome,
    pub pretrainer: Pretrainer,
    pub dataset: Arc<Dataset>,
    pub device: Device,
}

/// Pre-trains the model of `cfg` in `run` (resuming from its last checkpoint when `resume`),
/// stopping cleanly with a checkpoint when `stop` becomes true.
pub fn pretrain(
    cfg: &RunConfig,
    run: &RunDir,
    resume: bool,
    out: Output,
    stop: &AtomicBool,
) -> TrainerResult<Pretrained> {
    let device = resolve_device(&cfg.device)?;
    let ds = data::open_dataset(&cfg.data, out)?;
    let (train, _) = data::split_indices(&ds, &cfg.data)?;
    let shape = data::data_shape(&ds)?;
    let model = setup::build_model(cfg, shape, device)?;
    let store = model.store().clone();
    let num_params = store.num_params();
    let mut pre = Pretrainer::new(model, setup::objective_config(cfg))?;
    let mut opt = setup::optimizer(cfg, pre.model().trainable(), cfg.train.lr)?;
    let loader = data::pretrain_loader(ds.clone(), &train, cfg)?;
    let spe = loader.len();
    let total = cfg.train.epochs * spe;
    let schedule = LrSchedule::WarmupCosine {
        base_lr: cfg.train.lr,
        warmup_steps: cfg.train.warmup_epochs * spe,
        total_steps: total,
        min_lr: cfg.train.min_lr,
    };
    schedule.validate()?;

    let mut start = 0;
    if resume {
        let saved = checkpoint::load(
            &run.checkpoint_path(),
            &store,
            Some(&mut opt),
            Some(&mut pre),
            &cfg.model.preset,
        )?;
        start = saved.step;
        out.say(&format!(
            "resuming {} at step {start} of {total}",
            run.path().display()
        ));
    }
    out.say(&format!(
        "pre-training the `{}` model ({num_params} parameters) on {device} with {} samples of {}: {} epochs x {spe} steps of {}",
        cfg.model.preset,
        train.len(),
        ds.dir().display(),
        cfg.train.epochs,
        cfg.train.batch_size
    ));

    let mut metrics = run.metrics()?;
    let bar = out.bar(total as u64, "pretrain");
    bar.set_position(start as u64);
    let params: Vec<Tensor> = pre
        .model()
        .trainable()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let names: Vec<String> = pre
        .model()
        .trainable()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let began = Instant::now();
    let mut done_here = 0usize;
    let mut bad_in_a_row = 0usize;
    let mut skipped = 0usize;
    let mut epoch_sums: Vec<(String, f64, usize)> = Vec::new();
    let mut ending = Ending::Finished;
    let mut batches: Option<models::data::loader::Epoch> = None;
    let mut step = start;
    while step < total {
        let (epoch, pos) = (step / spe, step % spe);
        if pos == 0 || batches.is_none() {
            batches = Some(loader.epoch_from(epoch as u64, pos));
            if pos == 0 {
                epoch_sums.clear();
            }
        }
        let batch = batches
            .as_mut()
            .and_then(Iterator::next)
            .ok_or_else(|| TrainerError::Config(format!("epoch {epoch} ended early")))??;
        let views = [
            Inputs::from_batch(&batch, 0)?.to_device(device)?,
            Inputs::from_batch(&batch, 1)?.to_device(device)?,
        ];
        let lr = schedule.lr_at(step);
        opt.set_lr(lr);
        let terms = pre.loss(&views, step, total)?;
        let mut values: Vec<(String, f64)> = terms
            .terms
            .iter()
            .map(|(n, t)| Ok((n.to_string(), t.item()?)))
            .collect::<TrainerResult<_>>()?;
        values.push(("total".into(), terms.total.item()?));
        let bad_term = values.iter().find(|(_, v)| !v.is_finite()).cloned();
        let mut problem = bad_term.map(|(n, v)| format!("loss term {n} is {v}"));
        if problem.is_none() {
            terms.total.backward()?;
            let norm = grad_norm(&params)?;
            if !norm.is_finite() {
                let culprit = names
                    .iter()
                    .zip(&params)
                    .find(|(_, p)| {
                        p.grad()
                            .and_then(|g| g.to_f64_vec().ok())
                            .is_some_and(|v| v.iter().any(|x| !x.is_finite()))
                    })
                    .map(|(n, _)| n.clone())
                    .unwrap_or_else(|| "?".into());
                problem = Some(format!("the gradient of {culprit} is not finite"));
            } else if cfg.train.grad_clip > 0.0 {
                clip_grad_norm(&params, cfg.train.grad_clip)?;
            }
        }
        if let Some(p) = problem {
            opt.zero_grad();
            skipped += 1;
            bad_in_a_row += 1;
            out.warn(&format!("step {step}: {p}; the step is skipped"));
            if bad_in_a_row > cfg.train.max_bad_steps {
                bar.abandon();
                return Err(TrainerError::Diverged(format!(
                    "{bad_in_a_row} steps in a row had a non-finite loss or gradient (last: {p}); the last checkpoint in {} is intact: lower train.lr or set train.grad_clip and resume",
                    run.path().display()
                )));
            }
        } else {
            opt.step()?;
            opt.zero_grad();
            pre.after_step()?;
            bad_in_a_row = 0;
            for (n, v) in &values {
                match epoch_sums.iter_mut().find(|(m, _, _)| m == n) {
                    Some(e) => {
                        e.1 += v;
                        e.2 += 1;
                    }
                    None => epoch_sums.push((n.clone(), *v, 1)),
                }
            }
        }
        step += 1;
        done_here += 1;
        let secs = began.elapsed().as_secs_f64();
        let sps = (done_here * cfg.train.batch_size) as f64 / secs.max(1e-9);
        let total_loss = values.last().map(|(_, v)| *v).unwrap_or(f64::NAN);
        bar.set_message(format!(
            "epoch {} {} {sps:.1} samples/s",
            epoch + 1,
            values
                .iter()
                .map(|(n, v)| format!("{n} {v:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        bar.set_position(step as u64);
        if step % cfg.train.log_every == 0 || step == total {
            let losses: serde_json::Map<String, serde_json::Value> =
                values.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
            let gates: Vec<Option<f64>> = terms.gate_means.to_vec();
            metrics.log(&json!({
                "step": step,
                "epoch": epoch,
                "lr": lr,
                "loss": losses,
                "total": total_loss,
                "gate_means": gates,
                "samples_per_s": sps,
                "seconds": secs,
            }))?;
        }
        if step % cfg.train.checkpoint_every == 0 || step == total {
            checkpoint::save(&run.checkpoint_path(), &pre, &opt, step, &cfg.model.preset)?;
        }
        if stop.load(Ordering::SeqCst) && step < total {
            checkpoint::save(&run.checkpoint_path(), &pre, &opt, step, &cfg.model.preset)?;
            ending = Ending::Interrupted;
            break;
        }
    }
    bar.finish_and_clear();
    let seconds = began.elapsed().as_secs_f64();
    let outcome = PretrainOutcome {
        ending,
        steps: step,
        total_steps: total,
        steps_per_epoch: spe,
        skipped,
        final_losses: epoch_sums
            .into_iter()
            .map(|(n, s, c)| (n, s / c as f64))
            .collect(),
        samples_per_s: (done_here * cfg.train.batch_size) as f64 / seconds.max(1e-9),
        seconds,
        device: device.to_string(),
        num_params,
    };
    Ok(Pretrained {
        outcome,
        pretrainer: pre,
        dataset: ds,
        device,
    })
}
