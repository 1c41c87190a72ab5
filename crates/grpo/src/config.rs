//! Training configuration: plain serde structs with defaults, so recipes load
//! them from TOML and override single fields from the command line.
//!
//! Defaults follow TRL's `GRPOConfig` and verl's actor config where the two
//! agree; where they differ the field comment says which one we follow.

use serde::{Deserialize, Serialize};

use crate::error::{GrpoError, Result};

/// How per-completion advantages are computed from group rewards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AdvantageEstimator {
    /// GRPO (Shao et al., DeepSeekMath, arXiv:2402.03300): `r_i - mean(r)`,
    /// then scaled by [`StdScaling`].
    #[default]
    Grpo,
    /// RLOO (Ahmadian et al., arXiv:2402.14740): `r_i - mean_{j≠i} r_j`.
    Rloo,
}

/// Which standard deviation divides the centred rewards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StdScaling {
    /// Divide by the group's std (GRPO; TRL `scale_rewards="group"`,
    /// verl `norm_adv_by_std_in_grpo=True`).
    #[default]
    Group,
    /// Divide by the std of all rewards in the batch (TRL
    /// `scale_rewards="batch"`, "Tricks or Traps", arXiv:2508.08221).
    Batch,
    /// No division (Dr.GRPO, Liu et al., arXiv:2503.20783; TRL
    /// `scale_rewards="none"`, verl `norm_adv_by_std_in_grpo=False`).
    None,
}

/// Advantage settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AdvantageConfig {
    /// Estimator.
    pub estimator: AdvantageEstimator,
    /// Std scaling (ignored by RLOO unless `Batch`).
    pub scaling: StdScaling,
    /// Added to the std. verl uses 1e-6, TRL 1e-4; we follow verl.
    pub epsilon: f64,
}

impl Default for AdvantageConfig {
    fn default() -> Self {
        Self {
            estimator: AdvantageEstimator::Grpo,
            scaling: StdScaling::Group,
            epsilon: 1e-6,
        }
    }
}

/// How the per-token loss matrix is reduced to a scalar (verl `agg_loss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LossAggregation {
    /// Mean over every valid token of the mini-batch (DAPO, Yu et al.,
    /// arXiv:2503.14476; TRL `loss_type="dapo"`/`"bnpo"`).
    TokenMean,
    /// Mean over sequences of each sequence's token mean (original GRPO;
    /// TRL `loss_type="grpo"`).
    #[default]
    SeqMeanTokenMean,
    /// Mean over sequences of each sequence's token sum.
    SeqMeanTokenSum,
    /// Mean over sequences of the token sum divided by a constant horizon
    /// (Dr.GRPO; TRL `loss_type="dr_grpo"` divides by
    /// `batch × max_completion_length`). verl's mode of the same name omits
    /// the division by the number of sequences, which only rescales the
    /// learning rate; we follow TRL and the Dr.GRPO paper.
    SeqMeanTokenSumNorm,
}

/// Estimator of KL(π_θ ‖ π_ref) from sampled tokens (Schulman, "Approximating
/// KL divergence", 2020, http://joschu.net/blog/kl-approx.html).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KlEstimator {
    /// k1 = log π_θ − log π_ref.
    K1,
    /// k2 = ½ (log π_θ − log π_ref)².
    K2,
    /// k3 = exp(log π_ref − log π_θ) − (log π_ref − log π_θ) − 1 (TRL's only
    /// choice, verl `low_var_kl`; clamped as verl does).
    #[default]
    K3,
}

/// Where the KL to the reference policy enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KlPlacement {
    /// No reference model at all (β = 0 in TRL, DAPO and Dr.GRPO default).
    #[default]
    Off,
    /// `β · agg(KL)` added to the loss (GRPO; verl `use_kl_loss`).
    Loss,
    /// `r_i ← r_i − β Σ_t KL_t` before advantages (verl `use_kl_in_reward`,
    /// InstructGPT-style), KL measured with the rollout (old) log-probs.
    Reward,
}

/// KL settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct KlConfig {
    /// Where the KL enters.
    pub placement: KlPlacement,
    /// Estimator.
    pub estimator: KlEstimator,
    /// Coefficient β (TRL default 0.0 since v0.19; GRPO paper 0.04).
    pub beta: f64,
}

impl Default for KlConfig {
    fn default() -> Self {
        Self {
            placement: KlPlacement::Off,
            estimator: KlEstimator::K3,
            beta: 0.04,
        }
    }
}

