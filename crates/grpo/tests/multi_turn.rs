//! Multi-turn episodes: tokens inserted by the environment (a tool result, a
//! zoomed image turn) are part of the completion the model reads but get no
//! loss, no gradient and no share of the token normalizers; each completion
//! can carry its own scoring extras.

mod common;

use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use common::{params, B};
use proptest::prelude::*;
use vlrl_grpo::config::{LossAggregation, SamplingConfig};
use vlrl_grpo::loss::{
    aggregation_weights, aggregation_weights_masked, policy_loss, BatchNorm, LossInputs,
};
use vlrl_grpo::policy::{Episode, Policy, SequenceBatch, TokenLogProbs};
use vlrl_grpo::toy::{PatternTask, ToyConfig, ToyPolicy};
use vlrl_grpo::trainer::{RewardOutput, RunOptions, Trainer};
use vlrl_grpo::{Completion, GrpoConfig, GrpoError, LossConfig, Prompt, TrainRng};

const TOOL_TOKEN: u32 = 2;
const TOOL_TOKENS: usize = 3;

/// Completion lengths and extras of one scoring pass.
type Seen = (Vec<usize>, Vec<u64>);

fn toy() -> ToyConfig {
    // Room for the model's 6 tokens plus 3 inserted ones.
    ToyConfig {
        max_len: 6 + TOOL_TOKENS,
        ..ToyConfig::default()
    }
}

/// The toy policy whose episodes end with `TOOL_TOKENS` environment tokens
/// (after the model's EOS, so the model's own log-probs are those of the
/// single-turn toy). `masked = false` marks them as model tokens, to show
/// that the mask is what makes the difference. The scoring extra of each
/// completion is its own length, and every scoring pass records the extras
/// it was given.
#[derive(Module, Debug)]
struct ToolToy<B: burn::tensor::backend::Backend> {
    inner: ToyPolicy<B>,
    #[module(skip)]
    masked: bool,
    #[module(skip)]
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Policy<B> for ToolToy<B> {
    type Extra = u64;

    fn sample(
        &self,
        _prompts: &[Prompt<u64>],
        _group_size: usize,
        _sampling: &SamplingConfig,
        _rng: &mut TrainRng,
    ) -> vlrl_grpo::Result<Vec<Vec<Completion>>> {
        Err(GrpoError::Policy("multi-turn only".into()))
    }

    fn sample_episodes(
        &self,
        prompts: &[Prompt<u64>],
        group_size: usize,
        sampling: &SamplingConfig,
        rng: &mut TrainRng,
    ) -> vlrl_grpo::Result<Vec<Vec<Episode<u64>>>> {
        let plain: Vec<Prompt<()>> = prompts
            .iter()
            .map(|p| Prompt {
                ids: p.ids.clone(),
                extra: (),
                source: p.source.clone(),
                target: p.target.clone(),
            })
            .collect();
        let groups = self.inner.sample(&plain, group_size, sampling, rng)?;
        Ok(groups
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .map(|mut c| {
                        let own = c.ids.len();
                        let mut mask = vec![true; own];
                        for _ in 0..TOOL_TOKENS {
                            c.ids.push(TOOL_TOKEN);
                            c.logprobs.push(0.0);
                            mask.push(!self.masked);
                        }
                        Episode {
                            completion: c,
                            loss_mask: Some(mask),
                            extra: Some(own as u64),
                        }
                    })
                    .collect()
            })
            .collect())
    }

    fn token_logprobs(
        &self,
        batch: &SequenceBatch<B, u64>,
        sampling: &SamplingConfig,
        with_entropy: bool,
    ) -> vlrl_grpo::Result<TokenLogProbs<B>> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((batch.completion_lens.clone(), batch.extras.clone()));
        }
        let plain = batch.with_extras(vec![(); batch.extras.len()]);
        self.inner.token_logprobs(&plain, sampling, with_entropy)
    }
}

