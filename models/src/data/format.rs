//! The on-disk dataset format.
//!
//! A dataset is a directory:
//! - `header.json`: format name and version, dataset name, class names, the streams (modality,
//!   element type, per-sample shape, file, size in bytes, CRC-32), the sample count, every
//!   sample's metadata and the splits.
//! - one `<modality>.bin` per stream: a 128-byte preamble, then `count` fixed-size records back
//!   to back, little-endian. The preamble is:
//!
//! | bytes   | field                                        |
//! |---------|----------------------------------------------|
//! | 0..8    | magic `RCMCLDS\0`                            |
//! | 8..12   | format version (u32)                         |
//! | 12..16  | element type (u32: 1 f32, 2 u16, 3 u8)       |
//! | 16..20  | number of record dims (u32, at most 8)       |
//! | 20..24  | zero                                         |
//! | 24..32  | record count (u64)                           |
//! | 32..40  | bytes per record (u64)                       |
//! | 40..104 | record dims (8 x u64, unused ones zero)      |
//! | 104..128| zero                                         |
//!
//! Records start at offset 128 and are a whole number of elements long, so in a memory map
//! (page-aligned) every record is aligned for its element type and is handed out as a typed
//! slice without copying.
//!
//! Writing goes to a hidden temporary directory beside the target, which is renamed into place
//! only after every file (header last) has been written and synced; an interrupted write leaves
//! at most a `.NAME.partial-*` directory with no `header.json`, which never opens as a dataset.

use super::{
    Array, ArrayData, ArrayView, ArrayViewData, DataError, DataResult, DatasetSpec, Elem, Modality,
    Sample, SampleMeta, Split, StreamSpec,
};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The version written into headers and preambles; opening any other version fails.
pub const FORMAT_VERSION: u32 = 1;
/// The header's file name inside a dataset directory.
pub const HEADER_FILE: &str = "header.json";

const FORMAT_NAME: &str = "rcmcl-dataset";
const MAGIC: [u8; 8] = *b"RCMCLDS\0";
const PREAMBLE_BYTES: usize = 128;
const MAX_DIMS: usize = 8;

/// How much `Dataset::open` checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Header, preambles, sizes and every file's CRC-32 (reads every byte once).
    Checksums,
    /// Header, preambles and sizes only: opening is O(1) in the data size.
    SizesOnly,
}

/// The file that holds `modality`'s records.
pub fn stream_file_name(modality: Modality) -> String {
    format!("{}.bin", modality.name())
}

// ---------------------------------------------------------------------------------------------
// header.json

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    name: String,
    classes: Vec<String>,
    count: u64,
    streams: Vec<StreamHeader>,
    samples: Vec<MetaHeader>,
    splits: Vec<SplitHeader>,
}

#[derive(Serialize, Deserialize)]
struct StreamHeader {
    modality: String,
    elem: String,
    dims: Vec<usize>,
    file: String,
    bytes: u64,
    crc32: u32,
}

#[derive(Serialize, Deserialize)]
struct MetaHeader {
    name: String,
    label: u16,
    subject: u16,
    camera: u8,
    setup: u16,
    replication: u8,
}

#[derive(Serialize, Deserialize)]
struct SplitHeader {
    name: String,
    train: Vec<u32>,
    test: Vec<u32>,
}

impl From<&SampleMeta> for MetaHeader {
    fn from(m: &SampleMeta) -> MetaHeader {
        MetaHeader {
            name: m.name.clone(),
            label: m.label,
            subject: m.subject,
            camera: m.camera,
            setup: m.setup,
            replication: m.replication,
        }
    }
}

