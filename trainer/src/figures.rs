//! The figures and embeddings of a trained model (`trainer plot`, `trainer embed`): the paper's
//! Fig. 4 (accuracy versus corruption), Fig. 6 (t-SNE of the unified embedding), Fig. 7 (AMG
//! gate values over time through a sensor failure), the loss curves of a run, and the raw
//! embeddings as `.npy` files for outside tools.
//!
//! Every function writes into a folder (created if needed) and returns the paths it wrote.
//! Models run in evaluation mode (the store's training flag is switched off and restored
//! afterwards, also on error) and without gradients. See docs/plots.md.

use crate::config::RunConfig;
use crate::data;
use crate::error::{TrainerError, TrainerResult};
use crate::eval::{dataset_labels, extract_features, Features};
use crate::plot::{embedding_scatter, gates_over_time, lines, tsne, TsneConfig};
use crate::progress::Output;
use engine::io::npy::save_npy;
use engine::{Device, Tensor};
use models::data::degrade::{Degradations, FrameDrop, Sensor};
use models::data::format::Dataset;
use models::data::Modality;
use models::inputs::{sensor_name, Inputs};
use models::rcmcl::Rcmcl;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows projected through a head at once (bounds the memory of `embed` on large test sets;
/// evaluation-mode batch norm makes the result independent of the chunking).
const PROJECT_CHUNK: usize = 4096;

/// A named series of (x, y) points, as `trainer::plot::lines` takes them.
pub type Series = (String, Vec<(f64, f64)>);

/// Short sensor symbols of the gate series (the paper's G_R, G_S, G_P).
const GATE_NAMES: [&str; 3] = ["G_R (RGB-D)", "G_S (skeleton)", "G_P (point cloud)"];

/// Runs `f` with `model` in evaluation mode and without gradients, restoring the training flag.
fn frozen<T>(model: &Rcmcl, f: impl FnOnce() -> TrainerResult<T>) -> TrainerResult<T> {
    let store = model.store();
    let was_training = store.is_training();
    store.set_training(false);
    let out = engine::no_grad(f);
    store.set_training(was_training);
    out
}

fn create_dir(dir: &Path) -> TrainerResult<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainerError::io(dir, e))
}

fn write_text(path: &Path, text: &str) -> TrainerResult<()> {
    std::fs::write(path, text).map_err(|e| TrainerError::io(path, e))
}

fn save(path: PathBuf, t: &Tensor, wrote: &mut Vec<PathBuf>) -> TrainerResult<()> {
    save_npy(&path, t)?;
    wrote.push(path);
    Ok(())
}

/// The test indices of the configured split (thinned to `data.max_test`).
fn test_indices(ds: &Dataset, cfg: &RunConfig) -> TrainerResult<Vec<u32>> {
    let (_, test) = data::split_indices(ds, &cfg.data)?;
    if test.is_empty() {
        return Err(TrainerError::Config(format!(
            "the test part of split {:?} is empty",
            cfg.data.split
        )));
    }
    Ok(test)
}

