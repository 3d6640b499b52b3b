//! Reverse-mode automatic differentiation.
//!
//! Every tensor made by a differentiable op while gradients are enabled, from at least one input
//! that requires a gradient, carries a `Node`: the op's inputs and its backward rule. `backward()`
//! walks the graph in reverse topological order, summing the gradients that reach a tensor from
//! each of its uses, and stores the totals in the leaves' `.grad()`. Each node is consumed as it
//! is used, so the graph's memory (saved inputs, closures) is released by the backward pass.

use crate::{Error, Result, Tensor};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// A backward rule: given the gradient of the op's output and the output itself, the gradient
/// for each input, in input order (`None` where an input gets no gradient).
pub type BackwardFn =
    Box<dyn FnOnce(&Tensor, &Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

pub(crate) struct Node {
    pub(crate) op: &'static str,
    /// Taken (and so freed) when the backward pass runs through this node.
    pub(crate) saved: Mutex<Option<(Vec<Tensor>, BackwardFn)>>,
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops record the graph on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Runs `f` without recording a graph (evaluation, optimizer updates, backward rules).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Disables graph recording until dropped; restores the previous mode (so guards nest).
pub struct NoGradGuard {
    previous: bool,
}

impl NoGradGuard {
    pub fn new() -> NoGradGuard {
        let previous = GRAD_ENABLED.with(|g| g.replace(false));
        NoGradGuard { previous }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Tensors reachable from `root` through nodes, each after every tensor that consumes it.
fn reverse_topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    // Iterative post-order DFS: deep graphs (long RNN-like chains) must not overflow the stack.
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, children_done)) = stack.pop() {
        if children_done {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        let inputs: Vec<Tensor> = match t.node() {
            Some(node) => match &*node.saved.lock().expect("autograd node lock") {
                Some((inputs, _)) => inputs
                    .iter()
                    .filter(|i| i.requires_grad())
                    .cloned()
                    .collect(),
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        stack.push((t, true));
        for i in inputs {
            if !visited.contains(&i.id()) {
                stack.push((i, false));
            }
        }
    }
    order.reverse();
    order
}

pub(crate) fn run_backward(root: &Tensor, grad: Tensor) -> Result<()> {
    if !root.requires_grad() {
        return Err(Error::Autograd(
            "the tensor does not require a gradient (no input of its graph has requires_grad)"
                .into(),
        ));
    }
    if grad.dims() != root.dims() {
        return Err(Error::Autograd(format!(
            "gradient of shape {:?} given for a tensor of shape {:?}",
            grad.dims(),
            root.dims()
        )));
    }
    let order = reverse_topological_order(root);
    let mut grads: HashMap<usize, Tensor> = HashMap::new();
    grads.insert(root.id(), grad);
    let _guard = NoGradGuard::new();
    for t in order {
        let Some(g) = grads.remove(&t.id()) else {
            continue;
        };
        let Some(node) = t.node() else {
            t.accumulate_grad(g)?;
            continue;
        };
        let saved = node.saved.lock().expect("autograd node lock").take();
        let Some((inputs, rule)) = saved else {
            return Err(Error::Autograd(format!(
                "the graph through '{}' was already freed by an earlier backward(); recompute the forward pass",
                node.op
            )));
        };
        let input_grads = rule(&g, &t)?;
        debug_assert_eq!(
            input_grads.len(),
            inputs.len(),
            "backward rule of {}",
            node.op
        );
        for (input, ig) in inputs.iter().zip(input_grads) {
            let Some(ig) = ig else { continue };
            if !input.requires_grad() {
                continue;
            }
            if ig.dims() != input.dims() {
                return Err(Error::Autograd(format!(
                    "backward of '{}' produced a gradient of shape {:?} for an input of shape {:?}",
                    node.op,
                    ig.dims(),
                    input.dims()
                )));
            }
            let total = match grads.remove(&input.id()) {
                Some(prev) => prev.add(&ig)?,
                None => ig,
            };
            grads.insert(input.id(), total);
        }
    }
    Ok(())
}
