//! What the model takes: any subset of the three sensors' tensors for one batch, plus which
//! samples actually have each sensor (a dropped sensor gives all-zero data in the loader; the
//! model must not mistake those zeros for a reading).

use crate::data::degrade::Sensor;
use crate::data::loader::Batch;
use crate::data::Modality;
use engine::{Device, Error, Result, Tensor};

/// One batch of model inputs. Shapes are the loader's (models/src/data/loader.rs):
/// rgb (B, T, 3, H, W), depth (B, T, 1, H, W), skeletons (B, T, M, J, 3), points (B, T, P, 3).
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub rgb: Option<Tensor>,
    pub depth: Option<Tensor>,
    /// Skeleton streams with their convention. The first is the skeleton modality's input to
    /// fusion and every loss; further ones are extra views of the same motion in other joint
    /// conventions (MS-CLR's multi-skeleton positives).
    pub skeletons: Vec<(Modality, Tensor)>,
    pub points: Option<Tensor>,
    /// Per sensor (indexed by `Sensor as usize`: RGB-D, skeleton, points), an optional (B,)
    /// tensor: 1 where the sample has the sensor, 0 where it was dropped. None: every sample
    /// that has the tensor has the sensor.
    pub presence: [Option<Tensor>; 3],
}

/// The sensors in the order the model uses everywhere (gate, losses, reports).
pub const SENSORS: [Sensor; 3] = Sensor::ALL;

/// A short name of a sensor for parameter names and reports.
pub fn sensor_name(s: Sensor) -> &'static str {
    match s {
        Sensor::Rgbd => "rgbd",
        Sensor::Skeleton => "skeleton",
        Sensor::Points => "points",
    }
}

impl Inputs {
    /// The inputs of view `view` of a loader batch. A sensor's presence is 1 minus the loader's
    /// dropped flag of its first stream (the loader drops a sensor's streams together).
    pub fn from_batch(batch: &Batch, view: usize) -> Result<Inputs> {
        let v = batch.views.get(view).ok_or_else(|| {
            Error::invalid(
                "Inputs::from_batch",
                format!("view {view} requested, the batch has {}", batch.views.len()),
            )
        })?;
        let mut inputs = Inputs::default();
        let mut flag_column: [Option<usize>; 3] = [None; 3];
        for (k, &m) in batch.modalities.iter().enumerate() {
            let Some(t) = v.streams.get(&m) else { continue };
            match m {
                Modality::Rgb => inputs.rgb = Some(t.clone()),
                Modality::Depth => inputs.depth = Some(t.clone()),
                Modality::Points => inputs.points = Some(t.clone()),
                Modality::Skeleton | Modality::Skeleton17 | Modality::Skeleton15 => {
                    inputs.skeletons.push((m, t.clone()))
                }
                Modality::JointState => continue,
            }
            let s = Sensor::of(m) as usize;
            flag_column[s].get_or_insert(k);
        }
        // The primary skeleton is the 25-joint one when it is loaded.
        inputs
            .skeletons
            .sort_by_key(|(m, _)| (*m != Modality::Skeleton, *m));
        for (s, col) in flag_column.iter().enumerate() {
            if let Some(k) = *col {
                let dropped = v.dropped.narrow(1, k, 1)?.reshape([batch.len()])?;
                // Only keep a presence mask when something was actually dropped.
                if dropped.sum_all()?.item()? > 0.0 {
                    inputs.presence[s] = Some(dropped.neg()?.add_scalar(1.0)?);
                }
            }
        }
        Ok(inputs)
    }

    /// Whether the sensor's tensors are here (RGB-D needs both RGB and depth).
    pub fn has(&self, s: Sensor) -> bool {
        match s {
            Sensor::Rgbd => self.rgb.is_some() && self.depth.is_some(),
            Sensor::Skeleton => !self.skeletons.is_empty(),
            Sensor::Points => self.points.is_some(),
        }
    }

    /// The batch size, or an error when there is no tensor or the tensors disagree.
    pub fn batch_size(&self) -> Result<usize> {
        let mut sizes: Vec<(&str, &[usize])> = Vec::new();
        if let Some(t) = &self.rgb {
            sizes.push(("rgb", t.dims()));
        }
        if let Some(t) = &self.depth {
            sizes.push(("depth", t.dims()));
        }
        for (m, t) in &self.skeletons {
            sizes.push((m.name(), t.dims()));
        }
        if let Some(t) = &self.points {
            sizes.push(("points", t.dims()));
        }
        let Some(&(_, first)) = sizes.first() else {
            return Err(Error::invalid(
                "Inputs",
                "no modality at all: give at least one of rgb+depth, a skeleton, points",
            ));
        };
        let b = first.first().copied().unwrap_or(0);
        if let Some((name, dims)) = sizes.iter().find(|(_, d)| d.first() != Some(&b)) {
            return Err(Error::shape(
                "Inputs",
                &[first, dims],
                format!("every stream needs the same batch size; {name} differs"),
            ));
        }
        Ok(b)
    }

    /// The same inputs on `device`.
    pub fn to_device(&self, device: Device) -> Result<Inputs> {
        let mv = |t: &Option<Tensor>| t.as_ref().map(|t| t.to_device(device)).transpose();
        Ok(Inputs {
            rgb: mv(&self.rgb)?,
            depth: mv(&self.depth)?,
            skeletons: self
                .skeletons
                .iter()
                .map(|(m, t)| Ok((*m, t.to_device(device)?)))
                .collect::<Result<_>>()?,
            points: mv(&self.points)?,
            presence: [
                mv(&self.presence[0])?,
                mv(&self.presence[1])?,
                mv(&self.presence[2])?,
            ],
        })
    }

    /// The same inputs without `sensor` (a whole sensor failing for the batch).
    pub fn without(&self, sensor: Sensor) -> Inputs {
        let mut out = self.clone();
        match sensor {
            Sensor::Rgbd => {
                out.rgb = None;
                out.depth = None;
            }
            Sensor::Skeleton => out.skeletons.clear(),
            Sensor::Points => out.points = None,
        }
        out.presence[sensor as usize] = None;
        out
    }
}
