//! GGUF files (llama.cpp's format, as city96's ComfyUI-GGUF ships Flux and T5) read tensor by
//! tensor: the header through candle's `gguf_file`, every tensor's bytes checked to lie inside
//! the file when it is opened, then quantized matrices handed out as candle `QTensor`s (still
//! quantized, whole or a range of their rows) and everything else dequantized to the dtype asked.
//!
//! Shapes are given in torch order (`[out, in]` for a matrix): GGUF stores them reversed and
//! candle's reader turns them back.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use super::params::Rereadable;
use crate::{Error, Result};

/// Quantization types this reader can hand out (what candle 0.11 reads).
pub const SUPPORTED: &str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, \
                             Q5_K, Q6_K";

/// The name of ggml tensor type `id` for the types candle cannot read (gguf-py's
/// `GGMLQuantizationType`).
fn ggml_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        40 => "NVFP4",
        41 => "Q1_0",
        _ => return None,
    })
}

/// Where one tensor's bytes are.
#[derive(Debug, Clone)]
struct Entry {
    dtype: GgmlDType,
    shape: Vec<usize>,
    start: u64,
    len: u64,
}

/// An open GGUF file with the place and type of every tensor.
pub struct GgufFile {
    path: PathBuf,
    file: std::fs::File,
    entries: HashMap<String, Entry>,
    stamp: (u64, Option<std::time::SystemTime>),
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.entries.len())
            .finish()
    }
}

fn stamp(file: &std::fs::File) -> Result<(u64, Option<std::time::SystemTime>)> {
    let m = file.metadata()?;
    Ok((m.len(), m.modified().ok()))
}

