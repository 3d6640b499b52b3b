//! The commands behind the CLI: each runs, writes its run directory's report and returns what
//! the user sees at the end.

use crate::config::RunConfig;
use crate::data;
use crate::error::{TrainerError, TrainerResult};
use crate::eval::{applicable, dropout_scenarios, Scenario};
use crate::evaluate::{evaluate, Evaluation};
use crate::pretrain::{pretrain as pretrain_loop, Ending, PretrainOutcome};
use crate::progress::Output;
use crate::run_dir::RunDir;
use models::data::degrade::Sensor;
use models::data::format::Dataset;
use models::data::ntu::{import_dir, NtuImportConfig, NtuVersion};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

/// `trainer import-ntu`: a thin wrapper over the NTU importer; returns a summary line.
pub fn import_ntu(
    skeletons: &Path,
    depth: Option<PathBuf>,
    version: u32,
    out: &Path,
    frames: usize,
    replace: bool,
) -> TrainerResult<String> {
    let version = match version {
        60 => NtuVersion::Ntu60,
        120 => NtuVersion::Ntu120,
        v => {
            return Err(TrainerError::Config(format!(
                "--version must be 60 or 120, got {v}"
            )))
        }
    };
    let mut cfg = NtuImportConfig::new(version, skeletons);
    cfg.depth_dir = depth;
    cfg.frames = frames;
    cfg.replace = replace;
    let report = import_dir(&cfg, out)?;
    let mut s = format!(
        "imported {} samples into {} ({} skipped as listed missing, {} from another release, {} failed)",
        report.imported,
        out.display(),
        report.skipped_missing.len(),
        report.skipped_other_release.len(),
        report.failures.len()
    );
    for f in report.failures.iter().take(10) {
        s.push_str(&format!("\n  {f:?}"));
    }
    Ok(s)
}

/// Paper 000 Table II's sensor-dropout conditions that apply to the sensors of `ds`.
fn dropout_scenarios_for(ds: &Dataset) -> Vec<Scenario> {
    applicable(dropout_scenarios(), &data::sensors(ds))
}

/// `trainer pretrain`: the loop, then the report.
pub fn pretrain(
    cfg: &RunConfig,
    run: &RunDir,
    resume: bool,
    out: Output,
    stop: &AtomicBool,
) -> TrainerResult<ExitCode> {
    let trained = pretrain_loop(cfg, run, resume, out, stop)?;
    let outcome = trained.outcome;
    let mut report = pretrain_report(cfg, run, &outcome);
    if out != Output::Json {
        out.say(&summary(run, &outcome));
    }
    let mut eval = None;
    if outcome.ending == Ending::Finished {
        out.say("evaluating: linear probe on the frozen model, then sensor dropout");
        let model = trained.pretrainer.model();
        let (e, _) = evaluate(
            model,
            &trained.dataset,
            cfg,
            &cfg.data.split,
            &dropout_scenarios_for(&trained.dataset),
            trained.device,
            out,
        )?;
        report.push_str("\n## Quick evaluation\n\n");
        report.push_str(&e.markdown());
        eval = Some(e);
    }
    run.write_report(&report)?;
    if out == Output::Json {
        let losses: serde_json::Map<String, serde_json::Value> = outcome
            .final_losses
            .iter()
            .map(|(n, v)| (n.clone(), serde_json::json!(v)))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "run_dir": run.path(),
                "finished": outcome.ending == Ending::Finished,
                "steps": outcome.steps,
                "total_steps": outcome.total_steps,
                "skipped_steps": outcome.skipped,
                "final_losses": losses,
                "samples_per_s": outcome.samples_per_s,
                "seconds": outcome.seconds,
                "device": outcome.device,
                "evaluation": eval.as_ref().map(Evaluation::to_json),
            })
        );
    } else {
        if let Some(e) = &eval {
            out.say(&format!("\n{}", e.markdown()));
        }
    }
    Ok(match outcome.ending {
        Ending::Finished => ExitCode::SUCCESS,
        Ending::Interrupted => ExitCode::from(130),
    })
}

