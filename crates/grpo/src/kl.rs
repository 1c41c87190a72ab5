//! Per-token KL estimators between the policy and a frozen reference
//! (Schulman, "Approximating KL divergence", 2020; verl `kl_penalty`,
//! TRL `GRPOTrainer.compute_loss`).

use burn::tensor::{backend::Backend, Tensor};

use crate::config::KlEstimator;

/// Per-token KL estimate from log-probs of the sampled tokens.
///
/// * k1 = logπ − logπ_ref (unbiased, high variance, can be negative);
/// * k2 = ½(logπ − logπ_ref)² (biased, its gradient is the KL gradient);
/// * k3 = e^{logπ_ref − logπ} − (logπ_ref − logπ) − 1 (unbiased, ≥ 0; the
///   GRPO paper's eq. 4). As in verl, the log-ratio is clamped to ±20 and
///   the result to ±10 for numerical safety.
pub fn kl_per_token<B: Backend>(
    logp: Tensor<B, 2>,
    ref_logp: Tensor<B, 2>,
    estimator: KlEstimator,
) -> Tensor<B, 2> {
    match estimator {
        KlEstimator::K1 => logp - ref_logp,
        KlEstimator::K2 => (logp - ref_logp).square().mul_scalar(0.5),
        KlEstimator::K3 => {
            let log_ratio = (ref_logp - logp).clamp(-20.0, 20.0);
            (log_ratio.clone().exp() - log_ratio - 1.0).clamp(-10.0, 10.0)
        }
    }
}

/// The same estimators on host values (used for KL-in-reward, which needs no
/// gradient).
pub fn kl_value(logp: f64, ref_logp: f64, estimator: KlEstimator) -> f64 {
    match estimator {
        KlEstimator::K1 => logp - ref_logp,
        KlEstimator::K2 => 0.5 * (logp - ref_logp).powi(2),
        KlEstimator::K3 => {
            let lr = (ref_logp - logp).clamp(-20.0, 20.0);
            (lr.exp() - lr - 1.0).clamp(-10.0, 10.0)
        }
    }
}
