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
use models::inputs::{sensor_name, Inputs};
use models::objective::Pretrainer;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How a training run (pre-training, supervised training) ended.
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
    check_sensors(&ds, cfg)?;
    let model = setup::build_model(cfg, shape, device)?;
    let store = model.store().clone();
    let num_params = store.num_params();
    let mut pre = Pretrainer::new(model, setup::objective_config(cfg))?;
    let mut opt = setup::optimizer(cfg, pre.model().trainable(), cfg.train.lr)?;
    let loader = data::pretrain_loader(ds.clone(), &train, cfg)?;
    let spe = loader.len();
    let total = cfg.train.epochs * spe;
    let schedule = lr_schedule(cfg, spe)?;

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
    let (names, params) = split_params(pre.model().trainable());
    let began = Instant::now();
    let mut done_here = 0usize;
    let mut bad = BadSteps::default();
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
            pre.after_step()?;
            bad.ok();
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
            let gates: Vec<Option<f64>> = terms.gate_means.to_vec();
            let mut record = metrics_record(step, epoch, lr, &values, total_loss, sps, secs);
            record["gate_means"] = json!(gates);
            metrics.log(&record)?;
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
        skipped: bad.skipped,
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

/// L_CM contrasts sensors with each other and L_FUSION drops some of them, so both need data
/// with at least two sensors; an error that says what to do otherwise.
fn check_sensors(ds: &Dataset, cfg: &RunConfig) -> TrainerResult<()> {
    let sensors: Vec<&str> = data::sensors(ds).into_iter().map(sensor_name).collect();
    let o = &cfg.objective;
    if sensors.len() < 2 && (o.cm > 0.0 || o.fusion > 0.0) {
        return Err(TrainerError::Config(format!(
            "the dataset at {} has one sensor ({}); L_CM and L_FUSION need two. Import NTU with --depth for depth and points, or pre-train that sensor alone with --set objective.cm=0 --set objective.fusion=0",
            ds.dir().display(),
            sensors.join(", ")
        )));
    }
    Ok(())
}

/// The learning rate of `cfg.train` over epochs of `steps_per_epoch` steps: a linear warm-up
/// for `warmup_epochs`, then a cosine decay to `min_lr` at the last step.
pub(crate) fn lr_schedule(cfg: &RunConfig, steps_per_epoch: usize) -> TrainerResult<LrSchedule> {
    let schedule = LrSchedule::WarmupCosine {
        base_lr: cfg.train.lr,
        warmup_steps: cfg.train.warmup_epochs * steps_per_epoch,
        total_steps: cfg.train.epochs * steps_per_epoch,
        min_lr: cfg.train.min_lr,
    };
    schedule.validate()?;
    Ok(schedule)
}

/// Named parameters as (names, tensors).
pub(crate) fn split_params(named: Vec<(String, Tensor)>) -> (Vec<String>, Vec<Tensor>) {
    named.into_iter().unzip()
}

/// After a backward pass: what is wrong with the gradients of `params` (the first parameter
/// whose gradient is not finite), or None when their global norm is finite, in which case they
/// are clipped to `grad_clip` when it is positive.
pub(crate) fn gradient_problem(
    names: &[String],
    params: &[Tensor],
    grad_clip: f64,
) -> TrainerResult<Option<String>> {
    let norm = grad_norm(params)?;
    if !norm.is_finite() {
        let culprit = names
            .iter()
            .zip(params)
            .find(|(_, p)| {
                p.grad()
                    .and_then(|g| g.to_f64_vec().ok())
                    .is_some_and(|v| v.iter().any(|x| !x.is_finite()))
            })
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| "?".into());
        return Ok(Some(format!("the gradient of {culprit} is not finite")));
    }
    if grad_clip > 0.0 {
        clip_grad_norm(params, grad_clip)?;
    }
    Ok(None)
}

/// The steps skipped for a non-finite loss or gradient: each is warned about, and more than
/// `train.max_bad_steps` in a row stop the run.
#[derive(Default)]
pub(crate) struct BadSteps {
    /// Steps skipped so far in this process.
    pub skipped: usize,
    in_a_row: usize,
}

