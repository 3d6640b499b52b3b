//! Supervised training and fine-tuning (`trainer::supervised`) on the tiny synthetic dataset:
//! the loss falls and the classifier learns, the label fraction selects the stratified subset,
//! fine-tuning starts from the pre-trained weights (and refuses another preset's), and a
//! resumed run equals the uninterrupted one bit for bit.

use models::data::synthetic::{write_dataset, SynthConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;
use trainer::config::RunConfig;
use trainer::data::split_indices;
use trainer::eval::{dataset_labels, dropout_scenarios, label_subset, Scenario};
use trainer::pretrain::{pretrain, Ending};
use trainer::progress::Output;
use trainer::run_dir::RunDir;
use trainer::supervised::{classifier_accuracy, classifier_top1, train_supervised, Supervised};

/// The tiny synthetic dataset, generated once.
fn dataset_dir() -> &'static Path {
    static DATA: OnceLock<tempfile::TempDir> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SynthConfig::preset("tiny").unwrap();
        write_dataset(&cfg, &dir.path().join("tiny"), false, |_, _| {}).unwrap();
        dir
    })
    .path()
}

/// The tiny preset on 32 training and 32 test samples, batches of 8 (4 steps an epoch), on
/// the CPU, a metrics line every step.
fn config(epochs: usize, fusion: &str) -> RunConfig {
    let mut cfg = RunConfig::preset("tiny").unwrap();
    cfg.data.dir = dataset_dir().join("tiny").display().to_string();
    cfg.data.max_train = 32;
    cfg.data.max_test = 32;
    cfg.data.threads = 1;
    cfg.train.batch_size = 8;
    cfg.train.epochs = epochs;
    cfg.train.log_every = 1;
    cfg.device = "cpu".into();
    cfg.model.fusion = fusion.into();
    cfg.validate().unwrap();
    cfg
}

fn new_run(base: &Path, name: &str, cfg: &RunConfig) -> RunDir {
    let run = RunDir::create(base, Some(&base.join(name)), "supervised", "tiny").unwrap();
    run.save_config(cfg).unwrap();
    run
}

fn train(
    cfg: &RunConfig,
    run: &RunDir,
    init: Option<&Path>,
    fraction: f64,
    resume: bool,
    stop: bool,
) -> Supervised {
    train_supervised(
        cfg,
        run,
        init,
        fraction,
        resume,
        Output::Quiet,
        &AtomicBool::new(stop),
    )
    .unwrap()
}

/// step -> the "ce" loss of a run's metrics.jsonl (the last line of each step wins: a resumed
/// run repeats the steps after its checkpoint).
fn ce_losses(run: &RunDir) -> BTreeMap<u64, f64> {
    std::fs::read_to_string(run.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["loss"]["ce"], v["total"], "{l}");
            for key in ["epoch", "lr", "samples_per_s", "seconds"] {
                assert!(v[key].is_number(), "{key} in {l}");
            }
            (v["step"].as_u64().unwrap(), v["total"].as_f64().unwrap())
        })
        .collect()
}

fn param(model: &models::rcmcl::Rcmcl, name: &str) -> Vec<f64> {
    model.store().get(name).unwrap().to_f64_vec().unwrap()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn the_supervised_baseline_learns_and_is_scored_per_scenario() {
    let work = tempfile::tempdir().unwrap();
    let cfg = config(8, "average");
    let run = new_run(work.path(), "baseline", &cfg);
    let s = train(&cfg, &run, None, 1.0, false, false);
    let o = &s.outcome;
    assert_eq!(o.ending, Ending::Finished);
    assert_eq!((o.steps, o.total_steps, o.steps_per_epoch), (32, 32, 4));
    assert_eq!((o.train_samples, o.skipped), (32, 0));
    assert!(o.samples_per_s > 0.0 && o.device == "cpu");
    assert!(run.checkpoint_path().is_file());
    let losses = ce_losses(&run);
    assert_eq!(
        losses.keys().copied().collect::<Vec<_>>(),
        (1..=32).collect::<Vec<_>>()
    );
    let first: f64 = (1..=4).map(|k| losses[&k]).sum::<f64>() / 4.0;
    let last: f64 = (29..=32).map(|k| losses[&k]).sum::<f64>() / 4.0;
    assert!(
        (last - o.final_loss).abs() < 1e-12,
        "{last} vs {}",
        o.final_loss
    );
    // 32 classes: chance is ln 32 = 3.47 nats and 3.1 % accuracy.
    assert!(first > 3.0, "first epoch CE {first}");
    assert!(last < 0.8 * first, "CE fell from {first} to only {last}");
    let (train_idx, _) = split_indices(&s.dataset, &cfg.data).unwrap();
    let train_acc = classifier_top1(
        &s.model,
        &s.dataset,
        &cfg,
        &train_idx,
        &Scenario::clean(),
        s.device,
        Output::Quiet,
    )
    .unwrap();
    eprintln!("baseline: CE {first:.3} -> {last:.3}, train Top-1 {train_acc:.1} %");
    assert!(train_acc > 3.0 * 100.0 / 32.0, "train Top-1 {train_acc}");
    assert!(
        s.model.store().is_training(),
        "the training flag is restored"
    );

    let scenarios = dropout_scenarios();
    let acc = classifier_accuracy(
        &s.model,
        &s.dataset,
        &cfg,
        "xsub",
        &scenarios,
        s.device,
        Output::Quiet,
    )
    .unwrap();
    let names: Vec<&str> = acc.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["all", "R missing", "S missing", "P missing", "R&P missing"]
    );
    for (n, a) in &acc {
        assert!((0.0..=100.0).contains(a), "{n}: {a}");
        // 32 test samples: every accuracy is a multiple of 1/32.
        assert!(
            ((a * 32.0 / 100.0) - (a * 32.0 / 100.0).round()).abs() < 1e-9,
            "{n}: {a}"
        );
    }
    eprintln!("baseline test Top-1 per scenario: {acc:?}");
    let xview = classifier_accuracy(
        &s.model,
        &s.dataset,
        &cfg,
        "xview",
        &scenarios[..1],
        s.device,
        Output::Quiet,
    )
    .unwrap();
    assert_eq!(xview.len(), 1);
    assert!(classifier_accuracy(
        &s.model,
        &s.dataset,
        &cfg,
        "nope",
        &scenarios,
        s.device,
        Output::Quiet
    )
    .is_err());
}

