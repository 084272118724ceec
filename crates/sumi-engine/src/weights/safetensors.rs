//! Reading safetensors weights tensor by tensor, with errors that name the file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use super::params::{self, Rereadable};
use crate::{mapped, Error, Result};

/// A `VarBuilder` over `files` that yields tensors in `dtype` on `device`.
///
/// A tensor of a page or more wanted in its stored type is used from a private mapping of the file
/// ([`crate::mapped`]), so its memory is the file's page cache, read when first used; any other
/// is read from its file with positioned reads into a buffer of its stored type and converted
/// once.
pub fn var_builder(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    let st = SafetensorsFiles::open(files)?;
    Ok(super::storage::builder(
        params::backend(st, files.to_vec()),
        dtype,
        device,
    ))
}

/// Runs `build` over a `VarBuilder` on `files` (as [`var_builder`]) with, on the CPU, every
/// tensor of the files read beforehand on all compute threads, so that the layers' requests (one
/// at a time, most of them too small to split) do not leave cores idle; the reads convert stored
/// f16/bf16 values in parallel too. Each tensor read ahead is handed out once (a second request
/// reads the file again) and whatever no layer asked for is dropped when `build` returns.
pub fn build_with_weights<R>(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
    build: impl FnOnce(VarBuilder<'static>) -> R,
) -> Result<R> {
    let st = SafetensorsFiles::open(files)?;
    let ahead = st.ahead.clone();
    if device.is_cpu() {
        st.read_ahead(|name, shape| super::storage::stored_dtype(name, shape, dtype, device));
    }
    let vb = super::storage::builder(params::backend(st, files.to_vec()), dtype, device);
    let built = build(vb);
    ahead
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    Ok(built)
}

/// Tensors read before the layers asked for them, by name.
type Ahead = std::sync::Arc<std::sync::Mutex<HashMap<String, Tensor>>>;

/// Element types a safetensors header can name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum StoredType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    U32,
    U8,
    /// 8-bit float, 4 exponent and 3 mantissa bits, no infinities (`float8_e4m3fn`, as
    /// ComfyUI's fp8 files store weights); converted to the dtype asked for when read.
    F8E4M3,
    /// A type Sumi cannot load (reading a tensor of this type is an error).
    Other(String),
}

impl StoredType {
    fn parse(s: &str) -> Self {
        match s {
            "F64" => Self::F64,
            "F32" => Self::F32,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "I64" => Self::I64,
            "U32" => Self::U32,
            "U8" => Self::U8,
            "F8_E4M3" => Self::F8E4M3,
            other => Self::Other(other.to_string()),
        }
    }

    /// The candle type of the same values, when there is one.
    fn dtype(&self) -> Option<DType> {
        Some(match self {
            Self::F64 => DType::F64,
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::BF16 => DType::BF16,
            Self::I64 => DType::I64,
            Self::U32 => DType::U32,
            Self::U8 => DType::U8,
            Self::F8E4M3 | Self::Other(_) => return None,
        })
    }

    /// Bytes per element, when known.
    fn size(&self) -> Option<u64> {
        Some(match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::U32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::U8 | Self::F8E4M3 => 1,
            Self::Other(_) => return None,
        })
    }
}

/// Where one tensor lives.
#[derive(Clone, Debug)]
struct Entry {
    file: usize,
    dtype: StoredType,
    shape: Vec<usize>,
    /// Absolute offset of the first byte in the file.
    start: u64,
    /// Length in bytes.
    len: u64,
}

#[derive(serde::Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// One or more safetensors files (e.g. the shards of one component), read tensor by tensor.
///
/// Headers are parsed and every tensor's offsets are checked against the file length when the
/// files are opened, so a truncated file or a header that lies about sizes fails early with an
/// error naming the file, and no allocation is larger than the data the file really holds.
pub struct SafetensorsFiles {
    files: Vec<(PathBuf, std::fs::File)>,
    entries: HashMap<String, Entry>,
    /// Each file's length and modification time when it was opened.
    stamps: Vec<Stamp>,
    /// The first file's `__metadata__` strings.
    metadata: BTreeMap<String, String>,
    /// Tensors read ahead ([`build_with_weights`]), each taken out when first asked for.
    ahead: Ahead,
    /// Serialises seek+read pairs where positioned reads are not available.
    #[cfg(not(unix))]
    seek_lock: std::sync::Mutex<()>,
}