/// Reward of the single-turn toy task.
fn reward(prompt: &Prompt<u64>, c: &Completion) -> vlrl_grpo::Result<RewardOutput> {
    let task = PatternTask {
        n_symbols: toy().n_symbols,
    };
    Ok(task.reward(&prompt.ids, &c.ids))
}

/// The same reward on the model's tokens of a tool episode (the inserted
/// tokens are the last `TOOL_TOKENS`).
fn tool_reward(prompt: &Prompt<u64>, c: &Completion) -> vlrl_grpo::Result<RewardOutput> {
    let own = Completion {
        ids: c.ids[..c.ids.len() - TOOL_TOKENS].to_vec(),
        logprobs: Vec::new(),
        truncated: c.truncated,
    };
    reward(prompt, &own)
}

fn config(aggregation: LossAggregation) -> GrpoConfig {
    let mut c = GrpoConfig::grpo();
    c.seed = 11;
    c.prompts_per_step = toy().n_symbols;
    c.group_size = 8;
    c.mini_batch_size = c.rollout_size();
    c.micro_batch_size = c.rollout_size();
    c.sampling.max_new_tokens = 6;
    c.optim.lr = 1e-2;
    c.total_steps = 2;
    c.loss.aggregation = aggregation;
    c
}

fn prompts<E: Clone>(extra: E) -> Vec<Prompt<E>> {
    PatternTask {
        n_symbols: toy().n_symbols,
    }
    .prompts()
    .into_iter()
    .map(|p| Prompt {
        ids: p.ids,
        extra: extra.clone(),
        source: p.source,
        target: p.target,
    })
    .collect()
}

/// Parameters after two steps of the single-turn toy.
fn single_turn_params(cfg: &GrpoConfig) -> Vec<f32> {
    let policy = toy().init::<B>(&Default::default(), 5);
    let mut t = Trainer::new(
        policy,
        None,
        cfg.clone(),
        prompts(()),
        vec![Default::default()],
        RunOptions::default(),
    )
    .unwrap();
    let mut r = |p: &Prompt<()>, c: &Completion| {
        let p = Prompt {
            ids: p.ids.clone(),
            extra: 0u64,
            source: p.source.clone(),
            target: p.target.clone(),
        };
        reward(&p, c)
    };
    t.train(&mut r).unwrap();
    params(&t.policy)
}

