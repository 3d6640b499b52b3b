//! The loader: batches of any subset of a dataset's streams as f32 engine tensors, built on
//! background threads.
//!
//! A batch holds, per view (one, or two for the intra-modal loss), one tensor per modality
//! with a leading batch dimension:
//!
//! | modality | stored | batch tensor |
//! |---|---|---|
//! | skeleton (and 17 / 15 joints) | (T, M, J, 3) f32 m | (B, T, M, J, 3) f32 metres, centred (below) |
//! | joint_state | (T, M, J) u8 | (B, T, M, J) f32 (0 / 1 / 2) |
//! | depth | (T, H, W) u16 mm | (B, T, 1, H', W') f32 metres (0 = hole) |
//! | rgb | (T, 3, H, W) u8 | (B, T, 3, H', W') f32 in [0, 1] (not mean/std normalised) |
//! | points | (T, P, 3) f32 m | (B, T, P, 3) f32 metres, camera coordinates |
//!
//! plus the labels (B,) i64, the samples' metadata, and the degradation reports. `H', W'` is
//! `LoaderConfig::image_size` (default: the stored size). Skeletons are moved so that the mean
//! of body 0's joints in its first frame is the origin (`centre_skeletons`), which is what
//! shear and rotation expect.
//!
//! Determinism: batch `b` of epoch `e` depends only on (seed, e, b): the sample order comes from
//! a generator keyed by (seed, e), and each sample's augmentations and degradations from its
//! own streams keyed by (seed, e, sample, view, purpose) (see `rng`). Worker `w` of `n` builds
//! batches `w, w + n, ...` into its own bounded queue and the consumer takes them round-robin,
//! so batches arrive in order and are the same whatever the number of threads.
//!
//! Errors (a record that cannot be read or holds non-finite values) are returned by the
//! iterator at that batch's place, after which the epoch ends. Dropping an `Epoch` early stops
//! and joins its threads.

use super::augment::{
    depth_view, joint_state_view, points_view, rgb_view, skeleton_centre, skeleton_view, ImageDims,
    PointsAug, PointsParams, RgbdAug, RgbdParams, Scratch, SkeletonAug, SkeletonDims,
    SkeletonParams,
};
use super::degrade::{Degradations, Report, StreamMut};
use super::format::{stream_file_name, Dataset};
use super::layouts::SkeletonLayout;
use super::rng::{sample_rng, shuffle_rng, Purpose};
use super::{DataError, DataResult, Modality, SampleMeta};
use engine::{buffer_cache, Device, Tensor};
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The augmentations of every view (when `LoaderConfig::augment` is set).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Augmentations {
    pub skeleton: SkeletonAug,
    pub rgbd: RgbdAug,
    pub points: PointsAug,
    /// The (left, right) joint pairs the flip swaps, per skeleton stream, where they differ
    /// from its layout's (`layouts::SkeletonLayout::of`, which is used otherwise). Joint states
    /// use the 25-joint skeleton's pairs.
    pub flip_pairs: BTreeMap<Modality, Vec<(usize, usize)>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// The streams each batch holds, in this order (also the order of the dropped flags).
    pub modalities: Vec<Modality>,
    pub batch_size: usize,
    /// A new order every epoch (seeded); otherwise the order of the given indices.
    pub shuffle: bool,
    /// Leave out the last, smaller batch.
    pub drop_last: bool,
    pub seed: u64,
    /// Background threads building batches; 0 builds them on the caller's thread.
    pub threads: usize,
    /// Finished batches each thread may queue ahead.
    pub prefetch: usize,
    /// Views per sample: 1, or 2 for the intra-modal loss.
    pub views: usize,
    /// Augment every view; None gives the stored data (centred, resized) in every view.
    pub augment: Option<Augmentations>,
    /// Degrade every view after augmentation.
    pub degrade: Option<Degradations>,
    pub centre_skeletons: bool,
    /// Output (height, width) of depth and RGB; None keeps the stored size.
    pub image_size: Option<(usize, usize)>,
}