impl std::fmt::Debug for SafetensorsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFiles")
            .field(
                "files",
                &self.files.iter().map(|f| &f.0).collect::<Vec<_>>(),
            )
            .field("tensors", &self.entries.len())
            .finish()
    }
}

impl SafetensorsFiles {
    /// Opens `paths` and parses their headers. A tensor name found in several files is taken
    /// from the first one.
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut entries = HashMap::new();
        let mut stamps = Vec::with_capacity(paths.len());
        let mut metadata = None;
        for (index, path) in paths.iter().enumerate() {
            let (file, found, meta) = read_header(path)?;
            for (name, mut entry) in found {
                entry.file = index;
                entries.entry(name).or_insert(entry);
            }
            stamps.push(Stamp::of(&file)?);
            metadata.get_or_insert(meta);
            files.push((path.clone(), file));
        }
        Ok(Self {
            files,
            entries,
            stamps,
            metadata: metadata.unwrap_or_default(),
            ahead: Ahead::default(),
            #[cfg(not(unix))]
            seek_lock: std::sync::Mutex::new(()),
        })
    }

    /// The first file's `__metadata__` entries (string values only).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The stored element type of `name` as the header spells it (`F16`, `F32`, ...).
    pub fn stored_type(&self, name: &str) -> Option<String> {
        self.entries.get(name).map(|e| format!("{:?}", e.dtype))
    }

    /// The files, in the order given to [`SafetensorsFiles::open`].
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }

    /// Errs, naming the file, when one of the files changed (length or modification time)
    /// since it was opened.
    pub fn check_unchanged(&self) -> Result<()> {
        for ((path, file), stamp) in self.files.iter().zip(&self.stamps) {
            if Stamp::of(file)? != *stamp {
                return Err(Error::model(
                    path,
                    "the file changed on disk since it was loaded; load the model again",
                ));
            }
        }
        Ok(())
    }

    /// Names and stored shapes of all tensors.
    pub fn shapes(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.entries
            .iter()
            .map(|(n, e)| (n.as_str(), e.shape.as_slice()))
    }

    /// The stored shape of `name`, if some file has it.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// Reads tensor `name` converted to `dtype` on `device`. On the CPU the tensor is read
    /// straight into its final buffer (plus one buffer of the stored type when converting); a GPU
    /// gets the stored values and converts them itself, which is far quicker than candle's
    /// one-thread conversion on the CPU.
    pub fn load(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        if let Some(t) = self.take_ahead(name, dtype, device) {
            return Ok(t);
        }
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| candle_core::Error::CannotFindTensor { path: name.into() }.bt())?;
        match (device, entry.dtype.dtype()) {
            (Device::Cpu, _) | (_, None) => self.load_cpu(name, entry, dtype)?.to_device(device),
            (_, Some(stored)) => self
                .load_cpu(name, entry, stored)?
                .to_device(device)?
                .to_dtype(dtype),
        }
    }

    /// Reads rows `rows` (along dim 0) of tensor `name`, converted to `dtype` on `device`,
    /// without reading the rest of the tensor (a part of a fused q/k/v matrix).
    pub fn load_rows(
        &self,
        name: &str,
        rows: std::ops::Range<usize>,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| candle_core::Error::CannotFindTensor { path: name.into() }.bt())?;
        let n = entry.shape.first().copied().unwrap_or(0);
        if rows.start > rows.end || rows.end > n {
            candle_core::bail!("tensor {name} has {n} rows, not {rows:?}");
        }
        let row_bytes = if n == 0 { 0 } else { entry.len / n as u64 };
        let mut part = entry.clone();
        part.shape[0] = rows.len();
        part.start += rows.start as u64 * row_bytes;
        part.len = rows.len() as u64 * row_bytes;
        match (device, part.dtype.dtype()) {
            (Device::Cpu, _) | (_, None) => self.load_cpu(name, &part, dtype)?.to_device(device),
            (_, Some(stored)) => self
                .load_cpu(name, &part, stored)?
                .to_device(device)?
                .to_dtype(dtype),
        }
    }

    /// Reads every floating-point tensor into [`Self::ahead`] on the CPU, in parallel, each in
    /// the dtype `dtype_of(name, shape)` says its layer will ask for.
    /// A tensor that fails to read is left out (asking for it reads it again and says why).
    fn read_ahead(&self, dtype_of: impl Fn(&str, &Shape) -> DType + Sync) {
        use rayon::prelude::*;
        let names: Vec<(&String, &Entry)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.dtype.dtype().is_some_and(|t| t.is_float()))
            .collect();
        let read: Vec<(String, Tensor)> = names
            .into_par_iter()
            .filter_map(|(name, e)| {
                let dtype = dtype_of(name, &Shape::from_dims(&e.shape));
                if Self::mappable(e, dtype) {
                    // Mapped when asked for, at no cost.
                    return None;
                }
                Some((name.clone(), self.load_cpu(name, e, dtype).ok()?))
            })
            .collect();
        self.ahead
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(read);
    }

    /// The tensor read ahead for `name`, when it was read as `dtype` for `device`.
    fn take_ahead(&self, name: &str, dtype: DType, device: &Device) -> Option<Tensor> {
        let t = self
            .ahead
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name)?;
        (device.is_cpu() && t.dtype() == dtype).then_some(t)
    }

    /// Whether `e` wanted in `dtype` is used from a mapping of its file ([`crate::mapped`]):
    /// stored in that dtype and large enough to be worth a mapping.
    fn mappable(e: &Entry, dtype: DType) -> bool {
        e.len >= mapped::MIN_BYTES
            && e.dtype.dtype() == Some(dtype)
            && matches!(dtype, DType::F32 | DType::BF16 | DType::F16)
            && mapped::enabled()
    }

    /// `e` as stored, its memory a private mapping of the file, when [`Self::mappable`] and the
    /// mapping succeeds.
    fn map_as_stored(&self, e: &Entry, dtype: DType) -> Option<Tensor> {
        if !Self::mappable(e, dtype) {
            return None;
        }
        let (file, n, shape) = (
            &self.files[e.file].1,
            e.shape.iter().product(),
            &e.shape[..],
        );
        // Bytes missing from a file cut since it was opened fault when touched; reading them
        // instead gives the named error.
        if file.metadata().ok()?.len() < e.start + e.len {
            return None;
        }
        let cpu = &Device::Cpu;
        let t = match dtype {
            DType::F32 => Tensor::from_vec(mapped::map_vec::<f32>(file, e.start, n)?, shape, cpu),
            DType::BF16 => {
                Tensor::from_vec(mapped::map_vec::<half::bf16>(file, e.start, n)?, shape, cpu)
            }
            DType::F16 => {
                Tensor::from_vec(mapped::map_vec::<half::f16>(file, e.start, n)?, shape, cpu)
            }
            _ => return None,
        };
        t.ok()
    }

    fn load_cpu(&self, name: &str, e: &Entry, dtype: DType) -> candle_core::Result<Tensor> {
        use half::slice::HalfFloatSliceExt;
        if let Some(t) = self.map_as_stored(e, dtype) {
            return Ok(t);
        }
        let shape = e.shape.as_slice();
        let cpu = &Device::Cpu;
        let t = match (&e.dtype, dtype) {
            (StoredType::F16, DType::F32) => {
                let h: Vec<half::f16> = self.read_vec(name, e)?;
                let mut out = vec![0f32; h.len()];
                h.convert_to_f32_slice(&mut out);
                drop(h);
                return Tensor::from_vec(out, shape, cpu);
            }
            (StoredType::BF16, DType::F32) => {
                let h: Vec<half::bf16> = self.read_vec(name, e)?;
                let mut out = vec![0f32; h.len()];
                h.convert_to_f32_slice(&mut out);
                drop(h);
                return Tensor::from_vec(out, shape, cpu);
            }
            (StoredType::F32, _) => Tensor::from_vec(self.read_vec::<f32>(name, e)?, shape, cpu)?,
            (StoredType::F16, _) => {
                Tensor::from_vec(self.read_vec::<half::f16>(name, e)?, shape, cpu)?
            }
            (StoredType::BF16, _) => {
                Tensor::from_vec(self.read_vec::<half::bf16>(name, e)?, shape, cpu)?
            }
            (StoredType::F64, _) => Tensor::from_vec(self.read_vec::<f64>(name, e)?, shape, cpu)?,
            (StoredType::I64, _) => Tensor::from_vec(self.read_vec::<i64>(name, e)?, shape, cpu)?,
            (StoredType::U32, _) => Tensor::from_vec(self.read_vec::<u32>(name, e)?, shape, cpu)?,
            (StoredType::U8, _) => Tensor::from_vec(self.read_vec::<u8>(name, e)?, shape, cpu)?,
            (StoredType::F8E4M3, _) => {
                let bytes: Vec<u8> = self.read_vec(name, e)?;
                let out: Vec<f32> = bytes.iter().map(|&b| f8e4m3_to_f32(b)).collect();
                drop(bytes);
                Tensor::from_vec(out, shape, cpu)?
            }
            (StoredType::Other(t), _) => candle_core::bail!(
                "tensor {name} in {} has element type {t}, which Sumi cannot load; \
                 convert the file to F32, F16 or BF16 weights",
                self.files[e.file].0.display()
            ),
        };
        t.to_dtype(dtype)
    }

    /// Reads the bytes of `e` into a vector of its element type.
    fn read_vec<T: bytemuck::Pod>(&self, name: &str, e: &Entry) -> candle_core::Result<Vec<T>> {
        let n: usize = e.shape.iter().product();
        // The header check guarantees len == n * size_of::<T>() and that the bytes are in the file.
        debug_assert_eq!(e.len as usize, n * std::mem::size_of::<T>());
        let mut v = vec![T::zeroed(); n];
        let (path, file) = &self.files[e.file];
        self.read_parallel(file, bytemuck::cast_slice_mut(&mut v), e.start)
            .map_err(|err| {
                candle_core::Error::Msg(format!(
                    "reading tensor {name} from {} failed: {err}; the file may have been changed \
                     or truncated while loading, check it and load the model again",
                    path.display()
                ))
            })?;
        if cfg!(target_endian = "big") {
            // safetensors stores little-endian values.
            let size = std::mem::size_of::<T>();
            for c in bytemuck::cast_slice_mut::<T, u8>(&mut v).chunks_exact_mut(size) {
                c.reverse();
            }
        }
        Ok(v)
    }

    /// Fills `buf` from `offset`, large buffers in chunks on all compute threads: most of a
    /// load is the kernel faulting in and zeroing fresh pages, which then runs on every core.
    fn read_parallel(
        &self,
        file: &std::fs::File,
        buf: &mut [u8],
        offset: u64,
    ) -> std::io::Result<()> {
        use rayon::prelude::*;
        const CHUNK: usize = 4 << 20;
        if buf.len() <= CHUNK {
            return self.read_at(file, buf, offset);
        }
        buf.par_chunks_mut(CHUNK)
            .enumerate()
            .try_for_each(|(i, chunk)| self.read_at(file, chunk, offset + (i * CHUNK) as u64))
    }

    #[cfg(unix)]
    fn read_at(&self, file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }

    #[cfg(not(unix))]
    fn read_at(&self, file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let _guard = self
            .seek_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

impl SimpleBackend for SafetensorsFiles {
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

impl Rereadable for SafetensorsFiles {
    fn check_unchanged(&self) -> Result<()> {
        SafetensorsFiles::check_unchanged(self)
    }
}

/// The value of a `float8_e4m3fn` byte: sign, 4 exponent bits (bias 7), 3 mantissa bits;
/// exponent 0 is subnormal, and `S.1111.111` is NaN (the format has no infinities).
pub(crate) fn f8e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((b >> 3) & 0x0f);
    let man = f32::from(b & 0x07);
    if exp == 0x0f && b & 0x07 == 0x07 {
        return f32::NAN;
    }
    let magnitude = match exp {
        0 => man / 8.0 * 2f32.powi(-6),
        e => (1.0 + man / 8.0) * 2f32.powi(e - 7),
    };
    sign * magnitude
}

/// A file's length and modification time, read from the open file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    fn of(file: &std::fs::File) -> Result<Self> {
        let m = file.metadata()?;
        Ok(Self {
            len: m.len(),
            modified: m.modified().ok(),
        })
    }
}

