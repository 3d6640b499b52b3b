//! A run directory: `config.toml` (the resolved configuration), `metrics.jsonl` (one JSON line
//! per logging step), `checkpoints/`, `report.md` and the plots of the command.

use crate::config::RunConfig;
use crate::error::{TrainerError, TrainerResult};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// A new directory `<base>/<command>-<preset>-<UTC time>` (with a numeric suffix if that
    /// exists), or exactly `explicit` when given (which must not hold a run already).
    pub fn create(
        base: &Path,
        explicit: Option<&Path>,
        command: &str,
        preset: &str,
    ) -> TrainerResult<RunDir> {
        let path = match explicit {
            Some(p) => {
                if p.join("config.toml").exists() {
                    return Err(TrainerError::Config(format!(
                        "{} already holds a run: pass --resume {} to continue it, or choose another --run-dir",
                        p.display(),
                        p.display()
                    )));
                }
                p.to_path_buf()
            }
            None => {
                let stem = format!("{command}-{preset}-{}", utc_stamp());
                let mut p = base.join(&stem);
                let mut k = 1;
                while p.exists() {
                    k += 1;
                    p = base.join(format!("{stem}-{k}"));
                }
                p
            }
        };
        std::fs::create_dir_all(&path).map_err(|e| TrainerError::io(&path, e))?;
        Ok(RunDir { path })
    }

    /// An existing run directory (for `--resume` and for commands reading a checkpoint).
    pub fn open(path: &Path) -> TrainerResult<RunDir> {
        if !path.join("config.toml").is_file() {
            return Err(TrainerError::Config(format!(
                "{} is not a run directory (no config.toml)",
                path.display()
            )));
        }
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.toml")
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.join("checkpoints").join("last.safetensors")
    }

    pub fn report_path(&self) -> PathBuf {
        self.path.join("report.md")
    }

    /// Writes the resolved configuration (atomically: a reader never sees half a file).
    pub fn save_config(&self, cfg: &RunConfig) -> TrainerResult<()> {
        write_atomically(&self.config_path(), cfg.to_toml().as_bytes())
    }

    pub fn load_config(&self) -> TrainerResult<RunConfig> {
        RunConfig::load(&self.config_path())
    }

    /// The saved configuration, with its device replaced by `device` when one is given (a
    /// resumed or evaluated run may move to another device).
    pub fn load_config_on(&self, device: Option<&str>) -> TrainerResult<RunConfig> {
        let mut cfg = self.load_config()?;
        if let Some(d) = device {
            cfg.device = d.to_string();
        }
        Ok(cfg)
    }

    /// Appends to `metrics.jsonl` (created if absent).
    pub fn metrics(&self) -> TrainerResult<Metrics> {
        let path = self.path.join("metrics.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainerError::io(&path, e))?;
        Ok(Metrics { file, path })
    }

    pub fn write_report(&self, markdown: &str) -> TrainerResult<()> {
        write_atomically(&self.report_path(), markdown.as_bytes())
    }
}

/// The metrics log: one JSON object per line, flushed at once (a killed run keeps every line
/// it wrote).
pub struct Metrics {
    file: File,
    path: PathBuf,
}

impl Metrics {
    pub fn log(&mut self, record: &serde_json::Value) -> TrainerResult<()> {
        writeln!(self.file, "{record}")
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainerError::io(&self.path, e))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> TrainerResult<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| TrainerError::io(path, e))
}

/// The current UTC time as `YYYYmmdd-HHMMSS`.
pub fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_788), (2026, 12, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
