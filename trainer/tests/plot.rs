//! Tests of trainer::plot: exact t-SNE and the PNG/SVG charts.
//!
//! Set `TRAINER_PLOT_DIR=/some/dir` to keep the charts these tests draw (to look at them).

use std::path::{Path, PathBuf};

use trainer::plot::tsne::{conditional_probabilities, kl_divergence, tsne_traced};
use trainer::plot::{
    embedding_scatter, gates_over_time, lines, tsne, PlotError, TsneConfig, CHART_SIZE,
    SCATTER_SIZE,
};

/// A small seeded generator for test data (SplitMix64 + Box-Muller).
struct Rng(u64);

impl Rng {
    fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (a, b) = (self.uniform(), self.uniform());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    }
}

/// `k` Gaussian clusters (std 1) of `per` points in `dim` dimensions, centres 12 apart along
/// different axes. Returns the points and their cluster.
fn clusters(k: usize, per: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = Rng(seed);
    let mut x = Vec::with_capacity(k * per * dim);
    let mut c = Vec::with_capacity(k * per);
    for i in 0..k * per {
        let cl = i % k;
        for d in 0..dim {
            let centre = if d == cl { 12.0 } else { 0.0 };
            x.push((centre + rng.normal()) as f32);
        }
        c.push(cl);
    }
    (x, c)
}

fn out_dir() -> (Option<tempfile::TempDir>, PathBuf) {
    match std::env::var_os("TRAINER_PLOT_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            std::fs::create_dir_all(&d).unwrap();
            (None, d)
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// t-SNE
// ---------------------------------------------------------------------------------------------

#[test]
fn calibrated_rows_have_the_requested_perplexity() {
    let (x, _) = clusters(3, 50, 10, 1);
    let n = 150;
    for perplexity in [5.0, 30.0, 80.0] {
        let (p, betas) = conditional_probabilities(&x, n, 10, perplexity).unwrap();
        assert_eq!(p.len(), n * n);
        for i in 0..n {
            let row = &p[i * n..(i + 1) * n];
            assert_eq!(row[i], 0.0);
            let sum: f64 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-12, "row {i} sums to {sum}");
            // Perplexity 2^H with H in bits.
            let h_bits: f64 = -row
                .iter()
                .filter(|&&v| v > 0.0)
                .map(|&v| v * v.log2())
                .sum::<f64>();
            let perp = h_bits.exp2();
            assert!(
                (perp - perplexity).abs() / perplexity < 1e-3,
                "row {i}: perplexity {perp} for {perplexity}"
            );
            // The row is the Gaussian kernel with the returned precision.
            let d = |j: usize| -> f64 {
                (0..10)
                    .map(|k| (x[i * 10 + k] as f64 - x[j * 10 + k] as f64).powi(2))
                    .sum()
            };
            let (a, b) = if i < 2 { (2, 3) } else { (0, 1) };
            let want = (-betas[i] * (d(a) - d(b))).exp();
            let got = row[a] / row[b];
            assert!(
                (got - want).abs() <= 1e-9 * want.max(1e-300),
                "{got} vs {want}"
            );
        }
    }
}

#[test]
fn kl_divergence_decreases() {
    let (x, _) = clusters(3, 50, 10, 2);
    let cfg = TsneConfig {
        iterations: 400,
        ..TsneConfig::default()
    };
    assert_eq!(cfg.exaggeration_iterations(), 100);
    let (y, trace) = tsne_traced(&x, 150, 10, &cfg, 25).unwrap();
    let kl = &trace.kl;
    assert_eq!(kl.first().unwrap().0, 0);
    assert_eq!(kl.last().unwrap().0, 400);
    assert_eq!(kl.len(), 17);
    // The trace's last value is the KL divergence of the returned embedding.
    let direct = kl_divergence(&x, 150, 10, 30.0, &y).unwrap();
    assert!(
        (direct - kl.last().unwrap().1).abs() < 1e-9 * direct,
        "{direct} vs {kl:?}"
    );
    // Much lower than at the (collapsed) initialisation.
    assert!(kl.last().unwrap().1 < 0.5 * kl[0].1, "{kl:?}");
    // Non-increasing once the exaggeration is over (allow 1e-3 relative for momentum).
    let after: Vec<f64> = kl
        .iter()
        .filter(|(it, _)| *it >= 125)
        .map(|p| p.1)
        .collect();
    for w in after.windows(2) {
        assert!(w[1] <= w[0] * (1.0 + 1e-3), "KL went up: {kl:?}");
    }
    assert!(after.last().unwrap() < &after[0], "{kl:?}");
}

/// Indices of the `k` nearest neighbours of point `i` in a 2-D embedding.
fn nearest(y: &[[f64; 2]], i: usize, k: usize) -> Vec<usize> {
    let mut d: Vec<(f64, usize)> = y
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != i)
        .map(|(j, p)| ((p[0] - y[i][0]).powi(2) + (p[1] - y[i][1]).powi(2), j))
        .collect();
    d.sort_by(|a, b| a.partial_cmp(b).unwrap());
    d.iter().take(k).map(|p| p.1).collect()
}