/// Entropy-mechanism regularizers (Cui et al., "The Entropy Mechanism of
/// Reinforcement Learning for Reasoning Language Models", arXiv:2505.22617).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum CovRegularizer {
    /// Plain clipped surrogate.
    #[default]
    None,
    /// Clip-Cov: detach the gradient of a random `ratio` fraction of tokens
    /// whose centred covariance `(A − Ā)(logπ − \overline{logπ})` lies in
    /// `(lower, upper)` and that the ordinary clip did not already clip.
    ClipCov {
        /// Fraction of valid tokens to detach (paper default 2e-4).
        ratio: f64,
        /// Lower covariance bound (paper default 1).
        lower: f64,
        /// Upper covariance bound (paper default 5).
        upper: f64,
    },
    /// KL-Cov: add `coef · |logπ − logπ_old|` to the top `ratio` fraction of
    /// tokens ranked by covariance.
    KlCov {
        /// Fraction of tokens penalized (paper default 2e-4).
        ratio: f64,
        /// Penalty coefficient (paper default 1).
        coef: f64,
    },
}

impl CovRegularizer {
    /// Clip-Cov with the paper's defaults.
    pub fn clip_cov() -> Self {
        Self::ClipCov {
            ratio: 2e-4,
            lower: 1.0,
            upper: 5.0,
        }
    }

    /// KL-Cov with the paper's defaults.
    pub fn kl_cov() -> Self {
        Self::KlCov {
            ratio: 2e-4,
            coef: 1.0,
        }
    }
}

/// Policy-loss settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LossConfig {
    /// ε_low of the clipped surrogate (PPO, Schulman et al. arXiv:1707.06347).
    pub clip_low: f64,
    /// ε_high; > ε_low is DAPO's clip-higher (0.28 in the paper).
    pub clip_high: f64,
    /// Dual-clip bound c for negative advantages (Ye et al., arXiv:1912.09729;
    /// verl default 3.0, always on there; TRL has none, so `None` by default).
    pub dual_clip: Option<f64>,
    /// Loss aggregation mode.
    pub aggregation: LossAggregation,
    /// Constant horizon for `seq-mean-token-sum-norm`; `None` uses the
    /// sampling `max_new_tokens`.
    pub norm_horizon: Option<usize>,
    /// Entropy bonus coefficient (verl `entropy_coeff`, default 0).
    pub entropy_coef: f64,
    /// Entropy-mechanism regularizer.
    pub cov: CovRegularizer,
    /// KL to the reference.
    pub kl: KlConfig,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            clip_low: 0.2,
            clip_high: 0.2,
            dual_clip: None,
            aggregation: LossAggregation::SeqMeanTokenMean,
            norm_horizon: None,
            entropy_coef: 0.0,
            cov: CovRegularizer::None,
            kl: KlConfig::default(),
        }
    }
}

/// DAPO soft overlong punishment (Yu et al., arXiv:2503.14476, eq. 13).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct OverlongConfig {
    /// Turn the penalty on.
    pub enabled: bool,
    /// Buffer length L_cache before the maximum length (paper: 4096 of 20480).
    pub buffer: usize,
    /// Penalty at the maximum length (paper and verl default 1.0).
    pub penalty_factor: f64,
}

impl Default for OverlongConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            buffer: 4096,
            penalty_factor: 1.0,
        }
    }
}

/// DAPO dynamic sampling: drop groups whose rewards are all equal, sample
/// again until the batch has `prompts_per_step` groups.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DynamicSamplingConfig {
    /// Turn it on.
    pub enabled: bool,
    /// Most generation batches per step (verl `max_num_gen_batches`; 0 = no
    /// cap would loop forever on a solved data set, so 0 means 1).
    pub max_gen_batches: usize,
    /// When the cap is hit: train on the groups kept so far (true) or fail.
    pub allow_partial: bool,
}

impl Default for DynamicSamplingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_gen_batches: 10,
            allow_partial: true,
        }
    }
}

/// Learning-rate schedule shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// Constant after warmup.
    #[default]
    Constant,
    /// Linear decay to 0 after warmup (HF `get_linear_schedule_with_warmup`).
    Linear,
    /// Half-cosine decay to `min_lr_ratio · lr` (HF cosine with warmup).
    Cosine,
}