impl LoaderConfig {
    /// One plain view of `modalities` in shuffled batches of `batch_size`, two threads.
    pub fn new(modalities: &[Modality], batch_size: usize) -> LoaderConfig {
        LoaderConfig {
            modalities: modalities.to_vec(),
            batch_size,
            shuffle: true,
            drop_last: false,
            seed: 0,
            threads: 2,
            prefetch: 2,
            views: 1,
            augment: None,
            degrade: None,
            centre_skeletons: true,
            image_size: None,
        }
    }
}

/// One view of a batch.
#[derive(Debug)]
pub struct View {
    /// One tensor per loaded modality (shapes in the module docs).
    pub streams: BTreeMap<Modality, Tensor>,
    /// (B, K) f32: 1 where the k-th modality of `Batch::modalities` was dropped (all zeros).
    pub dropped: Tensor,
    /// With skeleton masking: the (B, T, M, J) f32 mask, 1 where a joint was hidden.
    pub mask: Option<Tensor>,
    /// With skeleton masking: the masked stream as it was before any degradation (the
    /// reconstruction target of L_deg), same shape as the stream.
    pub clean: Option<Tensor>,
}

/// A batch of samples.
#[derive(Debug)]
pub struct Batch {
    pub epoch: u64,
    /// The batch's position in its epoch.
    pub index: usize,
    /// Dataset indices of the samples, in batch order.
    pub samples: Vec<u32>,
    pub metas: Vec<SampleMeta>,
    /// (B,) i64 class labels.
    pub labels: Tensor,
    pub modalities: Vec<Modality>,
    /// One or two views.
    pub views: Vec<View>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The tensor of `modality` in view `view`.
    pub fn stream(&self, view: usize, modality: Modality) -> Option<&Tensor> {
        self.views.get(view)?.streams.get(&modality)
    }
}

/// How one modality goes from record to batch.
#[derive(Debug)]
struct Plan {
    modality: Modality,
    in_dims: Vec<usize>,
    /// Per-sample output shape (without the batch dimension).
    out_dims: Vec<usize>,
    numel: usize,
}

#[derive(Debug)]
struct Shared {
    dataset: Arc<Dataset>,
    cfg: LoaderConfig,
    indices: Vec<u32>,
    plans: Vec<Plan>,
    /// With skeleton masking: the masked stream's position in `plans` and its shape.
    mask: Option<(usize, SkeletonDims)>,
}

/// Which half of a split a loader draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Train,
    Test,
}

/// Batches of a dataset's samples; `epoch(e)` iterates over one epoch.
#[derive(Clone, Debug)]
pub struct Loader {
    shared: Arc<Shared>,
}