impl From<MetaHeader> for SampleMeta {
    fn from(m: MetaHeader) -> SampleMeta {
        SampleMeta {
            name: m.name,
            label: m.label,
            subject: m.subject,
            camera: m.camera,
            setup: m.setup,
            replication: m.replication,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The binary preamble

#[derive(Debug, PartialEq, Eq)]
struct Preamble {
    version: u32,
    elem: Elem,
    dims: Vec<usize>,
    count: u64,
    record_bytes: u64,
}

fn elem_code(elem: Elem) -> u32 {
    match elem {
        Elem::F32 => 1,
        Elem::U16 => 2,
        Elem::U8 => 3,
    }
}

fn elem_from_code(code: u32) -> Option<Elem> {
    [Elem::F32, Elem::U16, Elem::U8]
        .into_iter()
        .find(|&e| elem_code(e) == code)
}

/// Bytes per record of `dims` elements of `elem`, or None on overflow.
fn record_bytes(elem: Elem, dims: &[usize]) -> Option<u64> {
    let mut n = elem.size() as u64;
    for &d in dims {
        n = n.checked_mul(d as u64)?;
    }
    Some(n)
}

impl Preamble {
    fn encode(&self) -> [u8; PREAMBLE_BYTES] {
        let mut b = [0u8; PREAMBLE_BYTES];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&elem_code(self.elem).to_le_bytes());
        b[16..20].copy_from_slice(&(self.dims.len() as u32).to_le_bytes());
        b[24..32].copy_from_slice(&self.count.to_le_bytes());
        b[32..40].copy_from_slice(&self.record_bytes.to_le_bytes());
        for (k, &d) in self.dims.iter().enumerate() {
            b[40 + 8 * k..48 + 8 * k].copy_from_slice(&(d as u64).to_le_bytes());
        }
        b
    }

    /// The preamble at the start of `bytes` (the file at `path`), checking magic and version.
    fn decode(bytes: &[u8], path: &Path) -> DataResult<Preamble> {
        let bad = |msg: String| DataError::Format {
            path: path.to_path_buf(),
            msg,
        };
        if bytes.len() < PREAMBLE_BYTES {
            return Err(bad(format!(
                "{} bytes is too short for the {PREAMBLE_BYTES}-byte preamble (truncated?)",
                bytes.len()
            )));
        }
        if bytes[0..8] != MAGIC {
            return Err(bad(format!(
                "bad magic {:?}: not a dataset stream file",
                String::from_utf8_lossy(&bytes[0..8])
            )));
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {version}, this build reads version {FORMAT_VERSION}"
            )));
        }
        let elem = elem_from_code(u32_at(12))
            .ok_or_else(|| bad(format!("unknown element type code {}", u32_at(12))))?;
        let ndim = u32_at(16) as usize;
        if ndim > MAX_DIMS {
            return Err(bad(format!("{ndim} record dims, at most {MAX_DIMS}")));
        }
        let mut dims = Vec::with_capacity(ndim);
        for k in 0..ndim {
            let d = usize::try_from(u64_at(40 + 8 * k))
                .map_err(|_| bad("a record dim does not fit in memory".into()))?;
            dims.push(d);
        }
        Ok(Preamble {
            version,
            elem,
            dims,
            count: u64_at(24),
            record_bytes: u64_at(32),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// One memory-mapped stream file.
struct StreamFile {
    modality: Modality,
    elem: Elem,
    dims: Vec<usize>,
    record_bytes: usize,
    map: Mmap,
}

/// An opened dataset: header in memory, stream files memory-mapped.
pub struct Dataset {
    dir: PathBuf,
    spec: DatasetSpec,
    metas: Vec<SampleMeta>,
    splits: Vec<Split>,
    streams: Vec<StreamFile>,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("dir", &self.dir)
            .field("spec", &self.spec)
            .field("len", &self.metas.len())
            .finish()
    }
}

impl Dataset {
    /// Opens the dataset in `dir`, checking header, preambles and sizes, and with
    /// `Verify::Checksums` every file's CRC-32. Errors name the file at fault.
    pub fn open(dir: impl AsRef<Path>, verify: Verify) -> DataResult<Dataset> {
        let dir = dir.as_ref().to_path_buf();
        if cfg!(target_endian = "big") {
            // Records are little-endian and handed out as typed slices without conversion.
            return Err(DataError::Invalid(
                "datasets are little-endian; big-endian hosts are not supported".into(),
            ));
        }
        let header_path = dir.join(HEADER_FILE);
        let text = fs::read(&header_path).map_err(|e| DataError::io(&header_path, e))?;
        let bad_header = |msg: String| DataError::Format {
            path: header_path.clone(),
            msg,
        };
        let header: Header = serde_json::from_slice(&text)
            .map_err(|e| bad_header(format!("not a valid dataset header: {e}")))?;
        if header.format != FORMAT_NAME {
            return Err(bad_header(format!(
                "format {:?}, expected {FORMAT_NAME:?}",
                header.format
            )));
        }
        if header.version != FORMAT_VERSION {
            return Err(bad_header(format!(
                "format version {}, this build reads version {FORMAT_VERSION}",
                header.version
            )));
        }
        let count = header.count;
        if header.samples.len() as u64 != count {
            return Err(bad_header(format!(
                "count is {count} but {} samples are listed",
                header.samples.len()
            )));
        }
        if let Some(m) = header
            .samples
            .iter()
            .find(|m| usize::from(m.label) >= header.classes.len())
        {
            return Err(bad_header(format!(
                "sample {} has label {}, but there are {} classes",
                m.name,
                m.label,
                header.classes.len()
            )));
        }
        let splits = check_splits(
            header
                .splits
                .into_iter()
                .map(|s| Split {
                    name: s.name,
                    train: s.train,
                    test: s.test,
                })
                .collect(),
            count,
        )
        .map_err(|e| bad_header(e.to_string()))?;

        let mut streams = Vec::with_capacity(header.streams.len());
        let mut specs = Vec::with_capacity(header.streams.len());
        for sh in &header.streams {
            let modality = Modality::from_name(&sh.modality)
                .ok_or_else(|| bad_header(format!("unknown modality {:?}", sh.modality)))?;
            if specs.iter().any(|s: &StreamSpec| s.modality == modality) {
                return Err(bad_header(format!("stream {modality} is listed twice")));
            }
            if Elem::from_name(&sh.elem) != Some(modality.elem()) {
                return Err(bad_header(format!(
                    "stream {modality} has element type {:?}, expected {}",
                    sh.elem,
                    modality.elem().name()
                )));
            }
            // Only the canonical name, so a header can never point outside the directory.
            if sh.file != stream_file_name(modality) {
                return Err(bad_header(format!(
                    "stream {modality} is in {:?}, expected {:?}",
                    sh.file,
                    stream_file_name(modality)
                )));
            }
            let file = open_stream(&dir.join(&sh.file), modality, sh, count, verify)?;
            specs.push(StreamSpec {
                modality,
                dims: sh.dims.clone(),
            });
            streams.push(file);
        }

        Ok(Dataset {
            dir,
            spec: DatasetSpec {
                name: header.name,
                classes: header.classes,
                streams: specs,
            },
            metas: header.samples.into_iter().map(SampleMeta::from).collect(),
            splits,
            streams,
        })
    }

    /// The directory the dataset lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// Name, classes and streams.
    pub fn spec(&self) -> &DatasetSpec {
        &self.spec
    }

    /// Sample `i`'s metadata.
    pub fn meta(&self, i: usize) -> DataResult<&SampleMeta> {
        self.metas.get(i).ok_or_else(|| self.out_of_range(i))
    }

    /// Every sample's metadata, in sample order.
    pub fn metas(&self) -> &[SampleMeta] {
        &self.metas
    }

    pub fn splits(&self) -> &[Split] {
        &self.splits
    }

    /// The split called `name`, if the dataset has it.
    pub fn split(&self, name: &str) -> Option<&Split> {
        self.splits.iter().find(|s| s.name == name)
    }

    /// Sample `i`'s `modality` array, borrowed from the memory map (no copy).
    pub fn record(&self, i: usize, modality: Modality) -> DataResult<ArrayView<'_>> {
        if i >= self.len() {
            return Err(self.out_of_range(i));
        }
        let s = self
            .streams
            .iter()
            .find(|s| s.modality == modality)
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "dataset {} has no {modality} stream",
                    self.dir.display()
                ))
            })?;
        let start = PREAMBLE_BYTES + i * s.record_bytes;
        let bytes = &s.map[start..start + s.record_bytes];
        let misaligned = || DataError::Format {
            path: self.dir.join(stream_file_name(modality)),
            msg: format!("record {i} is not aligned for {}", s.elem.name()),
        };
        // SAFETY: f32, u16 and u8 are valid for every bit pattern; `align_to` only puts
        // correctly aligned elements in the middle slice, and we insist that is all of it.
        let data = match s.elem {
            Elem::F32 => match unsafe { bytes.align_to::<f32>() } {
                ([], v, []) => ArrayViewData::F32(v),
                _ => return Err(misaligned()),
            },
            Elem::U16 => match unsafe { bytes.align_to::<u16>() } {
                ([], v, []) => ArrayViewData::U16(v),
                _ => return Err(misaligned()),
            },
            Elem::U8 => ArrayViewData::U8(bytes),
        };
        Ok(ArrayView {
            dims: &s.dims,
            data,
        })
    }

    /// Sample `i` with the given streams, copied out of the memory maps.
    pub fn sample(&self, i: usize, modalities: &[Modality]) -> DataResult<Sample> {
        let meta = self.meta(i)?.clone();
        let mut streams = BTreeMap::new();
        for &m in modalities {
            streams.insert(m, self.record(i, m)?.to_array());
        }
        Ok(Sample { meta, streams })
    }

    fn out_of_range(&self, i: usize) -> DataError {
        DataError::Invalid(format!(
            "sample {i} is out of range: dataset {} has {} samples",
            self.dir.display(),
            self.len()
        ))
    }
}

