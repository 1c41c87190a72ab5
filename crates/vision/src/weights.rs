//! Reading checkpoint tensors by their own names (`visual.blocks.0.attn.qkv.weight`, ...)
//! from one or more safetensors files, converting bf16/f16/f32/f64 to f32 and
//! keeping track of which names were used, so a load can report every missing
//! name, every shape mismatch and every unexpected name under the model prefix.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorInfo};
use safetensors::SafeTensors;

use crate::error::WeightError;

struct Entry {
    file: usize,
    info: TensorInfo,
}

/// A safetensors file's bytes: memory-mapped from disk (multi-GB published
/// checkpoints are never copied into memory) or owned (tests, downloads).
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// Tensors of a checkpoint (a `.safetensors` file, a sharded
/// `model.safetensors.index.json`, or a directory holding either).
pub struct TensorStore {
    files: Vec<(PathBuf, Bytes, usize)>,
    entries: HashMap<String, Entry>,
}

impl std::fmt::Debug for TensorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorStore")
            .field(
                "files",
                &self.files.iter().map(|f| &f.0).collect::<Vec<_>>(),
            )
            .field("tensors", &self.entries.len())
            .finish()
    }
}

impl TensorStore {
    /// Opens a safetensors file, a shard index JSON, or a directory with
    /// `model.safetensors` / `model.safetensors.index.json`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, WeightError> {
        let path = path.as_ref();
        if path.is_dir() {
            let index = path.join("model.safetensors.index.json");
            if index.is_file() {
                return Self::open_index(&index);
            }
            return Self::open_files(&[path.join("model.safetensors")]);
        }
        if path.extension().is_some_and(|e| e == "json") {
            return Self::open_index(path);
        }
        Self::open_files(&[path.to_path_buf()])
    }

    fn open_index(index: &Path) -> Result<Self, WeightError> {
        let text = std::fs::read_to_string(index).map_err(|source| WeightError::Io {
            path: index.to_path_buf(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| WeightError::Json {
                path: index.to_path_buf(),
                source,
            })?;
        let shards: BTreeSet<String> = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .map(|m| {
                m.values()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(bad) = shards.iter().find(|s| {
            Path::new(s).is_absolute()
                || Path::new(s)
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
        }) {
            return Err(WeightError::Safetensors {
                path: index.to_path_buf(),
                message: format!("shard `{bad}` points outside the checkpoint directory"),
            });
        }
        let dir = index.parent().unwrap_or(Path::new("."));
        let paths: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
        Self::open_files(&paths)
    }

    /// Opens several safetensors files as one store.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self, WeightError> {
        let mut buffers = Vec::with_capacity(paths.len());
        for path in paths {
            let io = |source| WeightError::Io {
                path: path.clone(),
                source,
            };
            let file = std::fs::File::open(path).map_err(io)?;
            // SAFETY: the file is opened read-only and only read through this
            // map; like every mmap user we assume no one truncates it meanwhile.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
            buffers.push((path.clone(), Bytes::Mapped(map)));
        }
        Self::from_bytes(buffers)
    }

    /// Builds a store from in-memory safetensors buffers (name used in errors).
    pub fn from_buffers(buffers: Vec<(PathBuf, Vec<u8>)>) -> Result<Self, WeightError> {
        Self::from_bytes(
            buffers
                .into_iter()
                .map(|(p, b)| (p, Bytes::Owned(b)))
                .collect(),
        )
    }

    fn from_bytes(buffers: Vec<(PathBuf, Bytes)>) -> Result<Self, WeightError> {
        let mut files = Vec::with_capacity(buffers.len());
        let mut entries = HashMap::new();
        for (file, (path, bytes)) in buffers.into_iter().enumerate() {
            let invalid = |message: String| WeightError::Safetensors {
                path: path.clone(),
                message,
            };
            // Full validation (offsets inside the buffer, no overlaps).
            SafeTensors::deserialize(&bytes).map_err(|e| invalid(format!("{e:?}")))?;
            let (header, metadata) =
                SafeTensors::read_metadata(&bytes).map_err(|e| invalid(format!("{e:?}")))?;
            for (name, info) in metadata.tensors() {
                entries.insert(
                    name,
                    Entry {
                        file,
                        info: info.clone(),
                    },
                );
            }
            files.push((path, bytes, header + 8));
        }
        Ok(Self { files, entries })
    }

    /// The files the tensors come from, in load order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.0.as_path())
    }

    /// All tensor names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.info.shape.as_slice())
    }

    /// Reads a tensor as f32 (row-major) with its shape.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), WeightError> {
        let entry = self.entries.get(name).ok_or_else(|| WeightError::Missing {
            names: vec![name.to_string()],
        })?;
        let (path, bytes, data_start) = &self.files[entry.file];
        let (begin, end) = entry.info.data_offsets;
        let raw = bytes
            .get(data_start + begin..data_start + end)
            .ok_or_else(|| WeightError::Safetensors {
                path: path.clone(),
                message: format!("tensor {name} data out of bounds"),
            })?;
        let values: Vec<f32> = match entry.info.dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect(),
            Dtype::I64 => raw
                .chunks_exact(8)
                .map(|b| {
                    i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect(),
            Dtype::I32 => raw
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
            other => {
                return Err(WeightError::Dtype {
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        Ok((values, entry.info.shape.clone()))
    }
}

/// A row-major `[rows, cols]` matrix as a contiguous `[cols, rows]` tensor.
///
/// PyTorch stores `Linear` weights `[out, in]`, burn wants `[in, out]`. A
/// lazy `.transpose()` view would do, but burn's `linear` then copies the
/// whole strided weight on every call (measured: ~90% of a decode step on a
/// 512-wide model, docs/benchmarks.md); transposing once on the host at load
/// time removes that copy.
pub fn transposed<B: Backend>(
    values: Vec<f32>,
    rows: usize,
    cols: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let mut out = vec![0f32; values.len()];
    if rows * cols == values.len() {
        for (r, row) in values.chunks_exact(cols.max(1)).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                out[c * rows + r] = v;
            }
        }
    }
    Tensor::from_data(TensorData::new(out, [cols, rows]), device)
}

enum Source<'a> {
    Store(&'a TensorStore),
    /// Deterministic random initialisation (splitmix64 state).
    Random(u64),
}

/// A load in progress: hands out parameters, remembers what was used and what
/// went wrong, and reports everything at [`WeightLoader::finish`].
pub struct WeightLoader<'a, B: Backend> {
    source: Source<'a>,
    prefix: String,
    device: B::Device,
    used: BTreeSet<String>,
    missing: Vec<String>,
    shape_errors: Vec<WeightError>,
}

impl<'a, B: Backend> WeightLoader<'a, B> {
    /// Loads names `prefix + local` (e.g. prefix `"visual."`).
    pub fn new(store: &'a TensorStore, prefix: &str, device: &B::Device) -> Self {
        Self {
            source: Source::Store(store),
            prefix: prefix.to_string(),
            device: device.clone(),
            used: BTreeSet::new(),
            missing: Vec::new(),
            shape_errors: Vec::new(),
        }
    }

    /// A loader that invents deterministic random weights instead of reading a
    /// checkpoint (for benchmarks and tests): norm scales 1, biases 0, matrices
    /// uniform in `±1/sqrt(fan_in)`.
    pub fn random(seed: u64, device: &B::Device) -> Self {
        Self {
            source: Source::Random(seed ^ 0x9e37_79b9_7f4a_7c15),
            prefix: String::new(),
            device: device.clone(),
            used: BTreeSet::new(),
            missing: Vec::new(),
            shape_errors: Vec::new(),
        }
    }

    /// The device parameters are created on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    fn take(&mut self, local: &str, expected: &[usize]) -> Vec<f32> {
        let name = format!("{}{}", self.prefix, local);
        let zeros = || vec![0.0; expected.iter().product()];
        let store = match &mut self.source {
            Source::Store(store) => *store,
            Source::Random(state) => return random_values(state, local, expected),
        };
        match store.read_f32(&name) {
            Ok((values, shape)) => {
                self.used.insert(name.clone());
                if shape != expected {
                    self.shape_errors.push(WeightError::Shape {
                        name,
                        expected: expected.to_vec(),
                        found: shape,
                    });
                    return zeros();
                }
                values
            }
            Err(WeightError::Missing { .. }) => {
                self.missing.push(name);
                zeros()
            }
            Err(other) => {
                self.used.insert(name);
                self.shape_errors.push(other);
                zeros()
            }
        }
    }

    /// A 1-D parameter of length `n`.
    pub fn vector(&mut self, local: &str, n: usize) -> Param<Tensor<B, 1>> {
        let values = self.take(local, &[n]);
        Param::from_tensor(Tensor::from_data(
            TensorData::new(values, [n]),
            &self.device,
        ))
    }

    /// A PyTorch `Linear` weight `[out, in]`, returned transposed as `[in, out]`.
    pub fn linear_weight(&mut self, local: &str, d_in: usize, d_out: usize) -> Param<Tensor<B, 2>> {
        let values = self.take(local, &[d_out, d_in]);
        Param::from_tensor(transposed(values, d_out, d_in, &self.device))
    }

    /// A tensor of any shape, flattened to `[shape[0], product(rest)]` and
    /// transposed to `[product(rest), shape[0]]` (a Conv3d kernel used as a matmul).
    pub fn flattened_kernel(&mut self, local: &str, shape: &[usize]) -> Param<Tensor<B, 2>> {
        let values = self.take(local, shape);
        let out = shape.first().copied().unwrap_or(0);
        let rest: usize = shape.iter().skip(1).product();
        Param::from_tensor(transposed(values, out, rest, &self.device))
    }

    /// Ends the load: errors if anything was missing, mis-shaped, or if names
    /// under the prefix were left unused.
    pub fn finish(self) -> Result<(), WeightError> {
        if !self.missing.is_empty() {
            return Err(WeightError::Missing {
                names: self.missing,
            });
        }
        if let Some(err) = self.shape_errors.into_iter().next() {
            return Err(err);
        }
        let Source::Store(store) = self.source else {
            return Ok(());
        };
        let mut unexpected: Vec<String> = store
            .names()
            .filter(|n| n.starts_with(&self.prefix) && !self.used.contains(*n))
            .map(str::to_string)
            .collect();
        if !unexpected.is_empty() {
            unexpected.sort();
            return Err(WeightError::Unexpected { names: unexpected });
        }
        Ok(())
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn random_values(state: &mut u64, name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    if shape.len() == 1 {
        let fill = if name.ends_with("bias") { 0.0 } else { 1.0 };
        return vec![fill; n];
    }
    let fan_in: usize = shape.iter().skip(1).product();
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    (0..n)
        .map(|_| {
            let u = (splitmix64(state) >> 40) as f32 / (1u64 << 24) as f32;
            (2.0 * u - 1.0) * bound
        })
        .collect()
}