fn summary(run: &RunDir, o: &PretrainOutcome) -> String {
    let mut s = String::new();
    match o.ending {
        Ending::Finished => s.push_str(&format!(
            "pre-training finished: {} steps in {:.0} s ({:.1} samples/s on {})\n",
            o.steps, o.seconds, o.samples_per_s, o.device
        )),
        Ending::Interrupted => s.push_str(&format!(
            "interrupted at step {} of {}; checkpoint saved. Continue with:\n  trainer pretrain --resume {}\n",
            o.steps,
            o.total_steps,
            run.path().display()
        )),
    }
    if !o.final_losses.is_empty() {
        let terms: Vec<String> = o
            .final_losses
            .iter()
            .map(|(n, v)| format!("{n} {v:.4}"))
            .collect();
        s.push_str(&format!("last-epoch mean losses: {}\n", terms.join(", ")));
    }
    if o.skipped > 0 {
        s.push_str(&format!(
            "{} steps were skipped for non-finite values\n",
            o.skipped
        ));
    }
    s.push_str(&format!(
        "run directory: {} (report.md, metrics.jsonl, checkpoints/)",
        run.path().display()
    ));
    s
}

fn pretrain_report(cfg: &RunConfig, run: &RunDir, o: &PretrainOutcome) -> String {
    let mut r = format!(
        "# Pre-training report\n\nRun directory: `{}`\n\n| setting | value |\n|---|---|\n| preset | {} |\n| model | {} ({} parameters, fusion {}) |\n| device | {} |\n| steps | {} of {} ({} per epoch, batch {}) |\n| skipped steps | {} |\n| time | {:.0} s ({:.1} samples/s) |\n",
        run.path().display(),
        cfg.preset,
        cfg.model.preset,
        o.num_params,
        cfg.model.fusion,
        o.device,
        o.steps,
        o.total_steps,
        o.steps_per_epoch,
        cfg.train.batch_size,
        o.skipped,
        o.seconds,
        o.samples_per_s
    );
    if !o.final_losses.is_empty() {
        r.push_str(
            "\n## Losses (mean over the last epoch, unweighted)\n\n| term | value |\n|---|---|\n",
        );
        for (n, v) in &o.final_losses {
            r.push_str(&format!("| {n} | {v:.4} |\n"));
        }
    }
    r.push_str("\nThe resolved configuration is in `config.toml`; every logged step is in `metrics.jsonl`.\n");
    r
}

/// A trained run loaded back: its configuration, model (with the checkpoint's weights),
/// dataset and device.
pub struct Loaded {
    pub config: RunConfig,
    pub model: models::rcmcl::Rcmcl,
    pub dataset: std::sync::Arc<models::data::format::Dataset>,
    pub device: engine::Device,
}

/// Loads the model of the run in `dir` from its last checkpoint (on `device`, or the run's).
pub fn load_run(dir: &Path, device: Option<&str>, out: Output) -> TrainerResult<Loaded> {
    let run = RunDir::open(dir)?;
    let config = run.load_config_on(device)?;
    let device = crate::device::resolve_device(&config.device)?;
    let dataset = crate::data::open_dataset(&config.data, out)?;
    let shape = crate::data::data_shape(&dataset)?;
    let model = crate::setup::build_model(&config, shape, device)?;
    crate::checkpoint::load(
        &run.checkpoint_path(),
        model.store(),
        None,
        None,
        &config.model.preset,
    )?;
    Ok(Loaded {
        config,
        model,
        dataset,
        device,
    })
}

