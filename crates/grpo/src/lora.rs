//! LoRA adapters (Hu et al., "LoRA: Low-Rank Adaptation of Large Language
//! Models", arXiv:2106.09685) and freezing modules by name.
//!
//! `y = x W + b + dropout(x) A B · α/r` with `A ∈ R^{in×r}` initialized
//! uniformly in ±1/√in (PEFT's Kaiming-uniform with a = √5) and `B = 0`, so
//! training starts from the base model. burn's `Linear` stores `W` as
//! `[in, out]`, so `A B` has the same layout. The base layer is frozen.
//! [`LoraLinear::merge`] folds `A B · α/r` into `W` for fast inference and
//! [`LoraLinear::unmerge`] takes it out again. Adapters are saved alone as
//! safetensors (`<module path>.lora_a` / `.lora_b`, f32) with
//! [`save_adapters`] and loaded back by path with [`load_adapters`].

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{backend::Backend, Distribution, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{GrpoError, Result};

/// LoRA hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    /// Rank r.
    pub rank: usize,
    /// Scale numerator α (scaling = α / r).
    pub alpha: f64,
    /// Dropout on the adapter input (needs a seeded backend to be
    /// reproducible; 0 keeps runs bit-exact).
    pub dropout: f64,
    /// Names of the linear layers to adapt (e.g. `q_proj`, `v_proj`);
    /// recipes match them against module paths.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: vec!["q_proj".into(), "v_proj".into()],
        }
    }
}

/// A linear layer with a low-rank adapter.
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    /// The frozen base layer.
    pub base: Linear<B>,
    /// `[in, r]`.
    pub lora_a: Param<Tensor<B, 2>>,
    /// `[r, out]`.
    pub lora_b: Param<Tensor<B, 2>>,
    dropout: Dropout,
    scaling: f64,
    merged: bool,
}

impl<B: Backend> LoraLinear<B> {
    /// Wraps `base` (frozen) with a fresh adapter.
    pub fn new(base: Linear<B>, cfg: &LoraConfig) -> Result<Self> {
        if cfg.rank == 0 {
            return Err(GrpoError::Config {
                field: "lora.rank",
                reason: "must be ≥ 1".into(),
            });
        }
        if !(0.0..1.0).contains(&cfg.dropout) {
            return Err(GrpoError::Config {
                field: "lora.dropout",
                reason: format!("{} not in [0, 1)", cfg.dropout),
            });
        }
        let [d_in, d_out] = base.weight.dims();
        let device = base.weight.device();
        let bound = 1.0 / (d_in.max(1) as f64).sqrt();
        let a = Tensor::<B, 2>::random(
            [d_in, cfg.rank],
            Distribution::Uniform(-bound, bound),
            &device,
        );
        let b = Tensor::<B, 2>::zeros([cfg.rank, d_out], &device);
        Ok(Self {
            base: base.no_grad(),
            lora_a: Param::from_tensor(a),
            lora_b: Param::from_tensor(b),
            dropout: DropoutConfig::new(cfg.dropout).init(),
            scaling: cfg.alpha / cfg.rank as f64,
            merged: false,
        })
    }

    /// `α / r`.
    pub fn scaling(&self) -> f64 {
        self.scaling
    }

    /// Whether the adapter is folded into the base weight.
    pub fn is_merged(&self) -> bool {
        self.merged
    }

    fn delta(&self) -> Tensor<B, 2> {
        self.lora_a
            .val()
            .detach()
            .matmul(self.lora_b.val().detach())
            .mul_scalar(self.scaling)
    }

    /// `x W + b (+ dropout(x) A B α/r unless merged)`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let y = self.base.forward(x.clone());
        if self.merged {
            return y;
        }
        let h = self.dropout.forward(x);
        let a = self.lora_a.val().unsqueeze::<D>();
        let b = self.lora_b.val().unsqueeze::<D>();
        y + h.matmul(a).matmul(b).mul_scalar(self.scaling)
    }

    fn shift_base(mut self, sign: f64) -> Self {
        let delta = self.delta().mul_scalar(sign);
        self.base.weight = self
            .base
            .weight
            .map(|w| (w.detach() + delta).set_require_grad(false));
        self
    }

    /// Folds the adapter into the base weight (no-op when merged).
    pub fn merge(self) -> Self {
        if self.merged {
            return self;
        }
        let mut s = self.shift_base(1.0);
        s.merged = true;
        s
    }

    /// Takes the adapter out of the base weight again (no-op when unmerged).
    pub fn unmerge(self) -> Self {
        if !self.merged {
            return self;
        }
        let mut s = self.shift_base(-1.0);
        s.merged = false;
        s
    }
}

/// Tracks the module path during a visit or map.
#[derive(Default)]
struct PathStack(Vec<String>);

impl PathStack {
    fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    fn exit(&mut self) {
        self.0.pop();
    }
    fn join(&self) -> String {
        self.0.join(".")
    }
}

/// Whether a dotted module path matches a pattern: the pattern equals the
/// path, is a dotted prefix of it, or equals one whole path segment
/// sequence inside it (`vision` matches `model.vision.blocks.0.qkv.weight`).
pub fn path_matches(path: &str, pattern: &str) -> bool {
    if pattern.is_empty() {
        return false;
    }
    let p = format!(".{path}.");
    p.contains(&format!(".{pattern}."))
}

struct Freezer<'a> {
    path: PathStack,
    patterns: &'a [String],
    frozen: usize,
}

impl<B: Backend> ModuleMapper<B> for Freezer<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let path = self.path.join();
        if self.patterns.iter().any(|p| path_matches(&path, p)) {
            self.frozen += 1;
            return param.set_require_grad(false);
        }
        param
    }
}

