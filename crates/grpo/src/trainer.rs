//! The GRPO training loop.
//!
//! One [`Trainer::step`]:
//! 1. **rollout** — draw `prompts_per_step` prompts, sample `group_size`
//!    completions each ([`Policy::sample_episodes`]; multi-turn episodes
//!    carry a loss mask — only policy-generated tokens are trained — and
//!    their own scoring extras);
//! 2. **reward** — score them ([`RewardFn`]), add DAPO's overlong penalty;
//!    with dynamic sampling drop groups with identical rewards and draw more
//!    until the batch is full or the cap is hit;
//! 3. **old / reference log-probs** without gradients (the old pass is
//!    skipped when the batch is used for exactly one update, as TRL does:
//!    π_old = sg(π_θ) then);
//! 4. **advantages** (optionally after KL-in-reward shaping);
//! 5. **update** — μ inner epochs over shuffled mini-batches; each
//!    mini-batch is split into micro-batches (gradient accumulation) and each
//!    micro-batch into one shard per device (data parallel: one thread per
//!    device, gradients summed onto the first device — loss weights are
//!    normalized by mini-batch counts, so the sum *is* the full-batch
//!    gradient); global-norm clip; AdamW step at the scheduled LR. Updates
//!    with a non-finite loss or gradient are skipped; too many in a row stop
//!    training with [`GrpoError::NonFiniteStreak`].
//!
//! Data parallelism uses threads and a host-side gradient sum rather than
//! burn's `collective` feature (see `docs/grpo.md` for why).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::{backend::AutodiffBackend, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::advantage::{compute_advantages, unbiased_std};
use crate::checkpoint::CheckpointManager;
use crate::config::{GrpoConfig, KlPlacement};
use crate::dapo::{group_has_signal, overlong_penalty};
use crate::error::{GrpoError, Result};
use crate::grads::{add_grads, clip_global_norm};
use crate::kl::kl_value;
use crate::lora::{check_module_patterns, freeze_modules};
use crate::loss::{aggregation_weights_masked, policy_loss, BatchNorm, LossInputs, LossStats};
use crate::metrics::{
    plot_metrics, read_metrics, MetricsWriter, SourceMetrics, StepMetrics, Timings,
};
use crate::policy::{Completion, Episode, Policy, Prompt};
use crate::rng::TrainRng;
use crate::rollout::{RolloutBatch, RolloutRow};
use crate::schedule::learning_rate;

/// What a reward function returns for one completion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RewardOutput {
    /// Scalar reward.
    pub reward: f64,
    /// Optional accuracy in [0, 1] for metrics.
    pub accuracy: Option<f64>,
}

/// Scores completions. Recipes wrap `vlrl-rewards` verifiers (decoding the
/// ids to text) in an implementation of this trait.
pub trait RewardFn<E> {
    /// Reward of `completion` for `prompt`.
    fn score(&mut self, prompt: &Prompt<E>, completion: &Completion) -> Result<RewardOutput>;
}

impl<E, F> RewardFn<E> for F
where
    F: FnMut(&Prompt<E>, &Completion) -> Result<RewardOutput>,
{
    fn score(&mut self, prompt: &Prompt<E>, completion: &Completion) -> Result<RewardOutput> {
        self(prompt, completion)
    }
}

/// Where and how often a run writes its outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// Output folder (`metrics.jsonl`, `plots/`, `checkpoints/`); `None`
    /// writes nothing.
    pub out_dir: Option<PathBuf>,
    /// Checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept.
    pub keep_last: usize,
    /// Re-draw plots every this many steps (0 = only at the end).
    pub plot_every: u64,
    /// Show an `indicatif` progress bar.
    pub progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            out_dir: None,
            checkpoint_every: 0,
            keep_last: 3,
            plot_every: 0,
            progress: false,
        }
    }
}

/// Everything besides model and optimizer that resume must restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps completed.
    pub step: u64,
    /// Optimizer updates applied (drives the LR schedule).
    pub optimizer_steps: u64,
    /// Random state.
    pub rng: TrainRng,
    /// Prompts consumed (data position; epochs are reshuffled by seed).
    pub cursor: u64,
    /// Consecutive skipped updates.
    pub nonfinite_streak: u32,
}