/// Clean features of `indices` (evaluation loader, no degradation).
fn features(
    model: &Rcmcl,
    ds: &Arc<Dataset>,
    cfg: &RunConfig,
    device: Device,
    indices: &[u32],
    out: Output,
    what: &str,
) -> TrainerResult<Features> {
    let loader = data::eval_loader(ds.clone(), indices, cfg, None)?;
    let bar = out.bar(loader.len() as u64, what);
    let f = extract_features(model, &loader, device, &mut |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    Ok(f)
}

/// The L2-normalised output of `head` (a sensor's H_M, or `None` for the fusion head) for the
/// `n` rows of `z` (width `dim`), as f32, (n, proj_dim).
fn project_rows(
    model: &Rcmcl,
    head: Option<Sensor>,
    z: &[f32],
    n: usize,
    dim: usize,
    device: Device,
) -> TrainerResult<Vec<f32>> {
    frozen(model, || {
        let mut out = Vec::with_capacity(n * model.config().proj_dim);
        let mut start = 0;
        while start < n {
            let rows = PROJECT_CHUNK.min(n - start);
            let t = Tensor::from_vec(
                z[start * dim..(start + rows) * dim].to_vec(),
                [rows, dim],
                Device::Cpu,
            )?
            .to_device(device)?;
            let p = match head {
                Some(s) => model.project(s, &t)?,
                None => model.fusion_head.forward(&t)?,
            };
            out.extend(p.normalized.to_f64_vec()?.into_iter().map(|v| v as f32));
            start += rows;
        }
        Ok(out)
    })
}

/// `trainer embed`: writes, for the test part of `cfg.data.split` (thinned to `data.max_test`),
/// Z_fusion (`fused.npy`, (n, d) f32), each loaded sensor's pooled feature Z_M
/// (`z_rgbd.npy`, `z_skeleton.npy`, `z_points.npy`, (n, d) f32) and its unified-space embedding
/// h_M, the L2-normalised projection head output `Rcmcl::project` (`h_rgbd.npy`,
/// `h_skeleton.npy`, `h_points.npy`, (n, proj_dim) f32, 128 in the paper), the class labels
/// (`labels.npy`, (n,) i64) and the dataset index of each row (`samples.npy`, (n,) i64), all
/// rows in the same order. A sensor the dataset does not have gets no files.
pub fn embed(
    model: &Rcmcl,
    ds: &Arc<Dataset>,
    cfg: &RunConfig,
    device: Device,
    dir: &Path,
    out: Output,
) -> TrainerResult<Vec<PathBuf>> {
    let test = test_indices(ds, cfg)?;
    let f = features(model, ds, cfg, device, &test, out, "embed")?;
    create_dir(dir)?;
    let (n, d) = (f.len(), f.dim);
    let proj = model.config().proj_dim;
    let mut wrote = Vec::new();
    let cpu = Device::Cpu;
    save(
        dir.join("fused.npy"),
        &Tensor::from_vec(f.fused.clone(), [n, d], cpu)?,
        &mut wrote,
    )?;
    for s in Sensor::ALL {
        let Some(z) = f.sensor(s) else { continue };
        let name = sensor_name(s);
        save(
            dir.join(format!("z_{name}.npy")),
            &Tensor::from_vec(z.to_vec(), [n, d], cpu)?,
            &mut wrote,
        )?;
        let h = project_rows(model, Some(s), z, n, d, device)?;
        save(
            dir.join(format!("h_{name}.npy")),
            &Tensor::from_vec(h, [n, proj], cpu)?,
            &mut wrote,
        )?;
    }
    save(
        dir.join("labels.npy"),
        &Tensor::from_vec(f.labels.clone(), [n], cpu)?,
        &mut wrote,
    )?;
    let samples: Vec<i64> = f.samples.iter().map(|&i| i64::from(i)).collect();
    save(
        dir.join("samples.npy"),
        &Tensor::from_vec(samples, [n], cpu)?,
        &mut wrote,
    )?;
    Ok(wrote)
}

/// Up to `max` of `indices`, spread evenly over the classes: one of each class in turn (the
/// first of every class, then the second, ...), returned in `indices`' order.
pub fn spread_over_classes(indices: &[u32], labels: &[i64], max: usize) -> Vec<u32> {
    let mut by_class: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (k, &l) in labels.iter().enumerate().take(indices.len()) {
        by_class.entry(l).or_default().push(k);
    }
    let mut chosen = Vec::new();
    let mut round = 0;
    while chosen.len() < max.min(indices.len()) {
        for ks in by_class.values() {
            if let Some(&k) = ks.get(round) {
                if chosen.len() < max {
                    chosen.push(k);
                }
            }
        }
        round += 1;
    }
    chosen.sort_unstable();
    chosen.into_iter().map(|k| indices[k]).collect()
}

/// Paper 000 Fig. 6: exact t-SNE ([`tsne()`]) of the unified embedding h_M of every loaded sensor
/// of up to `max_samples` test samples (spread evenly over the classes, see
/// [`spread_over_classes`]), plus the fused feature's projection through the fusion head (the
/// space L_FUSION compares), one point per (sample, embedding), coloured by class and shaped by
/// sensor ([`embedding_scatter`]). Perplexity 30, or (points - 1) / 3 when there are fewer than
/// 91 points; seed `cfg.seed`.
///
/// Writes `tsne.png`, `tsne.svg` and `tsne_points.csv` (`x,y,class,sensor,sample`: class index,
/// sensor `rgbd` / `skeleton` / `points` / `fused`, dataset index). Errors for
/// `max_samples < 2`.
pub fn tsne_figure(
    model: &Rcmcl,
    ds: &Arc<Dataset>,
    cfg: &RunConfig,
    device: Device,
    max_samples: usize,
    dir: &Path,
    out: Output,
) -> TrainerResult<Vec<PathBuf>> {
    if max_samples < 2 {
        return Err(TrainerError::Config(format!(
            "the t-SNE figure needs at least 2 samples, got {max_samples}"
        )));
    }
    let test = test_indices(ds, cfg)?;
    let labels = dataset_labels(ds, &test)?;
    let chosen = spread_over_classes(&test, &labels, max_samples);
    let f = features(model, ds, cfg, device, &chosen, out, "t-SNE")?;
    let (n, d) = (f.len(), f.dim);
    let proj = model.config().proj_dim;

    // Embeddings grouped by sensor (RGB-D, skeleton, points, fused), each n rows.
    let mut x: Vec<f32> = Vec::new();
    let mut markers = Vec::new();
    let mut classes = Vec::new();
    let mut samples = Vec::new();
    let heads: [(usize, Option<Sensor>); 4] = [
        (0, Some(Sensor::Rgbd)),
        (1, Some(Sensor::Skeleton)),
        (2, Some(Sensor::Points)),
        (3, None),
    ];
    for (marker, head) in heads {
        let z = match head {
            Some(s) => match f.sensor(s) {
                Some(z) => z,
                None => continue,
            },
            None => &f.fused[..],
        };
        x.extend(project_rows(model, head, z, n, d, device)?);
        markers.extend(std::iter::repeat(marker).take(n));
        classes.extend(f.labels.iter().map(|&l| l as usize));
        samples.extend_from_slice(&f.samples);
    }
    let points = markers.len();
    let tcfg = TsneConfig {
        perplexity: 30f64.min((points as f64 - 1.0) / 3.0),
        seed: cfg.seed,
        ..TsneConfig::default()
    };
    if out == Output::Normal {
        out.say(&format!(
            "t-SNE of {points} embeddings ({n} samples, {} kinds)",
            points / n.max(1)
        ));
    }
    let y = tsne(&x, points, proj, &tcfg)?;

    create_dir(dir)?;
    let mut wrote = embedding_scatter(
        &y,
        &classes,
        &markers,
        &format!(
            "t-SNE of the unified embedding ({n} test samples of split {})",
            cfg.data.split
        ),
        &dir.join("tsne"),
    )?;
    let names = ["rgbd", "skeleton", "points", "fused"];
    let mut csv = String::from("x,y,class,sensor,sample\n");
    for i in 0..points {
        let _ = writeln!(
            csv,
            "{},{},{},{},{}",
            y[i][0], y[i][1], classes[i], names[markers[i]], samples[i]
        );
    }
    let path = dir.join("tsne_points.csv");
    write_text(&path, &csv)?;
    wrote.push(path);
    Ok(wrote)
}

/// The streams of a sensor among those an evaluation loader reads.
fn sensor_streams(ds: &Dataset, s: Sensor) -> Vec<Modality> {
    data::modalities(ds, false)
        .into_iter()
        .filter(|&m| Sensor::of(m) == s)
        .collect()
}

/// Gate values over time averaged over samples ([`gate_series`]).
#[derive(Clone, Debug, PartialEq)]
pub struct GateSeries {
    /// Input frames T.
    pub frames: usize,
    /// Samples averaged.
    pub samples: usize,
    /// Per sensor (`Sensor::ALL` order), the mean gate at each of the encoder's T'_M time
    /// steps; None for a sensor the model did not see.
    pub steps: [Option<Vec<f64>>; 3],
}

impl GateSeries {
    /// The input-frame position of each time step of sensor `s`: step t of T' covers frames
    /// [t T / T', (t + 1) T / T'), so its centre is x = (t + 0.5) T / T' (frame k's centre is
    /// k + 0.5 on the same scale).
    pub fn positions(&self, s: Sensor) -> Option<Vec<f64>> {
        let v = self.steps[s as usize].as_ref()?;
        let scale = self.frames as f64 / v.len() as f64;
        Some((0..v.len()).map(|t| (t as f64 + 0.5) * scale).collect())
    }

    /// Sensor `s`'s gate at every input frame k: linear interpolation of the steps at their
    /// [`positions`](Self::positions), evaluated at frame centres k + 0.5 (held constant
    /// before the first and after the last step's centre). Equal to the steps when T' = T.
    pub fn per_frame(&self, s: Sensor) -> Option<Vec<f64>> {
        let v = self.steps[s as usize].as_ref()?;
        let xs = self.positions(s)?;
        Some(
            (0..self.frames)
                .map(|k| {
                    let x = k as f64 + 0.5;
                    match xs.iter().position(|&p| p >= x) {
                        Some(0) => v[0],
                        None => v[v.len() - 1],
                        Some(j) => {
                            let w = (x - xs[j - 1]) / (xs[j] - xs[j - 1]);
                            v[j - 1] + w * (v[j] - v[j - 1])
                        }
                    }
                })
                .collect(),
        )
    }
}

/// The AMG gate values over time (`Rcmcl::gates_over_time`, each sensor's gate on its
/// encoder's per-time-step features) averaged over the first `samples` test samples. With
/// `failure = Some((sensor, from))` the sensor fails from input frame `from` on: the loader's
/// `FrameDrop` zeroes that sensor's frames `from..` (RGB and depth for RGB-D). The sensor stays
/// present (its presence mask is 1), so its gate is what the gate makes of the zeroed frames,
/// not a forced 0; the other sensors' gates are untouched (each gate sees its own sensor only).
///
/// Errors for a model with average fusion (no gate), `samples == 0`, `from` outside
/// `1..frames`, or a failing sensor the dataset does not have.
pub fn gate_series(
    model: &Rcmcl,
    ds: &Arc<Dataset>,
    cfg: &RunConfig,
    device: Device,
    failure: Option<(Sensor, usize)>,
    samples: usize,
) -> TrainerResult<GateSeries> {
    if model.gate.is_none() {
        return Err(TrainerError::Config(
            "the model uses average fusion (model.fusion = \"average\"): it has no AMG gate to plot; use an `amg` or `amg-shared` model".into(),
        ));
    }
    if samples == 0 {
        return Err(TrainerError::Config(
            "the gate figure needs at least 1 sample".into(),
        ));
    }
    let frames = data::data_shape(ds)?.frames;
    let mut degrade = None;
    if let Some((s, from)) = failure {
        if from == 0 || from >= frames {
            return Err(TrainerError::Config(format!(
                "the failure frame must be in 1..{frames} (the sequences have {frames} frames), got {from}"
            )));
        }
        let streams = sensor_streams(ds, s);
        if streams.is_empty() {
            return Err(TrainerError::Config(format!(
                "the dataset at {} has no {} stream to fail",
                ds.dir().display(),
                sensor_name(s)
            )));
        }
        degrade = Some(Degradations {
            frame_drop: Some(FrameDrop {
                modalities: streams,
                from,
            }),
            ..Degradations::default()
        });
    }
    let test = test_indices(ds, cfg)?;
    let chosen = &test[..samples.min(test.len())];
    let loader = data::eval_loader(ds.clone(), chosen, cfg, degrade)?;
    let mut sums: [Option<Vec<f64>>; 3] = [None, None, None];
    frozen(model, || {
        for batch in loader.epoch(0) {
            let batch = batch?;
            let inputs = Inputs::from_batch(&batch, 0)?.to_device(device)?;
            let encoded = model.encode(&inputs)?;
            let Some(gates) = model.gates_over_time(&encoded)? else {
                continue;
            };
            for (k, g) in gates.iter().enumerate() {
                let Some(g) = g else { continue };
                let (b, t) = (g.dims()[0], g.dims()[1]);
                let v = g.to_f64_vec()?;
                let sum = sums[k].get_or_insert_with(|| vec![0.0; t]);
                if sum.len() != t {
                    return Err(TrainerError::Config(format!(
                        "the {} gate has {t} time steps in one batch and {} in another",
                        sensor_name(Sensor::ALL[k]),
                        sum.len()
                    )));
                }
                for row in v.chunks(t).take(b) {
                    for (a, x) in sum.iter_mut().zip(row) {
                        *a += x;
                    }
                }
            }
        }
        Ok(())
    })?;
    let n = chosen.len() as f64;
    let steps = sums.map(|s| s.map(|v| v.into_iter().map(|x| x / n).collect()));
    Ok(GateSeries {
        frames,
        samples: chosen.len(),
        steps,
    })
}

/// Paper 000 Fig. 7: the AMG gate values over time ([`gate_series`]) averaged over the first
/// `samples` test samples whose `dropped` sensor fails from input frame `from` on, one line per
/// sensor on the input-frame axis ([`GateSeries::per_frame`]: each encoder's T'_M steps are
/// placed at x = (t + 0.5) T / T'_M and interpolated to frames), with a dashed line between
/// frames `from - 1` and `from` ([`gates_over_time`]).
///
/// Writes `gates.png`, `gates.svg` and `gates.csv` (`sensor,step,x,gate,failed`: each
/// encoder's own time steps, `x` the input-frame position, `failed` 1 for a step whose centre
/// lies at or after `from`). Errors as [`gate_series`] does (average fusion in particular).
#[allow(clippy::too_many_arguments)]
pub fn gates_figure(
    model: &Rcmcl,
    ds: &Arc<Dataset>,
    cfg: &RunConfig,
    device: Device,
    dropped: Sensor,
    from: usize,
    samples: usize,
    dir: &Path,
    out: Output,
) -> TrainerResult<Vec<PathBuf>> {
    if out == Output::Normal {
        out.say(&format!(
            "gate values over time: {} fails from frame {from}, {samples} samples",
            sensor_name(dropped)
        ));
    }
    let g = gate_series(model, ds, cfg, device, Some((dropped, from)), samples)?;
    let mut series = Vec::new();
    let mut csv = String::from("sensor,step,x,gate,failed\n");
    for s in Sensor::ALL {
        let (Some(v), Some(xs), Some(frames)) =
            (g.steps[s as usize].as_ref(), g.positions(s), g.per_frame(s))
        else {
            continue;
        };
        series.push((GATE_NAMES[s as usize].to_string(), frames));
        for (t, (x, gate)) in xs.iter().zip(v).enumerate() {
            let failed = s == dropped && *x >= from as f64;
            let _ = writeln!(
                csv,
                "{},{t},{x},{gate},{}",
                sensor_name(s),
                u8::from(failed)
            );
        }
    }
    create_dir(dir)?;
    let what = match dropped {
        Sensor::Rgbd => "RGB-D",
        Sensor::Skeleton => "skeleton",
        Sensor::Points => "point cloud",
    };
    let mut wrote = gates_over_time(
        &series,
        Some(from as f64 - 0.5),
        &format!(
            "AMG gates over time: {what} fails at frame {from} (mean of {} samples)",
            g.samples
        ),
        &dir.join("gates"),
    )?;
    let path = dir.join("gates.csv");
    write_text(&path, &csv)?;
    wrote.push(path);
    Ok(wrote)
}

/// Paper 000 Fig. 4: Top-1 accuracy (%) versus skeleton joint-noise sigma (`noise`, x in
/// metres) and versus point-cloud sparsity (`sparsity`, x the fraction D of each frame's points
/// dropped), one line per model (`(name, [(x, accuracy)])`, e.g. ours and the supervised
/// baseline). Writes `noise.png/.svg` and `sparsity.png/.svg`; an empty list skips its chart,
/// both empty is an error.
pub fn corruption_figures(
    noise: &[Series],
    sparsity: &[Series],
    dir: &Path,
) -> TrainerResult<Vec<PathBuf>> {
    if noise.is_empty() && sparsity.is_empty() {
        return Err(TrainerError::Config(
            "corruption figures: no measured series".into(),
        ));
    }
    create_dir(dir)?;
    let mut wrote = Vec::new();
    if !noise.is_empty() {
        wrote.extend(lines(
            noise,
            "skeleton joint noise sigma (m)",
            "Top-1 accuracy (%)",
            "Accuracy under skeleton joint noise",
            false,
            &dir.join("noise"),
        )?);
    }
    if !sparsity.is_empty() {
        wrote.extend(lines(
            sparsity,
            "point-cloud sparsity D (fraction of points dropped)",
            "Top-1 accuracy (%)",
            "Accuracy under point-cloud sparsity",
            false,
            &dir.join("sparsity"),
        )?);
    }
    Ok(wrote)
}

/// The display name of a loss term of metrics.jsonl.
fn loss_label(key: &str) -> String {
    match key {
        "cm" => "L_CM".into(),
        "mv" => "L_MV".into(),
        "im" => "L_IM".into(),
        "deg" => "L_deg".into(),
        "fusion" => "L_FUSION".into(),
        "total" => "L_total (weighted)".into(),
        other => other.to_string(),
    }
}

/// The name of the run folder holding `metrics` (for titles), or the file name.
fn run_name(metrics: &Path) -> String {
    metrics
        .parent()
        .and_then(Path::file_name)
        .or_else(|| metrics.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into())
}

/// The loss series of a run: from `run`/metrics.jsonl (or `run` itself when it is a file),
/// one series per loss term (the `loss` object: cm, mv, im, deg, fusion, unweighted; labelled
/// L_CM, L_MV, L_IM, L_deg, L_FUSION, in that order; unknown keys after them by name), then the weighted total
/// (`L_total (weighted)`), each as (step, value) sorted by step. A step logged twice (a resumed
/// run repeats the steps after its last checkpoint) keeps its last line; values that are not
/// finite and positive cannot go on a log axis and are left out (a term with none left is
/// dropped). Errors for a missing file, a line that is not JSON or has no step, and a log
/// without any loss. Returns the series and the file read.
pub fn loss_series(run: &Path) -> TrainerResult<(Vec<Series>, PathBuf)> {
    let path = if run.is_dir() {
        run.join("metrics.jsonl")
    } else {
        run.to_path_buf()
    };
    let text = std::fs::read_to_string(&path).map_err(|e| TrainerError::io(&path, e))?;
    // key -> step -> value.
    let mut order: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    let mut put = |key: &str, step: u64, v: f64| {
        if !order.iter().any(|k| k == key) {
            order.push(key.to_string());
        }
        values.entry(key.to_string()).or_default().insert(step, v);
    };
    for (no, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |msg: String| TrainerError::io(&path, format!("line {}: {msg}", no + 1));
        let rec: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not JSON ({e})")))?;
        let step = rec
            .get("step")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("no integer `step`".into()))?;
        if let Some(terms) = rec.get("loss").and_then(serde_json::Value::as_object) {
            for (k, v) in terms {
                if let Some(v) = v.as_f64() {
                    put(k, step, v);
                }
            }
        }
        if let Some(v) = rec.get("total").and_then(serde_json::Value::as_f64) {
            put("total", step, v);
        }
    }
    // The terms in the objective's order (others after them, by name), the total last.
    const TERMS: [&str; 5] = ["cm", "mv", "im", "deg", "fusion"];
    order.sort_by_key(|k| {
        let rank = TERMS.iter().position(|t| t == k).unwrap_or(TERMS.len());
        (k == "total", rank, k.clone())
    });
    let series: Vec<Series> = order
        .iter()
        .filter_map(|k| {
            let pts: Vec<(f64, f64)> = values[k]
                .iter()
                .filter(|(_, &v)| v.is_finite() && v > 0.0)
                .map(|(&s, &v)| (s as f64, v))
                .collect();
            (!pts.is_empty()).then(|| (loss_label(k), pts))
        })
        .collect();
    if series.is_empty() {
        return Err(TrainerError::io(
            &path,
            "no positive loss values to plot (is this a metrics.jsonl of `trainer pretrain`?)",
        ));
    }
    Ok((series, path))
}

/// The loss curves of a run ([`loss_series`] of `run`: each loss term and the weighted total)
/// against the step, on a logarithmic y axis. Writes `losses.png/.svg`; errors as
/// [`loss_series`] does.
pub fn loss_curves(run: &Path, dir: &Path) -> TrainerResult<Vec<PathBuf>> {
    let (series, path) = loss_series(run)?;
    create_dir(dir)?;
    Ok(lines(
        &series,
        "step",
        "loss (log scale)",
        &format!("Pre-training losses ({})", run_name(&path)),
        true,
        &dir.join("losses"),
    )?)
}