/// Freezes (no gradient, no update) every float parameter whose module path
/// matches one of `patterns` (see [`path_matches`]); returns the module and
/// the number of parameters frozen.
pub fn freeze_modules<B: Backend, M: Module<B>>(module: M, patterns: &[String]) -> (M, usize) {
    let mut f = Freezer {
        path: PathStack::default(),
        patterns,
        frozen: 0,
    };
    let m = module.map(&mut f);
    (m, f.frozen)
}

struct PathCounter<'a> {
    path: PathStack,
    patterns: &'a [String],
    hits: Vec<usize>,
}

impl<B: Backend> ModuleVisitor<B> for PathCounter<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<B, D>>) {
        let path = self.path.join();
        for (hits, pattern) in self.hits.iter_mut().zip(self.patterns) {
            *hits += usize::from(path_matches(&path, pattern));
        }
    }
}

/// Checks that every pattern matches at least one float parameter of
/// `module` (see [`path_matches`]); the error names the first that does not.
/// Run it before anything expensive: a typo in a freeze list would
/// otherwise train the module it meant to freeze.
pub fn check_module_patterns<B: Backend, M: Module<B>>(
    module: &M,
    field: &'static str,
    patterns: &[String],
) -> Result<()> {
    let mut c = PathCounter {
        path: PathStack::default(),
        patterns,
        hits: vec![0; patterns.len()],
    };
    module.visit(&mut c);
    match patterns.iter().zip(&c.hits).find(|(_, &n)| n == 0) {
        Some((pattern, _)) => Err(GrpoError::Config {
            field,
            reason: format!("`{pattern}` matches no parameter of the policy"),
        }),
        None => Ok(()),
    }
}

struct AdapterCollector<B: Backend> {
    path: PathStack,
    found: Vec<(String, Vec<usize>, Tensor<B, 2>)>,
}

impl<B: Backend> ModuleVisitor<B> for AdapterCollector<B> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let path = self.path.join();
        if D == 2 && (path.ends_with("lora_a") || path.ends_with("lora_b")) {
            let t = param.val();
            let dims = t.dims().to_vec();
            let n: usize = dims.iter().product();
            self.found.push((path, dims, t.reshape([n, 1])));
        }
    }
}

/// Writes every `lora_a` / `lora_b` parameter of `module` (and nothing
/// else) to a safetensors file, atomically (temp file, fsync, rename).
/// Returns the number of tensors written.
pub fn save_adapters<B: Backend, M: Module<B>>(module: &M, path: &Path) -> Result<usize> {
    let mut c = AdapterCollector::<B> {
        path: PathStack::default(),
        found: Vec::new(),
    };
    module.visit(&mut c);
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(c.found.len());
    for (name, dims, t) in c.found {
        let v = t
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| GrpoError::Data(format!("{name}: {e:?}")))?;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        owned.push((name, dims, bytes));
    }
    let ser = |e: String| GrpoError::Serialize {
        what: path.display().to_string(),
        reason: e,
    };
    let mut views = Vec::with_capacity(owned.len());
    for (name, dims, bytes) in &owned {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, dims.clone(), bytes)
                .map_err(|e| ser(e.to_string()))?;
        views.push((name.clone(), view));
    }
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "vlrl-lora".to_string());
    let data = safetensors::serialize(views, Some(meta)).map_err(|e| ser(e.to_string()))?;
    let tmp = path.with_extension("safetensors.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(|e| GrpoError::io(&tmp, e))?;
        f.write_all(&data).map_err(|e| GrpoError::io(&tmp, e))?;
        f.sync_all().map_err(|e| GrpoError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| GrpoError::io(path, e))?;
    Ok(owned.len())
}

struct AdapterLoader {
    path: PathStack,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    loaded: usize,
    error: Option<String>,
}

impl<B: Backend> ModuleMapper<B> for AdapterLoader {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let path = self.path.join();
        let Some((dims, values)) = self.tensors.remove(&path) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        if tensor.dims().to_vec() != dims {
            self.error = Some(format!(
                "`{path}` has shape {:?} in the file, {:?} in the model",
                dims,
                tensor.dims()
            ));
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let device = tensor.device();
        let require_grad = tensor.is_require_grad();
        let new = Tensor::<B, D>::from_data(TensorData::new(values, tensor.shape()), &device)
            .set_require_grad(require_grad);
        self.loaded += 1;
        Param::from_mapped_value(id, new, mapper)
    }
}

/// Loads adapters written by [`save_adapters`] into `module` by path.
/// Fails if a tensor of the file has no matching parameter or a shape
/// differs.
pub fn load_adapters<B: Backend, M: Module<B>>(module: M, path: &Path) -> Result<M> {
    let bytes = std::fs::read(path).map_err(|e| GrpoError::io(path, e))?;
    let bad = |e: String| GrpoError::Serialize {
        what: path.display().to_string(),
        reason: e,
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(bad(format!("`{name}` is {:?}, expected F32", view.dtype())));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    let mut loader = AdapterLoader {
        path: PathStack::default(),
        tensors,
        loaded: 0,
        error: None,
    };
    let m = module.map(&mut loader);
    if let Some(e) = loader.error {
        return Err(bad(e));
    }
    if let Some(name) = loader.tensors.keys().next() {
        return Err(bad(format!("no parameter `{name}` in the model")));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_matching_is_by_whole_segments() {
        assert!(path_matches("model.vision.blocks.0.weight", "vision"));
        assert!(path_matches("model.vision.blocks.0.weight", "model.vision"));
        assert!(!path_matches("model.visionary.weight", "vision"));
        assert!(!path_matches("a.b", ""));
    }
}