#[test]
fn separated_clusters_stay_separated() {
    let (x, c) = clusters(3, 50, 10, 3);
    let cfg = TsneConfig {
        iterations: 400,
        seed: 7,
        ..TsneConfig::default()
    };
    let y = tsne(&x, 150, 10, &cfg).unwrap();
    assert_eq!(y.len(), 150);
    for i in 0..150 {
        for j in nearest(&y, i, 5) {
            assert_eq!(c[i], c[j], "point {i} (cluster {}) has neighbour {j}", c[i]);
        }
    }
    // And the embedding is not collapsed: clusters are far apart relative to their size.
    let centre = |cl: usize| -> [f64; 2] {
        let pts: Vec<&[f64; 2]> = y
            .iter()
            .zip(&c)
            .filter(|p| *p.1 == cl)
            .map(|p| p.0)
            .collect();
        let m = pts.len() as f64;
        [
            pts.iter().map(|p| p[0]).sum::<f64>() / m,
            pts.iter().map(|p| p[1]).sum::<f64>() / m,
        ]
    };
    let spread = |cl: usize| -> f64 {
        let m = centre(cl);
        let pts: Vec<&[f64; 2]> = y
            .iter()
            .zip(&c)
            .filter(|p| *p.1 == cl)
            .map(|p| p.0)
            .collect();
        (pts.iter()
            .map(|p| (p[0] - m[0]).powi(2) + (p[1] - m[1]).powi(2))
            .sum::<f64>()
            / pts.len() as f64)
            .sqrt()
    };
    for a in 0..3 {
        for b in a + 1..3 {
            let (ca, cb) = (centre(a), centre(b));
            let dist = ((ca[0] - cb[0]).powi(2) + (ca[1] - cb[1]).powi(2)).sqrt();
            assert!(
                dist > 2.0 * (spread(a) + spread(b)),
                "clusters {a} and {b} overlap"
            );
        }
    }
}

#[test]
fn deterministic_for_a_seed() {
    let (x, _) = clusters(3, 20, 10, 4);
    let cfg = TsneConfig {
        perplexity: 10.0,
        iterations: 120,
        seed: 42,
        ..TsneConfig::default()
    };
    let a = tsne(&x, 60, 10, &cfg).unwrap();
    let b = tsne(&x, 60, 10, &cfg).unwrap();
    assert!(a
        .iter()
        .zip(&b)
        .all(|(p, q)| p[0].to_bits() == q[0].to_bits() && p[1].to_bits() == q[1].to_bits()));
    // Also with a different number of threads.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let c = pool.install(|| tsne(&x, 60, 10, &cfg).unwrap());
    assert_eq!(a, c);
    let d = tsne(
        &x,
        60,
        10,
        &TsneConfig {
            seed: 43,
            ..cfg.clone()
        },
    )
    .unwrap();
    assert_ne!(a, d);
}