/// Optimizer and schedule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct OptimConfig {
    /// Peak learning rate (TRL default 1e-6 for LLMs; toy tasks use more).
    pub lr: f64,
    /// AdamW β1.
    pub beta1: f32,
    /// AdamW β2.
    pub beta2: f32,
    /// AdamW ε (PyTorch default 1e-8).
    pub eps: f32,
    /// Decoupled weight decay (Loshchilov & Hutter, arXiv:1711.05101).
    pub weight_decay: f32,
    /// Global-norm gradient clipping threshold (TRL/verl default 1.0); `None`
    /// disables it.
    pub max_grad_norm: Option<f64>,
    /// Schedule shape.
    pub schedule: ScheduleKind,
    /// Linear warmup optimizer steps.
    pub warmup_steps: usize,
    /// Total optimizer steps for decaying schedules.
    pub total_steps: usize,
    /// Cosine floor as a fraction of `lr`.
    pub min_lr_ratio: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-6,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
            schedule: ScheduleKind::Constant,
            warmup_steps: 0,
            total_steps: 1000,
            min_lr_ratio: 0.0,
        }
    }
}

/// Sampling settings passed to [`crate::Policy::sample`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SamplingConfig {
    /// Most new tokens per completion.
    pub max_new_tokens: usize,
    /// Softmax temperature (log-probs for the loss use the same temperature,
    /// as TRL does).
    pub temperature: f64,
    /// Nucleus sampling threshold (1.0 = off).
    pub top_p: f64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            temperature: 1.0,
            top_p: 1.0,
        }
    }
}

/// The whole GRPO configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GrpoConfig {
    /// Seed of every random choice (sampling, shuffles, Clip-Cov picks).
    pub seed: u64,
    /// Prompts per training step (groups in a rollout batch).
    pub prompts_per_step: usize,
    /// Completions per prompt, G.
    pub group_size: usize,
    /// PPO inner epochs μ over each rollout batch (TRL `num_iterations`).
    pub inner_epochs: usize,
    /// Completions per optimizer step (one mini-batch). Must divide the
    /// rollout batch size `prompts_per_step × group_size`.
    pub mini_batch_size: usize,
    /// Completions per forward/backward pass; mini-batches are split into
    /// `mini_batch_size / micro_batch_size` accumulated micro-batches.
    pub micro_batch_size: usize,
    /// Training steps to run.
    pub total_steps: u64,
    /// Stop after this many consecutive non-finite updates.
    pub max_nonfinite_streak: u32,
    /// Compute token entropies for the metrics even without entropy bonus
    /// (one extra reduction over the vocabulary per token).
    pub log_entropy: bool,
    /// Advantages.
    pub advantage: AdvantageConfig,
    /// Loss.
    pub loss: LossConfig,
    /// Overlong punishment.
    pub overlong: OverlongConfig,
    /// Dynamic sampling.
    pub dynamic_sampling: DynamicSamplingConfig,
    /// Optimizer.
    pub optim: OptimConfig,
    /// Sampling.
    pub sampling: SamplingConfig,
    /// Module paths whose parameters are not trained, matched as
    /// [`crate::lora::path_matches`] does: `["visual"]` freezes a VLM's
    /// vision tower (EasyR1's `freeze_vision_tower`: no gradients and no
    /// optimizer moments for it). A pattern that matches nothing is an error.
    pub freeze: Vec<String>,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            prompts_per_step: 8,
            group_size: 8,
            inner_epochs: 1,
            mini_batch_size: 64,
            micro_batch_size: 64,
            total_steps: 100,
            max_nonfinite_streak: 5,
            log_entropy: true,
            advantage: AdvantageConfig::default(),
            loss: LossConfig::default(),
            overlong: OverlongConfig::default(),
            dynamic_sampling: DynamicSamplingConfig::default(),
            optim: OptimConfig::default(),
            sampling: SamplingConfig::default(),
            freeze: Vec::new(),
        }
    }
}

impl GrpoConfig {
    /// Original GRPO: group-std advantages, seq-mean-token-mean, symmetric clip.
    pub fn grpo() -> Self {
        Self::default()
    }

    /// Dr.GRPO (arXiv:2503.20783): no std scaling, token sums over a constant
    /// horizon.
    pub fn dr_grpo() -> Self {
        let mut c = Self::default();
        c.advantage.scaling = StdScaling::None;
        c.loss.aggregation = LossAggregation::SeqMeanTokenSumNorm;
        c
    }

    /// DAPO (arXiv:2503.14476): clip-higher (0.2/0.28), token-mean, dynamic
    /// sampling, soft overlong punishment, no KL.
    pub fn dapo() -> Self {
        let mut c = Self::default();
        c.loss.clip_high = 0.28;
        c.loss.aggregation = LossAggregation::TokenMean;
        c.loss.kl.placement = KlPlacement::Off;
        c.dynamic_sampling.enabled = true;
        c.overlong.enabled = true;
        c
    }

