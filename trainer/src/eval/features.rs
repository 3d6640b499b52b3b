//! Features of a frozen model: one pass of an evaluation loader through the encoders and the
//! fusion, in evaluation mode and without gradients.

use engine::{Device, Error, Result, Tensor};
use models::data::degrade::Sensor;
use models::data::loader::Loader;
use models::inputs::Inputs;
use models::rcmcl::Rcmcl;

/// The features of every sample of one loader pass, in the loader's order.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    /// Z_fusion, (n, dim) row-major.
    pub fused: Vec<f32>,
    /// Z_M per sensor (`Sensor::ALL` order: RGB-D, skeleton, points), (n, dim); None when no
    /// sample had the sensor (not loaded, or dropped everywhere). Rows of samples without the
    /// sensor are zeros (see `present`).
    pub per_sensor: [Option<Vec<f32>>; 3],
    /// The effective AMG gate per sensor (gate times presence), (n,); None with average fusion
    /// and for a sensor no sample had. 0 for samples without the sensor.
    pub gates: [Option<Vec<f32>>; 3],
    /// Whether each sample had each sensor (loaded and not dropped), (n,) per sensor.
    pub present: [Vec<bool>; 3],
    /// Class labels, (n,).
    pub labels: Vec<i64>,
    /// The dataset index of each row, (n,).
    pub samples: Vec<u32>,
    /// The feature width d.
    pub dim: usize,
}

impl Features {
    /// The number of samples (rows).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Z_M of sensor `s`, (n, dim), if any sample had it.
    pub fn sensor(&self, s: Sensor) -> Option<&[f32]> {
        self.per_sensor[s as usize].as_deref()
    }

    /// Row `i` of Z_fusion.
    pub fn fused_row(&self, i: usize) -> &[f32] {
        &self.fused[i * self.dim..(i + 1) * self.dim]
    }
}

/// Runs `model` over one pass (epoch 0) of `loader` and collects the features: Z_fusion, each
/// sensor's Z_M, the effective AMG gates, labels and dataset indices, in the loader's order.
///
/// The loader must have one view; it may carry degradations (modality dropout, joint noise,
/// point sparsity): its dropped flags become presence masks (`Inputs::from_batch`), and a
/// sensor dropped from every sample of a batch is not given to the model at all
/// (`Inputs::without`), which is what the presence mask amounts to, without the encoder's
/// cost. The model runs in evaluation mode (its store's training flag is switched off and
/// restored afterwards, also on error) and without gradients; its parameters live on `device`,
/// where every batch goes. `on_batch(done, total)` is called after each batch.
pub fn extract_features(
    model: &Rcmcl,
    loader: &Loader,
    device: Device,
    on_batch: &mut dyn FnMut(usize, usize),
) -> Result<Features> {
    let views = loader.config().views;
    if views != 1 {
        return Err(Error::invalid(
            "extract_features",
            format!("an evaluation loader has one view per sample, this one has {views}"),
        ));
    }
    let store = model.store();
    let was_training = store.is_training();
    store.set_training(false);
    let out = engine::no_grad(|| extract(model, loader, device, on_batch));
    store.set_training(was_training);
    out
}

/// Collects (B, d) or (B, 1) rows into an (n, ...) buffer that starts as absent.
#[derive(Default)]
struct Column {
    values: Vec<f32>,
    seen: bool,
}

impl Column {
    /// Appends `t`'s rows (zeroing those whose `present` flag is false), or `rows * width` zeros.
    fn push(&mut self, t: Option<&Tensor>, present: &[bool], width: usize) -> Result<()> {
        let start = self.values.len();
        match t {
            Some(t) => {
                self.seen = true;
                if t.numel() != present.len() * width {
                    return Err(Error::shape(
                        "extract_features",
                        &[t.dims()],
                        format!("expected {} rows of width {width}", present.len()),
                    ));
                }
                self.values
                    .extend(t.to_f64_vec()?.into_iter().map(|v| v as f32));
                for (i, &p) in present.iter().enumerate() {
                    if !p {
                        self.values[start + i * width..start + (i + 1) * width].fill(0.0);
                    }
                }
            }
            None => self.values.resize(start + present.len() * width, 0.0),
        }
        Ok(())
    }

    fn finish(self) -> Option<Vec<f32>> {
        self.seen.then_some(self.values)
    }
}

fn extract(
    model: &Rcmcl,
    loader: &Loader,
    device: Device,
    on_batch: &mut dyn FnMut(usize, usize),
) -> Result<Features> {
    let dim = model.feature_dim();
    let total = loader.len();
    let n = loader.indices().len();
    let mut fused = Vec::with_capacity(n * dim);
    let mut per_sensor: [Column; 3] = Default::default();
    let mut gates: [Column; 3] = Default::default();
    let mut present: [Vec<bool>; 3] = Default::default();
    let mut labels = Vec::with_capacity(n);
    let mut samples = Vec::with_capacity(n);
    let amg = model.gate.is_some();
    for (done, batch) in loader.epoch(0).enumerate() {
        let batch = batch.map_err(|e| Error::invalid("extract_features", e.to_string()))?;
        let b = batch.len();
        let mut inputs = Inputs::from_batch(&batch, 0)?;
        let mut here: [Vec<bool>; 3] = Default::default();
        for s in Sensor::ALL {
            let k = s as usize;
            here[k] = if !inputs.has(s) {
                vec![false; b]
            } else if let Some(p) = &inputs.presence[k] {
                p.to_f64_vec()?.iter().map(|&v| v > 0.5).collect()
            } else {
                vec![true; b]
            };
            if inputs.has(s) && here[k].iter().all(|&p| !p) {
                inputs = inputs.without(s);
            }
        }
        let inputs = inputs.to_device(device)?;
        let encoded = model.encode(&inputs)?;
        let f = model.fuse(&encoded)?;
        if f.fused.dims() != [b, dim] {
            return Err(Error::shape(
                "extract_features",
                &[f.fused.dims()],
                format!("Z_fusion should be ({b}, {dim})"),
            ));
        }
        fused.extend(f.fused.to_f64_vec()?.into_iter().map(|v| v as f32));
        for s in Sensor::ALL {
            let k = s as usize;
            per_sensor[k].push(encoded.pooled(s), &here[k], dim)?;
            if amg {
                gates[k].push(f.gates[k].as_ref(), &here[k], 1)?;
            }
            present[k].extend_from_slice(&here[k]);
        }
        labels.extend(batch.labels.to_vec::<i64>()?);
        samples.extend_from_slice(&batch.samples);
        on_batch(done + 1, total);
    }
    let [p0, p1, p2] = per_sensor;
    let [g0, g1, g2] = gates;
    Ok(Features {
        fused,
        per_sensor: [p0.finish(), p1.finish(), p2.finish()],
        gates: [g0.finish(), g1.finish(), g2.finish()],
        present,
        labels,
        samples,
        dim,
    })
}