#[test]
fn tsne_errors() {
    let (x, _) = clusters(2, 5, 4, 5);
    let cfg = TsneConfig {
        perplexity: 3.0,
        iterations: 10,
        ..TsneConfig::default()
    };
    let invalid = |r: Result<Vec<[f64; 2]>, PlotError>| matches!(r, Err(PlotError::Invalid(_)));
    assert!(tsne(&x, 10, 4, &cfg).is_ok());
    // Perplexity must be below n.
    assert!(invalid(tsne(
        &x,
        10,
        4,
        &TsneConfig {
            perplexity: 10.0,
            ..cfg.clone()
        }
    )));
    assert!(invalid(tsne(
        &x,
        10,
        4,
        &TsneConfig {
            perplexity: 0.0,
            ..cfg.clone()
        }
    )));
    assert!(invalid(tsne(
        &x,
        10,
        4,
        &TsneConfig {
            perplexity: f64::NAN,
            ..cfg.clone()
        }
    )));
    // n < 2.
    assert!(invalid(tsne(
        &x[..4],
        1,
        4,
        &TsneConfig {
            perplexity: 0.5,
            ..cfg.clone()
        }
    )));
    assert!(invalid(tsne(&[], 0, 4, &cfg)));
    // NaN / infinite input.
    let mut bad = x.clone();
    bad[13] = f32::NAN;
    assert!(invalid(tsne(&bad, 10, 4, &cfg)));
    bad[13] = f32::INFINITY;
    assert!(invalid(tsne(&bad, 10, 4, &cfg)));
    // Wrong length, zero dimension, bad learning rate or exaggeration.
    assert!(invalid(tsne(&x[..39], 10, 4, &cfg)));
    assert!(invalid(tsne(&x, 10, 0, &cfg)));
    assert!(invalid(tsne(
        &x,
        10,
        4,
        &TsneConfig {
            learning_rate: Some(0.0),
            ..cfg.clone()
        }
    )));
    assert!(invalid(tsne(
        &x,
        10,
        4,
        &TsneConfig {
            early_exaggeration: -1.0,
            ..cfg.clone()
        }
    )));
    assert!(matches!(
        tsne_traced(&x, 10, 4, &cfg, 0),
        Err(PlotError::Invalid(_))
    ));
}

#[test]
fn config_defaults_follow_the_reference() {
    let cfg = TsneConfig::default();
    assert_eq!(cfg.perplexity, 30.0);
    assert_eq!(cfg.iterations, 1000);
    assert_eq!(cfg.early_exaggeration, 12.0);
    assert_eq!(cfg.exaggeration_iterations(), 250);
    assert_eq!(cfg.learning_rate_for(150), 50.0);
    assert_eq!(cfg.learning_rate_for(4800), 100.0);
    let fixed = TsneConfig {
        learning_rate: Some(200.0),
        ..cfg
    };
    assert_eq!(fixed.learning_rate_for(4800), 200.0);
}

// ---------------------------------------------------------------------------------------------
// Charts
// ---------------------------------------------------------------------------------------------

/// Decodes a PNG and returns (width, height, RGB pixels).
fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// Whether the SVG has a `<text>` element with exactly this content (plotters writes the content
/// on its own line).
fn has_text(svg: &str, text: &str) -> bool {
    svg.contains(&format!(">\n{text}\n</text>"))
}

fn count(svg: &str, tag: &str) -> usize {
    svg.matches(&format!("<{tag} ")).count()
}

/// Elements `<tag ...>` whose attributes contain `attr` (e.g. a stroke colour).
fn count_with(svg: &str, tag: &str, attr: &str) -> usize {
    svg.split(&format!("<{tag} "))
        .skip(1)
        .filter(|rest| rest.split('>').next().unwrap().contains(attr))
        .count()
}

/// The SVG colour of series / class `i`.
fn svg_color(i: usize) -> String {
    let c = trainer::plot::class_color(i);
    format!("#{:02X}{:02X}{:02X}", c[0], c[1], c[2])
}