/// `trainer probe`: the frozen model of a run, probed on each split (linear probe on
/// Z_fusion and on each sensor, kNN), reported in a new run directory.
pub fn probe(
    source: &Path,
    splits: &[String],
    device: Option<&str>,
    runs_dir: &Path,
    out: Output,
) -> TrainerResult<ExitCode> {
    let loaded = load_run(source, device, out)?;
    let run = RunDir::create(runs_dir, None, "probe", &loaded.config.preset)?;
    run.save_config(&loaded.config)?;
    let mut report = format!(
        "# Linear probe\n\nModel: `{}` (last checkpoint), frozen encoders and gate; a linear classifier on Z_fusion and on each sensor's Z_M, trained on the split's training part, Top-1 on its test part; kNN (cosine, k = {}) as a second protocol.\n\n",
        source.display(),
        crate::eval::KNN_DEFAULT_K
    );
    let mut results = Vec::new();
    for split in splits {
        out.say(&format!("probing on split {split}"));
        let (e, _) = evaluate(
            &loaded.model,
            &loaded.dataset,
            &loaded.config,
            split,
            &[],
            loaded.device,
            out,
        )?;
        report.push_str(&e.markdown());
        report.push('\n');
        if out != Output::Json {
            out.say(&e.markdown());
        }
        results.push(e.to_json());
    }
    run.write_report(&report)?;
    if out == Output::Json {
        println!(
            "{}",
            serde_json::json!({ "run_dir": run.path(), "source": source, "splits": results })
        );
    } else {
        out.say(&format!("report: {}", run.report_path().display()));
    }
    Ok(ExitCode::SUCCESS)
}

/// What a supervised or fine-tuning run was started with (kept in the run directory as
/// `command.json`, so `--resume` continues the same run).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SupervisedStart {
    /// The checkpoint the model started from (fine-tuning), if any.
    pub init: Option<PathBuf>,
    /// The labelled fraction of the training split, in (0, 1].
    pub label_fraction: f64,
}

impl SupervisedStart {
    fn path(run: &RunDir) -> PathBuf {
        run.path().join("command.json")
    }

    pub fn save(&self, run: &RunDir) -> TrainerResult<()> {
        let text = serde_json::to_string_pretty(self).expect("serialisable");
        crate::run_dir::write_atomically(&Self::path(run), text.as_bytes())
    }

    pub fn load(run: &RunDir) -> TrainerResult<SupervisedStart> {
        let p = Self::path(run);
        let text = std::fs::read_to_string(&p).map_err(|e| TrainerError::io(&p, e))?;
        serde_json::from_str(&text).map_err(|e| TrainerError::io(&p, e))
    }
}