/// Opens and checks one stream file against its header entry.
fn open_stream(
    path: &Path,
    modality: Modality,
    sh: &StreamHeader,
    count: u64,
    verify: Verify,
) -> DataResult<StreamFile> {
    let bad = |msg: String| DataError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    if len != sh.bytes {
        return Err(bad(format!(
            "is {len} bytes, the header says {} (truncated or replaced?)",
            sh.bytes
        )));
    }
    // SAFETY: a finished dataset's files are never written again; a file changed underneath
    // the map by someone else is outside what this format can defend against.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
    let pre = Preamble::decode(&map, path)?;
    if pre.elem != modality.elem() {
        return Err(bad(format!(
            "holds {}, the header says {}",
            pre.elem.name(),
            modality.elem().name()
        )));
    }
    if pre.dims != sh.dims {
        return Err(bad(format!(
            "records of shape {:?}, the header says {:?}",
            pre.dims, sh.dims
        )));
    }
    if pre.count != count {
        return Err(bad(format!(
            "holds {} records, the header says {count}",
            pre.count
        )));
    }
    if record_bytes(pre.elem, &pre.dims) != Some(pre.record_bytes) {
        return Err(bad(format!(
            "says {} bytes per record, which does not fit shape {:?} of {}",
            pre.record_bytes,
            pre.dims,
            pre.elem.name()
        )));
    }
    let expected = pre
        .record_bytes
        .checked_mul(count)
        .and_then(|n| n.checked_add(PREAMBLE_BYTES as u64));
    if expected != Some(len) {
        return Err(bad(format!(
            "is {len} bytes, {count} records of {} bytes need {}",
            pre.record_bytes,
            expected.map_or("more than fits".to_string(), |n| n.to_string())
        )));
    }
    if verify == Verify::Checksums {
        let crc = crc32fast::hash(&map);
        if crc != sh.crc32 {
            return Err(bad(format!(
                "checksum mismatch: CRC-32 {crc:08x}, the header says {:08x} (corrupted?)",
                sh.crc32
            )));
        }
    }
    Ok(StreamFile {
        modality,
        elem: pre.elem,
        dims: pre.dims,
        // Fits: the whole file is mapped.
        record_bytes: pre.record_bytes as usize,
        map,
    })
}

