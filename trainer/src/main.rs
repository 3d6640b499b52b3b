//! `trainer`: RCMCL from the command line. `trainer pretrain` with no arguments generates (once)
//! the small synthetic dataset, pre-trains the small model on the best device here and
//! reports what it got. `trainer --help` lists every command.

use clap::{Args, Parser, Subcommand};
use models::data::degrade::Sensor;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use trainer::config::RunConfig;
use trainer::error::{TrainerError, TrainerResult};
use trainer::progress::Output;
use trainer::run_dir::RunDir;
use trainer::{commands, data};

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "RCMCL: self-supervised cross-modal contrastive learning for action recognition from RGB-D, skeletons and point clouds",
    long_about = "RCMCL: self-supervised cross-modal contrastive learning for action recognition \
from RGB-D video, skeletons and point clouds, robust to failing sensors.\n\n\
Start with `trainer pretrain`: it generates the small synthetic dataset (once, into a cache \
directory), pre-trains the small model and ends with a linear-probe accuracy and a robustness \
summary. Every run writes a directory under runs/ with the resolved config, metrics.jsonl, \
checkpoints and report.md."
)]
struct Cli {
    /// Print only the final summary (no progress bars).
    #[arg(long, global = true)]
    quiet: bool,
    /// Print one JSON object with the results on stdout (and nothing else there).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a synthetic multi-sensor dataset (skeletons in three conventions, depth, RGB,
    /// point clouds; 32 classes; cross-subject and cross-view splits).
    Synth {
        /// tiny (tests, about a second), small (the default training set, about 1 GB), paper
        /// (NTU-like sizes, about 21 GB).
        #[arg(long, default_value = "small")]
        preset: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing dataset there.
        #[arg(long)]
        replace: bool,
    },
    /// Import NTU RGB+D (60 or 120) skeletons, and optionally masked depth maps (giving depth
    /// and point clouds), into the dataset format.
    ImportNtu {
        /// The folder of .skeleton files.
        #[arg(long)]
        skeletons: PathBuf,
        /// The nturgb+d_depth_masked folder (one sub-folder per sample).
        #[arg(long)]
        depth: Option<PathBuf>,
        /// 60 or 120.
        #[arg(long, default_value_t = 60)]
        version: u32,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Frames per sample.
        #[arg(long, default_value_t = 64)]
        frames: usize,
        /// Replace an existing dataset there.
        #[arg(long)]
        replace: bool,
    },
    /// Self-supervised pre-training with L_total = L_CM + 0.5 L_IM + 0.2 L_deg + 0.5 L_FUSION.
    Pretrain(RunArgs),
    /// The supervised fusion baseline: the same encoders with average fusion, trained with
    /// labels only (cross-entropy on Z_fusion); needed for RGS. With --label-fraction, the
    /// from-scratch reference for `finetune` on the same labels.
    Supervised {
        #[command(flatten)]
        args: RunArgs,
        /// Percent of the training split's labels to train on (the same class-stratified,
        /// seeded subset `finetune --label-fraction` uses).
        #[arg(long, default_value_t = 100.0)]
        label_fraction: f64,
    },
    /// End-to-end fine-tuning of a pre-trained run with cross-entropy, on a labelled fraction
    /// of the training split (the semi-supervised protocols of papers 002 and 004).
    Finetune(FinetuneArgs),
    /// Accuracy under sensor dropout (Table II) and corruption (Table III) of a run's frozen
    /// model, with RDP, and RGS against a supervised baseline run.
    Robustness {
        /// The (pre-training) run whose model is probed and scored.
        #[arg(long)]
        run: PathBuf,
        /// A `trainer supervised` run to compare against (RGS).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// auto, cpu, cuda or cuda:N (default: the run's).
        #[arg(long)]
        device: Option<String>,
        /// Where the report's run directory is made.
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// Z_fusion, each sensor's Z_M and unified embedding h_M, labels and sample indices of the
    /// test split, as .npy files for outside analysis.
    Embed {
        #[arg(long)]
        run: PathBuf,
        /// Output folder (default: <run>/embeddings).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        device: Option<String>,
    },
    /// Figures of a run into <run>/figures: t-SNE of the unified embedding (paper Fig. 6),
    /// gate values over time with a sensor failing mid-sequence (Fig. 7), loss curves.
    /// Accuracy against noise and sparsity (Fig. 4) comes with `trainer robustness`.
    Plot {
        #[arg(long)]
        run: PathBuf,
        /// Which figures: any of tsne, gates, losses (comma-separated).
        #[arg(long, default_value = "tsne,gates,losses", value_delimiter = ',')]
        figures: Vec<String>,
        /// Test samples in the t-SNE (4 points each: three sensors and the fused feature).
        #[arg(long, default_value_t = 256)]
        tsne_samples: usize,
        /// The sensor that fails in the gate figure: rgbd, skeleton or points.
        #[arg(long, default_value = "skeleton")]
        drop: String,
        /// The frame it fails from (default: half-way).
        #[arg(long)]
        from: Option<usize>,
        #[arg(long)]
        device: Option<String>,
    },
    /// Trains and evaluates the ablation configurations 1-7 of paper 000 Table IV with one
    /// preset's settings and writes the table (clean accuracy, RDP with R and P missing).
    Ablation {
        #[command(flatten)]
        args: RunArgs,
        /// Which configurations, comma-separated (1 supervised, 2 unimodal, 3 cm, 4 cm-im,
        /// 5 cm-im-deg, 6 cm-im-amg, 7 full).
        #[arg(long, default_value = "1,2,3,4,5,6,7", value_delimiter = ',')]
        configs: Vec<usize>,
    },
    /// Linear probe of a trained run's frozen model (Top-1 of a linear classifier on Z_fusion
    /// and on each sensor, and kNN) on the cross-subject and cross-view splits.
    Probe {
        /// The run directory whose last checkpoint is probed.
        #[arg(long)]
        run: PathBuf,
        /// Splits to probe on, comma-separated.
        #[arg(long, default_value = "xsub,xview", value_delimiter = ',')]
        splits: Vec<String>,
        /// auto, cpu, cuda or cuda:N (default: the run's).
        #[arg(long)]
        device: Option<String>,
        /// Where the probe's run directory is made.
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
}

/// How a training command finds its configuration, device and run directory.
#[derive(Args)]
struct RunArgs {
    /// tiny, small (default), base or paper.
    #[arg(long, default_value = "small")]
    preset: String,
    /// A TOML file overriding the preset (unknown keys are errors).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one setting, e.g. --set train.epochs=10 --set objective.negatives=hard.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// auto (a usable GPU, else the CPU), cpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// Where new run directories are made.
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Use exactly this run directory.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint (its saved config is used).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "sets", "preset", "run_dir"])]
    resume: Option<PathBuf>,
}