/// Checks the two files of a chart and returns the SVG text.
fn check_files(files: &[PathBuf], stem: &Path, size: (u32, u32), title: &str) -> String {
    assert_eq!(files.len(), 2);
    assert_eq!(files[0], stem.with_extension("png"));
    assert_eq!(files[1], stem.with_extension("svg"));
    let (w, h, px) = decode_png(&files[0]);
    assert_eq!((w, h), size);
    // Not blank: the title and the data put many dark and coloured pixels on the white canvas.
    let non_white = px.chunks(3).filter(|p| p.iter().any(|&v| v < 200)).count();
    assert!(non_white > 2000, "only {non_white} drawn pixels");
    let svg = std::fs::read_to_string(&files[1]).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(has_text(&svg, title), "title missing from the SVG");
    assert!(svg.contains(&format!(r#"width="{}" height="{}""#, size.0, size.1)));
    svg
}

#[test]
fn embedding_scatter_writes_png_and_svg() {
    let (_keep, dir) = out_dir();
    let (x, c) = clusters(4, 40, 10, 8);
    let y = tsne(
        &x,
        160,
        10,
        &TsneConfig {
            iterations: 300,
            ..TsneConfig::default()
        },
    )
    .unwrap();
    // Modalities in turn: RGB-D circles, skeleton squares, point-cloud triangles, fused crosses.
    let m: Vec<usize> = (0..160).map(|i| (i / 4) % 4).collect();
    let stem = dir.join("scatter");
    let title = "t-SNE of the unified embedding (4 classes)";
    let files = embedding_scatter(&y, &c, &m, title, &stem).unwrap();
    let svg = check_files(&files, &stem, SCATTER_SIZE, title);
    // One element per point, plus one legend marker per modality (and class swatches).
    assert_eq!(count(&svg, "circle"), 40 + 1);
    assert_eq!(count(&svg, "polygon"), 40 + 1);
    let classes_in_legend = 4;
    // Squares: 40 points, 1 modality legend entry, 4 class swatches, plus the background and the
    // frame of the plot.
    assert_eq!(count(&svg, "rect"), 40 + 1 + classes_in_legend + 2);
    // Crosses are two lines each.
    assert!(count(&svg, "line") >= 2 * (40 + 1));
    for label in [
        "RGB-D",
        "Skeleton",
        "Point cloud",
        "Fused",
        "class 3",
        "t-SNE 1",
    ] {
        assert!(has_text(&svg, label), "{label} missing");
    }
}

#[test]
fn embedding_scatter_many_classes() {
    let (_keep, dir) = out_dir();
    let mut rng = Rng(9);
    let n = 600;
    let pts: Vec<[f64; 2]> = (0..n)
        .map(|i| {
            let cl = (i % 40) as f64;
            let a = cl * 0.157;
            [30.0 * a.cos() + rng.normal(), 30.0 * a.sin() + rng.normal()]
        })
        .collect();
    let classes: Vec<usize> = (0..n).map(|i| i % 40).collect();
    let markers: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let stem = dir.join("scatter_40_classes");
    let files = embedding_scatter(
        &pts,
        &classes,
        &markers,
        "40 classes, three modalities",
        &stem,
    )
    .unwrap();
    let svg = check_files(&files, &stem, SCATTER_SIZE, "40 classes, three modalities");
    assert!(has_text(&svg, "40 classes"));
    assert!(
        !has_text(&svg, "Fused"),
        "only the modalities present are listed"
    );
    // 40 distinct colours.
    let colours: std::collections::HashSet<[u8; 3]> =
        (0..40).map(trainer::plot::class_color).collect();
    assert_eq!(colours.len(), 40);
}

#[test]
fn gates_over_time_writes_png_and_svg() {
    let (_keep, dir) = out_dir();
    let frames = 50;
    let g = |f: &dyn Fn(usize) -> f64| (0..frames).map(f).collect::<Vec<f64>>();
    let series = vec![
        (
            "G_R (RGB-D)".to_string(),
            g(&|t| if t < 25 { 0.78 } else { 0.86 } + 0.01 * (t as f64 * 0.7).sin()),
        ),
        (
            "G_S (skeleton)".to_string(),
            g(&|t| {
                if t < 25 {
                    0.9 + 0.02 * (t as f64).cos()
                } else {
                    0.03
                }
            }),
        ),
        (
            "G_P (point cloud)".to_string(),
            g(&|t| if t < 25 { 0.7 } else { 0.8 } + 0.015 * (t as f64 * 0.4).cos()),
        ),
    ];
    let stem = dir.join("gates");
    let title = "AMG gates, skeleton dropped after frame 25";
    let files = gates_over_time(&series, Some(25.0), title, &stem).unwrap();
    let svg = check_files(&files, &stem, CHART_SIZE, title);
    assert!(has_text(&svg, "sensor dropped"));
    assert!(has_text(&svg, "frame"));
    // One polyline per series and one per legend entry.
    for i in 0..3 {
        let stroke = format!(r#"stroke="{}""#, svg_color(i));
        assert_eq!(count_with(&svg, "polyline", &stroke), 2, "series {i}");
    }
    // Markers: 50 per series, shapes circle / triangle / square in turn, plus one in the legend.
    assert_eq!(count(&svg, "circle"), frames + 1);
    assert_eq!(count(&svg, "polygon"), frames + 1);
    for (name, _) in &series {
        assert!(has_text(&svg, name));
    }
}

#[test]
fn lines_linear_and_log() {
    let (_keep, dir) = out_dir();
    let sigma = [0.0, 0.05, 0.10, 0.15];
    let acc = vec![
        (
            "RCMCL".to_string(),
            sigma
                .iter()
                .zip([86.0, 84.1, 81.2, 77.5])
                .map(|(&s, a)| (s, a))
                .collect(),
        ),
        (
            "Supervised".to_string(),
            sigma
                .iter()
                .zip([84.0, 78.3, 70.2, 61.9])
                .map(|(&s, a)| (s, a))
                .collect(),
        ),
    ];
    let stem = dir.join("accuracy_vs_noise");
    let title = "Accuracy under skeleton joint noise";
    let files = lines(
        &acc,
        "joint noise sigma",
        "top-1 accuracy (%)",
        title,
        false,
        &stem,
    )
    .unwrap();
    let svg = check_files(&files, &stem, CHART_SIZE, title);
    assert!(has_text(&svg, "joint noise sigma"));
    assert!(has_text(&svg, "top-1 accuracy (%)"));
    assert_eq!(count(&svg, "circle"), 4 + 1);
    assert_eq!(count(&svg, "polygon"), 4 + 1);
    for i in 0..2 {
        let stroke = format!(r#"stroke="{}""#, svg_color(i));
        assert_eq!(count_with(&svg, "polyline", &stroke), 2, "series {i}");
    }

    let loss: Vec<(String, Vec<(f64, f64)>)> = vec![
        (
            "L_total".into(),
            (0..300)
                .map(|s| (s as f64, 8.0 * (-(s as f64) / 80.0).exp() + 0.2))
                .collect(),
        ),
        (
            "L_CM".into(),
            (0..300)
                .map(|s| (s as f64, 5.0 * (-(s as f64) / 60.0).exp() + 0.05))
                .collect(),
        ),
    ];
    let stem = dir.join("loss");
    let files = lines(&loss, "step", "loss", "Pre-training losses", true, &stem).unwrap();
    let svg = check_files(&files, &stem, CHART_SIZE, "Pre-training losses");
    // Long series: lines only, no markers; one polyline per series and one in the legend.
    assert_eq!(count(&svg, "circle"), 0);
    for i in 0..2 {
        let stroke = format!(r#"stroke="{}""#, svg_color(i));
        assert_eq!(count_with(&svg, "polyline", &stroke), 2, "series {i}");
        let line = svg
            .split("<polyline ")
            .skip(1)
            .find(|r| r.contains(&stroke))
            .unwrap();
        let points = line
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(
            points.split_whitespace().count() > 100,
            "series {i} is not drawn in full"
        );
    }
}

#[test]
fn chart_errors() {
    let (_keep, dir) = out_dir();
    let stem = dir.join("never_written");
    let invalid = |r: Result<Vec<PathBuf>, PlotError>| matches!(r, Err(PlotError::Invalid(_)));
    // Scatter.
    assert!(invalid(embedding_scatter(&[], &[], &[], "t", &stem)));
    assert!(invalid(embedding_scatter(
        &[[0.0, 1.0]],
        &[0, 1],
        &[0],
        "t",
        &stem
    )));
    assert!(invalid(embedding_scatter(
        &[[0.0, f64::NAN]],
        &[0],
        &[0],
        "t",
        &stem
    )));
    assert!(invalid(embedding_scatter(
        &[[0.0, 1.0]],
        &[0],
        &[4],
        "t",
        &stem
    )));
    // Gates.
    assert!(invalid(gates_over_time(&[], None, "t", &stem)));
    assert!(invalid(gates_over_time(
        &[("G".into(), vec![])],
        None,
        "t",
        &stem
    )));
    assert!(invalid(gates_over_time(
        &[("G".into(), vec![0.5, f64::NAN])],
        None,
        "t",
        &stem
    )));
    assert!(invalid(gates_over_time(
        &[("G".into(), vec![0.5])],
        Some(f64::INFINITY),
        "t",
        &stem
    )));
    // Lines.
    assert!(invalid(lines(&[], "x", "y", "t", false, &stem)));
    assert!(invalid(lines(
        &[("a".into(), vec![])],
        "x",
        "y",
        "t",
        false,
        &stem
    )));
    assert!(invalid(lines(
        &[("a".into(), vec![(f64::NAN, 1.0)])],
        "x",
        "y",
        "t",
        false,
        &stem
    )));
    assert!(invalid(lines(
        &[("a".into(), vec![(1.0, 0.0)])],
        "x",
        "y",
        "t",
        true,
        &stem
    )));
    assert!(invalid(lines(
        &[("a".into(), vec![(1.0, 1.0)])],
        "x",
        "y",
        "two\nlines",
        false,
        &stem
    )));
    assert!(!stem.with_extension("png").exists() && !stem.with_extension("svg").exists());
    // Degenerate but valid data (a single point) is drawn, not refused.
    let one = dir.join("single_point");
    lines(
        &[("a".into(), vec![(1.0, 1.0)])],
        "x",
        "y",
        "one point",
        false,
        &one,
    )
    .unwrap();
    embedding_scatter(
        &[[2.0, 2.0]],
        &[0],
        &[3],
        "one point",
        &dir.join("single_scatter"),
    )
    .unwrap();
    // An unwritable destination is an I/O error, not a panic.
    let blocker = dir.join("a_file");
    std::fs::write(&blocker, b"x").unwrap();
    let r = lines(
        &[("a".into(), vec![(1.0, 1.0)])],
        "x",
        "y",
        "t",
        false,
        &blocker.join("sub"),
    );
    assert!(matches!(r, Err(PlotError::Io { .. })), "{r:?}");
}

/// Timing of the exact t-SNE (1000 iterations) for a few sizes; run with
/// `cargo test --release -p trainer --test plot -- --ignored --nocapture tsne_timing`.
#[test]
#[ignore]
fn tsne_timing() {
    for n in [500, 1000, 2000] {
        let (x, c) = clusters(10, n / 10, 64, 6);
        let t = std::time::Instant::now();
        conditional_probabilities(&x, n, 64, 30.0).unwrap();
        let calib = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let y = tsne(&x, n, 64, &TsneConfig::default()).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let agree = (0..n)
            .filter(|&i| nearest(&y, i, 5).iter().all(|&j| c[j] == c[i]))
            .count();
        println!(
            "n = {n}: {secs:.2} s for 1000 iterations ({} threads; P alone {calib:.2} s); 5-NN purity {:.3}",
            rayon::current_num_threads(),
            agree as f64 / n as f64
        );
    }
}

#[test]
fn duplicate_points_give_a_finite_embedding() {
    // Ten copies of one point and ten of another: within a group all distances are 0, so no
    // precision reaches the requested perplexity exactly; the result must still be finite.
    let mut x = vec![0.0f32; 20 * 3];
    for v in &mut x[30..] {
        *v = 5.0;
    }
    let cfg = TsneConfig {
        perplexity: 4.0,
        iterations: 200,
        ..TsneConfig::default()
    };
    let y = tsne(&x, 20, 3, &cfg).unwrap();
    assert!(y.iter().all(|p| p[0].is_finite() && p[1].is_finite()));
    let (p, _) = conditional_probabilities(&x, 20, 3, 4.0).unwrap();
    assert!(p.iter().all(|v| v.is_finite()));
    // The two groups end up apart: every point's nearest neighbour is in its own group.
    for i in 0..20 {
        assert_eq!(nearest(&y, i, 1)[0] / 10, i / 10);
    }
}
