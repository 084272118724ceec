//! A weights-only reader for PyTorch pickle files (`.pt`, `.pth`, `.bin`, `.ckpt`).
//!
//! Pickle is a small stack machine whose programs may import and call any Python function;
//! this reader never runs anything. It interprets the opcodes `torch.save` writes and knows
//! only the few names a tensor file needs (as `torch.load(weights_only=True)` does): every
//! other name, opcode or call is refused with an error that names it.
//!
//! It reads the zip archive `torch.save` writes since PyTorch 1.6 (`<name>/data.pkl` plus one
//! stored entry per storage) and refuses the older formats. Tensors come out contiguous and
//! little-endian whatever their strides and storage offsets were. Every length in the file is
//! checked against the bytes that remain before anything is allocated, and the tree built
//! from the pickle is charged against a memory budget proportional to the file size.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::{self, Display};
use std::io::Read;
use std::path::Path;

use super::torch_zip::{self, le, ZipError};

/// The largest file this reader opens (embeddings are KB to MB).
pub const MAX_FILE_SIZE: u64 = 4 << 30;
/// Objects in the pickle machine, and entries in its memo and on its stack.
const MAX_OBJECTS: usize = 1 << 20;
const MAX_MARKS: usize = 1024;
/// Nesting of the returned tree (state dicts nest a few levels).
const MAX_DEPTH: usize = 64;
const MAX_DIMS: usize = 32;
/// What one node of the returned tree costs against the memory budget.
const NODE_COST: u64 = 32;
/// The first bytes of the legacy format (PyTorch < 1.6): its magic number, pickled.
const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e";

/// Why a pickle file could not be read; the message says what is wrong and what to do.
#[derive(Debug)]
pub enum PickleError {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// The file is larger than [`MAX_FILE_SIZE`].
    TooLarge(u64),
    /// The file is not something `torch.save` writes.
    NotTorch(String),
    /// The pickle names a Python function or class that a weights file never needs.
    Forbidden(String),
    /// The file uses a PyTorch, pickle or zip feature this reader does not implement.
    Unsupported(String),
    /// The file is truncated or damaged.
    Corrupt(String),
    /// The file would need more memory or nesting than any weights file does.
    Limit(String),
}

impl Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let convert = "convert the file to .safetensors with a trusted tool";
        match self {
            Self::Io(e) => write!(f, "could not read the file: {e}"),
            Self::TooLarge(n) => write!(f, "the file has {n} bytes, over 4 GiB: {convert}"),
            Self::NotTorch(why) => write!(f, "not a PyTorch weights file ({why})"),
            Self::Forbidden(name) => write!(
                f,
                "the file contains a reference to `{name}`, which a weights file never needs; \
                 Sumi refuses it: {convert}"
            ),
            Self::Unsupported(what) => write!(
                f,
                "the file uses {what}, which Sumi's weights-only pickle reader does not \
                 support: {convert}"
            ),
            Self::Corrupt(why) => write!(f, "the file is damaged: {why}; download it again"),
            Self::Limit(why) => write!(
                f,
                "the file exceeds a safety limit: {why}; Sumi refuses it: if it is genuine, \
                 {convert}"
            ),
        }
    }
}

impl std::error::Error for PickleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, PickleError>;

fn corrupt(why: impl Display) -> PickleError {
    PickleError::Corrupt(why.to_string())
}

fn unsupported(what: impl Display) -> PickleError {
    PickleError::Unsupported(what.to_string())
}

fn limit(why: impl Display) -> PickleError {
    PickleError::Limit(why.to_string())
}

/// Declares `DType` and `DTYPES`, its table, in the same order.
macro_rules! dtypes {
    ($($v:ident $torch:literal $storage:literal $name:literal $size:literal;)*) => {
        /// The element type of a tensor.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DType {
            $(#[doc = concat!("`torch.", $torch, "`")] $v,)*
        }
        /// (dtype, torch name, legacy storage class or "", short name, bytes per element).
        const DTYPES: &[(DType, &str, &str, &str, usize)] =
            &[$((DType::$v, $torch, $storage, $name, $size)),*];
    };
}