/// Parameters after two steps of the tool-inserting toy, and what the
/// scoring passes saw.
fn multi_turn_params(cfg: &GrpoConfig, masked: bool) -> (Vec<f32>, Vec<Seen>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let policy = ToolToy {
        inner: toy().init::<B>(&Default::default(), 5),
        masked,
        seen: seen.clone(),
    };
    let mut t = Trainer::new(
        policy,
        None,
        cfg.clone(),
        prompts(999u64),
        vec![Default::default()],
        RunOptions::default(),
    )
    .unwrap();
    t.train(&mut tool_reward).unwrap();
    let seen = seen.lock().unwrap().clone();
    (params(&t.policy.inner), seen)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Masked inserted tokens change nothing: training on episodes that end
/// with tool tokens gives the same parameters as training without them, in
/// every aggregation mode (token counts exclude them); unmasked, they do
/// change the update.
#[test]
fn masked_tool_tokens_do_not_change_the_update() {
    for mode in [
        LossAggregation::TokenMean,
        LossAggregation::SeqMeanTokenMean,
        LossAggregation::SeqMeanTokenSum,
        LossAggregation::SeqMeanTokenSumNorm,
    ] {
        let cfg = config(mode);
        let single = single_turn_params(&cfg);
        let (masked, _) = multi_turn_params(&cfg, true);
        let (unmasked, _) = multi_turn_params(&cfg, false);
        let d_masked = max_abs_diff(&single, &masked);
        let d_unmasked = max_abs_diff(&single, &unmasked);
        assert!(
            d_masked < 1e-6,
            "{mode:?}: masked run differs by {d_masked}"
        );
        assert!(
            d_unmasked > 1e-4,
            "{mode:?}: unmasked tool tokens should change the update ({d_unmasked})"
        );
    }
}

/// Each completion is scored with its own extra, in row order.
#[test]
fn completion_extras_reach_the_scoring_pass() {
    let (_, seen) = multi_turn_params(&config(LossAggregation::TokenMean), true);
    assert!(!seen.is_empty());
    for (lens, extras) in seen {
        assert_eq!(lens.len(), extras.len());
        for (len, extra) in lens.iter().zip(&extras) {
            assert_ne!(*extra, 999, "the prompt's extra was used");
            assert_eq!(*len, *extra as usize + TOOL_TOKENS);
        }
    }
}

/// A loss mask whose length disagrees with the completion is rejected.
#[test]
fn mask_length_is_checked() {
    #[derive(Module, Debug)]
    struct Bad<B: burn::tensor::backend::Backend> {
        inner: ToyPolicy<B>,
    }
    impl Policy<B> for Bad<B> {
        type Extra = ();
        fn sample(
            &self,
            p: &[Prompt<()>],
            g: usize,
            s: &SamplingConfig,
            r: &mut TrainRng,
        ) -> vlrl_grpo::Result<Vec<Vec<Completion>>> {
            self.inner.sample(p, g, s, r)
        }
        fn sample_episodes(
            &self,
            p: &[Prompt<()>],
            g: usize,
            s: &SamplingConfig,
            r: &mut TrainRng,
        ) -> vlrl_grpo::Result<Vec<Vec<Episode<()>>>> {
            Ok(self
                .sample(p, g, s, r)?
                .into_iter()
                .map(|g| {
                    g.into_iter()
                        .map(|c| Episode {
                            loss_mask: Some(vec![true; c.ids.len() + 1]),
                            completion: c,
                            extra: None,
                        })
                        .collect()
                })
                .collect())
        }
        fn token_logprobs(
            &self,
            b: &SequenceBatch<B, ()>,
            s: &SamplingConfig,
            e: bool,
        ) -> vlrl_grpo::Result<TokenLogProbs<B>> {
            self.inner.token_logprobs(b, s, e)
        }
    }
    let policy = Bad {
        inner: toy().init::<B>(&Default::default(), 5),
    };
    let mut t = Trainer::new(
        policy,
        None,
        config(LossAggregation::TokenMean),
        prompts(()),
        vec![Default::default()],
        RunOptions::default(),
    )
    .unwrap();
    let mut r = |p: &Prompt<()>, c: &Completion| {
        let p = Prompt {
            ids: p.ids.clone(),
            extra: 0u64,
            source: String::new(),
            target: String::new(),
        };
        reward(&p, c)
    };
    let err = t.step(&mut r).unwrap_err();
    assert!(matches!(err, GrpoError::Shape { .. }), "{err}");
}

/// At the loss level: zero gradient and zero contribution at masked
/// positions, whatever values they hold; non-zero gradient elsewhere.
#[test]
fn masked_positions_get_zero_gradient() {
    let device = Default::default();
    let (n, w) = (2, 5);
    // Row 0: model, model, tool, tool, model. Row 1: model, tool, model, pad, pad.
    let mask = vec![1., 1., 0., 0., 1., 1., 0., 1., 0., 0.];
    let norm = BatchNorm {
        sequences: n,
        tokens: 5,
        horizon: 8,
    };
    let loss_at = |garbage: f32| {
        let mut logp = vec![-1.2f32, -0.3, 0.0, 0.0, -2.0, -0.7, 0.0, -0.1, 0.0, 0.0];
        for (v, m) in logp.iter_mut().zip(&mask) {
            if *m == 0.0 {
                *v = garbage;
            }
        }
        let leaf = Tensor::<B, 2>::from_data(TensorData::new(logp.clone(), [n, w]), &device)
            .require_grad();
        let t = |v: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(v, [n, w]), &device);
        let old: Vec<f32> = logp.iter().map(|v| v - 0.05).collect();
        let adv = vec![1.0, 1.0, 1.0, 1.0, 1.0, -0.5, -0.5, -0.5, -0.5, -0.5f32];
        let cfg = LossConfig::default();
        let weights = aggregation_weights_masked(&mask, w, cfg.aggregation, &norm);
        let inputs = LossInputs {
            logp: leaf.clone(),
            old_logp: t(old),
            ref_logp: Some(t(logp.iter().map(|v| v + 0.1).collect())),
            entropy: None,
            advantages: t(adv),
            mask: t(mask.clone()),
            weights: t(weights),
        };
        let out = policy_loss(inputs, &cfg, 0.04, &norm, &mut TrainRng::seed_from_u64(1)).unwrap();
        let value = out.loss.clone().into_scalar();
        let grads = out.loss.backward();
        let g: Vec<f32> = leaf.grad(&grads).unwrap().into_data().to_vec().unwrap();
        (value, g)
    };
    let (v1, g1) = loss_at(-3.0);
    let (v2, g2) = loss_at(-17.0);
    assert_eq!(v1, v2, "masked values changed the loss");
    for (i, m) in mask.iter().enumerate() {
        if *m == 0.0 {
            assert_eq!(g1[i], 0.0, "gradient at masked position {i}");
            assert_eq!(g2[i], 0.0, "gradient at masked position {i}");
        } else {
            assert!(g1[i].abs() > 1e-6, "no gradient at trained position {i}");
            assert_eq!(g1[i], g2[i]);
        }
    }
}