/// Checks that every split index is below `count` and split names are unique.
fn check_splits(splits: Vec<Split>, count: u64) -> DataResult<Vec<Split>> {
    let mut names = HashSet::new();
    for s in &splits {
        if !names.insert(s.name.as_str()) {
            return Err(DataError::Invalid(format!(
                "split {:?} is given twice",
                s.name
            )));
        }
        if let Some(&i) = s
            .train
            .iter()
            .chain(&s.test)
            .find(|&&i| u64::from(i) >= count)
        {
            return Err(DataError::Invalid(format!(
                "split {:?} names sample {i}, but there are {count} samples",
                s.name
            )));
        }
    }
    Ok(splits)
}

// ---------------------------------------------------------------------------------------------
// Writing

/// One stream file being written.
struct StreamWriter {
    spec: StreamSpec,
    elem: Elem,
    record_bytes: u64,
    path: PathBuf,
    out: BufWriter<File>,
    /// CRC-32 of the records written so far (the preamble is hashed at the end, once the
    /// count is known, and combined in front).
    crc: crc32fast::Hasher,
    buf: Vec<u8>,
}

/// Writes a dataset: `create`, `append` every sample, then `finish` with the splits.
///
/// Nothing appears at the target until `finish` succeeds; a writer dropped before that
/// removes its temporary directory.
pub struct DatasetWriter {
    target: PathBuf,
    tmp: PathBuf,
    replace: bool,
    spec: DatasetSpec,
    streams: Vec<StreamWriter>,
    metas: Vec<SampleMeta>,
    /// Set after a failed write: the files may hold a partial record, so only dropping is safe.
    broken: bool,
    finished: bool,
}