dtypes! {
    F64 "float64" "DoubleStorage" "f64" 8;
    F32 "float32" "FloatStorage" "f32" 4;
    F16 "float16" "HalfStorage" "f16" 2;
    BF16 "bfloat16" "BFloat16Storage" "bf16" 2;
    F8E4M3 "float8_e4m3fn" "" "f8e4m3" 1;
    F8E5M2 "float8_e5m2" "" "f8e5m2" 1;
    I64 "int64" "LongStorage" "i64" 8;
    I32 "int32" "IntStorage" "i32" 4;
    I16 "int16" "ShortStorage" "i16" 2;
    I8 "int8" "CharStorage" "i8" 1;
    U64 "uint64" "" "u64" 8;
    U32 "uint32" "" "u32" 4;
    U16 "uint16" "" "u16" 2;
    U8 "uint8" "ByteStorage" "u8" 1;
    Bool "bool" "BoolStorage" "bool" 1;
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        DTYPES[self as usize].4
    }

    /// A short name: `f32`, `f16`, `bf16`, `i64`, `bool`, ...
    pub fn name(self) -> &'static str {
        DTYPES[self as usize].3
    }
}

/// A tensor, contiguous (row-major) with little-endian elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Size of each dimension; empty for a scalar.
    pub shape: Vec<usize>,
    /// `numel() * dtype.size()` bytes.
    pub data: Vec<u8>,
}

impl Tensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A dictionary key: pickled weights files use strings and, rarely, integers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A string key.
    Str(String),
    /// An integer (or bool) key.
    Int(i64),
}

/// The object tree of a pickle file.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Python `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string; also a dtype stored as a value (`torch.float16`).
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A dict or `OrderedDict` in insertion order (a key that a hand-made pickle sets twice
    /// appears twice).
    Dict(Vec<(Key, Value)>),
    /// A tensor or `nn.Parameter`.
    Tensor(Tensor),
}

/// Reads a `torch.save` file into its object tree.
pub fn read(path: &Path) -> Result<Value> {
    let file = std::fs::File::open(path).map_err(PickleError::Io)?;
    let len = file.metadata().map_err(PickleError::Io)?.len();
    if len > MAX_FILE_SIZE {
        return Err(PickleError::TooLarge(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    let mut file = file.take(MAX_FILE_SIZE + 1);
    file.read_to_end(&mut bytes).map_err(PickleError::Io)?;
    read_bytes(&bytes)
}

/// Reads the bytes of a `torch.save` file into its object tree.
pub fn read_bytes(bytes: &[u8]) -> Result<Value> {
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(PickleError::TooLarge(bytes.len() as u64));
    }
    let not_torch = |why: &str| Err(PickleError::NotTorch(why.into()));
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        read_zip(bytes)
    } else if bytes.starts_with(LEGACY_MAGIC) || bytes.get(257..262) == Some(b"ustar") {
        Err(unsupported(
            "the format of PyTorch before 1.6 (a current torch.save rewrites it)",
        ))
    } else if bytes.first() == Some(&0x80) {
        not_torch("a bare Python pickle, not a torch.save archive")
    } else {
        not_torch("it starts with neither a zip header nor PyTorch's magic number")
    }
}

/// Reads a `torch.save` file and returns its tensors with dotted names (see
/// [`flatten_tensors`]); `Ok` with an empty list when the file holds no tensor.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    Ok(flatten_tensors(read(path)?))
}

/// Every tensor in `value` with its path of dict keys and list indices joined by dots
/// (`string_to_param.*`, `clip_l`, `layers.0.weight`); a bare tensor is named "". Other
/// leaves are dropped.
pub fn flatten_tensors(value: Value) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    flatten(String::new(), value, &mut out);
    out
}

fn flatten(name: String, value: Value, out: &mut Vec<(String, Tensor)>) {
    let join = |k: &dyn Display| match name.is_empty() {
        true => k.to_string(),
        false => format!("{name}.{k}"),
    };
    match value {
        Value::Tensor(t) => out.push((name, t)),
        Value::Dict(items) => {
            for (k, v) in items {
                let k = match k {
                    Key::Str(s) => join(&s),
                    Key::Int(i) => join(&i),
                };
                flatten(k, v, out);
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, v) in items.into_iter().enumerate() {
                flatten(join(&i), v, out);
            }
        }
        _ => {}
    }
}