/// The optimizer type of the trainer.
pub type GrpoOptimizer<B, P> = OptimizerAdaptor<AdamW, P, B>;

type Bytes = BinBytesRecorder<FullPrecisionSettings>;

/// GRPO trainer over any [`Policy`].
pub struct Trainer<B: AutodiffBackend, P: Policy<B>> {
    /// The policy being trained.
    pub policy: P,
    /// Frozen reference policy (needed when the KL is on).
    pub reference: Option<P>,
    optim: GrpoOptimizer<B, P>,
    /// Configuration.
    pub config: GrpoConfig,
    /// Resumable state.
    pub state: TrainState,
    dataset: Vec<Prompt<P::Extra>>,
    devices: Vec<B::Device>,
    options: RunOptions,
    metrics: Option<MetricsWriter>,
    checkpoints: Option<CheckpointManager>,
    progress: ProgressBar,
    history: Vec<StepMetrics>,
}

/// Epoch permutation of the data set (derived from seed and epoch only, so
/// the cursor alone restores the data position).
fn epoch_order(seed: u64, epoch: u64, len: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    TrainRng::derive(seed, epoch.wrapping_add(0xDA7A)).shuffle(&mut order);
    order
}

fn host_vec<B: burn::tensor::backend::Backend>(t: Tensor<B, 2>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| GrpoError::Data(format!("{e:?}")))
}

/// Inputs shared by every shard of a micro-batch.
struct ShardCtx<'a, E> {
    rollout: &'a RolloutBatch<E>,
    cfg: &'a GrpoConfig,
    norm: BatchNorm,
    current_as_old: bool,
}

fn shard_grads<B: AutodiffBackend, P: Policy<B>>(
    policy: &P,
    ctx: &ShardCtx<'_, P::Extra>,
    rows: &[usize],
    device: &B::Device,
    rng_seed: u64,
) -> Result<(GradientsParams, LossStats)> {
    let cfg = ctx.cfg;
    let batch = ctx.rollout.sequence_batch::<B>(rows, device);
    let host = ctx.rollout.host_matrices(rows);
    let n = rows.len();
    let w = host.width;
    let with_entropy = cfg.loss.entropy_coef != 0.0 || cfg.log_entropy;
    let out = policy.token_logprobs(&batch, &cfg.sampling, with_entropy)?;
    if out.logp.dims() != [n, w] {
        return Err(GrpoError::Shape {
            context: "Policy::token_logprobs",
            reason: format!("returned {:?}, expected [{n}, {w}]", out.logp.dims()),
        });
    }
    let t = |v: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(v, [n, w]), device);
    let old = if ctx.current_as_old {
        out.logp.clone().detach()
    } else {
        t(host.old_logp)
    };
    let ref_logp = match cfg.loss.kl.placement {
        KlPlacement::Loss => host.ref_logp.map(t),
        _ => None,
    };
    let weights = aggregation_weights_masked(&host.mask, w, cfg.loss.aggregation, &ctx.norm);
    let inputs = LossInputs {
        logp: out.logp,
        old_logp: old,
        ref_logp,
        entropy: out.entropy,
        advantages: t(host.advantages),
        mask: t(host.mask),
        weights: t(weights),
    };
    let mut rng = TrainRng::seed_from_u64(rng_seed);
    let lo = policy_loss(inputs, &cfg.loss, cfg.loss.kl.beta, &ctx.norm, &mut rng)?;
    let grads = lo.loss.backward();
    Ok((GradientsParams::from_grads(grads, policy), lo.stats))
}

/// Freezes the parameters under `patterns` (`GrpoConfig::freeze`); a
/// pattern that matches no parameter is an error.
fn freeze<B: AutodiffBackend, M: burn::module::Module<B>>(
    module: M,
    patterns: &[String],
) -> Result<M> {
    check_module_patterns(&module, "freeze", patterns)?;
    let (module, tensors) = freeze_modules(module, patterns);
    if tensors > 0 {
        tracing::info!(tensors, "parameters frozen ({})", patterns.join(", "));
    }
    Ok(module)
}

