//! The ST-GCN graph of one skeleton layout: spatial partitioning into K = 3 adjacency matrices,
//! zero-padded to a common joint count so several conventions share one tensor layout.

use crate::data::layouts::SkeletonLayout;
use engine::ops::graph::MAX_JOINTS;
use engine::{DType, Device, Error, Result, Tensor};
use std::collections::VecDeque;

/// The number of spatial partitions (self, centripetal, centrifugal).
pub const NUM_PARTITIONS: usize = 3;

const OP: &str = "SkeletonGraph::spatial";

/// The K = 3 spatial-partition adjacency of one skeleton layout, padded to `v_pad` joints, and
/// the mask of its real joints.
///
/// Entry `a[k][v][w]` weighs the message from source joint `v` to target joint `w` in partition
/// `k`, the layout `Tensor::graph_aggregate` expects (`y[w] = sum_v x[v] a[k,v,w]`). Every
/// nonzero entry of column `w` equals `1 / deg(w)`, where `deg(w)` counts `w`'s neighbours plus
/// itself (ST-GCN's in-degree normalisation `A D^-1`), so the summed partitions average over the
/// closed neighbourhood of each real joint: each real column sums to 1. Rows and columns of
/// padded joints (indices `num_joints..v_pad`) are zero.
///
/// Partitions, by hop distance `r` to the layout's centre joint (ST-GCN's code, `graph.py`):
/// - `k = 0`, self: `v == w`;
/// - `k = 1`, centripetal: `v` a neighbour of `w` with `r(v) >= r(w)` (the message travels
///   towards the centre; equal distances, possible only on a cycle, land here as in ST-GCN's
///   `a_root + a_close`);
/// - `k = 2`, centrifugal: `v` a neighbour of `w` with `r(v) < r(w)` (away from the centre).
///
/// A joint not connected to the centre has infinite distance: edges between two such joints are
/// centripetal, edges from a connected joint to it centrifugal.
#[derive(Clone, Debug, PartialEq)]
pub struct SkeletonGraph {
    name: &'static str,
    num_joints: usize,
    v_pad: usize,
    /// `(K, v_pad, v_pad)` row-major.
    a: Vec<f64>,
}

impl SkeletonGraph {
    /// Spatial partitioning (self, centripetal, centrifugal w.r.t. the layout's centre joint,
    /// by hop distance to it, as ST-GCN), each partition normalised by in-degree; rows are
    /// sources as `Tensor::graph_aggregate` expects (`y[w] = sum_v x[v] a[k,v,w]`).
    ///
    /// Errors when `v_pad` is smaller than the layout's joint count or above the graph op's
    /// limit (`MAX_JOINTS`), or when the layout's bones or centre name a joint it lacks.
    pub fn spatial(layout: &SkeletonLayout, v_pad: usize) -> Result<SkeletonGraph> {
        let j = layout.num_joints();
        if j == 0 {
            return Err(Error::invalid(
                OP,
                format!("layout '{}' has no joints", layout.name),
            ));
        }
        if v_pad < j || v_pad > MAX_JOINTS {
            return Err(Error::invalid(
                OP,
                format!(
                    "layout '{}' has {j} joints: v_pad must be between {j} and {MAX_JOINTS}, got {v_pad}",
                    layout.name
                ),
            ));
        }
        if layout.centre >= j {
            return Err(Error::invalid(
                OP,
                format!(
                    "layout '{}': centre joint {} out of range for {j} joints",
                    layout.name, layout.centre
                ),
            ));
        }
        let mut neighbours = vec![vec![false; j]; j];
        for &(a, b) in layout.bones {
            if a >= j || b >= j || a == b {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "layout '{}': bone ({a}, {b}) must join two different joints below {j}",
                        layout.name
                    ),
                ));
            }
            neighbours[a][b] = true;
            neighbours[b][a] = true;
        }
        // Hop distance to the centre (breadth-first); usize::MAX where unreachable.
        let mut dist = vec![usize::MAX; j];
        dist[layout.centre] = 0;
        let mut queue = VecDeque::from([layout.centre]);
        while let Some(u) = queue.pop_front() {
            for w in 0..j {
                if neighbours[u][w] && dist[w] == usize::MAX {
                    dist[w] = dist[u] + 1;
                    queue.push_back(w);
                }
            }
        }
        let deg: Vec<usize> = (0..j)
            .map(|w| 1 + neighbours[w].iter().filter(|&&n| n).count())
            .collect();
        let mut a = vec![0.0; NUM_PARTITIONS * v_pad * v_pad];
        for w in 0..j {
            let value = 1.0 / deg[w] as f64;
            for v in 0..j {
                let k = if v == w {
                    0
                } else if !neighbours[v][w] {
                    continue;
                } else if dist[v] >= dist[w] {
                    1
                } else {
                    2
                };
                a[(k * v_pad + v) * v_pad + w] = value;
            }
        }
        Ok(SkeletonGraph {
            name: layout.name,
            num_joints: j,
            v_pad,
            a,
        })
    }

    /// The `(3, v_pad, v_pad)` partition stack as a tensor (constant, no gradient).
    pub fn adjacency(&self, dtype: DType, device: Device) -> Result<Tensor> {
        Tensor::from_vec(
            self.a.clone(),
            [NUM_PARTITIONS, self.v_pad, self.v_pad],
            device,
        )?
        .to_dtype(dtype)
    }

    /// The `(3, J, J)` stack restricted to the real joints (the padding dropped).
    pub fn adjacency_unpadded(&self, dtype: DType, device: Device) -> Result<Tensor> {
        let (j, vp) = (self.num_joints, self.v_pad);
        let mut a = Vec::with_capacity(NUM_PARTITIONS * j * j);
        for k in 0..NUM_PARTITIONS {
            for v in 0..j {
                let row = (k * vp + v) * vp;
                a.extend_from_slice(&self.a[row..row + j]);
            }
        }
        Tensor::from_vec(a, [NUM_PARTITIONS, j, j], device)?.to_dtype(dtype)
    }

    /// `(v_pad,)`: 1 at the real joints (the first `num_joints`), 0 at the padding. The form
    /// `Tensor::graph_aggregate` takes as its mask.
    pub fn mask(&self, dtype: DType, device: Device) -> Result<Tensor> {
        let m: Vec<f64> = (0..self.v_pad)
            .map(|v| if v < self.num_joints { 1.0 } else { 0.0 })
            .collect();
        Tensor::from_vec(m, [self.v_pad], device)?.to_dtype(dtype)
    }

    /// The layout's real joint count (the real joints are indices `0..num_joints`).
    pub fn num_joints(&self) -> usize {
        self.num_joints
    }

    /// The padded joint count every tensor of this graph has.
    pub fn v_pad(&self) -> usize {
        self.v_pad
    }

    /// The layout's name (`kinect25`, `coco17`, ...).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `a[k][v][w]` (0 outside the padded range is an error, not a value).
    pub fn entry(&self, k: usize, v: usize, w: usize) -> Result<f64> {
        if k >= NUM_PARTITIONS || v >= self.v_pad || w >= self.v_pad {
            return Err(Error::shape(
                "SkeletonGraph::entry",
                &[&[k, v, w]],
                format!(
                    "index out of range for ({NUM_PARTITIONS}, {}, {})",
                    self.v_pad, self.v_pad
                ),
            ));
        }
        Ok(self.a[(k * self.v_pad + v) * self.v_pad + w])
    }
}