// ------------------------------------------------------------------------ zip archive

fn read_zip(bytes: &[u8]) -> Result<Value> {
    let entries = zip_entries(bytes)?;
    let is_pkl = |n: &&String| n.ends_with("/data.pkl") && n.matches('/').count() == 1;
    let pkls: Vec<&String> = entries.keys().filter(is_pkl).collect();
    let [pkl] = pkls[..] else {
        let why = "a zip archive without exactly one data.pkl";
        return Err(PickleError::NotTorch(why.into()));
    };
    let prefix = pkl.trim_end_matches("data.pkl");
    let order = entries.get(&format!("{prefix}byteorder"));
    if order.is_some_and(|o| *o != b"little") {
        return Err(unsupported("big-endian tensor data"));
    }
    let data_dir = format!("{prefix}data/");
    let storages = entries
        .iter()
        .filter_map(|(n, d)| Some((n.strip_prefix(&data_dir)?, *d)));
    let mut vm = Vm::new(entries[pkl], storages.collect(), bytes.len());
    let root = vm.run()?;
    vm.value(root, 0)
}

fn zip_entries(bytes: &[u8]) -> Result<HashMap<String, &[u8]>> {
    torch_zip::entries(bytes).map_err(|e| match e {
        ZipError::Corrupt(why) => corrupt(format!("zip archive: {why}")),
        ZipError::Unsupported(what) => unsupported(what),
    })
}

// ------------------------------------------------------------------------ pickle machine

type Id = usize;

/// The allowlisted Python names; anything else is refused where the pickle names it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`, or `_v3` (true: it takes the dtype as an argument).
    Tensor(bool),
    /// `torch._utils._rebuild_parameter` and `_rebuild_parameter_with_state`.
    Parameter,
    Storage(Option<DType>),
    DType(DType),
}

fn resolve_global(module: &str, name: &str) -> Result<Global> {
    let storage = DTYPES.iter().find(|r| !r.2.is_empty() && r.2 == name);
    let dtype = DTYPES.iter().find(|r| r.1 == name);
    Ok(match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::Tensor(false),
        ("torch._utils", "_rebuild_tensor_v3") => Global::Tensor(true),
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            Global::Parameter
        }
        ("torch" | "torch.storage", "UntypedStorage") => Global::Storage(None),
        ("torch", _) if storage.is_some() => Global::Storage(storage.map(|r| r.0)),
        ("torch", _) if dtype.is_some() => Global::DType(dtype.map_or(DType::F32, |r| r.0)),
        _ if module == "torch" || module.starts_with("torch.") => {
            return Err(unsupported(format!("`{module}.{name}`").escape_debug()))
        }
        _ => {
            let name = format!("{module}.{name}").escape_debug().to_string();
            return Err(PickleError::Forbidden(name));
        }
    })
}

/// A strided view of a storage, gathered into a [`Tensor`] when the tree is built.
struct View<'a> {
    data: &'a [u8],
    dtype: DType,
    offset: u64,
    shape: Vec<u64>,
    strides: Vec<u64>,
}

/// A pickle object. Containers hold arena ids, so a shared object that is changed after it
/// was memoized changes for every holder, as in Python, and reading the memo copies nothing.
enum Obj<'a> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(Global, String),
    /// A storage's element type (`None`: untyped bytes) and its declared bytes.
    Storage(Option<DType>, &'a [u8]),
    Tensor(Box<View<'a>>),
}

/// Ids of the shared objects every machine starts with.
const NONE: Id = 0;
const TRUE: Id = 1;
const FALSE: Id = 2;

/// Bytes of the integer or length argument that follows `op`.
fn arg_width(op: u8) -> usize {
    match op {
        b'K' | b'h' | b'q' | 0x8a | 0x8c => 1,
        b'M' => 2,
        b'J' | b'X' | b'j' | b'r' | 0x8b => 4,
        _ => 8,
    }
}

/// Runs `data.pkl` and turns what it built into a [`Value`] tree.
struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    /// Where the current opcode starts, for error messages.
    op_pos: usize,
    objs: Vec<Obj<'a>>,
    stack: Vec<Id>,
    /// Stack lengths at each open MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
    /// The archive's entries under `<name>/data/`, by storage key.
    storages: HashMap<&'a str, &'a [u8]>,
    /// Bytes the returned tree may still take: a shared object is copied at every use, so a
    /// few bytes of pickle could otherwise expand without bound.
    budget: Cell<u64>,
}