#[test]
fn a_label_fraction_trains_on_the_stratified_subset() {
    let work = tempfile::tempdir().unwrap();
    let mut cfg = config(1, "average");
    // All 192 training samples of the tiny split: 6 per class.
    cfg.data.max_train = 0;
    let run = new_run(work.path(), "quarter", &cfg);
    let s = train(&cfg, &run, None, 0.25, false, false);
    let (train_idx, _) = split_indices(&s.dataset, &cfg.data).unwrap();
    assert_eq!(train_idx.len(), 192);
    let labels = dataset_labels(&s.dataset, &train_idx).unwrap();
    let subset = label_subset(&train_idx, &labels, 0.25, cfg.seed);
    // round(0.25 * 6) = 2 of each of the 32 classes.
    assert_eq!(subset.len(), 64);
    assert_eq!(s.outcome.train_samples, 64);
    assert_eq!(s.outcome.steps_per_epoch, 8);
    assert_eq!(s.outcome.steps, 8);
    for fraction in [0.0, -0.5, 1.5, f64::NAN] {
        let run = RunDir::create(work.path(), None, "supervised", "tiny").unwrap();
        let err = train_supervised(
            &cfg,
            &run,
            None,
            fraction,
            false,
            Output::Quiet,
            &AtomicBool::new(false),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("label fraction"), "{err}");
    }
}

