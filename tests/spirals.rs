//! The whole training loop: the spirals example must reach 95 % test accuracy.

#[path = "../examples/spirals.rs"]
mod spirals;

#[test]
fn spirals_mlp_reaches_95_percent() {
    let config = spirals::SpiralsConfig {
        verbose: false,
        ..Default::default()
    };
    let result = spirals::train(&config).unwrap();
    assert!(result.final_loss.is_finite());
    assert!(
        result.test_accuracy >= 0.95,
        "test accuracy {:.3} (train {:.3})",
        result.test_accuracy,
        result.train_accuracy
    );
}
