//! The engine: tensors, reverse-mode autograd, and the backends that run the ops.
//!
//! Every op lives in `ops/<family>/`: `mod.rs` holds the public API (methods on [`Tensor`]),
//! the shape checks and the backward rule; `cpu.rs` holds the reference kernels (f32 and f64);
//! the CUDA backend adds a `cuda.rs` beside them.
//!
//! ```
//! use engine::{DType, Device, Tensor};
//! # fn main() -> engine::Result<()> {
//! let x = Tensor::rand_normal([4, 3], 0.0, 1.0, 42, DType::F32, Device::Cpu)?.with_requires_grad()?;
//! let loss = x.tanh()?.square()?.mean_all()?;
//! loss.backward()?;
//! let grad = x.grad().expect("x is a leaf that requires a gradient");
//! assert_eq!(grad.dims(), &[4, 3]);
//! # Ok(())
//! # }
//! ```

pub mod autograd;
pub mod buffer_cache;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod dtype;
pub mod error;
pub mod gradcheck;
pub mod io;
pub mod math;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod shape;
pub mod storage;
pub mod tensor;

pub use autograd::{is_grad_enabled, no_grad, NoGradGuard};
pub use device::Device;
pub use dtype::{DType, Float};
pub use error::{Error, Result};
pub use ops::softmax::Reduction;
pub use shape::Shape;
pub use storage::{CpuStorage, Element, Storage};
pub use tensor::Tensor;
