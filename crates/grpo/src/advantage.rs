//! Outcome advantages from group rewards.
//!
//! One scalar reward per completion; completions of the same prompt share a
//! group id. Every token of a completion gets its sequence's advantage
//! (verl `compute_grpo_outcome_advantage`, TRL `GRPOTrainer._generate_and_score_completions`).

use std::collections::BTreeMap;

use crate::config::{AdvantageConfig, AdvantageEstimator, StdScaling};
use crate::error::{GrpoError, Result};

/// Unbiased standard deviation (`torch.std`, Bessel-corrected); 0 for n < 2.
pub fn unbiased_std(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 2 {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64;
    var.sqrt()
}

/// Advantages for `rewards[i]` whose prompt is `groups[i]`.
///
/// * GRPO (DeepSeekMath, arXiv:2402.03300, §4.1.2):
///   `A_i = (r_i − mean_g r) / (std_g r + ε)`; with
///   [`StdScaling::None`] this is Dr.GRPO's `r_i − mean_g r`
///   (arXiv:2503.20783, §3.2); [`StdScaling::Batch`] divides by the std of
///   the whole batch instead (TRL `scale_rewards="batch"`).
/// * RLOO (arXiv:2402.14740, eq. 5): `A_i = r_i − (Σ_{j≠i} r_j)/(G − 1)`
///   `= G/(G−1) (r_i − mean_g r)`.
///
/// A group with a single completion keeps its raw reward, as verl does
/// (mean 0, std 1).
pub fn compute_advantages(
    rewards: &[f64],
    groups: &[usize],
    cfg: &AdvantageConfig,
) -> Result<Vec<f64>> {
    if rewards.len() != groups.len() {
        return Err(GrpoError::Shape {
            context: "compute_advantages",
            reason: format!("{} rewards but {} group ids", rewards.len(), groups.len()),
        });
    }
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &g) in groups.iter().enumerate() {
        members.entry(g).or_default().push(i);
    }
    let batch_std = unbiased_std(rewards);
    let mut adv = vec![0.0; rewards.len()];
    for idx in members.values() {
        let vals: Vec<f64> = idx.iter().map(|&i| rewards[i]).collect();
        let n = vals.len();
        if n == 1 {
            adv[idx[0]] = rewards[idx[0]];
            continue;
        }
        let mean = vals.iter().sum::<f64>() / n as f64;
        let group_std = unbiased_std(&vals);
        for &i in idx {
            let centred = match cfg.estimator {
                AdvantageEstimator::Grpo => rewards[i] - mean,
                AdvantageEstimator::Rloo => (rewards[i] - mean) * n as f64 / (n - 1) as f64,
            };
            adv[i] = match (cfg.estimator, cfg.scaling) {
                (AdvantageEstimator::Grpo, StdScaling::Group) => {
                    centred / (group_std + cfg.epsilon)
                }
                (_, StdScaling::Batch) => centred / (batch_std + cfg.epsilon),
                _ => centred,
            };
        }
    }
    Ok(adv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpo_dr_grpo_rloo_on_a_small_group() {
        let r = [1.0, 0.0, 0.0, 1.0, 0.5];
        let g = [0, 0, 0, 0, 1];
        let grpo = compute_advantages(&r, &g, &AdvantageConfig::default()).unwrap();
        let std = unbiased_std(&[1.0, 0.0, 0.0, 1.0]);
        assert!((grpo[0] - 0.5 / (std + 1e-6)).abs() < 1e-12);
        assert_eq!(grpo[4], 0.5);
        let dr = AdvantageConfig {
            scaling: StdScaling::None,
            ..Default::default()
        };
        let a = compute_advantages(&r, &g, &dr).unwrap();
        assert!((a[1] + 0.5).abs() < 1e-12);
        let rloo = AdvantageConfig {
            estimator: AdvantageEstimator::Rloo,
            scaling: StdScaling::None,
            ..Default::default()
        };
        let a = compute_advantages(&r, &g, &rloo).unwrap();
        // r_0 - mean(others) = 1 - 1/3
        assert!((a[0] - 2.0 / 3.0).abs() < 1e-12);
        assert!(compute_advantages(&r, &g[..2], &rloo).is_err());
    }
}