impl GgufFile {
    /// Opens `path`, reads its header and checks that every tensor's data lies in the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file =
            crate::fileio::open_regular(path).map_err(|e| Error::model(path, e.to_string()))?;
        let size = file.metadata()?.len();
        let mut reader = std::io::BufReader::new(&file);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| {
            // The first line: candle appends a backtrace when RUST_BACKTRACE is set.
            let e = e.to_string().lines().next().unwrap_or_default().to_string();
            let reason = if let Some(id) = e.strip_prefix("unknown dtype for tensor ") {
                let id: String = id.chars().take_while(char::is_ascii_digit).collect();
                let name = id.parse().ok().and_then(ggml_type_name).unwrap_or("unknown");
                format!(
                    "a tensor is stored as ggml type {name} (id {id}), which Sumi cannot read; \
                     use a GGUF file in one of {SUPPORTED}"
                )
            } else {
                format!("not a readable GGUF file ({e}); the file may be truncated or in another format")
            };
            Error::model(path, reason)
        })?;
        let mut entries = HashMap::with_capacity(content.tensor_infos.len());
        for (name, info) in content.tensor_infos {
            let shape = info.shape.dims().to_vec();
            let block = info.ggml_dtype.block_size();
            if shape.last().is_some_and(|&k| k % block != 0) {
                return Err(Error::model(
                    path,
                    format!(
                        "tensor {name} of shape {shape:?} is {:?}, whose rows must be whole \
                         blocks of {block} values; the file is corrupt",
                        info.ggml_dtype
                    ),
                ));
            }
            let len = shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .and_then(|elems| (elems / block).checked_mul(info.ggml_dtype.type_size()))
                .map_or(u64::MAX, |len| len as u64);
            let start = content.tensor_data_offset.saturating_add(info.offset);
            if start.checked_add(len).is_none_or(|end| end > size) {
                return Err(Error::model(
                    path,
                    format!(
                        "truncated GGUF file: tensor {name} needs {len} bytes at offset {start} \
                         but the file has {size} bytes; download it again"
                    ),
                ));
            }
            let entry = Entry {
                dtype: info.ggml_dtype,
                shape,
                start,
                len,
            };
            entries.insert(name, entry);
        }
        Ok(Self {
            path: path.to_path_buf(),
            stamp: stamp(&file)?,
            file,
            entries,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names and torch-order shapes of all tensors.
    pub fn shapes(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.entries
            .iter()
            .map(|(n, e)| (n.as_str(), e.shape.as_slice()))
    }

    /// The torch-order shape of `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// Whether `name` is a block-quantized matrix (not F32/F16/BF16) that candle's kernels
    /// multiply as stored: its Q4_1, Q5_0 and Q5_1 dot products take rows of an even number of
    /// blocks (a debug assertion otherwise), so other such matrices are dequantized instead.
    pub fn runs_quantized(&self, name: &str) -> bool {
        let Some(e) = self.entries.get(name) else {
            return false;
        };
        let k = e.shape.last().copied().unwrap_or(0);
        match e.dtype {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => false,
            GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 => {
                e.shape.len() == 2 && (k / e.dtype.block_size()) % 2 == 0
            }
            _ => e.shape.len() == 2,
        }
    }

    fn entry(&self, name: &str) -> candle_core::Result<&Entry> {
        self.entries.get(name).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "tensor {name} is missing from {}",
                self.path.display()
            ))
        })
    }

    fn read(&self, name: &str, start: u64, len: usize) -> candle_core::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        read_at(&self.file, &mut buf, start).map_err(|e| {
            candle_core::Error::Msg(format!(
                "reading tensor {name} from {} failed: {e}; the file may have been changed or \
                 truncated while loading, check it and load the model again",
                self.path.display()
            ))
        })?;
        Ok(buf)
    }

    /// The rows `ranges` of matrix `name`, one after the other, still quantized, on `device`
    /// (the whole matrix for an empty `ranges`). Rows are whole blocks, so this only cuts bytes.
    pub fn qtensor(
        &self,
        name: &str,
        ranges: &[std::ops::Range<usize>],
        device: &Device,
    ) -> candle_core::Result<QTensor> {
        let e = self.entry(name)?;
        let (n, k) = match e.shape.as_slice() {
            [n, k] => (*n, *k),
            s => candle_core::bail!("tensor {name} of shape {s:?} is not a matrix"),
        };
        let row_bytes = k / e.dtype.block_size() * e.dtype.type_size();
        let whole = [std::ops::Range { start: 0, end: n }];
        let ranges = if ranges.is_empty() {
            &whole[..]
        } else {
            ranges
        };
        let rows: usize = ranges.iter().map(|r| r.len()).sum();
        let mut bytes = Vec::with_capacity(rows * row_bytes);
        for r in ranges {
            if r.start > r.end || r.end > n {
                candle_core::bail!("tensor {name} has {n} rows, not {r:?}");
            }
            let start = e.start + (r.start * row_bytes) as u64;
            bytes.extend(self.read(name, start, r.len() * row_bytes)?);
        }
        let storage = QStorage::from_data(Cow::Owned(bytes), device, e.dtype)?;
        QTensor::new(storage, (rows, k))
    }

    /// Tensor `name` dequantized to `dtype` on `device`.
    pub fn load(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        let e = self.entry(name)?;
        let bytes = self.read(name, e.start, e.len as usize)?;
        let storage = QStorage::from_data(Cow::Owned(bytes), &Device::Cpu, e.dtype)?;
        let q = QTensor::new(storage, e.shape.as_slice())?;
        q.dequantize(&Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)
    }
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(not(unix))]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

impl SimpleBackend for GgufFile {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(stored) = self.shape(name) {
            if stored != s.dims() {
                return Err(candle_core::Error::UnexpectedShape {
                    msg: format!("shape mismatch for {name}"),
                    expected: s,
                    got: stored.into(),
                }
                .bt());
            }
        }
        self.load(name, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

impl Rereadable for GgufFile {
    fn check_unchanged(&self) -> Result<()> {
        if stamp(&self.file)? != self.stamp {
            return Err(Error::model(
                &self.path,
                "the file changed on disk since it was loaded; load the model again",
            ));
        }
        Ok(())
    }
}