type Header = (
    std::fs::File,
    Vec<(String, Entry)>,
    BTreeMap<String, String>,
);

/// Opens `path`, checks and parses its header and checks every tensor's offsets and size.
fn read_header(path: &Path) -> Result<Header> {
    use std::io::Read;
    let header_len = check_header(path)?;
    let mut file =
        crate::fileio::open_regular(path).map_err(|e| Error::model(path, e.to_string()))?;
    let size = file.metadata()?.len();
    // check_header bounded header_len by 100 MiB and by the file size.
    let mut header = vec![0u8; header_len as usize];
    {
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(8))?;
    }
    file.read_exact(&mut header)
        .map_err(|e| Error::model(path, format!("cannot read the safetensors header: {e}")))?;
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| {
            Error::model(
                path,
                format!("not a valid safetensors file (header is not a JSON object: {e})"),
            )
        })?;
    let data_start = 8 + header_len;
    let data_len = size - data_start;
    let mut out = Vec::with_capacity(json.len());
    let mut metadata = BTreeMap::new();
    for (name, value) in json {
        if name == "__metadata__" {
            if let serde_json::Value::Object(m) = value {
                for (k, v) in m {
                    if let serde_json::Value::String(v) = v {
                        metadata.insert(k, v);
                    }
                }
            }
            continue;
        }
        let h: HeaderEntry = serde_json::from_value(value).map_err(|e| {
            Error::model(
                path,
                format!("not a valid safetensors file (entry for tensor {name}: {e})"),
            )
        })?;
        let [begin, end] = h.data_offsets;
        if begin > end || end > data_len {
            return Err(Error::model(
                path,
                format!(
                    "truncated or corrupt safetensors file: tensor {name} has data offsets \
                     [{begin}, {end}] but the file holds {data_len} bytes of tensor data; \
                     download it again"
                ),
            ));
        }
        let dtype = StoredType::parse(&h.dtype);
        if let Some(size) = dtype.size() {
            let want = h
                .shape
                .iter()
                .try_fold(size, |acc, &d| acc.checked_mul(d as u64));
            if want != Some(end - begin) {
                return Err(Error::model(
                    path,
                    format!(
                        "corrupt safetensors header: tensor {name} has shape {:?} of {} but {} \
                         bytes of data; download the file again",
                        h.shape,
                        h.dtype,
                        end - begin
                    ),
                ));
            }
        }
        out.push((
            name,
            Entry {
                file: 0,
                dtype,
                shape: h.shape,
                start: data_start + begin,
                len: end - begin,
            },
        ));
    }
    Ok((file, out, metadata))
}

/// Cheap sanity check of a safetensors header, for clear messages on junk files; returns the
/// header length.
pub(crate) fn check_header(path: &Path) -> Result<u64> {
    use std::io::Read;
    let mut f = crate::fileio::open_regular(path).map_err(|e| Error::model(path, e.to_string()))?;
    let size = f.metadata()?.len();
    let mut len = [0u8; 8];
    if f.read_exact(&mut len).is_err() {
        return Err(Error::model(
            path,
            "file is too short to be safetensors (truncated or empty?)",
        ));
    }
    let header_len = u64::from_le_bytes(len);
    if header_len == 0 || header_len > 100 << 20 || header_len + 8 > size {
        return Err(Error::model(
            path,
            "not a safetensors file (bad header length); the file may be truncated or in another format",
        ));
    }
    let mut first = [0u8; 1];
    f.read_exact(&mut first)?;
    if first[0] != b'{' {
        return Err(Error::model(
            path,
            "not a safetensors file (header is not JSON)",
        ));
    }
    Ok(header_len)
}

#[cfg(test)]
mod tests;
