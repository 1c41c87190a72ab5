//! Building models from Hugging Face checkpoints the way candle's
//! `VarBuilder` does it: each layer asks for its tensors by the checkpoint's
//! own names. Requests are recorded instead of failing at the first problem,
//! so a wrong checkpoint yields one error listing every missing, unexpected
//! and mis-shaped tensor. The files themselves (one `model.safetensors` or the
//! shards of `model.safetensors.index.json`, F32 / BF16 / F16, memory-mapped)
//! are read by [`vlrl_vision::TensorStore`], shared with the vision towers.

use std::cell::RefCell;
use std::collections::BTreeSet;

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::{backend::Backend, Tensor, TensorData};
pub use vlrl_vision::TensorStore;
use vlrl_vision::WeightError;

use crate::error::{QwenError, Result, ShapeMismatch, WeightProblems};

/// Hands tensors to model constructors by checkpoint name, recording what
/// was asked for so [`WeightLoader::finish`] can report every problem.
pub struct WeightLoader<'a, B: Backend> {
    checkpoint: &'a TensorStore,
    device: B::Device,
    used: RefCell<BTreeSet<String>>,
    problems: RefCell<WeightProblems>,
    /// Hard I/O or format errors (not shape problems): the first one wins.
    fatal: RefCell<Option<QwenError>>,
}

impl<'a, B: Backend> WeightLoader<'a, B> {
    pub fn new(checkpoint: &'a TensorStore, device: &B::Device) -> Self {
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
        self.checkpoint.contains(name)
    }

    /// The tensor `name` with the given shape; zeros (and a recorded problem)
    /// when it is missing or mis-shaped, so construction can continue.
    pub fn tensor<const D: usize>(&self, name: &str, shape: [usize; D]) -> Tensor<B, D> {
        Tensor::from_data(
            TensorData::new(self.values(name, &shape), shape),
            &self.device,
        )
    }

    /// The values of `name` (row-major), zeros and a recorded problem when it
    /// is missing or mis-shaped.
    fn values(&self, name: &str, shape: &[usize]) -> Vec<f32> {
        self.used.borrow_mut().insert(name.to_string());
        let zeros = || vec![0f32; shape.iter().product()];
        match self.checkpoint.read_f32(name) {
            Ok((values, found)) if found == shape => values,
            Ok((_, found)) => {
                self.problems.borrow_mut().mismatched.push(ShapeMismatch {
                    name: name.to_string(),
                    expected: shape.to_vec(),
                    found,
                });
                zeros()
            }
            Err(WeightError::Missing { .. }) => {
                self.problems.borrow_mut().missing.push(name.to_string());
                zeros()
            }
            Err(e) => {
                self.fatal.borrow_mut().get_or_insert(e.into());
                zeros()
            }
        }
    }

    /// A PyTorch `nn.Linear` (`{prefix}.weight` as `[out, in]`, optional
    /// `{prefix}.bias`) as a burn `Linear` (weights stored `[in, out]`).
    pub fn linear(&self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Linear<B> {
        // Transposed once here into a contiguous [in, out] tensor (see
        // `vlrl_vision::weights::transposed` for why not a lazy view).
        let values = self.values(&format!("{prefix}.weight"), &[d_out, d_in]);
        let weight = vlrl_vision::weights::transposed(values, d_out, d_in, &self.device);
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
        problems.unexpected.sort();
        if problems.is_empty() {
            return Ok(());
        }
        let dir = self
            .checkpoint
            .files()
            .next()
            .and_then(|f| f.parent())
            .map(|d| d.to_path_buf())
            .unwrap_or_default();
        Err(QwenError::Weights { dir, problems })
    }
}