/// `trainer supervised` (labels only, from scratch) and `trainer finetune` (from a
/// pre-trained checkpoint): the training, then the classifier's accuracy under sensor dropout.
pub fn supervised(
    cfg: &RunConfig,
    run: &RunDir,
    start: &SupervisedStart,
    resume: bool,
    out: Output,
    stop: &AtomicBool,
) -> TrainerResult<ExitCode> {
    let what = if start.init.is_some() {
        "Fine-tuning"
    } else {
        "Supervised training"
    };
    let trained = crate::supervised::train_supervised(
        cfg,
        run,
        start.init.as_deref(),
        start.label_fraction,
        resume,
        out,
        stop,
    )?;
    let o = &trained.outcome;
    let mut report = format!(
        "# {what} report\n\nRun directory: `{}`\n\n| setting | value |\n|---|---|\n| preset | {} |\n| model | {} ({} parameters, fusion {}) |\n| started from | {} |\n| labelled fraction | {:.0} % ({} samples) |\n| device | {} |\n| steps | {} of {} (batch {}) |\n| skipped steps | {} |\n| time | {:.0} s ({:.1} samples/s) |\n| last-epoch mean cross-entropy | {:.4} |\n",
        run.path().display(),
        cfg.preset,
        cfg.model.preset,
        o.num_params,
        cfg.model.fusion,
        start
            .init
            .as_ref()
            .map(|p| format!("`{}`", p.display()))
            .unwrap_or_else(|| "random initialisation".into()),
        100.0 * start.label_fraction,
        o.train_samples,
        o.device,
        o.steps,
        o.total_steps,
        cfg.train.batch_size,
        o.skipped,
        o.seconds,
        o.samples_per_s,
        o.final_loss
    );
    let mut acc = Vec::new();
    if o.ending == Ending::Finished {
        acc = crate::supervised::classifier_accuracy(
            &trained.model,
            &trained.dataset,
            cfg,
            &cfg.data.split,
            &dropout_scenarios_for(&trained.dataset),
            trained.device,
            out,
        )?;
        report.push_str(&format!(
            "\n## Test accuracy of the classifier (split `{}`)\n\n| condition | Top-1 (%) | RDP (%) |\n|---|---|---|\n",
            cfg.data.split
        ));
        let clean = acc.first().map(|a| a.1).unwrap_or(f64::NAN);
        for (n, a) in &acc {
            report.push_str(&format!(
                "| {n} | {a:.1} | {:.1} |\n",
                crate::eval::rdp(clean, *a)
            ));
        }
    }
    run.write_report(&report)?;
    if out == Output::Json {
        println!(
            "{}",
            serde_json::json!({
                "run_dir": run.path(),
                "finished": o.ending == Ending::Finished,
                "steps": o.steps,
                "final_loss": o.final_loss,
                "accuracy": acc.iter().map(|(n, a)| serde_json::json!({"name": n, "top1": a})).collect::<Vec<_>>(),
            })
        );
    } else {
        out.say(&format!(
            "{what}: {} steps in {:.0} s; last-epoch cross-entropy {:.4}",
            o.steps, o.seconds, o.final_loss
        ));
        for (n, a) in &acc {
            out.say(&format!("  {n}: {a:.1} %"));
        }
        out.say(&format!("report: {}", run.report_path().display()));
    }
    Ok(match o.ending {
        Ending::Finished => ExitCode::SUCCESS,
        Ending::Interrupted => ExitCode::from(130),
    })
}