impl std::fmt::Debug for DatasetWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetWriter")
            .field("target", &self.target)
            .field("tmp", &self.tmp)
            .field("written", &self.metas.len())
            .finish()
    }
}

/// Makes temporary names unique within a process (the pid makes them unique across).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl DatasetWriter {
    /// Starts writing a dataset to `dir`; fails if `dir` already exists.
    pub fn create(dir: impl AsRef<Path>, spec: &DatasetSpec) -> DataResult<DatasetWriter> {
        DatasetWriter::start(dir.as_ref(), spec, false)
    }

    /// Starts writing a dataset to `dir`, replacing the dataset there (if any) on `finish`.
    /// To avoid deleting anything else, an existing `dir` must be a dataset (hold a
    /// `header.json`) or be empty.
    pub fn create_replacing(
        dir: impl AsRef<Path>,
        spec: &DatasetSpec,
    ) -> DataResult<DatasetWriter> {
        DatasetWriter::start(dir.as_ref(), spec, true)
    }

    fn start(target: &Path, spec: &DatasetSpec, replace: bool) -> DataResult<DatasetWriter> {
        check_spec(spec)?;
        check_target(target, replace)?;
        let (parent, name) = split_target(target)?;
        fs::create_dir_all(&parent).map_err(|e| DataError::io(&parent, e))?;
        let tmp = parent.join(format!(
            ".{name}.partial-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        let mut writer = DatasetWriter {
            target: target.to_path_buf(),
            tmp,
            replace,
            spec: spec.clone(),
            streams: Vec::new(),
            metas: Vec::new(),
            broken: false,
            finished: false,
        };
        // From here on, an error drops `writer`, which removes the temporary directory.
        for s in &spec.streams {
            let elem = s.modality.elem();
            let path = writer.tmp.join(stream_file_name(s.modality));
            let file = File::create(&path).map_err(|e| DataError::io(&path, e))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            // A placeholder: the record count is filled in by `finish`.
            out.write_all(&[0u8; PREAMBLE_BYTES])
                .map_err(|e| DataError::io(&path, e))?;
            writer.streams.push(StreamWriter {
                spec: s.clone(),
                elem,
                // Checked by `check_spec`.
                record_bytes: record_bytes(elem, &s.dims).unwrap(),
                path,
                out,
                crc: crc32fast::Hasher::new(),
                buf: Vec::new(),
            });
        }
        Ok(writer)
    }

    /// The number of samples appended so far.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// Appends one sample. It must have exactly the spec's streams, each of the spec's shape,
    /// and a label below the number of classes; otherwise nothing is written and the error
    /// names the sample and the stream.
    pub fn append(&mut self, sample: &Sample) -> DataResult<()> {
        if self.broken {
            return Err(DataError::Invalid(
                "an earlier write failed; this dataset writer can only be dropped".into(),
            ));
        }
        self.check_sample(sample)?;
        for s in &mut self.streams {
            // Present: checked above.
            let array = &sample.streams[&s.spec.modality];
            if let Err(e) = s.write_record(array) {
                self.broken = true;
                return Err(e);
            }
        }
        self.metas.push(sample.meta.clone());
        Ok(())
    }

    fn check_sample(&self, sample: &Sample) -> DataResult<()> {
        let index = self.metas.len();
        let who = format!("sample {index} ({})", sample.meta.name);
        let classes = self.spec.classes.len();
        if usize::from(sample.meta.label) >= classes {
            return Err(DataError::Invalid(format!(
                "{who}: label {} but the dataset has {classes} classes",
                sample.meta.label
            )));
        }
        for s in &self.streams {
            let m = s.spec.modality;
            let a = sample.streams.get(&m).ok_or_else(|| {
                DataError::Shape(format!(
                    "{who}: has no {m} stream, which the dataset stores"
                ))
            })?;
            if a.elem() != s.elem {
                return Err(DataError::Shape(format!(
                    "{who}: stream {m} holds {}, the dataset stores {}",
                    a.elem().name(),
                    s.elem.name()
                )));
            }
            if a.dims != s.spec.dims {
                return Err(DataError::Shape(format!(
                    "{who}: stream {m} has shape {:?}, the dataset stores {:?}",
                    a.dims, s.spec.dims
                )));
            }
            if array_len(a) != a.numel() {
                return Err(DataError::Shape(format!(
                    "{who}: stream {m} has shape {:?} but {} elements",
                    a.dims,
                    array_len(a)
                )));
            }
        }
        if let Some(m) = sample
            .streams
            .keys()
            .find(|m| self.spec.dims_of(**m).is_none())
        {
            return Err(DataError::Shape(format!(
                "{who}: has a {m} stream, which the dataset does not store"
            )));
        }
        Ok(())
    }

    /// Completes the files, writes the header and renames the dataset into place.
    pub fn finish(mut self, splits: &[Split]) -> DataResult<()> {
        if self.broken {
            return Err(DataError::Invalid(
                "an earlier write failed; this dataset writer can only be dropped".into(),
            ));
        }
        let count = self.metas.len() as u64;
        let splits = check_splits(splits.to_vec(), count)?;

        let mut stream_headers = Vec::with_capacity(self.streams.len());
        for s in std::mem::take(&mut self.streams) {
            stream_headers.push(s.finish(count)?);
        }
        let header = Header {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            name: self.spec.name.clone(),
            classes: self.spec.classes.clone(),
            count,
            streams: stream_headers,
            samples: self.metas.iter().map(MetaHeader::from).collect(),
            splits: splits
                .into_iter()
                .map(|s| SplitHeader {
                    name: s.name,
                    train: s.train,
                    test: s.test,
                })
                .collect(),
        };
        // The header goes last: a directory without one never opens as a dataset.
        let header_path = self.tmp.join(HEADER_FILE);
        let json = serde_json::to_vec(&header)
            .map_err(|e| DataError::Invalid(format!("cannot encode the header: {e}")))?;
        write_synced(&header_path, &json)?;
        sync_dir(&self.tmp)?;

        check_target(&self.target, self.replace)?;
        let (parent, name) = split_target(&self.target)?;
        if self.replace && self.target.exists() {
            // Move the old dataset aside first: renaming onto a non-empty directory fails.
            let old = parent.join(format!(
                ".{name}.old-{}-{}",
                std::process::id(),
                TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            fs::rename(&self.target, &old).map_err(|e| DataError::io(&self.target, e))?;
            fs::rename(&self.tmp, &self.target).map_err(|e| DataError::io(&self.target, e))?;
            self.finished = true;
            // Best effort: the new dataset is in place, and a hidden leftover is harmless.
            let _ = fs::remove_dir_all(&old);
        } else {
            fs::rename(&self.tmp, &self.target).map_err(|e| DataError::io(&self.target, e))?;
            self.finished = true;
        }
        sync_dir(&parent)
    }
}

impl Drop for DatasetWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: an unfinished directory has no header and never opens anyway.
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

impl StreamWriter {
    fn write_record(&mut self, array: &Array) -> DataResult<()> {
        self.buf.clear();
        match &array.data {
            ArrayData::F32(v) => v
                .iter()
                .for_each(|x| self.buf.extend_from_slice(&x.to_le_bytes())),
            ArrayData::U16(v) => v
                .iter()
                .for_each(|x| self.buf.extend_from_slice(&x.to_le_bytes())),
            ArrayData::U8(v) => self.buf.extend_from_slice(v),
        }
        debug_assert_eq!(self.buf.len() as u64, self.record_bytes);
        self.crc.update(&self.buf);
        self.out
            .write_all(&self.buf)
            .map_err(|e| DataError::io(&self.path, e))
    }

    /// Writes the real preamble, syncs the file, and returns its header entry.
    fn finish(self, count: u64) -> DataResult<StreamHeader> {
        let io = |e| DataError::io(&self.path, e);
        let mut file = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        let preamble = Preamble {
            version: FORMAT_VERSION,
            elem: self.elem,
            dims: self.spec.dims.clone(),
            count,
            record_bytes: self.record_bytes,
        }
        .encode();
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&preamble).map_err(io)?;
        file.sync_all().map_err(io)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&preamble);
        crc.combine(&self.crc);
        Ok(StreamHeader {
            modality: self.spec.modality.name().into(),
            elem: self.elem.name().into(),
            dims: self.spec.dims.clone(),
            file: stream_file_name(self.spec.modality),
            bytes: PREAMBLE_BYTES as u64 + count * self.record_bytes,
            crc32: crc.finalize(),
        })
    }
}

