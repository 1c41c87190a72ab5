//! Small building blocks with Hugging Face parameter layouts: linear layers
//! stored `[in, out]`, LayerNorm, RMSNorm, activations.

use burn::module::{Module, Param};
use burn::tensor::activation::{gelu, sigmoid, silu};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::config::Activation;
use crate::weights::WeightLoader;

/// `y = x·W + b` with `W` stored `[in, out]` (loaded from PyTorch's `[out, in]`).
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// `[in, out]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Linear<B> {
    /// Loads `{name}.weight` (and `{name}.bias`).
    pub fn load(
        loader: &mut WeightLoader<'_, B>,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Self {
        let weight = loader.linear_weight(&format!("{name}.weight"), d_in, d_out);
        let bias = bias.then(|| loader.vector(&format!("{name}.bias"), d_out));
        Self { weight, bias }
    }

    /// Applies the layer to `[n, in]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let y = x.matmul(self.weight.val());
        match &self.bias {
            Some(b) => y + b.val().unsqueeze_dim(0),
            None => y,
        }
    }
}

/// LayerNorm over the last dim (biased variance, like `torch.nn.LayerNorm`).
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// Scale.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift.
    pub bias: Param<Tensor<B, 1>>,
    /// Epsilon (1e-6 in the Qwen vision towers).
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// Loads `{name}.weight` and `{name}.bias`.
    pub fn load(loader: &mut WeightLoader<'_, B>, name: &str, dim: usize, eps: f64) -> Self {
        Self {
            weight: loader.vector(&format!("{name}.weight"), dim),
            bias: loader.vector(&format!("{name}.bias"), dim),
            eps,
        }
    }

    /// Normalises `[n, dim]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let mean = x.clone().mean_dim(1);
        let centered = x - mean;
        let var = centered.clone().powi_scalar(2).mean_dim(1);
        let normed = centered / (var + self.eps).sqrt();
        normed * self.weight.val().unsqueeze_dim(0) + self.bias.val().unsqueeze_dim(0)
    }
}

/// RMSNorm (`Qwen2_5_VLRMSNorm`): `w · x / sqrt(mean(x²) + eps)`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Scale (HF name `weight`).
    pub weight: Param<Tensor<B, 1>>,
    /// Epsilon.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Loads `{name}.weight`.
    pub fn load(loader: &mut WeightLoader<'_, B>, name: &str, dim: usize, eps: f64) -> Self {
        Self {
            weight: loader.vector(&format!("{name}.weight"), dim),
            eps,
        }
    }

    /// Normalises `[n, dim]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let var = x.clone().powi_scalar(2).mean_dim(1);
        x / (var + self.eps).sqrt() * self.weight.val().unsqueeze_dim(0)
    }
}

/// Applies a `hidden_act`.
pub fn activate<B: Backend, const D: usize>(act: Activation, x: Tensor<B, D>) -> Tensor<B, D> {
    match act {
        Activation::QuickGelu => x.clone() * sigmoid(x * 1.702),
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => burn::tensor::activation::gelu_approximate(x),
        Activation::Silu => silu(x),
    }
}