#[test]
fn fine_tuning_starts_from_the_pretrained_model_and_refuses_another_preset() {
    let work = tempfile::tempdir().unwrap();
    let cfg = config(1, "amg");
    // Pre-trained from another seed than the fine-tuning's: a fresh model of the fine-tuning's
    // seed is far from the pre-trained weights.
    let mut pre_cfg = cfg.clone();
    pre_cfg.seed = 7;
    let pre_run = RunDir::create(
        work.path(),
        Some(&work.path().join("pre")),
        "pretrain",
        "tiny",
    )
    .unwrap();
    let pre = pretrain(
        &pre_cfg,
        &pre_run,
        false,
        Output::Quiet,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(pre.outcome.ending, Ending::Finished);
    let ck = pre_run.checkpoint_path();
    let pm = pre.pretrainer.model();
    // The skeleton encoder's largest weight (randomly initialised, unlike batch-norm scales).
    let enc = pm
        .store()
        .params()
        .into_iter()
        .filter(|(n, _)| n.starts_with("encoder.skeleton."))
        .max_by_key(|(_, t)| t.numel())
        .unwrap()
        .0;
    let head = pm
        .store()
        .params()
        .into_iter()
        .map(|(n, _)| n)
        .find(|n| n.starts_with("decoder."))
        .unwrap();
    let (pre_enc, pre_head) = (param(pm, &enc), param(pm, &head));

    // One fine-tuning step (stop is set: the run ends after its first step).
    let run = new_run(work.path(), "ft", &cfg);
    let ft = train(&cfg, &run, Some(&ck), 0.5, false, true);
    assert_eq!(ft.outcome.ending, Ending::Interrupted);
    assert_eq!(ft.outcome.steps, 1);
    // The decoder gets no gradient from the cross-entropy: it is the pre-trained one exactly.
    assert_eq!(param(&ft.model, &head), pre_head, "{head}");
    // The encoder moved by one AdamW step (at most about lr per weight) from the pre-trained
    // weights, far less than a fresh model differs from them.
    let moved = max_abs_diff(&param(&ft.model, &enc), &pre_enc);
    assert!(
        moved > 0.0 && moved <= 1.5 * cfg.train.lr,
        "{enc} moved {moved}"
    );
    let fresh_run = new_run(work.path(), "fresh", &cfg);
    let fresh = train(&cfg, &fresh_run, None, 0.5, false, true);
    let fresh_gap = max_abs_diff(&param(&fresh.model, &enc), &pre_enc);
    assert!(
        fresh_gap > 10.0 * moved,
        "fresh {fresh_gap} vs fine-tuned {moved}"
    );

    // Another preset, a file that is no checkpoint, a missing file: clear errors.
    let fail = |cfg: &RunConfig, init: &Path| {
        let run = RunDir::create(work.path(), None, "finetune", "tiny").unwrap();
        train_supervised(
            cfg,
            &run,
            Some(init),
            1.0,
            false,
            Output::Quiet,
            &AtomicBool::new(true),
        )
        .err()
        .expect("an error")
        .to_string()
    };
    let mut small = cfg.clone();
    small.model.preset = "small".into();
    let err = fail(&small, &ck);
    assert!(
        err.contains("`tiny` model") && err.contains("`small` model"),
        "{err}"
    );
    // An average-fusion model has no gate for the AMG checkpoint's to fill: that loads (the
    // gate is left out); the other way round the gate's weights are missing.
    let avg_run = new_run(work.path(), "avg", &config(1, "average"));
    let avg = train(&config(1, "average"), &avg_run, Some(&ck), 1.0, false, true);
    assert_eq!(param(&avg.model, &head), pre_head);
    let err = fail(&cfg, &avg_run.checkpoint_path());
    assert!(err.contains("does not fit this model"), "{err}");
    let err = fail(&cfg, &pre_run.config_path());
    assert!(err.contains("config.toml"), "{err}");
    let err = fail(&cfg, &work.path().join("missing.safetensors"));
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn a_resumed_run_equals_the_uninterrupted_one() {
    let work = tempfile::tempdir().unwrap();
    let cfg = config(3, "amg");
    let whole_run = new_run(work.path(), "whole", &cfg);
    let whole = train(&cfg, &whole_run, None, 1.0, false, false);
    assert_eq!(whole.outcome.steps, 12);

    let run = new_run(work.path(), "parts", &cfg);
    let first = train(&cfg, &run, None, 1.0, false, true);
    assert_eq!(first.outcome.ending, Ending::Interrupted);
    assert_eq!(first.outcome.steps, 1);
    drop(first);
    let rest = train(&cfg, &run, None, 1.0, true, false);
    assert_eq!(rest.outcome.ending, Ending::Finished);
    assert_eq!(rest.outcome.steps, 12);
    assert_eq!(
        rest.outcome.final_loss.to_bits(),
        whole.outcome.final_loss.to_bits(),
        "final loss: resumed {} vs uninterrupted {}",
        rest.outcome.final_loss,
        whole.outcome.final_loss
    );
    let (a, b) = (ce_losses(&whole_run), ce_losses(&run));
    assert_eq!(a.len(), 12);
    for (step, want) in &a {
        assert_eq!(
            b[step].to_bits(),
            want.to_bits(),
            "step {step}: {} vs {want}",
            b[step]
        );
    }
    for (name, t) in whole.model.store().state_tensors() {
        let other = rest
            .model
            .store()
            .state_tensors()
            .into_iter()
            .find(|(n, _)| n == &name)
            .unwrap()
            .1;
        assert_eq!(
            t.to_f64_vec().unwrap(),
            other.to_f64_vec().unwrap(),
            "{name}"
        );
    }

    // Resuming with another label fraction, or a pre-training run's checkpoint, is refused.
    let err = train_supervised(
        &cfg,
        &run,
        None,
        0.5,
        true,
        Output::Quiet,
        &AtomicBool::new(false),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("label fraction 1"), "{err}");
    let pre_run = RunDir::create(
        work.path(),
        Some(&work.path().join("pre")),
        "pretrain",
        "tiny",
    )
    .unwrap();
    let mut one = config(1, "amg");
    one.data.max_train = 16;
    pretrain(&one, &pre_run, false, Output::Quiet, &AtomicBool::new(true)).unwrap();
    let err = train_supervised(
        &one,
        &pre_run,
        None,
        1.0,
        true,
        Output::Quiet,
        &AtomicBool::new(false),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("not written by a supervised"), "{err}");
}
