//! Property tests: host-side pieces never panic and keep their invariants on
//! arbitrary input.

use proptest::prelude::*;
use vlrl_grpo::advantage::compute_advantages;
use vlrl_grpo::config::{
    AdvantageConfig, AdvantageEstimator, LossAggregation, OverlongConfig, StdScaling,
};
use vlrl_grpo::dapo::overlong_penalty;
use vlrl_grpo::loss::{aggregation_weights, clip_cov_keep_mask, kl_cov_select_mask, BatchNorm};
use vlrl_grpo::toy::nucleus_weights;
use vlrl_grpo::{LossConfig, TrainRng};

proptest! {
    #[test]
    fn advantages_are_finite_and_centred(
        rewards in prop::collection::vec(-10.0f64..10.0, 1..40),
        group_count in 1usize..6,
        rloo in any::<bool>(),
        scaling in 0u8..3,
    ) {
        let groups: Vec<usize> = (0..rewards.len()).map(|i| i % group_count).collect();
        let cfg = AdvantageConfig {
            estimator: if rloo { AdvantageEstimator::Rloo } else { AdvantageEstimator::Grpo },
            scaling: [StdScaling::Group, StdScaling::Batch, StdScaling::None][scaling as usize],
            epsilon: 1e-6,
        };
        let adv = compute_advantages(&rewards, &groups, &cfg).unwrap();
        prop_assert!(adv.iter().all(|a| a.is_finite()));
        for g in 0..group_count {
            let idx: Vec<usize> = (0..rewards.len()).filter(|i| i % group_count == g).collect();
            if idx.len() > 1 {
                let s: f64 = idx.iter().map(|&i| adv[i]).sum();
                prop_assert!(s.abs() < 1e-6 * (1.0 + adv.iter().map(|a| a.abs()).sum::<f64>()));
            }
        }
    }

    #[test]
    fn aggregation_weights_sum_to_one_for_mean_modes(
        lens in prop::collection::vec(0usize..12, 1..10),
        width in 1usize..12,
    ) {
        let lens: Vec<usize> = lens.into_iter().map(|l| l.min(width)).collect();
        let norm = BatchNorm { sequences: lens.len(), tokens: lens.iter().sum(), horizon: width };
        let w = aggregation_weights(&lens, width, LossAggregation::TokenMean, &norm);
        let total: f32 = w.iter().sum();
        if norm.tokens > 0 {
            prop_assert!((total - 1.0).abs() < 1e-4);
        }
        let w = aggregation_weights(&lens, width, LossAggregation::SeqMeanTokenMean, &norm);
        let nonempty = lens.iter().filter(|&&l| l > 0).count() as f32;
        prop_assert!((w.iter().sum::<f32>() - nonempty / lens.len() as f32).abs() < 1e-4);
    }

    #[test]
    fn selection_masks_never_panic(
        vals in prop::collection::vec((-5.0f32..0.0, -5.0f32..0.0, -3.0f32..3.0, any::<bool>()), 0..60),
        ratio in 0.0001f64..1.0,
        seed in any::<u64>(),
    ) {
        let logp: Vec<f32> = vals.iter().map(|v| v.0).collect();
        let old: Vec<f32> = vals.iter().map(|v| v.1).collect();
        let adv: Vec<f32> = vals.iter().map(|v| v.2).collect();
        let mask: Vec<f32> = vals.iter().map(|v| if v.3 { 1.0 } else { 0.0 }).collect();
        let mut rng = TrainRng::seed_from_u64(seed);
        let keep = clip_cov_keep_mask(&logp, &old, &adv, &mask, &LossConfig::default(), ratio, -1.0, 1.0, &mut rng);
        prop_assert_eq!(keep.len(), mask.len());
        let sel = kl_cov_select_mask(&logp, &adv, &mask, ratio);
        let valid = mask.iter().filter(|m| **m > 0.0).count();
        let picked = sel.iter().filter(|s| **s > 0.0).count();
        prop_assert!(picked <= valid);
        if valid > 0 { prop_assert!(picked >= 1); }
    }

    #[test]
    fn overlong_and_nucleus_are_total(
        len in 0usize..100, max in 1usize..100, buffer in 0usize..100, factor in 0.0f64..2.0,
        logits in prop::collection::vec(-30.0f32..5.0, 0..20), top_p in 0.0f64..1.5,
    ) {
        let cfg = OverlongConfig { enabled: true, buffer, penalty_factor: factor };
        let p = overlong_penalty(len, max, &cfg);
        prop_assert!(p <= 0.0 && p.is_finite());
        let w = nucleus_weights(&logits, top_p);
        prop_assert_eq!(w.len(), logits.len());
        let mut rng = TrainRng::seed_from_u64(1);
        let i = rng.categorical(&w);
        prop_assert!(logits.is_empty() || i < logits.len());
    }
}