/// `trainer robustness`: the frozen model of a run (linear probe) under sensor dropout (paper
/// 000 Table II) and corruption (Table III), with RDP, and RGS against a supervised baseline
/// run's classifier when one is given.
pub fn robustness(
    source: &Path,
    baseline: Option<&Path>,
    device: Option<&str>,
    runs_dir: &Path,
    out: Output,
) -> TrainerResult<ExitCode> {
    use crate::eval::{average_rdp, corruption_scenarios, rgs};
    let ours = load_run(source, device, out)?;
    let cfg = &ours.config;
    let split = cfg.data.split.clone();
    let run = RunDir::create(runs_dir, None, "robustness", &cfg.preset)?;
    run.save_config(cfg)?;
    let sensors = data::sensors(&ours.dataset);
    let dropout = applicable(dropout_scenarios(), &sensors);
    let corruption = applicable(corruption_scenarios(), &sensors);
    let all: Vec<_> = dropout.iter().chain(&corruption).cloned().collect();
    out.say("probing the model, then scoring it under every condition");
    let (e, _) = evaluate(
        &ours.model,
        &ours.dataset,
        cfg,
        &split,
        &all,
        ours.device,
        out,
    )?;
    let ours_acc: Vec<(String, f64)> = e
        .scenarios
        .iter()
        .map(|r| (r.name.clone(), r.top1))
        .collect();
    let base_acc = match baseline {
        Some(b) => {
            out.say("scoring the baseline's classifier under every condition");
            let lb = load_run(b, device, out)?;
            Some(crate::supervised::classifier_accuracy(
                &lb.model,
                &lb.dataset,
                &lb.config,
                &split,
                &all,
                lb.device,
                out,
            )?)
        }
        None => None,
    };
    let nd = dropout.len();
    let mut rows = vec![(
        format!("RCMCL probe (`{}`)", source.display()),
        ours_acc.clone(),
    )];
    if let (Some(b), Some(path)) = (&base_acc, baseline) {
        rows.push((
            format!("supervised baseline (`{}`)", path.display()),
            b.clone(),
        ));
    }
    let mut r = format!(
        "# Robustness\n\nSplit `{split}`. Our model: a linear probe on the frozen Z_fusion, trained on clean data. The baseline: its own classifier. RDP = 100 (clean - degraded) / clean; RGS = 100 (ours - baseline) / baseline (docs/method.md).\n\n## Sensor dropout (Table II)\n\n| model |"
    );
    for s in &dropout {
        r.push_str(&format!(" {} |", s.name));
    }
    r.push_str(" RDP R&P missing (%) |\n|---|");
    r.push_str(&"---|".repeat(nd + 1));
    r.push('\n');
    for (name, acc) in &rows {
        r.push_str(&format!("| {name} |"));
        for (_, a) in &acc[..nd] {
            r.push_str(&format!(" {a:.1} |"));
        }
        let rp = acc
            .iter()
            .find(|(n, _)| n == "R&P missing")
            .map(|(_, a)| crate::eval::rdp(acc[0].1, *a))
            .unwrap_or(f64::NAN);
        r.push_str(&format!(" {rp:.1} |\n"));
    }
    if let Some(b) = &base_acc {
        r.push_str("| RGS (%) |");
        for i in 0..nd {
            r.push_str(&format!(" {:.1} |", rgs(ours_acc[i].1, b[i].1)));
        }
        r.push_str(" |\n");
    }
    r.push_str("\n## Corruption (Table III)\n\n| model |");
    for s in &corruption {
        r.push_str(&format!(" {} |", s.name));
    }
    r.push_str(" average RDP (%) |\n|---|");
    r.push_str(&"---|".repeat(corruption.len() + 1));
    r.push('\n');
    for (name, acc) in &rows {
        r.push_str(&format!("| {name} |"));
        for (_, a) in &acc[nd..] {
            r.push_str(&format!(" {a:.1} |"));
        }
        let degraded: Vec<f64> = acc[nd..].iter().map(|(_, a)| *a).collect();
        r.push_str(&format!(" {:.1} |\n", average_rdp(acc[0].1, &degraded)));
    }
    // Fig. 4: accuracy against noise and sparsity, the clean accuracy at 0.
    // Noise in metres; sparsity as the fraction of points dropped.
    let series = |prefix: &str, scale: f64| -> Vec<crate::figures::Series> {
        rows.iter()
            .enumerate()
            .map(|(i, (_, acc))| {
                // Short legend names; the report's tables carry the run paths.
                let name = if i == 0 {
                    "RCMCL (linear probe)"
                } else {
                    "supervised baseline"
                };
                let mut pts = vec![(0.0, acc[0].1)];
                for (n, a) in &acc[nd..] {
                    if let Some(x) = n.strip_prefix(prefix) {
                        let x: f64 = x.trim_end_matches('%').trim().parse().unwrap_or(f64::NAN);
                        pts.push((x * scale, *a));
                    }
                }
                (name.to_string(), pts)
            })
            .collect()
    };
    crate::figures::corruption_figures(&series("SJN ", 1.0), &series("PCS ", 0.01), run.path())?;
    r.push_str("\n![accuracy against joint noise](noise.png) ![accuracy against point sparsity](sparsity.png)\n");
    run.write_report(&r)?;
    if out == Output::Json {
        let table = |acc: &[(String, f64)]| {
            acc.iter()
                .map(|(n, a)| serde_json::json!({"name": n, "top1": a}))
                .collect::<Vec<_>>()
        };
        println!(
            "{}",
            serde_json::json!({
                "run_dir": run.path(),
                "ours": table(&ours_acc),
                "baseline": base_acc.as_deref().map(table),
            })
        );
    } else {
        out.say(&r);
    }
    Ok(ExitCode::SUCCESS)
}