impl Loader {
    /// A loader over `indices` (e.g. a split's train list) of `dataset`. Checks the config
    /// against the dataset's streams.
    pub fn new(dataset: Arc<Dataset>, indices: &[u32], cfg: LoaderConfig) -> DataResult<Loader> {
        let bad = |msg: String| Err(DataError::Invalid(msg));
        if cfg.modalities.is_empty() {
            return bad("the loader needs at least one modality".into());
        }
        if cfg.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if !(1..=2).contains(&cfg.views) {
            return bad(format!("views must be 1 or 2, got {}", cfg.views));
        }
        if let Some((h, w)) = cfg.image_size {
            if h == 0 || w == 0 {
                return bad(format!("image size must be positive, got {h}x{w}"));
            }
        }
        if let Some(&i) = indices.iter().find(|&&i| i as usize >= dataset.len()) {
            return bad(format!(
                "sample index {i} is out of range: the dataset has {} samples",
                dataset.len()
            ));
        }
        let mut plans: Vec<Plan> = Vec::new();
        for &m in &cfg.modalities {
            if plans.iter().any(|p| p.modality == m) {
                return bad(format!("modality {m} is listed twice"));
            }
            let in_dims = dataset
                .spec()
                .dims_of(m)
                .ok_or_else(|| {
                    DataError::Invalid(format!(
                        "dataset {} has no {m} stream",
                        dataset.dir().display()
                    ))
                })?
                .to_vec();
            let out_dims = out_dims(m, &in_dims, cfg.image_size)?;
            plans.push(Plan {
                modality: m,
                numel: out_dims.iter().product(),
                in_dims,
                out_dims,
            });
        }
        if let Some(a) = &cfg.augment {
            a.skeleton.check()?;
            a.rgbd.check()?;
            a.points.check()?;
            for p in &plans {
                let (owner, joints) = match p.modality {
                    Modality::JointState => (Modality::Skeleton, p.in_dims[2]),
                    Modality::Skeleton | Modality::Skeleton17 | Modality::Skeleton15 => {
                        (p.modality, p.in_dims[2])
                    }
                    _ => continue,
                };
                if a.skeleton.flip_p == 0.0 {
                    continue;
                }
                let Some(pairs) = flip_pairs(a, owner) else {
                    return bad(format!(
                        "the skeleton flip needs the left/right joint pairs of {owner}: \
                         set augment.flip_pairs, or skeleton.flip_p = 0"
                    ));
                };
                if let Some(&(l, r)) = pairs.iter().find(|&&(l, r)| l >= joints || r >= joints) {
                    return bad(format!(
                        "{owner} flip pair ({l}, {r}) is beyond the {joints} joints (a \
                         dataset of another joint layout needs augment.flip_pairs)"
                    ));
                }
            }
        }
        let mut mask = None;
        if let Some(d) = &cfg.degrade {
            d.check(&cfg.modalities)?;
            if let Some(m) = &d.skeleton_mask {
                let k = plans.iter().position(|p| p.modality == m.modality);
                // Present: checked by `d.check`.
                let k = k.unwrap_or(0);
                mask = Some((k, SkeletonDims::from_dims(&plans[k].out_dims)?));
            }
        }
        Ok(Loader {
            shared: Arc::new(Shared {
                dataset,
                indices: indices.to_vec(),
                plans,
                mask,
                cfg,
            }),
        })
    }

    /// A loader over the train or test samples of the dataset's split called `split`.
    pub fn from_split(
        dataset: Arc<Dataset>,
        split: &str,
        part: Part,
        cfg: LoaderConfig,
    ) -> DataResult<Loader> {
        let s = dataset.split(split).ok_or_else(|| {
            let names: Vec<&str> = dataset.splits().iter().map(|s| s.name.as_str()).collect();
            DataError::Invalid(format!(
                "dataset {} has no split {split:?} (it has {names:?})",
                dataset.dir().display()
            ))
        })?;
        let indices = match part {
            Part::Train => s.train.clone(),
            Part::Test => s.test.clone(),
        };
        Loader::new(dataset, &indices, cfg)
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.shared.cfg
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.shared.dataset
    }

    /// The samples the loader draws from.
    pub fn indices(&self) -> &[u32] {
        &self.shared.indices
    }

