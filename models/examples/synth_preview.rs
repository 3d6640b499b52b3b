//! Write a contact sheet of the synthetic dataset, and optionally time the whole preset.
//!
//!     cargo run --release -p models --example synth_preview -- OUT.png [--preset NAME]
//!         [--frames N] [--classes 0,14,20] [--measure]
//!
//! The sheet shows a few samples (by default wave, clap, sit down, turn around, jump; with
//! `--classes`, those class labels), with varied cameras and subjects, every stream, over N
//! frames (default 6). `--measure` then generates every sample
//! of the preset in chunks (on all of rayon's threads; set RAYON_NUM_THREADS to limit them)
//! and prints the time and the bytes a fixed-record store would hold.

use std::path::PathBuf;
use std::time::Instant;

use models::data::preview::{write_contact_sheet, SheetOptions};
use models::data::synthetic::{chunks, generate_sample, SynthConfig};
use models::data::DataResult;

fn main() {
    if let Err(e) = run() {
        eprintln!("synth_preview: {e}");
        std::process::exit(1);
    }
}

fn run() -> DataResult<()> {
    let usage = "usage: synth_preview OUT.png [--preset tiny|small|paper] [--frames N] \
                 [--classes 0,14,20] [--measure]";
    let mut out = None;
    let mut preset = "small".to_string();
    let mut frames = 6;
    let mut measure = false;
    let mut classes: Vec<usize> = vec![0, 14, 20, 27, 25];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--preset" => preset = args.next().expect(usage),
            "--frames" => frames = args.next().and_then(|v| v.parse().ok()).expect(usage),
            "--measure" => measure = true,
            "--classes" => {
                let list = args.next().expect(usage);
                classes = list
                    .split(',')
                    .map(|c| c.trim().parse().expect(usage))
                    .collect();
            }
            "-h" | "--help" => {
                println!("{usage}");
                return Ok(());
            }
            _ if out.is_none() && !a.starts_with("--") => out = Some(PathBuf::from(a)),
            _ => panic!("{usage}"),
        }
    }
    let out = out.expect(usage);
    let cfg = SynthConfig::preset(&preset)?;

    // Cycle through subjects and cameras so the sheet shows their variety.
    let samples = classes
        .iter()
        .enumerate()
        .filter_map(|(n, &c)| {
            let subject = (n % cfg.subjects) as u16 + 1;
            let camera = [2, 1, 3][n % 3];
            cfg.index_of(c, subject, 1, camera)
        })
        .map(|i| generate_sample(&cfg, i))
        .collect::<DataResult<Vec<_>>>()?;
    let opts = SheetOptions {
        frames,
        ..SheetOptions::default()
    };
    write_contact_sheet(&out, &samples, &cfg.intrinsics(), &cfg.class_names(), &opts)?;
    println!(
        "wrote {} ({} samples of synthetic-{preset})",
        out.display(),
        samples.len()
    );

    if measure {
        let start = Instant::now();
        let mut count = 0usize;
        let mut bytes = 0usize;
        for chunk in chunks(&cfg, 256) {
            let chunk = chunk?;
            count += chunk.len();
            bytes += chunk
                .iter()
                .flat_map(|s| s.streams.values())
                .map(|a| a.numel() * a.elem().size())
                .sum::<usize>();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "synthetic-{preset}: {count} samples in {secs:.1} s on {} threads ({:.0} samples/s), \
             {bytes} bytes of arrays ({:.3} GB, {:.1} KB per sample)",
            rayon::current_num_threads(),
            count as f64 / secs,
            bytes as f64 / 1e9,
            bytes as f64 / count as f64 / 1e3,
        );
    }
    Ok(())
}
