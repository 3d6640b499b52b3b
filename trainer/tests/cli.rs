//! The `trainer` binary end to end on the tiny preset: what each command writes, resuming a
//! run killed with SIGKILL, and the errors a user meets with bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A cache directory holding the tiny synthetic dataset, generated once by `trainer synth`.
fn cache() -> &'static Path {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("synthetic-tiny");
            let o = Command::new(env!("CARGO_BIN_EXE_trainer"))
                .args(["--quiet", "synth", "--preset", "tiny", "--out"])
                .arg(&out)
                .output()
                .unwrap();
            assert!(o.status.success(), "synth failed: {}", text(&o));
            assert!(out.join("header.json").is_file());
            dir
        })
        .path()
}

/// `trainer <args> <paths>` run in `cwd` with the shared dataset cache.
fn command(cwd: &Path, args: &[&str], paths: &[&Path]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trainer"));
    c.current_dir(cwd)
        .args(args)
        .args(paths)
        .env("RCMCL_CACHE_DIR", cache());
    c
}

fn trainer(cwd: &Path, args: &[&str], paths: &[&Path]) -> Output {
    command(cwd, args, paths).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Small and quick: 32 training and 32 test samples, batches of 8 (4 steps an epoch).
const QUICK: [&str; 10] = [
    "--preset",
    "tiny",
    "--set",
    "data.max_train=32",
    "--set",
    "data.max_test=32",
    "--set",
    "train.batch_size=8",
    "--set",
    "probe.epochs=10",
];

/// `before` (global flags and the command) then the quick settings.
fn quick<'a>(before: &[&'a str]) -> Vec<&'a str> {
    let mut v = before.to_vec();
    v.extend(QUICK);
    v
}

/// One quick epoch of pre-training into `cwd/dir` (a model for the commands that read one).
fn pretrain_quickly(cwd: &Path, dir: &str) -> PathBuf {
    let mut args = quick(&["--quiet", "pretrain", "--run-dir", dir]);
    args.extend(["--set", "train.epochs=1", "--set", "probe.epochs=2"]);
    let o = trainer(cwd, &args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    cwd.join(dir)
}

fn run_dir_of(o: &Output) -> PathBuf {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("--json output is one JSON object ({e}): {}", text(o)));
    PathBuf::from(v["run_dir"].as_str().expect("run_dir in the JSON"))
}

/// (step, total loss) of every line of a run's metrics.jsonl, the last line of each step
/// winning (a resumed run repeats the steps after its checkpoint).
fn losses(run: &Path) -> BTreeMap<u64, f64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["total"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn pretrain_writes_everything_it_promises() {
    let work = tempfile::tempdir().unwrap();
    let o = trainer(work.path(), &quick(&["--json", "pretrain"]), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let run = work.path().join(run_dir_of(&o));
    for f in [
        "config.toml",
        "metrics.jsonl",
        "report.md",
        "checkpoints/last.safetensors",
    ] {
        assert!(run.join(f).is_file(), "{f} missing in {}", run.display());
    }
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    for row in [
        "linear probe on Z_fusion (test)",
        "kNN on Z_fusion",
        "| all |",
        "| R missing |",
        "| S missing |",
        "| P missing |",
        "| R&P missing |",
        "| cm |",
        "| im |",
        "| deg |",
        "| fusion |",
    ] {
        assert!(report.contains(row), "report.md lacks {row:?}:\n{report}");
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["finished"], true);
    assert_eq!(v["steps"], v["total_steps"]);
    let top1 = v["evaluation"]["probe_test_top1"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&top1));
    // The saved config is the resolved one, and it reads back.
    let cfg = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        cfg.contains("max_train = 32") && cfg.contains("batch_size = 8"),
        "{cfg}"
    );
}