proptest! {
    /// For right-padded prefix masks the masked weights equal the classic
    /// ones; for any mask, masked positions weigh 0 and the mean modes sum
    /// to one.
    #[test]
    fn masked_weights(
        rows in prop::collection::vec(prop::collection::vec(any::<bool>(), 1..8), 1..6),
        cut in prop::collection::vec(0usize..9, 1..6),
    ) {
        let width = rows.iter().map(Vec::len).max().unwrap_or(1);
        let n = rows.len();
        let mut mask = vec![0.0f32; n * width];
        for (i, r) in rows.iter().enumerate() {
            for (t, &b) in r.iter().enumerate() {
                mask[i * width + t] = if b { 1.0 } else { 0.0 };
            }
        }
        let tokens = mask.iter().filter(|&&m| m > 0.0).count();
        let norm = BatchNorm { sequences: n, tokens, horizon: width };
        for mode in [LossAggregation::TokenMean, LossAggregation::SeqMeanTokenMean] {
            let w = aggregation_weights_masked(&mask, width, mode, &norm);
            for (wi, mi) in w.iter().zip(&mask) {
                if *mi == 0.0 { prop_assert_eq!(*wi, 0.0); } else { prop_assert!(*wi > 0.0); }
            }
            if tokens > 0 && mode == LossAggregation::TokenMean {
                let s: f32 = w.iter().sum();
                prop_assert!((s - 1.0).abs() < 1e-4);
            }
        }
        let lens: Vec<usize> = (0..n).map(|i| cut.get(i).copied().unwrap_or(0).min(width)).collect();
        let mut prefix = vec![0.0f32; n * width];
        for (i, &l) in lens.iter().enumerate() {
            for t in 0..l { prefix[i * width + t] = 1.0; }
        }
        let norm = BatchNorm { sequences: n, tokens: lens.iter().sum(), horizon: width };
        for mode in [
            LossAggregation::TokenMean,
            LossAggregation::SeqMeanTokenMean,
            LossAggregation::SeqMeanTokenSum,
            LossAggregation::SeqMeanTokenSumNorm,
        ] {
            prop_assert_eq!(
                aggregation_weights(&lens, width, mode, &norm),
                aggregation_weights_masked(&prefix, width, mode, &norm)
            );
        }
    }
}
