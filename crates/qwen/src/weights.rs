//! Reading Hugging Face checkpoints: one `model.safetensors` or shards listed
//! in `model.safetensors.index.json`, tensors in F32, BF16 or F16 on disk.
//!
//! Models are built from the checkpoint the way candle's `VarBuilder` does it:
//! each layer asks for its tensors by the checkpoint's own names. Requests are
//! recorded instead of failing at the first problem, so a wrong checkpoint
//! yields one error listing every missing, unexpected and mis-shaped tensor.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::error::{io_err, QwenError, Result, ShapeMismatch, WeightProblems};

struct Shard {
    path: PathBuf,
    mmap: Mmap,
}

/// Where one tensor lives: which shard, its dtype and shape.
#[derive(Debug, Clone)]
struct Entry {
    shard: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range of the data inside the shard's map.
    range: std::ops::Range<usize>,
}

/// All tensors of a checkpoint directory, memory-mapped, read on demand.
pub struct Checkpoint {
    dir: PathBuf,
    shards: Vec<Shard>,
    entries: BTreeMap<String, Entry>,
}

impl Checkpoint {
    /// Opens `dir/model.safetensors`, or the shards named by
    /// `dir/model.safetensors.index.json`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let files: Vec<PathBuf> = if index.exists() {
            shard_files(&index)?
                .into_iter()
                .map(|f| dir.join(f))
                .collect()
        } else if single.exists() {
            vec![single]
        } else {
            return Err(QwenError::Io {
                path: single,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no model.safetensors or model.safetensors.index.json in the checkpoint directory",
                ),
            });
        };
        let mut shards = Vec::with_capacity(files.len());
        let mut entries = BTreeMap::new();
        for (i, path) in files.into_iter().enumerate() {
            let file = File::open(&path).map_err(io_err(&path))?;
            // SAFETY: the file is opened read-only and only read through this
            // map; like every mmap user we assume no one truncates it meanwhile.
            let mmap = unsafe { Mmap::map(&file) }.map_err(io_err(&path))?;
            let st = SafeTensors::deserialize(&mmap).map_err(|e| QwenError::Safetensors {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let base = mmap.as_ptr() as usize;
            for (name, view) in st.tensors() {
                let start = view.data().as_ptr() as usize - base;
                entries.insert(
                    name,
                    Entry {
                        shard: i,
                        dtype: view.dtype(),
                        shape: view.shape().to_vec(),
                        range: start..start + view.data().len(),
                    },
                );
            }
            shards.push(Shard { path, mmap });
        }
        Ok(Self {
            dir,
            shards,
            entries,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Tensor names in the checkpoint, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// Reads one tensor as f32 values, converting BF16 / F16.
    pub fn read_f32(&self, name: &str) -> Result<Option<(Vec<f32>, Vec<usize>)>> {
        let Some(entry) = self.entries.get(name) else {
            return Ok(None);
        };
        let shard = &self.shards[entry.shard];
        // In bounds: `SafeTensors::deserialize` validated every range at open.
        let bytes = &shard.mmap[entry.range.clone()];
        let values = match entry.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(QwenError::Dtype {
                    path: shard.path.clone(),
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        Ok(Some((values, entry.shape.clone())))
    }
}

fn shard_files(index: &Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(io_err(index))?;
    let parsed: Index = serde_json::from_str(&text).map_err(|e| QwenError::Config {
        path: index.to_path_buf(),
        message: e.to_string(),
    })?;
    let files: BTreeSet<String> = parsed.weight_map.into_values().collect();
    for f in &files {
        if f.contains("..") || Path::new(f).is_absolute() {
            return Err(QwenError::Config {
                path: index.to_path_buf(),
                message: format!("shard `{f}` points outside the checkpoint directory"),
            });
        }
    }
    Ok(files.into_iter().collect())
}

/// Hands tensors to model constructors by checkpoint name, recording what
/// was asked for so [`WeightLoader::finish`] can report every problem.
pub struct WeightLoader<'a, B: Backend> {
    checkpoint: &'a Checkpoint,
    device: B::Device,
    used: RefCell<BTreeSet<String>>,
    problems: RefCell<WeightProblems>,
    /// Hard I/O or format errors (not shape problems): the first one wins.
    fatal: RefCell<Option<QwenError>>,
}

impl<'a, B: Backend> WeightLoader<'a, B> {
    pub fn new(checkpoint: &'a Checkpoint, device: &B::Device) -> Self {
        Self {
            checkpoint,
            device: device.clone(),
            used: RefCell::new(BTreeSet::new()),
            problems: RefCell::new(WeightProblems::default()),
            fatal: RefCell::new(None),
        }
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// True when the checkpoint holds `name` (for optional tensors such as an
    /// untied `lm_head.weight`).
    pub fn contains(&self, name: &str) -> bool {
        self.checkpoint.entries.contains_key(name)
    }

    /// The tensor `name` with the given shape; zeros (and a recorded problem)
    /// when it is missing or mis-shaped, so construction can continue.
    pub fn tensor<const D: usize>(&self, name: &str, shape: [usize; D]) -> Tensor<B, D> {
        self.used.borrow_mut().insert(name.to_string());
        match self.checkpoint.read_f32(name) {
            Ok(Some((values, found))) if found == shape => {
                Tensor::from_data(TensorData::new(values, shape), &self.device)
            }
            Ok(Some((_, found))) => {
                self.problems.borrow_mut().mismatched.push(ShapeMismatch {
                    name: name.to_string(),
                    expected: shape.to_vec(),
                    found,
                });
                Tensor::zeros(shape, &self.device)
            }
            Ok(None) => {
                self.problems.borrow_mut().missing.push(name.to_string());
                Tensor::zeros(shape, &self.device)
            }
            Err(e) => {
                self.fatal.borrow_mut().get_or_insert(e);
                Tensor::zeros(shape, &self.device)
            }
        }
    }

    /// A PyTorch `nn.Linear` (`{prefix}.weight` as `[out, in]`, optional
    /// `{prefix}.bias`) as a burn `Linear` (weights stored `[in, out]`).
    pub fn linear(&self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Linear<B> {
        let weight = self
            .tensor(&format!("{prefix}.weight"), [d_out, d_in])
            .transpose();
        let bias =
            bias.then(|| Param::from_tensor(self.tensor(&format!("{prefix}.bias"), [d_out])));
        Linear {
            weight: Param::from_tensor(weight),
            bias,
        }
    }

    pub fn embedding(&self, name: &str, n: usize, d: usize) -> Embedding<B> {
        Embedding {
            weight: Param::from_tensor(self.tensor(name, [n, d])),
        }
    }

    /// RMSNorm from `{prefix}.weight` (HF's name for burn's `gamma`).
    pub fn rms_norm(&self, prefix: &str, d: usize, eps: f64) -> RmsNorm<B> {
        RmsNorm {
            gamma: Param::from_tensor(self.tensor(&format!("{prefix}.weight"), [d])),
            epsilon: eps,
        }
    }

    /// Ends loading: an error listing every missing, mis-shaped and (for names
    /// accepted by `owned`) unexpected tensor. Tensors for which `owned` is
    /// false belong to another component (say, the vision tower) and are left
    /// alone.
    pub fn finish(self, owned: impl Fn(&str) -> bool) -> Result<()> {
        if let Some(e) = self.fatal.into_inner() {
            return Err(e);
        }
        let used = self.used.into_inner();
        let mut problems = self.problems.into_inner();
        problems.unexpected = self
            .checkpoint
            .names()
            .filter(|n| owned(n) && !used.contains(*n))
            .map(str::to_string)
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(QwenError::Weights {
                dir: self.checkpoint.dir.clone(),
                problems,
            })
        }
    }
}