impl<'a> Vm<'a> {
    fn new(data: &'a [u8], storages: HashMap<&'a str, &'a [u8]>, file_len: usize) -> Self {
        Vm {
            data,
            pos: 0,
            op_pos: 0,
            objs: vec![Obj::None, Obj::Bool(true), Obj::Bool(false)],
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            storages,
            budget: Cell::new(8 * file_len as u64 + (1 << 20)),
        }
    }

    fn bad(&self, why: impl Display) -> PickleError {
        corrupt(format!("{why} (pickle byte {})", self.op_pos))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let data = self.data;
        let end = self.pos.saturating_add(n.try_into().unwrap_or(usize::MAX));
        let Some(bytes) = data.get(self.pos..end) else {
            return Err(self.bad(format!("a {n}-byte field runs past the end")));
        };
        self.pos = end;
        Ok(bytes)
    }

    fn uint(&mut self, n: usize) -> Result<u64> {
        Ok(le(self.take(n as u64)?, 0, n).unwrap_or(0))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let Some(end) = rest.iter().take(256).position(|&b| b == b'\n') else {
            return Err(self.bad("a GLOBAL name is unterminated or too long"));
        };
        self.pos += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn push_new(&mut self, obj: Obj<'a>) -> Result<()> {
        if self.objs.len() >= MAX_OBJECTS {
            return Err(limit(format!("more than {MAX_OBJECTS} objects")));
        }
        self.objs.push(obj);
        self.push(self.objs.len() - 1)
    }

    fn push(&mut self, id: Id) -> Result<()> {
        if self.stack.len() >= MAX_OBJECTS {
            return Err(limit(format!("a pickle stack deeper than {MAX_OBJECTS}")));
        }
        self.stack.push(id);
        Ok(())
    }

    /// The top of the stack, which must lie above the last MARK.
    fn top(&self) -> Result<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.last() {
            Some(&id) if self.stack.len() > floor => Ok(id),
            _ => Err(self.bad("the stack is empty")),
        }
    }

