//! Gradient utilities over burn's [`GradientsParams`]: summing (gradient
//! accumulation and the data-parallel all-reduce), global-norm clipping and
//! finiteness checks.
//!
//! burn's own `GradientClipping::Norm` clips each parameter separately;
//! TRL/verl (via `torch.nn.utils.clip_grad_norm_`) clip by the norm of *all*
//! gradients together, which is what [`clip_global_norm`] does.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{backend::AutodiffBackend, Tensor};

use crate::error::{GrpoError, Result};

struct Sum<'a> {
    into: &'a mut GradientsParams,
    from: &'a mut GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Sum<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let id = param.id;
        let b = self.from.remove::<B::InnerBackend, D>(id);
        let a = self.into.remove::<B::InnerBackend, D>(id);
        let s = match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        if let Some(s) = s {
            self.into.register::<B::InnerBackend, D>(id, s);
        }
    }
}

/// `into += from`, parameter by parameter, for the parameters of `module`.
pub fn add_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    into: &mut GradientsParams,
    mut from: GradientsParams,
) {
    module.visit(&mut Sum {
        into,
        from: &mut from,
    });
}

struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.parts.push(g.square().sum());
        }
    }
}

/// Global L2 norm of all gradients of `module`'s parameters (NaN/inf when a
/// gradient is non-finite).
pub fn global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> Result<f64> {
    let mut v = SquaredNorm::<B> {
        grads,
        parts: Vec::new(),
    };
    module.visit(&mut v);
    if v.parts.is_empty() {
        return Ok(0.0);
    }
    let total = Tensor::cat(v.parts, 0).sum();
    let data = total
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .map_err(|e| GrpoError::Data(format!("{e:?}")))?;
    Ok(data.first().copied().unwrap_or(f64::NAN).sqrt())
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads
                .register::<B::InnerBackend, D>(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Multiplies every gradient by `factor`.
pub fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    factor: f64,
) {
    module.visit(&mut Scale { grads, factor });
}

/// Clips to `max_norm` by the global norm (`torch.nn.utils.clip_grad_norm_`:
/// factor `max_norm / (norm + 1e-6)` when it is below 1). Returns the norm
/// before clipping.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: Option<f64>,
) -> Result<f64> {
    let norm = global_norm::<B, M>(module, grads)?;
    if let Some(max) = max_norm {
        let factor = max / (norm + 1e-6);
        if norm.is_finite() && factor < 1.0 {
            scale_grads::<B, M>(module, grads, factor);
        }
    }
    Ok(norm)
}