/// `trainer embed`: the test split's features and unified-space embeddings of a run's model
/// as .npy files.
pub fn embed(
    source: &Path,
    dir: Option<&Path>,
    device: Option<&str>,
    out: Output,
) -> TrainerResult<ExitCode> {
    let loaded = load_run(source, device, out)?;
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| source.join("embeddings"));
    let files = crate::figures::embed(
        &loaded.model,
        &loaded.dataset,
        &loaded.config,
        loaded.device,
        &dir,
        out,
    )?;
    finish_files(&files, out);
    Ok(ExitCode::SUCCESS)
}

/// Which figures `trainer plot` draws.
#[derive(Clone, Debug)]
pub struct PlotRequest {
    pub tsne: bool,
    pub gates: bool,
    pub losses: bool,
    /// Test samples in the t-SNE.
    pub tsne_samples: usize,
    /// The sensor that fails in the gate figure, and the frame it fails from.
    pub drop: Sensor,
    pub from: Option<usize>,
}

/// `trainer plot`: the figures of a run (t-SNE of the unified embedding, gate values over
/// time with a sensor failing mid-sequence, loss curves) into `<run>/figures/`.
pub fn plot(
    source: &Path,
    req: &PlotRequest,
    device: Option<&str>,
    out: Output,
) -> TrainerResult<ExitCode> {
    let dir = source.join("figures");
    let mut files = Vec::new();
    if req.losses {
        files.extend(crate::figures::loss_curves(source, &dir)?);
    }
    if req.tsne || req.gates {
        let l = load_run(source, device, out)?;
        if req.tsne {
            files.extend(crate::figures::tsne_figure(
                &l.model,
                &l.dataset,
                &l.config,
                l.device,
                req.tsne_samples,
                &dir,
                out,
            )?);
        }
        if req.gates {
            let frames = crate::data::data_shape(&l.dataset)?.frames;
            let from = req.from.unwrap_or(frames / 2);
            files.extend(crate::figures::gates_figure(
                &l.model, &l.dataset, &l.config, l.device, req.drop, from, 16, &dir, out,
            )?);
        }
    }
    finish_files(&files, out);
    Ok(ExitCode::SUCCESS)
}

fn finish_files(files: &[PathBuf], out: Output) {
    if out == Output::Json {
        println!("{}", serde_json::json!({ "files": files }));
    } else {
        for f in files {
            out.say(&format!("wrote {}", f.display()));
        }
    }
}

/// One row of the ablation table.
#[derive(Clone, Debug)]
pub struct AblationRow {
    pub id: usize,
    pub title: String,
    pub ablation: models::ablation::Ablation,
    /// Clean Top-1 (%): the probe on Z_fusion (the best single sensor's probe for
    /// configuration 2; the classifier for configuration 1).
    pub clean: f64,
    /// Top-1 with RGB-D and points missing (None for configuration 2, which has no fusion).
    pub rp_missing: Option<f64>,
}