    fn pop(&mut self) -> Result<Id> {
        let id = self.top()?;
        self.stack.pop();
        Ok(id)
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>> {
        match self.marks.pop() {
            Some(mark) => Ok(self.stack.split_off(mark)),
            None => Err(self.bad("no MARK to pop to")),
        }
    }

    fn str(&self, id: Id) -> Option<&str> {
        match &self.objs[id] {
            Obj::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Runs the pickle to its STOP and returns the object it built.
    fn run(&mut self) -> Result<Id> {
        loop {
            self.op_pos = self.pos;
            match self.uint(1)? as u8 {
                b'.' => return self.pop(),
                op => self.step(op)?,
            }
        }
    }

    /// Runs the opcodes that create an object, and hands the others to `step_stack`.
    fn step(&mut self, op: u8) -> Result<()> {
        let obj = match op {
            b'J' => Obj::Int(self.uint(4)? as u32 as i32 as i64),
            b'K' | b'M' => Obj::Int(self.uint(arg_width(op))? as i64),
            0x8a | 0x8b => {
                let n = self.uint(arg_width(op))?;
                let v = decode_long(self.take(n)?);
                Obj::Int(v.ok_or_else(|| unsupported("an integer wider than 64 bits"))?)
            }
            b'G' => Obj::Float(f64::from_bits(self.uint(8)?.swap_bytes())),
            b'X' | 0x8c | 0x8d => {
                let n = self.uint(arg_width(op))?;
                let s = String::from_utf8(self.take(n)?.to_vec());
                Obj::Str(s.map_err(|_| self.bad("a string is not UTF-8"))?)
            }
            b'}' => Obj::Dict(Vec::new()),
            b']' => Obj::List(Vec::new()),
            b')' => Obj::Tuple(Vec::new()),
            b't' => Obj::Tuple(self.pop_mark()?),
            0x85..=0x87 => {
                let items: Result<Vec<Id>> = (0x84..op).map(|_| self.pop()).collect();
                Obj::Tuple(items?.into_iter().rev().collect())
            }
            _ => return self.step_stack(op),
        };
        self.push_new(obj)
    }

    /// Runs the opcodes that work on the stack, the memo and existing objects.
    fn step_stack(&mut self, op: u8) -> Result<()> {
        match op {
            0x80 => match self.uint(1)? {
                2..=5 => Ok(()),
                _ => Err(unsupported("a pickle protocol other than 2 to 5")),
            },
            0x95 => self.take(8).map(drop),
            b'(' if self.marks.len() >= MAX_MARKS => {
                Err(limit(format!("MARKs nested over {MAX_MARKS} deep")))
            }
            b'(' => {
                self.marks.push(self.stack.len());
                Ok(())
            }
            b'0' => self.pop().map(drop),
            b'1' => self.pop_mark().map(drop),
            b'2' => self.push(self.top()?),
            b'N' => self.push(NONE),
            0x88 => self.push(TRUE),
            0x89 => self.push(FALSE),
            b'a' | b'e' | b's' | b'u' => self.extend(op),
            b'q' | b'r' | 0x94 => {
                let key = match op {
                    0x94 => self.memo.len() as u64,
                    _ => self.uint(arg_width(op))?,
                };
                if self.memo.len() >= MAX_OBJECTS {
                    return Err(limit("too many memo entries"));
                }
                self.memo.insert(key as u32, self.top()?);
                Ok(())
            }
            b'h' | b'j' => {
                let key = self.uint(arg_width(op))? as u32;
                let id = self.memo.get(&key).copied();
                self.push(id.ok_or_else(|| self.bad("a memo key is unset"))?)
            }
            b'c' | 0x93 => self.global(op),
            b'R' => self.call(),
            b'b' => self.build(),
            b'Q' => self.persistent(),
            _ => Err(unsupported(format!(
                "the pickle opcode {:?} (0x{op:02x}), which torch.save never writes",
                op as char
            ))),
        }
    }

    /// APPEND(S) to a list or SETITEM(S) of a dict.
    fn extend(&mut self, op: u8) -> Result<()> {
        let items = match op {
            b'a' => vec![self.pop()?],
            b's' => vec![self.pop()?, self.pop()?].into_iter().rev().collect(),
            _ => self.pop_mark()?,
        };
        let top = self.top()?;
        match (&mut self.objs[top], op) {
            (Obj::List(list), b'a' | b'e') => list.extend(items),
            (Obj::Dict(d), b's' | b'u') if items.len() % 2 == 0 => {
                d.extend(items.chunks_exact(2).map(|p| (p[0], p[1])))
            }
            _ => return Err(self.bad("APPEND or SETITEM to the wrong kind of object")),
        }
        Ok(())
    }

    /// GLOBAL or STACK_GLOBAL: pushes an allowlisted name or refuses the file.
    fn global(&mut self, op: u8) -> Result<()> {
        let (module, name) = match op {
            b'c' => (self.line()?, self.line()?),
            _ => {
                let (name, module) = (self.pop()?, self.pop()?);
                let (Some(m), Some(n)) = (self.str(module), self.str(name)) else {
                    return Err(self.bad("STACK_GLOBAL without two strings"));
                };
                (m.to_string(), n.to_string())
            }
        };
        let global = resolve_global(&module, &name)?;
        self.push_new(Obj::Global(global, format!("{module}.{name}")))
    }

    /// REDUCE: `func(*args)` of an allowlisted function.
    fn call(&mut self) -> Result<()> {
        let (args, func) = (self.pop()?, self.pop()?);
        let Obj::Global(global, name) = &self.objs[func] else {
            return Err(self.bad("a call of something other than a global"));
        };
        let (global, name) = (*global, name.clone());
        let args = match &self.objs[args] {
            // No allowed function takes more, and a short tuple is cheap to copy.
            Obj::Tuple(a) if a.len() <= 8 => a.clone(),
            _ => return Err(self.bad(format!("`{name}` without a short argument tuple"))),
        };
        match (global, args.len()) {
            (Global::OrderedDict, 0) => self.push_new(Obj::Dict(Vec::new())),
            // A parameter is its tensor; `requires_grad`, hooks and attributes are dropped.
            (Global::Parameter, 3..=4) if matches!(self.objs[args[0]], Obj::Tensor(_)) => {
                self.push(args[0])
            }
            (Global::Tensor(v3), 6..=8) => {
                let view = self.view(v3, &args)?;
                self.push_new(Obj::Tensor(Box::new(view)))
            }
            (_, n) => Err(unsupported(format!("`{name}` with {n} arguments"))),
        }
    }

    /// BUILD: only an OrderedDict gets a state (attributes such as a state dict's
    /// `_metadata`), which a weights reader drops.
    fn build(&mut self) -> Result<()> {
        self.pop()?;
        match self.objs[self.top()?] {
            Obj::Dict(_) => Ok(()),
            _ => Err(unsupported("setting the state of an object (BUILD)")),
        }
    }

    fn uint_arg(&self, id: Id, what: &str) -> Result<u64> {
        match self.objs[id] {
            Obj::Int(v) if v >= 0 => Ok(v as u64),
            Obj::Int(v) => Err(self.bad(format!("a tensor's {what} is negative ({v})"))),
            _ => Err(self.bad(format!("a tensor's {what} is not an integer"))),
        }
    }

    fn dims_arg(&self, id: Id, what: &str) -> Result<Vec<u64>> {
        match &self.objs[id] {
            Obj::Tuple(v) if v.len() <= MAX_DIMS => {
                v.iter().map(|&d| self.uint_arg(d, what)).collect()
            }
            _ => Err(self.bad(format!("a tensor's {what} is not a short tuple"))),
        }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`,
    /// or `_v3` with the dtype after the hooks.
    fn view(&self, v3: bool, args: &[Id]) -> Result<View<'a>> {
        let Obj::Storage(dtype, data) = self.objs[args[0]] else {
            return Err(self.bad("a tensor without a storage"));
        };
        let dtype = match (v3, &self.objs[args[6.min(args.len() - 1)]]) {
            (true, Obj::Global(Global::DType(d), _)) => *d,
            (false, _) if args.len() < 8 && dtype.is_some() => dtype.unwrap_or(DType::U8),
            _ => return Err(self.bad("a tensor without a dtype or with extra arguments")),
        };
        let offset = self.uint_arg(args[1], "storage offset")?;
        let shape = self.dims_arg(args[2], "size")?;
        let strides = self.dims_arg(args[3], "stride")?;
        if shape.len() != strides.len() {
            return Err(self.bad("a tensor's size and stride differ in length"));
        }
        let size = dtype.size() as u64;
        let bytes = shape.iter().try_fold(size, |a, &d| a.checked_mul(d));
        if bytes.is_none_or(|bytes| bytes >= 1 << 62) {
            return Err(limit(format!("a tensor of size {shape:?}")));
        }
        // The element furthest into the storage must lie inside it.
        let reach =
            |a: u64, (&d, &s): (&u64, &u64)| a.checked_add(d.saturating_sub(1).checked_mul(s)?);
        let last = shape.iter().zip(&strides).try_fold(offset, reach);
        let elems = (data.len() / dtype.size()) as u64;
        if !shape.contains(&0) && last.is_none_or(|last| last >= elems) {
            return Err(self.bad(format!(
                "a tensor of size {shape:?}, stride {strides:?} and offset {offset} reaches \
                 past the {elems} elements of its storage"
            )));
        }
        Ok(View {
            data,
            dtype,
            offset,
            shape,
            strides,
        })
    }

    /// BINPERSID: `('storage', storage_type, key, location, numel)`.
    fn persistent(&mut self) -> Result<()> {
        let pid = self.pop()?;
        let items = match &self.objs[pid] {
            Obj::Tuple(v) if v.len() == 5 && self.str(v[0]) == Some("storage") => v.clone(),
            _ => return Err(unsupported("a persistent id other than a storage")),
        };
        let Obj::Global(Global::Storage(dtype), _) = self.objs[items[1]] else {
            return Err(self.bad("a storage without a storage type"));
        };
        let key = self.str(items[2]).unwrap_or_default();
        let Some(&data) = self.storages.get(key) else {
            return Err(self.bad(format!("storage `{key}` is missing")));
        };
        let numel = self.uint_arg(items[4], "storage size")?;
        let nbytes = numel.checked_mul(dtype.map_or(1, DType::size) as u64);
        let Some(data) = nbytes.and_then(|n| data.get(..n.try_into().ok()?)) else {
            let why = format!("storage `{key}` is shorter than its {numel} elements");
            return Err(self.bad(why));
        };
        self.push_new(Obj::Storage(dtype, data))
    }

    fn charge(&self, bytes: u64) -> Result<()> {
        let Some(left) = self.budget.get().checked_sub(bytes) else {
            return Err(limit(
                "its objects would take over 8 times its size in memory",
            ));
        };
        self.budget.set(left);
        Ok(())
    }

    /// The tree under object `id`, which must not nest deeper than `MAX_DEPTH`.
    fn value(&self, id: Id, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(limit(format!("objects nested over {MAX_DEPTH} deep")));
        }
        self.charge(NODE_COST)?;
        let list = |items: &[Id]| -> Result<Vec<Value>> {
            items.iter().map(|&i| self.value(i, depth + 1)).collect()
        };
        Ok(match &self.objs[id] {
            Obj::None => Value::None,
            Obj::Bool(b) => Value::Bool(*b),
            Obj::Int(i) => Value::Int(*i),
            Obj::Float(f) => Value::Float(*f),
            Obj::List(items) => Value::List(list(items)?),
            Obj::Tuple(items) => Value::Tuple(list(items)?),
            Obj::Str(s) => self.charge(s.len() as u64).map(|_| Value::Str(s.clone()))?,
            Obj::Dict(pairs) => {
                let pair = |&(k, v): &(Id, Id)| Ok((self.key(k)?, self.value(v, depth + 1)?));
                Value::Dict(pairs.iter().map(pair).collect::<Result<_>>()?)
            }
            Obj::Global(Global::DType(d), _) => {
                Value::Str(format!("torch.{}", DTYPES[*d as usize].1))
            }
            Obj::Global(_, name) => return Err(unsupported(format!("`{name}` as a value"))),
            Obj::Storage(..) => return Err(unsupported("a storage outside a tensor")),
            Obj::Tensor(view) => Value::Tensor(self.gather(view)?),
        })
    }

    fn key(&self, id: Id) -> Result<Key> {
        self.charge(NODE_COST)?;
        match &self.objs[id] {
            Obj::Str(s) => self.charge(s.len() as u64).map(|_| Key::Str(s.clone())),
            Obj::Int(i) => Ok(Key::Int(*i)),
            Obj::Bool(b) => Ok(Key::Int(*b as i64)),
            _ => Err(unsupported("a dict key that is not a string or an integer")),
        }
    }

    /// The elements of the strided view `v`, in row-major order.
    fn gather(&self, v: &View) -> Result<Tensor> {
        let item = v.dtype.size();
        // `view` checked that this product fits and that every element is in the storage.
        let numel: u64 = v.shape.iter().product();
        self.charge(numel * item as u64)?;
        let mut data = Vec::with_capacity(numel as usize * item);
        let (mut index, mut at) = (vec![0u64; v.shape.len()], v.offset);
        for _ in 0..numel {
            let element = v.data.get(at as usize * item..(at as usize + 1) * item);
            data.extend_from_slice(element.ok_or_else(|| corrupt("a view past its storage"))?);
            // Advance like an odometer, last dimension fastest; past the last element `at`
            // may wrap, but it is not read again.
            for d in (0..index.len()).rev() {
                index[d] += 1;
                at = at.wrapping_add(v.strides[d]);
                if index[d] < v.shape[d] {
                    break;
                }
                at = at.wrapping_sub(v.strides[d].wrapping_mul(v.shape[d]));
                index[d] = 0;
            }
        }
        let (dtype, shape) = (v.dtype, v.shape.iter().map(|&d| d as usize).collect());
        Ok(Tensor { dtype, shape, data })
    }
}

/// The value of a little-endian two's-complement integer of at most 8 bytes.
fn decode_long(b: &[u8]) -> Option<i64> {
    if b.len() > 8 {
        return None;
    }
    let negative = b.last().is_some_and(|&x| x & 0x80 != 0);
    let mut buf = [if negative { 0xff } else { 0 }; 8];
    buf[..b.len()].copy_from_slice(b);
    Some(i64::from_le_bytes(buf))
}

#[cfg(test)]
mod tests;