fn array_len(a: &Array) -> usize {
    match &a.data {
        ArrayData::F32(v) => v.len(),
        ArrayData::U16(v) => v.len(),
        ArrayData::U8(v) => v.len(),
    }
}

/// A spec the format can store: each modality once, at most 8 dims, sizes that fit.
fn check_spec(spec: &DatasetSpec) -> DataResult<()> {
    let mut seen = HashSet::new();
    for s in &spec.streams {
        if !seen.insert(s.modality) {
            return Err(DataError::Invalid(format!(
                "dataset spec {:?} lists stream {} twice",
                spec.name, s.modality
            )));
        }
        if s.dims.len() > MAX_DIMS {
            return Err(DataError::Invalid(format!(
                "stream {} has {} dims, the format stores at most {MAX_DIMS}",
                s.modality,
                s.dims.len()
            )));
        }
        if record_bytes(s.modality.elem(), &s.dims).is_none() {
            return Err(DataError::Invalid(format!(
                "stream {} of shape {:?} is too large",
                s.modality, s.dims
            )));
        }
    }
    if spec.classes.len() > usize::from(u16::MAX) + 1 {
        return Err(DataError::Invalid(format!(
            "{} classes do not fit 16-bit labels",
            spec.classes.len()
        )));
    }
    Ok(())
}

/// Fails if something is at `target` that we may not replace.
fn check_target(target: &Path, replace: bool) -> DataResult<()> {
    if !target.exists() {
        return Ok(());
    }
    if !replace {
        return Err(DataError::Invalid(format!(
            "{} already exists; not overwriting it",
            target.display()
        )));
    }
    let is_dataset = target.join(HEADER_FILE).is_file();
    let is_empty_dir = fs::read_dir(target)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if is_dataset || is_empty_dir {
        Ok(())
    } else {
        Err(DataError::Invalid(format!(
            "{} exists and is neither a dataset nor an empty directory; not replacing it",
            target.display()
        )))
    }
}

/// The target's parent directory and file name.
fn split_target(target: &Path) -> DataResult<(PathBuf, String)> {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            DataError::Invalid(format!(
                "{} is not a usable dataset directory name",
                target.display()
            ))
        })?
        .to_string();
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

fn write_synced(path: &Path, bytes: &[u8]) -> DataResult<()> {
    let io = |e| DataError::io(path, e);
    let mut f = File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Makes a directory's entries (new files, renames) durable.
fn sync_dir(dir: &Path) -> DataResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| DataError::io(dir, e))
}