/// `trainer ablation`: trains and evaluates configurations of paper 000 Table IV with the
/// settings of `cfg` (each in its own sub-directory of `run`), then writes the table.
pub fn ablation(
    cfg: &RunConfig,
    run: &RunDir,
    ids: &[usize],
    out: Output,
    stop: &AtomicBool,
) -> TrainerResult<ExitCode> {
    use models::ablation::{Ablation, Training};
    use models::rcmcl::FusionKind;
    let scenarios: Vec<_> = dropout_scenarios_for(&*data::open_dataset(&cfg.data, out)?)
        .into_iter()
        .filter(|s| s.degrade.is_none() || s.name == "R&P missing")
        .collect();
    let mut rows = Vec::new();
    for a in Ablation::all().into_iter().filter(|a| ids.contains(&a.id)) {
        out.say(&format!("configuration {}: {}", a.id, a.title));
        let mut sets = vec![
            format!("objective.cm={}", a.weights.cm),
            format!("objective.im={}", a.weights.im),
            format!("objective.deg={}", a.weights.deg),
            format!("objective.fusion={}", a.weights.fusion),
        ];
        match a.fusion {
            Some(FusionKind::Average) => sets.push("model.fusion=average".into()),
            Some(FusionKind::Amg { shared: false }) => sets.push("model.fusion=amg".into()),
            Some(FusionKind::Amg { shared: true }) => sets.push("model.fusion=amg-shared".into()),
            None => {}
        }
        let sub_cfg = cfg.with_sets(&sets)?;
        let sub = RunDir::create(
            run.path(),
            Some(&run.path().join(format!("config{}-{}", a.id, a.name))),
            "ablation",
            &cfg.preset,
        )?;
        sub.save_config(&sub_cfg)?;
        let (clean, rp) = match a.training {
            Training::Supervised => {
                let start = SupervisedStart {
                    init: None,
                    label_fraction: 1.0,
                };
                start.save(&sub)?;
                let t = crate::supervised::train_supervised(
                    &sub_cfg, &sub, None, 1.0, false, out, stop,
                )?;
                let acc = crate::supervised::classifier_accuracy(
                    &t.model,
                    &t.dataset,
                    &sub_cfg,
                    &sub_cfg.data.split,
                    &scenarios,
                    t.device,
                    out,
                )?;
                (acc[0].1, acc.get(1).map(|x| x.1))
            }
            Training::SelfSupervised => {
                let t = pretrain_loop(&sub_cfg, &sub, false, out, stop)?;
                if t.outcome.ending != Ending::Finished {
                    return Ok(ExitCode::from(130));
                }
                let (e, _) = evaluate(
                    t.pretrainer.model(),
                    &t.dataset,
                    &sub_cfg,
                    &sub_cfg.data.split,
                    &scenarios,
                    t.device,
                    out,
                )?;
                sub.write_report(&e.markdown())?;
                if a.fusion.is_none() {
                    let best = e
                        .per_sensor
                        .iter()
                        .map(|(_, v)| *v)
                        .fold(f64::NAN, f64::max);
                    (best, None)
                } else {
                    (e.probe.1, e.scenarios.get(1).map(|r| r.top1))
                }
            }
        };
        rows.push(AblationRow {
            id: a.id,
            title: a.title.to_string(),
            ablation: a,
            clean,
            rp_missing: rp,
        });
    }
    let tick = |w: f64| if w > 0.0 { "yes" } else { "-" };
    let mut r = format!(
        "# Ablation (paper 000 Table IV)\n\nPreset `{}`, {} epochs per configuration, split `{}`. Clean accuracy: the linear probe on Z_fusion (configuration 1: its own classifier; configuration 2: the best single sensor's probe). RDP with RGB-D and points missing.\n\n| # | configuration | L_CM | L_IM | L_deg | fusion | clean Top-1 (%) | RDP R&P missing (%) |\n|---|---|---|---|---|---|---|---|\n",
        cfg.preset, cfg.train.epochs, cfg.data.split
    );
    for row in &rows {
        let w = row.ablation.weights;
        let fusion = match row.ablation.fusion {
            Some(FusionKind::Average) => "average",
            Some(FusionKind::Amg { .. }) => "AMG",
            None => "n/a",
        };
        let rdp = row
            .rp_missing
            .map(|a| format!("{:.1}", crate::eval::rdp(row.clean, a)))
            .unwrap_or_else(|| "-".into());
        r.push_str(&format!(
            "| {} | {} | {} | {} | {} | {fusion} | {:.1} | {rdp} |\n",
            row.id,
            row.title,
            tick(w.cm),
            tick(w.im),
            tick(w.deg),
            row.clean
        ));
    }
    run.write_report(&r)?;
    if out == Output::Json {
        println!(
            "{}",
            serde_json::json!({
                "run_dir": run.path(),
                "rows": rows.iter().map(|x| serde_json::json!({
                    "id": x.id, "title": x.title, "clean_top1": x.clean,
                    "rp_missing_top1": x.rp_missing,
                })).collect::<Vec<_>>(),
            })
        );
    } else {
        out.say(&r);
    }
    Ok(ExitCode::SUCCESS)
}