    /// Rollout batch size in completions.
    pub fn rollout_size(&self) -> usize {
        self.prompts_per_step * self.group_size
    }

    /// Checks ranges and divisibility; names the offending field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: String| Err(GrpoError::Config { field, reason });
        if self.prompts_per_step == 0 {
            return bad("prompts_per_step", "must be ≥ 1".into());
        }
        if self.group_size == 0 {
            return bad("group_size", "must be ≥ 1".into());
        }
        if self.freeze.iter().any(|p| p.trim().is_empty()) {
            return bad("freeze", "an empty pattern would match nothing".into());
        }
        if self.inner_epochs == 0 {
            return bad("inner_epochs", "must be ≥ 1".into());
        }
        if self.mini_batch_size == 0 || !self.rollout_size().is_multiple_of(self.mini_batch_size) {
            return bad(
                "mini_batch_size",
                format!(
                    "{} must be ≥ 1 and divide prompts_per_step × group_size = {}",
                    self.mini_batch_size,
                    self.rollout_size()
                ),
            );
        }
        if self.micro_batch_size == 0 || !self.mini_batch_size.is_multiple_of(self.micro_batch_size)
        {
            return bad(
                "micro_batch_size",
                format!(
                    "{} must be ≥ 1 and divide mini_batch_size = {}",
                    self.micro_batch_size, self.mini_batch_size
                ),
            );
        }
        if !(0.0..1.0).contains(&self.loss.clip_low) {
            return bad(
                "loss.clip_low",
                format!("{} not in [0, 1)", self.loss.clip_low),
            );
        }
        if self.loss.clip_high.is_nan() || self.loss.clip_high < 0.0 {
            return bad("loss.clip_high", format!("{} < 0", self.loss.clip_high));
        }
        if let Some(c) = self.loss.dual_clip {
            if c.is_nan() || c <= 1.0 {
                return bad("loss.dual_clip", format!("{c} must be > 1"));
            }
        }
        if !(self.optim.lr >= 0.0 && self.optim.lr.is_finite()) {
            return bad(
                "optim.lr",
                format!("{} is not a finite non-negative", self.optim.lr),
            );
        }
        if self.sampling.max_new_tokens == 0 {
            return bad("sampling.max_new_tokens", "must be ≥ 1".into());
        }
        if self.sampling.temperature.is_nan() || self.sampling.temperature <= 0.0 {
            return bad("sampling.temperature", "must be > 0".into());
        }
        if self.overlong.enabled
            && (self.overlong.buffer == 0 || self.overlong.buffer > self.sampling.max_new_tokens)
        {
            return bad(
                "overlong.buffer",
                format!(
                    "{} must be in 1..=sampling.max_new_tokens ({})",
                    self.overlong.buffer, self.sampling.max_new_tokens
                ),
            );
        }
        match self.loss.cov {
            CovRegularizer::ClipCov {
                ratio,
                lower,
                upper,
            } => {
                if !(ratio > 0.0 && ratio <= 1.0 && lower < upper) {
                    return bad(
                        "loss.cov",
                        "Clip-Cov needs 0 < ratio ≤ 1 and lower < upper".into(),
                    );
                }
            }
            CovRegularizer::KlCov { ratio, .. } => {
                if !(ratio > 0.0 && ratio <= 1.0) {
                    return bad("loss.cov", "KL-Cov needs 0 < ratio ≤ 1".into());
                }
            }
            CovRegularizer::None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_bad_fields_are_named() {
        for c in [GrpoConfig::grpo(), GrpoConfig::dr_grpo()] {
            c.validate().unwrap();
        }
        let mut d = GrpoConfig::dapo();
        d.overlong.buffer = 64;
        d.validate().unwrap();
        let c = GrpoConfig {
            mini_batch_size: 7,
            ..Default::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("mini_batch_size"), "{err}");
    }

    #[test]
    fn config_roundtrips_through_json_with_defaults() {
        let c: GrpoConfig = serde_json::from_str(r#"{"group_size": 4, "loss": {"cov": {"kind": "clip-cov", "ratio": 0.1, "lower": 1.0, "upper": 5.0}}}"#).unwrap();
        assert_eq!(c.group_size, 4);
        assert_eq!(c.prompts_per_step, 8);
        assert!(matches!(c.loss.cov, CovRegularizer::ClipCov { .. }));
    }
}
