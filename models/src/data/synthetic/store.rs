//! Writing a synthetic dataset to disk: generated in parallel chunks, streamed to the dataset
//! writer in sample order, renamed into place only when complete.

use super::{chunks, SynthConfig};
use crate::data::format::DatasetWriter;
use crate::data::DataResult;
use std::path::Path;

/// Samples generated per parallel chunk: enough to keep every core busy, few enough that a
/// chunk of the `paper` preset stays a few hundred megabytes.
const CHUNK: usize = 64;

/// Generates the dataset `cfg` describes into the directory `dir`. `replace` allows replacing
/// an existing dataset there. `progress(done, total)` is called after each chunk is written.
pub fn write_dataset(
    cfg: &SynthConfig,
    dir: &Path,
    replace: bool,
    mut progress: impl FnMut(usize, usize),
) -> DataResult<()> {
    cfg.validate()?;
    let spec = cfg.spec();
    let mut writer = if replace {
        DatasetWriter::create_replacing(dir, &spec)?
    } else {
        DatasetWriter::create(dir, &spec)?
    };
    let total = cfg.num_samples();
    let mut done = 0;
    for chunk in chunks(cfg, CHUNK) {
        for sample in chunk? {
            writer.append(&sample)?;
            done += 1;
        }
        progress(done, total);
    }
    writer.finish(&cfg.splits())
}
