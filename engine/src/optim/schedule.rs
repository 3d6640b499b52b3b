//! Learning-rate schedules: the learning rate as a function of the global step (0-based), to be
//! applied with `optimizer.set_lr(schedule.lr_at(step))` before each update.

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    Constant {
        lr: f64,
    },
    /// Linear warm-up from 0 (at step 0) to `base_lr` (at `warmup_steps`), then a half cosine
    /// from `base_lr` down to `min_lr` at `total_steps`, and `min_lr` after that.
    WarmupCosine {
        base_lr: f64,
        warmup_steps: usize,
        total_steps: usize,
        min_lr: f64,
    },
    /// `base_lr * gamma^(step / step_size)` (integer division), like `torch.optim.lr_scheduler.StepLR`.
    StepDecay {
        base_lr: f64,
        step_size: usize,
        gamma: f64,
    },
}

impl LrSchedule {
    /// Checks the parameters (finite, non-negative rates, sensible step counts).
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid("LrSchedule", msg));
        let rate_ok = |x: f64| x.is_finite() && x >= 0.0;
        match *self {
            LrSchedule::Constant { lr } if !rate_ok(lr) => bad(format!("bad learning rate {lr}")),
            LrSchedule::WarmupCosine {
                base_lr,
                warmup_steps,
                total_steps,
                min_lr,
            } => {
                if !rate_ok(base_lr) || !rate_ok(min_lr) {
                    bad(format!("bad learning rates base {base_lr}, min {min_lr}"))
                } else if total_steps < warmup_steps {
                    bad(format!(
                        "total_steps ({total_steps}) is shorter than warmup_steps ({warmup_steps})"
                    ))
                } else {
                    Ok(())
                }
            }
            LrSchedule::StepDecay {
                base_lr,
                step_size,
                gamma,
            } => {
                if !rate_ok(base_lr) || !rate_ok(gamma) {
                    bad(format!("bad base_lr {base_lr} or gamma {gamma}"))
                } else if step_size == 0 {
                    bad("step_size must be at least 1".into())
                } else {
                    Ok(())
                }
            }
            LrSchedule::Constant { .. } => Ok(()),
        }
    }

    /// The learning rate at `step`.
    pub fn lr_at(&self, step: usize) -> f64 {
        match *self {
            LrSchedule::Constant { lr } => lr,
            LrSchedule::WarmupCosine {
                base_lr,
                warmup_steps,
                total_steps,
                min_lr,
            } => {
                if step < warmup_steps {
                    base_lr * step as f64 / warmup_steps as f64
                } else if step >= total_steps {
                    min_lr
                } else {
                    let progress =
                        (step - warmup_steps) as f64 / (total_steps - warmup_steps) as f64;
                    min_lr
                        + (base_lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
            LrSchedule::StepDecay {
                base_lr,
                step_size,
                gamma,
            } => {
                // An invalid step_size of 0 reads as "never decay" rather than dividing by zero.
                let decays = step.checked_div(step_size).unwrap_or(0);
                base_lr * gamma.powf(decays as f64)
            }
        }
    }
}