impl BadSteps {
    /// Records that `step` is skipped because of `problem`; an error once too many steps in a
    /// row were.
    pub fn skip(
        &mut self,
        step: usize,
        problem: &str,
        cfg: &RunConfig,
        run: &RunDir,
        out: Output,
    ) -> TrainerResult<()> {
        self.skipped += 1;
        self.in_a_row += 1;
        out.warn(&format!("step {step}: {problem}; the step is skipped"));
        if self.in_a_row > cfg.train.max_bad_steps {
            return Err(TrainerError::Diverged(format!(
                "{} steps in a row had a non-finite loss or gradient (last: {problem}); the last checkpoint in {} is intact: lower train.lr or set train.grad_clip and resume",
                self.in_a_row,
                run.path().display()
            )));
        }
        Ok(())
    }

    /// Records a step that was taken.
    pub fn ok(&mut self) {
        self.in_a_row = 0;
    }
}

/// One metrics.jsonl line: the step count, epoch, learning rate, each loss term (`losses`),
/// the total loss, throughput and elapsed seconds.
pub(crate) fn metrics_record(
    step: usize,
    epoch: usize,
    lr: f64,
    losses: &[(String, f64)],
    total: f64,
    samples_per_s: f64,
    seconds: f64,
) -> serde_json::Value {
    let losses: serde_json::Map<String, serde_json::Value> =
        losses.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
    json!({
        "step": step,
        "epoch": epoch,
        "lr": lr,
        "loss": losses,
        "total": total,
        "samples_per_s": samples_per_s,
        "seconds": seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(values: Vec<f32>, grad: Vec<f32>) -> Tensor {
        let n = values.len();
        let p = Tensor::from_vec(values, vec![n], Device::Cpu)
            .unwrap()
            .with_requires_grad()
            .unwrap();
        p.set_grad(Some(Tensor::from_vec(grad, vec![n], Device::Cpu).unwrap()));
        p
    }

    #[test]
    fn gradients_are_checked_then_clipped() {
        let names = vec!["a".to_string(), "b".to_string()];
        let ok = [
            param(vec![1.0, 2.0], vec![3.0, 0.0]),
            param(vec![0.5], vec![4.0]),
        ];
        // Norm 5: untouched without clipping, scaled to norm 1 with it.
        assert_eq!(gradient_problem(&names, &ok, 0.0).unwrap(), None);
        assert_eq!(ok[1].grad().unwrap().to_f64_vec().unwrap(), [4.0]);
        assert_eq!(gradient_problem(&names, &ok, 1.0).unwrap(), None);
        let g = ok[1].grad().unwrap().to_f64_vec().unwrap()[0];
        assert!((g - 0.8).abs() < 1e-5, "{g}");
        let bad = [
            param(vec![1.0], vec![1.0]),
            param(vec![1.0, 2.0], vec![0.0, f32::NAN]),
        ];
        assert_eq!(
            gradient_problem(&names, &bad, 1.0).unwrap().as_deref(),
            Some("the gradient of b is not finite")
        );
        assert_eq!(
            bad[0].grad().unwrap().to_f64_vec().unwrap(),
            [1.0],
            "no clipping"
        );
    }

    #[test]
    fn too_many_bad_steps_in_a_row_stop_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path(), Some(&dir.path().join("r")), "t", "tiny").unwrap();
        let mut cfg = RunConfig::preset("tiny").unwrap();
        cfg.train.max_bad_steps = 2;
        let mut bad = BadSteps::default();
        bad.skip(0, "x", &cfg, &run, Output::Quiet).unwrap();
        bad.skip(1, "x", &cfg, &run, Output::Quiet).unwrap();
        bad.ok();
        bad.skip(3, "x", &cfg, &run, Output::Quiet).unwrap();
        bad.skip(4, "x", &cfg, &run, Output::Quiet).unwrap();
        let err = bad.skip(5, "loss term ce is NaN", &cfg, &run, Output::Quiet);
        let err = err.unwrap_err().to_string();
        assert!(
            err.contains("3 steps in a row") && err.contains("ce is NaN"),
            "{err}"
        );
        assert_eq!(bad.skipped, 5);
    }

    #[test]
    fn metrics_lines_hold_every_field() {
        let losses = [("ce".to_string(), 2.5)];
        let v = metrics_record(7, 1, 1e-3, &losses, 2.5, 10.0, 3.0);
        assert_eq!(
            v.to_string(),
            r#"{"epoch":1,"loss":{"ce":2.5},"lr":0.001,"samples_per_s":10.0,"seconds":3.0,"step":7,"total":2.5}"#
        );
    }
}