impl<B: AutodiffBackend, P: Policy<B>> Trainer<B, P> {
    /// A trainer. `devices[0]` holds the policy and optimizer; more devices
    /// add data-parallel workers. `reference` is required when the KL is on.
    pub fn new(
        policy: P,
        reference: Option<P>,
        config: GrpoConfig,
        dataset: Vec<Prompt<P::Extra>>,
        devices: Vec<B::Device>,
        options: RunOptions,
    ) -> Result<Self> {
        config.validate()?;
        if dataset.is_empty() {
            return Err(GrpoError::EmptyDataset);
        }
        if devices.is_empty() {
            return Err(GrpoError::Config {
                field: "devices",
                reason: "at least one device is needed".into(),
            });
        }
        if config.loss.kl.placement != KlPlacement::Off && reference.is_none() {
            return Err(GrpoError::Config {
                field: "loss.kl.placement",
                reason: "the KL needs a reference policy".into(),
            });
        }
        let policy = freeze(policy, &config.freeze)?;
        let o = &config.optim;
        let optim = AdamWConfig::new()
            .with_beta_1(o.beta1)
            .with_beta_2(o.beta2)
            .with_epsilon(o.eps)
            .with_weight_decay(o.weight_decay)
            .init::<B, P>();
        // The metrics file is opened at the first step (see `step`), so a
        // trainer built only to resume does not truncate it.
        let metrics = None;
        let checkpoints = match &options.out_dir {
            Some(dir) => Some(CheckpointManager::new(
                dir.join("checkpoints"),
                options.keep_last,
            )?),
            None => None,
        };
        let progress = if options.progress {
            let pb = ProgressBar::new(config.total_steps);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            ) {
                pb.set_style(style);
            }
            pb
        } else {
            ProgressBar::hidden()
        };
        let state = TrainState {
            step: 0,
            optimizer_steps: 0,
            rng: TrainRng::seed_from_u64(config.seed),
            cursor: 0,
            nonfinite_streak: 0,
        };
        Ok(Self {
            policy,
            reference,
            optim,
            config,
            state,
            dataset,
            devices,
            options,
            metrics,
            checkpoints,
            progress,
            history: Vec::new(),
        })
    }

    /// Metrics of the steps run so far (including restored ones).
    pub fn history(&self) -> &[StepMetrics] {
        &self.history
    }

    fn main_device(&self) -> Result<&B::Device> {
        self.devices.first().ok_or(GrpoError::Config {
            field: "devices",
            reason: "no device".into(),
        })
    }

    fn next_prompts(&mut self, n: usize) -> Vec<usize> {
        let len = self.dataset.len();
        let mut out = Vec::with_capacity(n);
        let mut cached: Option<(u64, Vec<usize>)> = None;
        for _ in 0..n {
            let epoch = self.state.cursor / len as u64;
            let pos = (self.state.cursor % len as u64) as usize;
            if cached.as_ref().map(|c| c.0) != Some(epoch) {
                cached = Some((epoch, epoch_order(self.config.seed, epoch, len)));
            }
            if let Some((_, order)) = &cached {
                out.push(order.get(pos).copied().unwrap_or(0));
            }
            self.state.cursor += 1;
        }
        out
    }

    /// Serializes model, optimizer and state into a checkpoint now.
    pub fn save_checkpoint(&self) -> Result<Option<PathBuf>> {
        let Some(mgr) = &self.checkpoints else {
            return Ok(None);
        };
        let ser = |what: &str, e: String| GrpoError::Serialize {
            what: what.into(),
            reason: e,
        };
        let model = Recorder::<B>::record(&Bytes::default(), self.policy.clone().into_record(), ())
            .map_err(|e| ser("model record", e.to_string()))?;
        let optim = Recorder::<B>::record(&Bytes::default(), self.optim.to_record(), ())
            .map_err(|e| ser("optimizer record", e.to_string()))?;
        let state = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| ser("train state", e.to_string()))?;
        let config =
            serde_json::to_vec_pretty(&self.config).map_err(|e| ser("config", e.to_string()))?;
        let dir = mgr.save(
            self.state.step,
            &[
                ("model.bin", &model),
                ("optim.bin", &optim),
                ("state.json", &state),
                ("config.json", &config),
            ],
        )?;
        tracing::info!(step = self.state.step, dir = %dir.display(), "checkpoint written");
        Ok(Some(dir))
    }

    /// Restores the newest valid checkpoint of `out_dir`, if any: model,
    /// optimizer moments, LR-schedule position, RNG, data cursor and the
    /// metrics file (truncated to the checkpoint's step). Returns its step.
    pub fn resume(&mut self) -> Result<Option<u64>> {
        let Some(mgr) = &self.checkpoints else {
            return Ok(None);
        };
        let Some(ckpt) = mgr.latest()? else {
            return Ok(None);
        };
        let device = self.main_device()?.clone();
        let bad = |e: String| GrpoError::Checkpoint {
            path: ckpt.dir.clone(),
            reason: e,
        };
        let model_rec =
            Recorder::<B>::load(&Bytes::default(), ckpt.file("model.bin")?.to_vec(), &device)
                .map_err(|e| bad(format!("model.bin: {e}")))?;
        let optim_rec =
            Recorder::<B>::load(&Bytes::default(), ckpt.file("optim.bin")?.to_vec(), &device)
                .map_err(|e| bad(format!("optim.bin: {e}")))?;
        let state: TrainState = serde_json::from_slice(ckpt.file("state.json")?)
            .map_err(|e| bad(format!("state.json: {e}")))?;
        self.policy = self.policy.clone().load_record(model_rec);
        self.optim = self.optim.clone().load_record(optim_rec);
        self.state = state;
        if let Some(dir) = &self.options.out_dir {
            let path = dir.join("metrics.jsonl");
            self.metrics = Some(MetricsWriter::open(&path, self.state.step)?);
            self.history = read_metrics(&path)?;
        }
        self.progress.set_position(self.state.step);
        tracing::info!(
            step = self.state.step,
            "resumed from {}",
            ckpt.dir.display()
        );
        Ok(Some(self.state.step))
    }

    /// Runs steps until `config.total_steps`, checkpointing and plotting as
    /// configured. Returns the metrics of the steps run by this call.
    pub fn train(&mut self, reward: &mut impl RewardFn<P::Extra>) -> Result<Vec<StepMetrics>> {
        let mut out = Vec::new();
        while self.state.step < self.config.total_steps {
            out.push(self.step(reward)?);
        }
        if let Some(dir) = &self.options.out_dir {
            plot_metrics(&self.history, &dir.join("plots"))?;
        }
        self.progress.finish();
        Ok(out)
    }

    fn rollout(
        &mut self,
        reward: &mut impl RewardFn<P::Extra>,
        timings: &mut Timings,
    ) -> Result<(RolloutBatch<P::Extra>, usize, f64)> {
        let cfg = self.config.clone();
        let g = cfg.group_size;
        let mut rows = Vec::new();
        let mut extras = Vec::new();
        let mut completion_extras = Vec::new();
        let mut gen_batches = 0;
        let mut kept = 0;
        let (mut sampled_sum, mut sampled_n) = (0.0, 0usize);
        loop {
            gen_batches += 1;
            let idx = self.next_prompts(cfg.prompts_per_step);
            let prompts: Vec<Prompt<P::Extra>> = idx
                .iter()
                .filter_map(|&i| self.dataset.get(i).cloned())
                .collect();
            let t = Instant::now();
            let groups =
                self.policy
                    .sample_episodes(&prompts, g, &cfg.sampling, &mut self.state.rng)?;
            timings.rollout += t.elapsed().as_secs_f64();
            if groups.len() != prompts.len() || groups.iter().any(|c| c.len() != g) {
                return Err(GrpoError::Shape {
                    context: "Policy::sample",
                    reason: format!(
                        "expected {} groups of {g} completions, got {:?}",
                        prompts.len(),
                        groups.iter().map(Vec::len).collect::<Vec<_>>()
                    ),
                });
            }
            let t = Instant::now();
            for (prompt, group) in prompts.into_iter().zip(groups) {
                let mut group_rows = Vec::with_capacity(g);
                let mut group_extras = Vec::new();
                for episode in group {
                    if let Some(m) = &episode.loss_mask {
                        if m.len() != episode.completion.ids.len() {
                            return Err(GrpoError::Shape {
                                context: "Policy::sample_episodes",
                                reason: format!(
                                    "loss mask of {} tokens for a completion of {}",
                                    m.len(),
                                    episode.completion.ids.len()
                                ),
                            });
                        }
                    }
                    let trained = episode.trained_tokens();
                    let Episode {
                        completion: c,
                        loss_mask,
                        extra,
                    } = episode;
                    let r = reward.score(&prompt, &c)?;
                    sampled_sum += r.reward;
                    sampled_n += 1;
                    if !r.reward.is_finite() {
                        return Err(GrpoError::Reward(format!(
                            "non-finite reward {} for source `{}`",
                            r.reward, prompt.source
                        )));
                    }
                    // Overlong shaping counts the policy's own tokens.
                    let shaped = r.reward
                        + overlong_penalty(trained, cfg.sampling.max_new_tokens, &cfg.overlong);
                    let completion_extra = extra.map(|e| {
                        group_extras.push(e);
                        group_extras.len() - 1
                    });
                    group_rows.push(RolloutRow {
                        prompt_index: extras.len(),
                        group: kept,
                        prompt_ids: prompt.ids.clone(),
                        old_logp: c.logprobs,
                        completion_ids: c.ids,
                        truncated: c.truncated,
                        source: prompt.source.clone(),
                        score: r.reward,
                        accuracy: r.accuracy,
                        reward: shaped,
                        ref_logp: None,
                        advantage: 0.0,
                        loss_mask,
                        completion_extra,
                    });
                }
                let shaped: Vec<f64> = group_rows.iter().map(|r| r.reward).collect();
                if cfg.dynamic_sampling.enabled && !group_has_signal(&shaped) {
                    continue;
                }
                if kept < cfg.prompts_per_step {
                    extras.push(prompt.extra);
                    // Group-local extra indices → batch indices.
                    let base = completion_extras.len();
                    completion_extras.extend(group_extras);
                    for row in &mut group_rows {
                        if let Some(i) = &mut row.completion_extra {
                            *i += base;
                        }
                    }
                    rows.extend(group_rows);
                    kept += 1;
                }
            }
            timings.reward += t.elapsed().as_secs_f64();
            if !cfg.dynamic_sampling.enabled || kept >= cfg.prompts_per_step {
                break;
            }
            if gen_batches >= cfg.dynamic_sampling.max_gen_batches.max(1) {
                if cfg.dynamic_sampling.allow_partial {
                    tracing::warn!(kept, gen_batches, "dynamic sampling cap hit; partial batch");
                    break;
                }
                return Err(GrpoError::DynamicSamplingExhausted {
                    kept,
                    wanted: cfg.prompts_per_step,
                    batches: gen_batches,
                    cap: cfg.dynamic_sampling.max_gen_batches,
                });
            }
        }
        let sampled_mean = sampled_sum / sampled_n.max(1) as f64;
        Ok((
            RolloutBatch {
                rows,
                extras,
                completion_extras,
            },
            gen_batches,
            sampled_mean,
        ))
    }

    fn no_grad_logprobs(
        &self,
        model: &P,
        rollout: &RolloutBatch<P::Extra>,
    ) -> Result<Vec<Vec<f32>>> {
        let device = self.main_device()?;
        let idx: Vec<usize> = (0..rollout.rows.len()).collect();
        let mut out = Vec::with_capacity(idx.len());
        for chunk in idx.chunks(self.config.micro_batch_size.max(1)) {
            let batch = rollout.sequence_batch::<B>(chunk, device);
            let logp = model.token_logprobs_no_grad(&batch, &self.config.sampling)?;
            let [n, w] = logp.dims();
            if n != chunk.len() {
                return Err(GrpoError::Shape {
                    context: "Policy::token_logprobs_no_grad",
                    reason: format!("{n} rows for {} sequences", chunk.len()),
                });
            }
            let v = host_vec(logp)?;
            for (i, &r) in chunk.iter().enumerate() {
                let len = rollout
                    .rows
                    .get(r)
                    .map_or(0, |row| row.completion_ids.len());
                out.push(v[i * w..i * w + len.min(w)].to_vec());
            }
        }
        Ok(out)
    }

    /// Runs one training step and returns its metrics.
    pub fn step(&mut self, reward: &mut impl RewardFn<P::Extra>) -> Result<StepMetrics> {
        let step_start = Instant::now();
        let cfg = self.config.clone();
        if self.metrics.is_none() {
            if let Some(dir) = &self.options.out_dir {
                // Drops lines of steps after the current one (a resumed run
                // continues the file where its checkpoint was taken).
                self.metrics = Some(MetricsWriter::open(
                    dir.join("metrics.jsonl"),
                    self.state.step,
                )?);
            }
        }
        let mut timings = Timings::default();
        let (mut rollout, gen_batches, sampled_reward_mean) = self.rollout(reward, &mut timings)?;
        let n_rows = rollout.rows.len();
        let mini = cfg.mini_batch_size.max(1);
        let single_update = cfg.inner_epochs == 1 && n_rows <= mini;
        let kl_in_reward = cfg.loss.kl.placement == KlPlacement::Reward;

        // Old log-probs.
        let current_as_old = single_update && !kl_in_reward;
        if !current_as_old && n_rows > 0 {
            let t = Instant::now();
            let old = self.no_grad_logprobs(&self.policy, &rollout)?;
            for (row, lp) in rollout.rows.iter_mut().zip(old) {
                row.old_logp = lp;
            }
            timings.old_logprob = t.elapsed().as_secs_f64();
        }
        // Reference log-probs.
        let (mut reward_kl_sum, mut reward_kl_tokens) = (0.0, 0usize);
        if cfg.loss.kl.placement != KlPlacement::Off && n_rows > 0 {
            let t = Instant::now();
            let reference = self.reference.as_ref().ok_or(GrpoError::Config {
                field: "loss.kl.placement",
                reason: "the KL needs a reference policy".into(),
            })?;
            let refs = self.no_grad_logprobs(reference, &rollout)?;
            for (row, lp) in rollout.rows.iter_mut().zip(refs) {
                if kl_in_reward {
                    // Over the policy's own tokens only.
                    let kl: f64 = row
                        .old_logp
                        .iter()
                        .zip(&lp)
                        .enumerate()
                        .filter(|(t, _)| row.is_trained(*t))
                        .map(|(_, (&o, &r))| kl_value(o as f64, r as f64, cfg.loss.kl.estimator))
                        .sum();
                    row.reward -= cfg.loss.kl.beta * kl;
                    reward_kl_sum += kl;
                    reward_kl_tokens += lp.len().min(row.trained_len());
                }
                row.ref_logp = Some(lp);
            }
            timings.ref_logprob = t.elapsed().as_secs_f64();
        }
        // Advantages.
        let rewards: Vec<f64> = rollout.rows.iter().map(|r| r.reward).collect();
        let groups: Vec<usize> = rollout.rows.iter().map(|r| r.group).collect();
        let adv = compute_advantages(&rewards, &groups, &cfg.advantage)?;
        for (row, a) in rollout.rows.iter_mut().zip(&adv) {
            row.advantage = *a;
        }

        // Update.
        let t_update = Instant::now();
        let horizon = cfg.loss.norm_horizon.unwrap_or(cfg.sampling.max_new_tokens);
        let mut stats_sum = LossStats::default();
        let (mut updates, mut skipped, mut grad_norm_sum, mut lr) = (0usize, 0usize, 0.0, 0.0);
        let mut order: Vec<usize> = (0..n_rows).collect();
        for _epoch in 0..cfg.inner_epochs {
            self.state.rng.shuffle(&mut order);
            for mb in order.clone().chunks(mini) {
                let norm = BatchNorm {
                    sequences: mb.len(),
                    tokens: mb
                        .iter()
                        .filter_map(|&i| rollout.rows.get(i))
                        .map(RolloutRow::trained_len)
                        .sum(),
                    horizon,
                };
                let ctx = ShardCtx {
                    rollout: &rollout,
                    cfg: &cfg,
                    norm,
                    current_as_old,
                };
                let mut acc: Option<GradientsParams> = None;
                let mut mb_stats = LossStats::default();
                for micro in mb.chunks(cfg.micro_batch_size.max(1)) {
                    let (g, s) = self.micro_grads(&ctx, micro)?;
                    mb_stats.add(&s);
                    acc = Some(match acc {
                        None => g,
                        Some(mut a) => {
                            add_grads::<B, P>(&self.policy, &mut a, g);
                            a
                        }
                    });
                }
                let Some(mut grads) = acc else { continue };
                let norm_before =
                    clip_global_norm::<B, P>(&self.policy, &mut grads, cfg.optim.max_grad_norm)?;
                if !(norm_before.is_finite() && mb_stats.loss.is_finite()) {
                    skipped += 1;
                    self.state.nonfinite_streak += 1;
                    tracing::warn!(
                        step = self.state.step + 1,
                        streak = self.state.nonfinite_streak,
                        loss = mb_stats.loss,
                        grad_norm = norm_before,
                        "non-finite loss or gradient: update skipped"
                    );
                    if self.state.nonfinite_streak >= cfg.max_nonfinite_streak.max(1) {
                        return Err(GrpoError::NonFiniteStreak {
                            step: self.state.step + 1,
                            streak: self.state.nonfinite_streak,
                            limit: cfg.max_nonfinite_streak,
                        });
                    }
                    continue;
                }
                self.state.nonfinite_streak = 0;
                lr = learning_rate(&cfg.optim, self.state.optimizer_steps);
                self.policy = self.optim.step(lr, self.policy.clone(), grads);
                self.state.optimizer_steps += 1;
                updates += 1;
                grad_norm_sum += norm_before;
                stats_sum.add(&mb_stats);
            }
        }
        timings.update = t_update.elapsed().as_secs_f64();
        self.state.step += 1;
        timings.total = step_start.elapsed().as_secs_f64();

        let mut m = self.step_metrics(
            &rollout,
            &stats_sum,
            updates,
            skipped,
            grad_norm_sum,
            lr,
            gen_batches,
            timings,
        );
        m.sampled_reward_mean = sampled_reward_mean;
        if kl_in_reward {
            // Token-mean KL(π_old ‖ π_ref) that was subtracted from rewards.
            m.kl = reward_kl_sum / reward_kl_tokens.max(1) as f64;
        }
        if let Some(w) = &mut self.metrics {
            w.write(&m)?;
        }
        self.history.push(m.clone());
        tracing::info!(
            step = m.step,
            reward = m.reward_mean,
            kl = m.kl,
            entropy = m.entropy,
            clip_frac = m.clip_frac,
            "step done"
        );
        self.progress.set_position(self.state.step);
        self.progress.set_message(format!(
            "reward {:.3} len {:.1}",
            m.reward_mean, m.response_len_mean
        ));
        let every = self.options.checkpoint_every;
        if self.checkpoints.is_some()
            && ((every > 0 && self.state.step.is_multiple_of(every))
                || self.state.step == cfg.total_steps)
        {
            self.save_checkpoint()?;
        }
        if let Some(dir) = &self.options.out_dir {
            if self.options.plot_every > 0
                && self.state.step.is_multiple_of(self.options.plot_every)
            {
                plot_metrics(&self.history, &dir.join("plots"))?;
            }
        }
        Ok(m)
    }

    fn micro_grads(
        &self,
        ctx: &ShardCtx<'_, P::Extra>,
        micro: &[usize],
    ) -> Result<(GradientsParams, LossStats)> {
        let k = self.devices.len().min(micro.len()).max(1);
        let main = self.main_device()?;
        if k == 1 {
            // Seed for Clip-Cov's pick, drawn on the main thread.
            let seed = ctx.rollout.rows.len() as u64 ^ micro.first().copied().unwrap_or(0) as u64;
            return shard_grads::<B, P>(
                &self.policy,
                ctx,
                micro,
                main,
                seed ^ self.state.optimizer_steps,
            );
        }
        let per = micro.len().div_ceil(k);
        let shards: Vec<&[usize]> = micro.chunks(per).collect();
        let results: Vec<Result<(GradientsParams, LossStats)>> = std::thread::scope(|s| {
            let handles: Vec<_> = shards
                .iter()
                .zip(&self.devices)
                .map(|(rows, device)| {
                    let policy = self.policy.clone().fork(device);
                    let seed = ctx.rollout.rows.len() as u64
                        ^ rows.first().copied().unwrap_or(0) as u64
                        ^ self.state.optimizer_steps;
                    s.spawn(move || shard_grads::<B, P>(&policy, ctx, rows, device, seed))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(GrpoError::Policy("a data-parallel worker panicked".into()))
                    })
                })
                .collect()
        });
        let mut total: Option<(GradientsParams, LossStats)> = None;
        for r in results {
            let (g, s) = r?;
            let g = g.to_device::<B, P>(main, &self.policy);
            total = Some(match total {
                None => (g, s),
                Some((mut ag, mut st)) => {
                    add_grads::<B, P>(&self.policy, &mut ag, g);
                    st.add(&s);
                    (ag, st)
                }
            });
        }
        total.ok_or(GrpoError::Shape {
            context: "data-parallel micro-batch",
            reason: "no shard".into(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn step_metrics(
        &self,
        rollout: &RolloutBatch<P::Extra>,
        stats: &LossStats,
        updates: usize,
        skipped: usize,
        grad_norm_sum: f64,
        lr: f64,
        gen_batches: usize,
        timings: Timings,
    ) -> StepMetrics {
        let rows = &rollout.rows;
        let n = rows.len().max(1) as f64;
        let scores: Vec<f64> = rows.iter().map(|r| r.score).collect();
        let accs: Vec<f64> = rows.iter().filter_map(|r| r.accuracy).collect();
        let mut per_source: BTreeMap<String, (usize, f64, f64, usize)> = BTreeMap::new();
        for r in rows {
            let e = per_source.entry(r.source.clone()).or_default();
            e.0 += 1;
            e.1 += r.score;
            if let Some(a) = r.accuracy {
                e.2 += a;
                e.3 += 1;
            }
        }
        let tokens: usize = rows.iter().map(|r| r.completion_ids.len()).sum();
        let s = stats.scaled(updates as f64);
        StepMetrics {
            step: self.state.step,
            reward_mean: scores.iter().sum::<f64>() / n,
            reward_std: unbiased_std(&scores),
            sampled_reward_mean: 0.0,
            accuracy: (!accs.is_empty()).then(|| accs.iter().sum::<f64>() / accs.len() as f64),
            per_source: per_source
                .into_iter()
                .map(|(k, (c, r, a, na))| {
                    (
                        k,
                        SourceMetrics {
                            count: c,
                            reward: r / c.max(1) as f64,
                            accuracy: (na > 0).then(|| a / na as f64),
                        },
                    )
                })
                .collect(),
            advantage_abs_mean: rows.iter().map(|r| r.advantage.abs()).sum::<f64>() / n,
            pg_loss: s.pg_loss,
            loss: s.loss,
            kl: s.kl,
            entropy: s.entropy,
            clip_frac: s.clip_frac,
            clip_frac_lower: s.clip_frac_lower,
            cov_frac: s.cov_frac,
            ppo_kl: s.ppo_kl,
            response_len_mean: tokens as f64 / n,
            truncated_frac: rows.iter().filter(|r| r.truncated).count() as f64 / n,
            grad_norm: if updates > 0 {
                grad_norm_sum / updates as f64
            } else {
                0.0
            },
            lr,
            updates,
            skipped_updates: skipped,
            groups: rollout.extras.len(),
            gen_batches,
            tokens_per_s: tokens as f64 / timings.total.max(1e-9),
            timings,
        }
    }
}