    /// The per-sample shape of `modality` in a batch (without the batch dimension).
    pub fn sample_dims(&self, modality: Modality) -> Option<&[usize]> {
        self.shared
            .plans
            .iter()
            .find(|p| p.modality == modality)
            .map(|p| p.out_dims.as_slice())
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let (n, b) = (self.shared.indices.len(), self.shared.cfg.batch_size);
        if self.shared.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sample order of `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<u32> {
        let mut order = self.shared.indices.clone();
        if self.shared.cfg.shuffle {
            order.shuffle(&mut shuffle_rng(self.shared.cfg.seed, epoch));
        }
        order
    }

    /// Iterates over the batches of `epoch`, starting the background threads.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from batch `first` on (a resumed run's first epoch): the same
    /// batches `epoch(epoch)` yields from that position, without building the ones before.
    pub fn epoch_from(&self, epoch: u64, first: usize) -> Epoch {
        let order = Arc::new(self.order(epoch));
        let batches = self.len();
        let first = first.min(batches);
        let stop = Arc::new(AtomicBool::new(false));
        let n = self.shared.cfg.threads.min(batches - first);
        let workers = (0..n)
            .map(|w| {
                let (tx, rx) = sync_channel(self.shared.cfg.prefetch);
                let job = Job {
                    shared: self.shared.clone(),
                    order: order.clone(),
                    epoch,
                    stop: stop.clone(),
                };
                let handle = std::thread::Builder::new()
                    .name(format!("loader-{w}"))
                    .spawn(move || job.run(first + w, n, batches, tx));
                Worker {
                    rx: Some(rx),
                    handle: handle.ok(),
                }
            })
            .collect();
        Epoch {
            shared: self.shared.clone(),
            order,
            epoch,
            first,
            next: first,
            batches,
            done: false,
            stop,
            workers,
            scratch: Scratch::default(),
        }
    }
}

/// The per-sample output shape of modality `m` stored as `dims`.
fn out_dims(m: Modality, dims: &[usize], image: Option<(usize, usize)>) -> DataResult<Vec<usize>> {
    let bad = || {
        Err(DataError::Shape(format!(
            "the loader cannot read {m} records of shape {dims:?}"
        )))
    };
    match (m, dims) {
        (Modality::Skeleton | Modality::Skeleton17 | Modality::Skeleton15, &[t, _, _, 3])
            if t > 0 =>
        {
            Ok(dims.to_vec())
        }
        (Modality::JointState, &[t, _, _]) if t > 0 => Ok(dims.to_vec()),
        (Modality::Depth, &[t, h, w]) if t > 0 && h > 0 && w > 0 => {
            let (oh, ow) = image.unwrap_or((h, w));
            Ok(vec![t, 1, oh, ow])
        }
        (Modality::Rgb, &[t, 3, h, w]) if t > 0 && h > 0 && w > 0 => {
            let (oh, ow) = image.unwrap_or((h, w));
            Ok(vec![t, 3, oh, ow])
        }
        (Modality::Points, &[t, p, 3]) if t > 0 && p > 0 => Ok(dims.to_vec()),
        _ => bad(),
    }
}

struct Worker {
    rx: Option<Receiver<DataResult<Batch>>>,
    handle: Option<JoinHandle<()>>,
}

/// What a background thread needs to build its share of an epoch.
struct Job {
    shared: Arc<Shared>,
    order: Arc<Vec<u32>>,
    epoch: u64,
    stop: Arc<AtomicBool>,
}

impl Job {
    /// Builds batches `start, start + n, ...` until done, stopped, or the consumer is gone.
    fn run(self, start: usize, n: usize, batches: usize, tx: SyncSender<DataResult<Batch>>) {
        let mut scratch = Scratch::default();
        for b in (start..batches).step_by(n) {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let r = build_batch(&self.shared, &self.order, self.epoch, b, &mut scratch);
            let failed = r.is_err();
            if tx.send(r).is_err() || failed {
                return;
            }
        }
    }
}

/// One epoch's batches, in order. Dropping it stops and joins its threads.
pub struct Epoch {
    shared: Arc<Shared>,
    order: Arc<Vec<u32>>,
    epoch: u64,
    /// The first batch this iterator yields (worker `w` builds `first + w, first + w + n, ...`).
    first: usize,
    next: usize,
    batches: usize,
    done: bool,
    stop: Arc<AtomicBool>,
    workers: Vec<Worker>,
    /// For building on the caller's thread (no workers).
    scratch: Scratch,
}

impl Epoch {
    /// The sample order of this epoch.
    pub fn order(&self) -> &[u32] {
        &self.order
    }
}

impl Iterator for Epoch {
    type Item = DataResult<Batch>;

    fn next(&mut self) -> Option<DataResult<Batch>> {
        if self.done || self.next >= self.batches {
            return None;
        }
        let b = self.next;
        self.next += 1;
        let r = if self.workers.is_empty() {
            build_batch(&self.shared, &self.order, self.epoch, b, &mut self.scratch)
        } else {
            let n = self.workers.len();
            let w = (b - self.first) % n;
            let rx = self.workers[w].rx.as_ref();
            match rx.map(|rx| rx.recv()) {
                Some(Ok(r)) => r,
                // The thread ended without sending: it panicked (or never started).
                _ => Err(DataError::Invalid(format!(
                    "loader thread {w} stopped before building batch {b}"
                ))),
            }
        };
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = if self.done {
            0
        } else {
            self.batches - self.next
        };
        (0, Some(left))
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers unblocks threads waiting on a full queue.
        for w in &mut self.workers {
            w.rx = None;
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                // A thread that panicked has nothing left to clean up.
                let _ = h.join();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Building a batch

fn tensor(values: Vec<f32>, dims: Vec<usize>) -> DataResult<Tensor> {
    Tensor::from_vec(values, dims, Device::Cpu)
        .map_err(|e| DataError::Shape(format!("batch tensor: {e}")))
}

/// A batch buffer of `n` f32 that the loader overwrites completely (recycled by the engine's
/// buffer cache when a big enough earlier batch has been dropped: no page faults per batch).
fn batch_buffer(n: usize) -> Vec<f32> {
    buffer_cache::alloc_for_overwrite::<f32>(n)
}

/// The output buffers of one view.
struct ViewBuffers {
    streams: Vec<Vec<f32>>,
    dropped: Vec<f32>,
    mask: Option<Vec<f32>>,
    clean: Option<Vec<f32>>,
}

fn build_batch(
    sh: &Shared,
    order: &[u32],
    epoch: u64,
    b: usize,
    scratch: &mut Scratch,
) -> DataResult<Batch> {
    let bs = sh.cfg.batch_size;
    let ids = &order[b * bs..((b + 1) * bs).min(order.len())];
    let n = ids.len();
    let k = sh.plans.len();
    let cells = |d: &SkeletonDims| d.frames * d.bodies * d.joints;
    let mut views: Vec<ViewBuffers> = (0..sh.cfg.views)
        .map(|_| ViewBuffers {
            streams: sh.plans.iter().map(|p| batch_buffer(n * p.numel)).collect(),
            dropped: vec![0.0; n * k],
            mask: sh.mask.map(|(_, d)| batch_buffer(n * cells(&d))),
            clean: sh.mask.map(|(s, _)| batch_buffer(n * sh.plans[s].numel)),
        })
        .collect();

    for (j, &i) in ids.iter().enumerate() {
        for (v, buf) in views.iter_mut().enumerate() {
            for (p, out) in sh.plans.iter().zip(&mut buf.streams) {
                let dst = &mut out[j * p.numel..(j + 1) * p.numel];
                fill_stream(sh, p, epoch, i, v as u32, dst, scratch)?;
            }
            if let Some(d) = &sh.cfg.degrade {
                let mut streams: Vec<StreamMut<'_>> = sh
                    .plans
                    .iter()
                    .zip(&mut buf.streams)
                    .map(|(p, out)| StreamMut {
                        modality: p.modality,
                        dims: &p.out_dims,
                        data: &mut out[j * p.numel..(j + 1) * p.numel],
                    })
                    .collect();
                let mask_len = sh.mask.map_or(0, |(_, d)| cells(&d));
                let clean_len = sh.mask.map_or(0, |(s, _)| sh.plans[s].numel);
                let report = Report {
                    dropped: &mut buf.dropped[j * k..(j + 1) * k],
                    mask: buf
                        .mask
                        .as_mut()
                        .map(|m| &mut m[j * mask_len..(j + 1) * mask_len]),
                    clean: buf
                        .clean
                        .as_mut()
                        .map(|c| &mut c[j * clean_len..(j + 1) * clean_len]),
                };
                let mut rng =
                    sample_rng(sh.cfg.seed, epoch, u64::from(i), v as u32, Purpose::Degrade);
                d.apply(&mut streams, &mut rng, scratch, report)?;
            }
        }
    }

    let with_batch = |d: &[usize]| {
        let mut dims = vec![n];
        dims.extend_from_slice(d);
        dims
    };
    let mut out_views = Vec::with_capacity(views.len());
    for buf in views {
        let mut streams = BTreeMap::new();
        for (p, values) in sh.plans.iter().zip(buf.streams) {
            streams.insert(p.modality, tensor(values, with_batch(&p.out_dims))?);
        }
        let mask = match (buf.mask, sh.mask) {
            (Some(m), Some((_, d))) => {
                Some(tensor(m, with_batch(&[d.frames, d.bodies, d.joints]))?)
            }
            _ => None,
        };
        let clean = match (buf.clean, sh.mask) {
            (Some(c), Some((s, _))) => Some(tensor(c, with_batch(&sh.plans[s].out_dims))?),
            _ => None,
        };
        out_views.push(View {
            streams,
            dropped: tensor(buf.dropped, vec![n, k])?,
            mask,
            clean,
        });
    }

    let metas: Vec<SampleMeta> = ids
        .iter()
        .map(|&i| sh.dataset.meta(i as usize).cloned())
        .collect::<DataResult<_>>()?;
    let labels: Vec<i64> = metas.iter().map(|m| i64::from(m.label)).collect();
    Ok(Batch {
        epoch,
        index: b,
        samples: ids.to_vec(),
        labels: Tensor::from_vec(labels, [n], Device::Cpu)
            .map_err(|e| DataError::Shape(format!("labels: {e}")))?,
        metas,
        modalities: sh.cfg.modalities.clone(),
        views: out_views,
    })
}

/// A record's f32 values, refusing NaN and infinities (a corrupt record).
fn finite_f32<'a>(
    sh: &Shared,
    i: u32,
    m: Modality,
    view: &super::ArrayView<'a>,
) -> DataResult<&'a [f32]> {
    let corrupt = |msg: String| DataError::Format {
        path: sh.dataset.dir().join(stream_file_name(m)),
        msg,
    };
    let v = view
        .as_f32()
        .ok_or_else(|| corrupt(format!("sample {i}: {m} record is not f32")))?;
    // A branch-free scan first (vectorised); the position only when something is wrong.
    let bad = v.iter().fold(false, |bad, x| bad | !x.is_finite());
    if bad {
        let k = v.iter().position(|x| !x.is_finite()).unwrap_or(0);
        return Err(corrupt(format!(
            "sample {i}: {m} record holds {} at element {k} (corrupt?)",
            v[k]
        )));
    }
    Ok(v)
}

fn wrong_elem(sh: &Shared, i: u32, m: Modality) -> DataError {
    DataError::Format {
        path: sh.dataset.dir().join(stream_file_name(m)),
        msg: format!("sample {i}: {m} record is not {}", m.elem().name()),
    }
}

/// The flip pairs of skeleton stream `owner`: the configured ones, else its layout's.
fn flip_pairs(a: &Augmentations, owner: Modality) -> Option<&[(usize, usize)]> {
    match a.flip_pairs.get(&owner) {
        Some(p) => Some(p),
        None => SkeletonLayout::of(owner).map(|l| l.mirror_pairs),
    }
}

/// The random stream of a skeleton convention's geometry and noise.
fn skeleton_purpose(m: Modality) -> Purpose {
    match m {
        Modality::Skeleton17 => Purpose::Skeleton17,
        Modality::Skeleton15 => Purpose::Skeleton15,
        _ => Purpose::Skeleton,
    }
}

/// Writes view `view` of sample `i`'s stream `p` into `dst`.
fn fill_stream(
    sh: &Shared,
    p: &Plan,
    epoch: u64,
    i: u32,
    view: u32,
    dst: &mut [f32],
    scratch: &mut Scratch,
) -> DataResult<()> {
    let m = p.modality;
    let record = sh.dataset.record(i as usize, m)?;
    let aug = sh.cfg.augment.as_ref();
    let rng = |purpose| sample_rng(sh.cfg.seed, epoch, u64::from(i), view, purpose);
    let pairs = |owner: Modality| aug.and_then(|a| flip_pairs(a, owner)).unwrap_or(&[]);
    match m {
        Modality::Skeleton | Modality::Skeleton17 | Modality::Skeleton15 => {
            let src = finite_f32(sh, i, m, &record)?;
            let dims = SkeletonDims::from_dims(&p.in_dims)?;
            let mut rng = rng(skeleton_purpose(m));
            let params = match aug {
                Some(a) => a.skeleton.sample(&mut rng, dims.frames),
                None => SkeletonParams::identity(dims.frames),
            };
            let centre = if sh.cfg.centre_skeletons {
                skeleton_centre(src, dims.bodies, dims.joints)
            } else {
                None
            };
            skeleton_view(src, dims, centre, &params, pairs(m), &mut rng, dst, scratch)
        }
        Modality::JointState => {
            let src = record.as_u8().ok_or_else(|| wrong_elem(sh, i, m))?;
            let (frames, joints) = (p.in_dims[0], p.in_dims[2]);
            // The skeleton's geometry, replayed from the start of its stream.
            let params = match aug {
                Some(a) => a.skeleton.sample(&mut rng(Purpose::Skeleton), frames),
                None => SkeletonParams::identity(frames),
            };
            joint_state_view(src, frames, joints, &params, pairs(Modality::Skeleton), dst)
        }
        Modality::Depth | Modality::Rgb => {
            let (frames, channels, height, width) = match (m, p.in_dims.as_slice()) {
                (Modality::Depth, &[t, h, w]) => (t, 1, h, w),
                (_, &[t, c, h, w]) => (t, c, h, w),
                _ => return Err(DataError::Shape(format!("{m} of shape {:?}", p.in_dims))),
            };
            let dims = ImageDims {
                frames,
                channels,
                height,
                width,
            };
            let out_hw = (p.out_dims[2], p.out_dims[3]);
            // Depth and RGB of a view draw the same geometry from the shared stream.
            let params = match aug {
                Some(a) => a
                    .rgbd
                    .sample(&mut rng(Purpose::Rgbd), frames, height, width),
                None => RgbdParams::identity(frames, height, width),
            };
            if m == Modality::Depth {
                let src = record.as_u16().ok_or_else(|| wrong_elem(sh, i, m))?;
                depth_view(src, dims, &params, out_hw, dst, scratch)?;
                if let Some(a) = aug {
                    let mut rng = rng(Purpose::DepthNoise);
                    if rng.gen::<f32>() < a.rgbd.depth_noise_p {
                        super::augment::depth_noise(dst, a.rgbd.depth_noise_std, &mut rng);
                    }
                }
            } else {
                let src = record.as_u8().ok_or_else(|| wrong_elem(sh, i, m))?;
                let jitter = aug.and_then(|a| a.rgbd.jitter.sample(&mut rng(Purpose::RgbColour)));
                rgb_view(src, dims, &params, jitter.as_ref(), out_hw, dst, scratch)?;
            }
            Ok(())
        }
        Modality::Points => {
            let src = finite_f32(sh, i, m, &record)?;
            let mut rng = rng(Purpose::Points);
            let params = match aug {
                Some(a) => a.points.sample(&mut rng),
                None => PointsParams::identity(),
            };
            points_view(src, p.in_dims[1], &params, &mut rng, dst, scratch)
        }
    }
}