/// `trainer finetune`'s options.
#[derive(Args)]
struct FinetuneArgs {
    /// The pre-training run to start from (its config and last checkpoint).
    #[arg(long, required_unless_present = "resume")]
    from: Option<PathBuf>,
    /// Percent of the training split's labels to use: 1, 2, 5, 10, 25, 50 or 100 (any value in
    /// (0, 100] works; the subset is class-stratified and seeded).
    #[arg(long, default_value_t = 100.0)]
    label_fraction: f64,
    /// Override one setting of the source run's config, e.g. --set train.epochs=20.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<String>,
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Continue the fine-tuning run in this directory.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["from", "sets", "run_dir"])]
    resume: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = if cli.json {
        Output::Json
    } else if cli.quiet {
        Output::Quiet
    } else {
        Output::Normal
    };
    match run(cli.command, out) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, out: Output) -> TrainerResult<ExitCode> {
    match command {
        Command::Synth {
            preset,
            out: dir,
            replace,
        } => {
            data::generate(&preset, &dir, replace, out)?;
            out.say(&format!("wrote {}", dir.display()));
            if out == Output::Json {
                println!("{}", serde_json::json!({ "dataset": dir }));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ImportNtu {
            skeletons,
            depth,
            version,
            out: dir,
            frames,
            replace,
        } => {
            let report = commands::import_ntu(&skeletons, depth, version, &dir, frames, replace)?;
            out.say(&report);
            Ok(ExitCode::SUCCESS)
        }
        Command::Pretrain(args) => {
            let (cfg, run, resume) = open_run(&args, "pretrain")?;
            let stop = interrupt_flag(out);
            let outcome = commands::pretrain(&cfg, &run, resume, out, &stop)?;
            Ok(outcome)
        }
        Command::Supervised {
            mut args,
            label_fraction,
        } => {
            // The baseline fuses by averaging unless the user says otherwise.
            args.sets.insert(0, "model.fusion=average".into());
            let label_fraction = check_label_fraction(label_fraction)?;
            let (cfg, run, resume) = open_run(&args, "supervised")?;
            let start = if resume {
                commands::SupervisedStart::load(&run)?
            } else {
                let s = commands::SupervisedStart {
                    init: None,
                    label_fraction,
                };
                s.save(&run)?;
                s
            };
            let stop = interrupt_flag(out);
            commands::supervised(&cfg, &run, &start, resume, out, &stop)
        }
        Command::Finetune(args) => {
            let (cfg, run, start, resume) = open_finetune(&args)?;
            let stop = interrupt_flag(out);
            commands::supervised(&cfg, &run, &start, resume, out, &stop)
        }
        Command::Robustness {
            run,
            baseline,
            device,
            runs_dir,
        } => commands::robustness(&run, baseline.as_deref(), device.as_deref(), &runs_dir, out),
        Command::Ablation { args, configs } => {
            if args.resume.is_some() {
                return Err(TrainerError::Config(
                    "ablation runs cannot be resumed as a whole; rerun the configurations left with --configs".into(),
                ));
            }
            if let Some(bad) = configs.iter().find(|c| !(1..=7).contains(*c)) {
                return Err(TrainerError::Config(format!(
                    "--configs: {bad} is not a configuration of Table IV (1-7)"
                )));
            }
            let (cfg, run, _) = open_run(&args, "ablation")?;
            let stop = interrupt_flag(out);
            commands::ablation(&cfg, &run, &configs, out, &stop)
        }
        Command::Embed {
            run,
            out: dir,
            device,
        } => commands::embed(&run, dir.as_deref(), device.as_deref(), out),
        Command::Plot {
            run,
            figures,
            tsne_samples,
            drop,
            from,
            device,
        } => {
            let known = ["tsne", "gates", "losses"];
            if let Some(bad) = figures.iter().find(|f| !known.contains(&f.as_str())) {
                return Err(TrainerError::Config(format!(
                    "--figures: unknown figure {bad:?} (expected any of {known:?})"
                )));
            }
            let drop = match drop.as_str() {
                "rgbd" => Sensor::Rgbd,
                "skeleton" => Sensor::Skeleton,
                "points" => Sensor::Points,
                other => {
                    return Err(TrainerError::Config(format!(
                        "--drop must be rgbd, skeleton or points, got {other:?}"
                    )))
                }
            };
            let has = |f: &str| figures.iter().any(|x| x == f);
            let req = commands::PlotRequest {
                tsne: has("tsne"),
                gates: has("gates"),
                losses: has("losses"),
                tsne_samples,
                drop,
                from,
            };
            commands::plot(&run, &req, device.as_deref(), out)
        }
        Command::Probe {
            run,
            splits,
            device,
            runs_dir,
        } => commands::probe(&run, &splits, device.as_deref(), &runs_dir, out),
    }
}

/// The configuration and run directory of a training command: a new run, or the one to resume.
fn open_run(args: &RunArgs, command: &str) -> TrainerResult<(RunConfig, RunDir, bool)> {
    if let Some(dir) = &args.resume {
        let run = RunDir::open(dir)?;
        let cfg = run.load_config_on(args.device.as_deref())?;
        return Ok((cfg, run, true));
    }
    let mut sets = args.sets.clone();
    if let Some(d) = &args.device {
        sets.push(format!("device=\"{d}\""));
    }
    let cfg = RunConfig::resolve(&args.preset, args.config.as_deref(), &sets)?;
    let run = RunDir::create(
        &args.runs_dir,
        args.run_dir.as_deref(),
        command,
        &args.preset,
    )?;
    run.save_config(&cfg)?;
    Ok((cfg, run, false))
}

/// `--label-fraction` (a percentage in (0, 100]) as a fraction in (0, 1].
fn check_label_fraction(percent: f64) -> TrainerResult<f64> {
    if !(percent > 0.0 && percent <= 100.0) {
        return Err(TrainerError::Config(format!(
            "--label-fraction is a percentage in (0, 100], got {percent}"
        )));
    }
    Ok(percent / 100.0)
}

/// The configuration, run directory and start of a fine-tuning run (new or resumed).
fn open_finetune(
    args: &FinetuneArgs,
) -> TrainerResult<(RunConfig, RunDir, commands::SupervisedStart, bool)> {
    if let Some(dir) = &args.resume {
        let run = RunDir::open(dir)?;
        let cfg = run.load_config_on(args.device.as_deref())?;
        let start = commands::SupervisedStart::load(&run)?;
        return Ok((cfg, run, start, true));
    }
    let from = args
        .from
        .as_ref()
        .expect("clap requires --from without --resume");
    let source = RunDir::open(from)?;
    let label_fraction = check_label_fraction(args.label_fraction)?;
    let mut sets = args.sets.clone();
    if let Some(d) = &args.device {
        sets.push(format!("device=\"{d}\""));
    }
    let cfg = source.load_config()?.with_sets(&sets)?;
    let run = RunDir::create(
        &args.runs_dir,
        args.run_dir.as_deref(),
        "finetune",
        &cfg.preset,
    )?;
    run.save_config(&cfg)?;
    let start = commands::SupervisedStart {
        init: Some(source.checkpoint_path()),
        label_fraction,
    };
    start.save(&run)?;
    Ok((cfg, run, start, false))
}

/// A flag set by the first Ctrl-C (the run saves a checkpoint and stops after its step); a
/// second Ctrl-C exits at once.
fn interrupt_flag(out: Output) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let installed = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupted: saving a checkpoint after this step (Ctrl-C again to quit at once)"
        );
    });
    if let Err(e) = installed {
        out.warn(&format!("Ctrl-C will not save a checkpoint: {e}"));
    }
    stop
}
