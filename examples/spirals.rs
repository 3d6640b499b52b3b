//! Two interleaved spirals, classified by an MLP trained with AdamW and a warm-up + cosine
//! schedule: the whole loop (data, model, loss, backward, optimizer, evaluation, checkpoint) on a
//! problem a linear model cannot solve.
//!
//!     cargo run --release --example spirals

use rcmcl::engine::io::save_checkpoint;
use rcmcl::engine::nn::{Activation, Mlp, MlpConfig, Module, ParamStore};
use rcmcl::engine::optim::{AdamW, AdamWConfig, LrSchedule, Optimizer};
use rcmcl::engine::{no_grad, DType, Device, Reduction, Result, Tensor};
use std::collections::BTreeMap;
use std::time::Instant;

pub struct SpiralsConfig {
    pub points_per_class: usize,
    pub hidden: usize,
    pub steps: usize,
    pub lr: f64,
    pub seed: u64,
    pub verbose: bool,
}

impl Default for SpiralsConfig {
    fn default() -> Self {
        SpiralsConfig {
            points_per_class: 500,
            hidden: 64,
            steps: 1500,
            lr: 0.01,
            seed: 0,
            verbose: true,
        }
    }
}

pub struct SpiralsResult {
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    pub final_loss: f64,
    pub seconds: f64,
    pub store: ParamStore,
}

/// Points on two spirals (class 0 and class 1, the second rotated by pi), with Gaussian noise.
pub fn two_spirals(points_per_class: usize, noise: f64, seed: u64) -> Result<(Tensor, Tensor)> {
    let n = points_per_class;
    let jitter =
        Tensor::rand_normal([2 * n, 2], 0.0, noise, seed, DType::F64, Device::Cpu)?.to_f64_vec()?;
    let position = Tensor::rand_uniform([2 * n], 0.0, 1.0, seed ^ 0x5eed, DType::F64, Device::Cpu)?
        .to_f64_vec()?;
    let mut xy = Vec::with_capacity(4 * n);
    let mut labels = Vec::with_capacity(2 * n);
    for i in 0..2 * n {
        let class = i % 2;
        // Radius grows with the angle; 1.75 turns keep the arms apart but interleaved.
        let t = position[i].sqrt() * 1.75 * 2.0 * std::f64::consts::PI;
        let angle = t + class as f64 * std::f64::consts::PI;
        let r = t / (1.75 * 2.0 * std::f64::consts::PI);
        xy.push(r * angle.cos() + jitter[2 * i]);
        xy.push(r * angle.sin() + jitter[2 * i + 1]);
        labels.push(class as i64);
    }
    Ok((
        Tensor::from_vec(xy, [2 * n, 2], Device::Cpu)?.to_dtype(DType::F32)?,
        Tensor::from_vec(labels, [2 * n], Device::Cpu)?,
    ))
}

fn accuracy(model: &Mlp, x: &Tensor, y: &Tensor) -> Result<f64> {
    let predicted = no_grad(|| model.forward(x)?.argmax(1, false))?.to_vec::<i64>()?;
    let truth = y.to_vec::<i64>()?;
    let correct = predicted.iter().zip(&truth).filter(|(p, t)| p == t).count();
    Ok(correct as f64 / truth.len() as f64)
}

pub fn train(config: &SpiralsConfig) -> Result<SpiralsResult> {
    let start = Instant::now();
    let (x_train, y_train) = two_spirals(config.points_per_class, 0.02, config.seed)?;
    let (x_test, y_test) = two_spirals(config.points_per_class / 2, 0.02, config.seed + 1)?;

    let store = ParamStore::with_seed(config.seed);
    let mlp = MlpConfig {
        activation: Activation::Relu,
        ..MlpConfig::new(&[2, config.hidden, config.hidden, 2])
    };
    let model = Mlp::new(&store.sub("mlp"), &mlp)?;
    let schedule = LrSchedule::WarmupCosine {
        base_lr: config.lr,
        warmup_steps: config.steps / 20,
        total_steps: config.steps,
        min_lr: config.lr * 0.01,
    };
    let mut optimizer = AdamW::from_store(
        &store,
        AdamWConfig {
            weight_decay: 1e-4,
            ..AdamWConfig::new(config.lr)
        },
    )?;

    let mut loss_value = f64::NAN;
    for step in 0..config.steps {
        optimizer.set_lr(schedule.lr_at(step));
        optimizer.zero_grad();
        let loss = model
            .forward(&x_train)?
            .cross_entropy(&y_train, Reduction::Mean, 0.0)?;
        loss.backward()?;
        optimizer.step()?;
        loss_value = loss.item()?;
        if config.verbose && (step % (config.steps / 10).max(1) == 0 || step + 1 == config.steps) {
            println!(
                "step {step:>5}  loss {loss_value:.4}  lr {:.5}",
                optimizer.lr()
            );
        }
    }
    Ok(SpiralsResult {
        train_accuracy: accuracy(&model, &x_train, &y_train)?,
        test_accuracy: accuracy(&model, &x_test, &y_test)?,
        final_loss: loss_value,
        seconds: start.elapsed().as_secs_f64(),
        store,
    })
}

#[allow(dead_code)] // the integration test includes this file for `train` only
fn main() -> Result<()> {
    let config = SpiralsConfig::default();
    println!(
        "two spirals: {} points, MLP 2-{h}-{h}-2 (ReLU), AdamW, {} steps",
        2 * config.points_per_class,
        config.steps,
        h = config.hidden
    );
    let result = train(&config)?;
    let path = std::env::temp_dir().join("spirals.safetensors");
    let mut meta = BTreeMap::new();
    meta.insert("example".to_string(), "spirals".to_string());
    save_checkpoint(&path, &result.store.params(), &meta)?;
    println!();
    println!("| metric | value |");
    println!("|---|---:|");
    println!("| final training loss | {:.4} |", result.final_loss);
    println!(
        "| train accuracy | {:.1} % |",
        100.0 * result.train_accuracy
    );
    println!("| test accuracy | {:.1} % |", 100.0 * result.test_accuracy);
    println!("| wall time | {:.2} s |", result.seconds);
    println!("checkpoint: {}", path.display());
    Ok(())
}