/// Runs `args` (a training command writing into the run directory `whole`) to the end, then
/// again into `killed`, SIGKILLed once `kill_after` steps are logged, then `resume_args` plus
/// that directory; the resumed run's per-step losses must equal the uninterrupted run's bit
/// for bit. `args` holds the literal "RUN" where the run directory goes.
fn assert_killed_run_resumes(args: &[&str], resume_args: &[&str], steps: usize, kill_after: usize) {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let with_dir = |dir: &'static str| -> Vec<&str> {
        args.iter()
            .map(|&a| if a == "RUN" { dir } else { a })
            .collect()
    };
    let o = trainer(w, &with_dir("whole"), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let whole = losses(&w.join("whole"));
    assert_eq!(whole.len(), steps);

    let mut child = command(w, &with_dir("killed"), &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = w.join("killed");
    let began = Instant::now();
    // Kill it (SIGKILL: no chance to clean up) once it is past `kill_after` steps.
    loop {
        let done = std::fs::read_to_string(run.join("metrics.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if done >= kill_after {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(
            began.elapsed() < Duration::from_secs(300),
            "the run is stuck"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = losses(&run);
    assert!(before.len() < steps, "killed before the end");

    let o = trainer(w, resume_args, &[&run]);
    assert!(o.status.success(), "{}", text(&o));
    let resumed = losses(&run);
    assert_eq!(resumed.len(), steps);
    for (step, want) in &whole {
        assert_eq!(
            resumed[step].to_bits(),
            want.to_bits(),
            "step {step}: resumed {} vs uninterrupted {want}",
            resumed[step]
        );
    }
}

/// Every step logged, a checkpoint every 2 steps.
const RESUMABLE: [&str; 4] = [
    "--set",
    "train.checkpoint_every=2",
    "--set",
    "train.log_every=1",
];

#[test]
fn a_run_killed_mid_epoch_resumes_to_the_same_losses() {
    // 3 epochs of 4 steps, killed past step 5, mid-epoch 2.
    let mut args = quick(&["--quiet", "pretrain", "--run-dir", "RUN"]);
    args.extend(RESUMABLE);
    args.extend(["--set", "train.epochs=3"]);
    assert_killed_run_resumes(&args, &["--quiet", "pretrain", "--resume"], 12, 5);
}

#[test]
fn a_killed_finetuning_run_resumes_to_the_same_losses() {
    // The model to fine-tune: one quick epoch of pre-training, kept for both runs.
    let source = tempfile::tempdir().unwrap();
    let from = pretrain_quickly(source.path(), "pre");
    let from = from.to_str().unwrap();
    // 50 % of the 32 training samples: 2 steps an epoch, 4 epochs, killed past step 3.
    let mut args = vec![
        "--quiet",
        "finetune",
        "--label-fraction",
        "50",
        "--run-dir",
        "RUN",
        "--from",
        from,
        "--set",
        "train.epochs=4",
    ];
    args.extend(RESUMABLE);
    assert_killed_run_resumes(&args, &["--quiet", "finetune", "--resume"], 8, 3);
}

fn fails_with(o: &Output, needles: &[&str]) {
    assert!(!o.status.success(), "expected a failure: {}", text(o));
    let err = String::from_utf8_lossy(&o.stderr);
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {}", text(o));
    }
    assert!(
        !err.contains("panicked"),
        "a panic, not an error: {}",
        text(o)
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // A typo in a key.
    let o = trainer(w, &quick(&["pretrain", "--set", "train.lrr=1"]), &[]);
    fails_with(&o, &["train.lrr", "lr"]);
    // A typo in a config file.
    let file = w.join("run.toml");
    std::fs::write(&file, "[trian]\nepochs = 1\n").unwrap();
    let mut args = quick(&["pretrain"]);
    args.push("--config");
    let o = trainer(w, &args, &[&file]);
    fails_with(&o, &["trian", "run.toml"]);
    // A dataset that is not there.
    let o = trainer(
        w,
        &quick(&["pretrain", "--set", "data.dir=\"/nonexistent/ds\""]),
        &[],
    );
    fails_with(&o, &["/nonexistent/ds"]);
    // A corrupt dataset: one flipped byte in the skeleton records.
    let copy = w.join("corrupt");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(cache().join("synthetic-tiny")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let bin = copy.join("skeleton.bin");
    let mut bytes = std::fs::read(&bin).unwrap();
    let k = bytes.len() / 2;
    bytes[k] ^= 0x40;
    std::fs::write(&bin, bytes).unwrap();
    let o = trainer(
        w,
        &quick(&[
            "pretrain",
            "--set",
            &format!("data.dir=\"{}\"", copy.display()),
        ]),
        &[],
    );
    fails_with(&o, &["skeleton.bin"]);
    // CUDA asked for where there is none.
    if !cuda_present() {
        let o = trainer(w, &quick(&["pretrain", "--device", "cuda"]), &[]);
        fails_with(&o, &["CUDA", "cannot be used"]);
    }
    // A checkpoint from another model preset.
    let mut args = quick(&["--quiet", "pretrain", "--run-dir", "tinyrun"]);
    args.extend(["--set", "train.epochs=1", "--set", "probe.epochs=1"]);
    let o = trainer(w, &args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let cfg = w.join("tinyrun").join("config.toml");
    let edited = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("preset = \"tiny\"\nfusion", "preset = \"small\"\nfusion");
    std::fs::write(&cfg, edited).unwrap();
    let o = trainer(w, &["pretrain", "--resume"], &[&w.join("tinyrun")]);
    fails_with(&o, &["tiny", "small"]);
    // Resuming something that is not a run.
    let o = trainer(w, &["pretrain", "--resume"], &[w]);
    fails_with(&o, &["not a run directory"]);
}

fn cuda_present() -> bool {
    // The binary decides; without the feature there is never a device.
    cfg!(feature = "cuda") && std::env::var_os("RCMCL_TEST_ASSUME_NO_GPU").is_none() && {
        let o = Command::new("nvidia-smi").output();
        o.map(|o| o.status.success()).unwrap_or(false)
    }
}

#[test]
fn probe_reports_both_splits() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    pretrain_quickly(w, "src");
    let o = trainer(w, &["--json", "probe", "--run"], &[&w.join("src")]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let splits: Vec<&str> = v["splits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["split"].as_str().unwrap())
        .collect();
    assert_eq!(splits, ["xsub", "xview"]);
    let report = std::fs::read_to_string(w.join(run_dir_of(&o)).join("report.md")).unwrap();
    assert!(
        report.contains("Split `xsub`") && report.contains("Split `xview`"),
        "{report}"
    );
    let o = trainer(
        w,
        &["probe", "--splits", "xnope", "--run"],
        &[&w.join("src")],
    );
    fails_with(&o, &["xnope", "xsub"]);
}

#[test]
fn the_evaluation_commands_run_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let one_epoch = ["--set", "train.epochs=1", "--set", "probe.epochs=2"];
    pretrain_quickly(w, "pre");

    // The supervised baseline: average fusion unless told otherwise.
    let mut args = quick(&["--json", "supervised", "--run-dir", "sup"]);
    args.extend(one_epoch);
    let o = trainer(w, &args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let cfg = std::fs::read_to_string(w.join("sup/config.toml")).unwrap();
    assert!(cfg.contains("fusion = \"average\""), "{cfg}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["accuracy"].as_array().unwrap().len(), 5);
    // The from-scratch reference for fine-tuning on half the labels.
    let mut args = quick(&[
        "--quiet",
        "supervised",
        "--label-fraction",
        "50",
        "--run-dir",
        "sup50",
    ]);
    args.extend(one_epoch);
    let o = trainer(w, &args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let report = std::fs::read_to_string(w.join("sup50/report.md")).unwrap();
    assert!(
        report.contains("labelled fraction | 50 % (16 samples)"),
        "{report}"
    );
    let o = trainer(w, &["supervised", "--label-fraction", "120"], &[]);
    fails_with(&o, &["label-fraction", "120"]);

    // Fine-tuning half the labels from the pre-trained run.
    let o = trainer(
        w,
        &[
            "--quiet",
            "finetune",
            "--label-fraction",
            "50",
            "--run-dir",
            "ft",
            "--set",
            "train.epochs=1",
            "--from",
        ],
        &[&w.join("pre")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let report = std::fs::read_to_string(w.join("ft/report.md")).unwrap();
    assert!(report.contains("labelled fraction | 50 %"), "{report}");
    let o = trainer(
        w,
        &["finetune", "--label-fraction", "0", "--from"],
        &[&w.join("pre")],
    );
    fails_with(&o, &["label-fraction"]);

    // Robustness against the baseline: both tables, RGS, and Fig. 4.
    let o = trainer(
        w,
        &["--json", "robustness", "--baseline", "sup", "--run", "pre"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let dir = w.join(run_dir_of(&o));
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for row in [
        "| RGS (%) |",
        "SJN 0.10",
        "PCS 70%",
        "average RDP",
        "supervised baseline",
    ] {
        assert!(
            report.contains(row),
            "robustness report lacks {row:?}:\n{report}"
        );
    }
    for f in ["noise.png", "noise.svg", "sparsity.png", "sparsity.svg"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    // Nothing is trained there, so no empty checkpoints folder either.
    assert!(!dir.join("checkpoints").exists());

    // Embeddings and figures.
    let o = trainer(w, &["--quiet", "embed", "--run"], &[&w.join("pre")]);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["fused.npy", "h_skeleton.npy", "labels.npy"] {
        assert!(w.join("pre/embeddings").join(f).is_file(), "{f}");
    }
    let o = trainer(
        w,
        &["--quiet", "plot", "--tsne-samples", "16", "--run"],
        &[&w.join("pre")],
    );
    assert!(o.status.success(), "{}", text(&o));
    for f in ["tsne.png", "gates.png", "losses.png", "tsne.svg"] {
        assert!(w.join("pre/figures").join(f).is_file(), "{f}");
    }
    // The baseline has no gate to plot.
    let o = trainer(
        w,
        &["plot", "--figures", "gates", "--run"],
        &[&w.join("sup")],
    );
    fails_with(&o, &["average"]);
}

#[test]
fn ablation_writes_the_table() {
    let work = tempfile::tempdir().unwrap();
    let mut args = quick(&["--json", "ablation", "--configs", "1,2,7"]);
    args.extend(["--set", "train.epochs=1", "--set", "probe.epochs=2"]);
    let o = trainer(work.path(), &args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let dir = work.path().join(run_dir_of(&o));
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for row in [
        "| 1 | Supervised fusion baseline | - | - | - | average |",
        "| 2 | Uni-modal CL baselines (best sensor) | - | yes | - | n/a |",
        "| 7 | Full RCMCL | yes | yes | yes | AMG |",
    ] {
        assert!(report.contains(row), "report lacks {row:?}:\n{report}");
    }
    // Configuration 2 has no fusion, so no RDP.
    let line2 = report.lines().find(|l| l.starts_with("| 2 |")).unwrap();
    assert!(line2.ends_with("| - |"), "{line2}");
    for sub in ["config1-supervised", "config2-unimodal", "config7-full"] {
        assert!(
            dir.join(sub).join("checkpoints/last.safetensors").is_file(),
            "{sub}"
        );
    }
    let o = trainer(work.path(), &quick(&["ablation", "--configs", "9"]), &[]);
    fails_with(&o, &["9", "1-7"]);
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_the_run_resumes() {
    let work = tempfile::tempdir().unwrap();
    let mut args = quick(&["--quiet", "pretrain", "--run-dir", "run"]);
    args.extend([
        "--set",
        "train.epochs=3",
        "--set",
        "train.checkpoint_every=1000",
        "--set",
        "train.log_every=1",
        "--set",
        "probe.epochs=2",
    ]);
    let child = command(work.path(), &args, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = work.path().join("run");
    let began = Instant::now();
    while std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < 2
    {
        assert!(
            began.elapsed() < Duration::from_secs(300),
            "the run is stuck"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGINT, as Ctrl-C sends it.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("interrupted"),
        "{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("--resume"),
        "{}",
        text(&o)
    );
    // No periodic checkpoint was due: this one is Ctrl-C's.
    assert!(run.join("checkpoints/last.safetensors").is_file());
    let o = trainer(work.path(), &["--quiet", "pretrain", "--resume"], &[&run]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(losses(&run).len(), 12);
}

/// Writes NTU RGB+D 60 files for `trainer import-ntu`: every (subject, camera, action) of the
/// lists below, `frames` skeleton frames with one moving body, and as many masked depth maps.
fn write_ntu(dir: &Path, frames: usize) -> (PathBuf, PathBuf) {
    use models::data::ntu::{
        format_skeleton, write_depth_png, BodyRecord, DepthMap, JointRecord, SkeletonSequence,
        DEPTH_HEIGHT, DEPTH_WIDTH, NTU_JOINTS,
    };
    let skeletons = dir.join("nturgb+d_skeletons");
    let depth = dir.join("nturgb+d_depth_masked");
    std::fs::create_dir_all(&skeletons).unwrap();
    // Subjects 1 and 2 are cross-subject training subjects, 3 and 6 test; camera 1 is the
    // cross-view test camera.
    for subject in [1, 2, 3, 6] {
        for camera in [1, 2] {
            for action in 1..=4u32 {
                let name = format!("S001C{camera:03}P{subject:03}R001A{action:03}");
                let seq = SkeletonSequence {
                    frames: (0..frames)
                        .map(|t| {
                            let phase = t as f32 * 0.3 * action as f32 + subject as f32;
                            let joints = (0..NTU_JOINTS)
                                .map(|j| {
                                    let xyz = [
                                        (j % 5) as f32 * 0.1 - 0.2 + 0.1 * phase.sin(),
                                        (j / 5) as f32 * 0.2 - 0.5
                                            + 0.05 * (phase * j as f32).cos(),
                                        3.0 + 0.1 * camera as f32,
                                    ];
                                    JointRecord {
                                        xyz,
                                        depth_xy: [
                                            256.0 + 280.0 * xyz[0] / xyz[2],
                                            212.0 - 280.0 * xyz[1] / xyz[2],
                                        ],
                                        color_xy: [960.0, 540.0],
                                        orientation: [0.5, -0.25, 0.125, 1.0],
                                        state: 2,
                                    }
                                })
                                .collect();
                            vec![BodyRecord {
                                id: 72057594037931101,
                                info: [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.01, -0.25, 2.0],
                                joints,
                            }]
                        })
                        .collect(),
                };
                std::fs::write(
                    skeletons.join(format!("{name}.skeleton")),
                    format_skeleton(&seq),
                )
                .unwrap();
                // A person-shaped blob that moves with the action; zero (masked) elsewhere.
                let folder = depth.join(&name);
                std::fs::create_dir_all(&folder).unwrap();
                for t in 0..frames {
                    let cx = 200 + (t * action as usize * 7) % 100;
                    let mm = (0..DEPTH_WIDTH * DEPTH_HEIGHT)
                        .map(|i| {
                            let (x, y) = (i % DEPTH_WIDTH, i / DEPTH_WIDTH);
                            let inside = x.abs_diff(cx) < 40 && (100..380).contains(&y);
                            if inside {
                                2800 + ((x * 13 + y * 7 + t) % 200) as u16
                            } else {
                                0
                            }
                        })
                        .collect();
                    let map = DepthMap {
                        width: DEPTH_WIDTH,
                        height: DEPTH_HEIGHT,
                        mm,
                    };
                    write_depth_png(&folder.join(format!("MDepth-{:08}.png", t + 1)), &map)
                        .unwrap();
                }
            }
        }
    }
    (skeletons, depth)
}

#[test]
fn ntu_files_import_and_pretrain_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (skeletons, depth) = write_ntu(w, 6);
    let import = [
        "import-ntu",
        "--version",
        "60",
        "--frames",
        "8",
        "--skeletons",
    ];
    let o = trainer(w, &import, &[&skeletons]);
    // --out is required: the error says so instead of importing somewhere unexpected.
    fails_with(&o, &["--out"]);
    let o = command(w, &import, &[&skeletons])
        .arg("--depth")
        .arg(&depth)
        .args(["--out", "ntu60"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("imported 32 samples"), "{}", text(&o));
    assert!(w.join("ntu60/header.json").is_file());

    // One quick epoch of pre-training on an imported dataset, with `extra` settings.
    let pretrain_on = |data_dir: &str, extra: &[&str]| {
        let dir = format!("data.dir=\"{data_dir}\"");
        let mut args = vec!["--json", "pretrain", "--preset", "tiny", "--set", &dir];
        args.extend([
            "--set",
            "train.batch_size=8",
            "--set",
            "train.epochs=1",
            "--set",
            "probe.epochs=2",
        ]);
        args.extend(extra);
        trainer(w, &args, &[])
    };

    // Pre-training and the probe on the imported data (skeletons, depth and points; no RGB).
    let o = pretrain_on("ntu60", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["finished"], true);
    // 16 cross-subject training samples: two batches of 8.
    assert_eq!(v["total_steps"], 2);
    let run = w.join(run_dir_of(&o));
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("| R&P missing |"), "{report}");
    let o = trainer(w, &["--json", "probe", "--run"], &[&run]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for (s, want) in v["splits"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["xsub", "xview"])
    {
        assert_eq!(s["split"], want);
        let top1 = s["probe_test_top1"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&top1), "{s}");
    }

    // Skeletons alone (no --depth): one sensor, so no cross-modal pairs to contrast.
    let mut cmd = command(
        w,
        &["import-ntu", "--frames", "8", "--skeletons"],
        &[&skeletons],
    );
    let o = cmd.args(["--out", "skeletons-only"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let skeleton_only = |extra: &[&str]| pretrain_on("skeletons-only", extra);
    fails_with(
        &skeleton_only(&[]),
        &["one sensor (skeleton)", "--depth", "objective.cm=0"],
    );
    // As the message says: the skeleton alone, with L_IM and L_deg.
    let o = skeleton_only(&["--set", "objective.cm=0", "--set", "objective.fusion=0"]);
    assert!(o.status.success(), "{}", text(&o));
    // No sensor-dropout rows: dropping the only sensor leaves nothing to score.
    let report = std::fs::read_to_string(w.join(run_dir_of(&o)).join("report.md")).unwrap();
    assert!(
        report.contains("| all |") && !report.contains("missing |"),
        "{report}"
    );

    // Importing again over it is refused unless asked.
    let mut cmd = command(w, &["import-ntu", "--skeletons"], &[&skeletons]);
    let o = cmd.args(["--out", "ntu60"]).output().unwrap();
    fails_with(&o, &["ntu60"]);
}
