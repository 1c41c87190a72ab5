//! Supervised fine-tuning of a VLM policy on (prompt, response) pairs:
//! masked next-token NLL of the response tokens, AdamW with global-norm
//! clipping, linear warmup then cosine decay to 10%. Responses may hold
//! tokens the model does not produce (a tool's or the user's inserted turn):
//! `loss_mask` leaves them out, as multi-turn RL does.
//!
//! The log-probs come from the policy's own scoring pass
//! ([`Policy::token_logprobs`]), so SFT and RL see identical inputs
//! (placeholder expansion, vision stacking, masks). Generic: any recipe with
//! prompt ids, response ids and images can use it.

use std::time::Instant;

use anyhow::{bail, Result};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use vlrl::grpo::config::SamplingConfig;
use vlrl::grpo::grads::clip_global_norm;
use vlrl::grpo::lora::{check_module_patterns, freeze_modules};
use vlrl::grpo::policy::{Policy, SequenceBatch};

/// One training pair.
#[derive(Debug, Clone)]
pub struct SftExample<E> {
    pub prompt_ids: Vec<u32>,
    pub response_ids: Vec<u32>,
    /// True where the response token is trained; same length.
    pub loss_mask: Vec<bool>,
    /// The policy's extra inputs for the whole sequence.
    pub extra: E,
}

/// Optimizer and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SftConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f32,
    pub grad_clip: f64,
    /// Module paths not trained (`["visual"]` = the vision tower, as
    /// LLaMA-Factory's `freeze_vision_tower` and `[grpo] freeze`): a tower
    /// trained for perception keeps its features while the language model
    /// learns to use them. A pattern that matches nothing is an error.
    pub freeze: Vec<String>,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            steps: 300,
            batch_size: 16,
            lr: 1e-3,
            warmup_steps: 20,
            weight_decay: 0.01,
            grad_clip: 1.0,
            freeze: Vec::new(),
        }
    }
}

impl SftConfig {
    /// Warmup then cosine to 10% of `lr` at `steps`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let t = ((step - self.warmup_steps) as f64 / span).min(1.0);
        self.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
    }
}

/// One logged step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SftStep {
    pub step: usize,
    pub loss: f64,
    pub tokens: usize,
    pub lr: f64,
    pub grad_norm: f64,
    pub seconds: f64,
}

/// The padded scoring batch of `examples` (prompts left-padded, responses
/// right-padded) and the `[N, C]` 0/1 loss mask.
pub fn sft_batch<B: AutodiffBackend, E: Clone>(
    examples: &[SftExample<E>],
    device: &B::Device,
) -> (SequenceBatch<B, E>, Tensor<B, 2>, usize) {
    let batch = SequenceBatch::from_rows(
        examples.iter().map(|e| {
            (
                e.prompt_ids.as_slice(),
                e.response_ids.as_slice(),
                e.extra.clone(),
            )
        }),
        device,
    );
    let c = batch.completion_ids.dims()[1];
    let mut lmask = vec![0f32; examples.len() * c];
    for (row, e) in lmask.chunks_mut(c).zip(examples) {
        let trained = e.loss_mask.iter().take(e.response_ids.len());
        for (slot, &trained) in row.iter_mut().zip(trained) {
            *slot = if trained { 1.0 } else { 0.0 };
        }
    }
    let tokens = lmask.iter().filter(|&&m| m > 0.0).count();
    let lmask = Tensor::<B, 2>::from_data(TensorData::new(lmask, [examples.len(), c]), device);
    (batch, lmask, tokens)
}

/// What to do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SftControl {
    Continue,
    /// End training now (an early stop), keeping the policy as it is.
    Stop,
}

/// Trains `policy` for up to `cfg.steps` steps on batches from
/// `next_batch(step)`; `on_step` sees every step and the updated policy (for
/// metrics files, progress and periodic evaluations) and may stop early.
pub fn train_sft<B: AutodiffBackend, P: Policy<B>>(
    policy: P,
    cfg: &SftConfig,
    device: &B::Device,
    next_batch: impl FnMut(usize) -> Result<Vec<SftExample<P::Extra>>>,
    mut on_step: impl FnMut(&SftStep, &P) -> Result<SftControl>,
) -> Result<(P, Vec<SftStep>)> {
    let optim = sft_optimizer(cfg);
    train_sft_from(policy, optim, 0, cfg, device, next_batch, |s, p, _| {
        on_step(s, p)
    })
}

/// The optimizer of an SFT run.
pub type SftOptimizer<B, P> = OptimizerAdaptor<AdamW, P, B>;

/// A fresh [`SftOptimizer`] for `cfg`.
pub fn sft_optimizer<B: AutodiffBackend, P: Policy<B>>(cfg: &SftConfig) -> SftOptimizer<B, P> {
    AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay)
        .init::<B, P>()
}

/// [`train_sft`] from step `start_step` with `optim` (both restored from a
/// checkpoint when resuming: the schedule and the batches are functions of
/// the step, so the continuation is the run that was cut off); `on_step`
/// also sees the optimizer, to checkpoint it.
pub fn train_sft_from<B: AutodiffBackend, P: Policy<B>>(
    policy: P,
    mut optim: SftOptimizer<B, P>,
    start_step: usize,
    cfg: &SftConfig,
    device: &B::Device,
    mut next_batch: impl FnMut(usize) -> Result<Vec<SftExample<P::Extra>>>,
    mut on_step: impl FnMut(&SftStep, &P, &SftOptimizer<B, P>) -> Result<SftControl>,
) -> Result<(P, Vec<SftStep>)> {
    // Every call, resumed or not: a loaded record carries no "frozen" mark.
    check_module_patterns(&policy, "sft.freeze", &cfg.freeze)?;
    let (mut policy, frozen) = freeze_modules(policy, &cfg.freeze);
    if frozen > 0 {
        tracing::info!(
            "SFT: {frozen} parameter tensors frozen ({})",
            cfg.freeze.join(", ")
        );
    }
    let sampling = SamplingConfig {
        temperature: 1.0,
        ..SamplingConfig::default()
    };
    let mut history = Vec::with_capacity(cfg.steps.saturating_sub(start_step));
    for step in start_step..cfg.steps {
        let t = Instant::now();
        let examples = next_batch(step)?;
        if examples.is_empty() {
            bail!("SFT step {step}: empty batch");
        }
        let (batch, mask, tokens) = sft_batch::<B, _>(&examples, device);
        let logp = policy.token_logprobs(&batch, &sampling, false)?.logp;
        let loss = -(logp * mask).sum() / tokens.max(1) as f64;
        let value: f64 = loss.clone().into_scalar().elem();
        let grads = loss.backward();
        let mut grads = GradientsParams::from_grads(grads, &policy);
        let grad_norm = clip_global_norm::<B, P>(&policy, &mut grads, Some(cfg.grad_clip))?;
        let lr = cfg.lr_at(step);
        if value.is_finite() && grad_norm.is_finite() {
            policy = optim.step(lr, policy, grads);
        } else {
            tracing::warn!(
                step,
                value,
                grad_norm,
                "SFT: non-finite loss, update skipped"
            );
        }
        let s = SftStep {
            step: step + 1,
            loss: value,
            tokens,
            lr,
            grad_norm,
            seconds: t.elapsed().as_secs_f64(),
        };
        history.push(s);
        if on_step(&s, &policy, &optim)? == SftControl::Stop {
            break;
        }
    }
    Ok((policy, history))
}
