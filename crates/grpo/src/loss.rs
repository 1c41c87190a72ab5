//! The clipped policy-gradient loss of GRPO and its variants.
//!
//! Per token, with ρ = exp(logπ_θ − logπ_old) and advantage A:
//!
//! ```text
//! ℓ = max(−A ρ, −A clip(ρ, 1−ε_low, 1+ε_high))          PPO / GRPO eq. 3
//! ℓ = min(ℓ, −A c)            when A < 0                 dual-clip
//!   + β · KL(π_θ‖π_ref)                                  GRPO eq. 3-4
//! L = Σ_t w_t ℓ_t − c_H Σ_t w_t H_t                      entropy bonus
//! ```
//!
//! The aggregation weights `w` implement verl's `agg_loss` modes. They are
//! computed from the *whole mini-batch* (token count, sequence count), so
//! that the loss of a micro-batch or of one data-parallel shard is an exact
//! part of the mini-batch loss: summing shard gradients gives the full-batch
//! gradient (TRL's `num_items_in_batch` does the same for DAPO).

use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::config::{CovRegularizer, LossAggregation, LossConfig};
use crate::error::{GrpoError, Result};
use crate::kl::kl_per_token;
use crate::rng::TrainRng;

/// Global counts of the mini-batch that normalize the loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNorm {
    /// Completions in the mini-batch.
    pub sequences: usize,
    /// Trained completion tokens in the mini-batch (valid and, for
    /// multi-turn episodes, policy-generated).
    pub tokens: usize,
    /// Constant horizon of `seq-mean-token-sum-norm` (Dr.GRPO).
    pub horizon: usize,
}

/// Aggregation weights `[n, width]` (row-major) for rows with the given
/// valid lengths (completions are right-padded: token `t` of row `i` is
/// valid iff `t < lens[i]`).
///
/// * token-mean: `1 / N_tokens`
/// * seq-mean-token-mean: `1 / (|o_i| · N_seq)`
/// * seq-mean-token-sum: `1 / N_seq`
/// * seq-mean-token-sum-norm: `1 / (N_seq · horizon)`
pub fn aggregation_weights(
    lens: &[usize],
    width: usize,
    mode: LossAggregation,
    norm: &BatchNorm,
) -> Vec<f32> {
    let mut mask = vec![0.0f32; lens.len() * width];
    for (i, &len) in lens.iter().enumerate() {
        for slot in &mut mask[i * width..i * width + len.min(width)] {
            *slot = 1.0;
        }
    }
    aggregation_weights_masked(&mask, width, mode, norm)
}

/// [`aggregation_weights`] for an arbitrary `[n, width]` 0/1 `mask` of
/// trained tokens (multi-turn episodes: inserted tokens are 0 anywhere in
/// the row). Masked tokens get weight 0 — hence no loss and no gradient —
/// and `|o_i|` counts only trained tokens (`norm.tokens` must do the same).
/// For a right-padded prefix mask this equals [`aggregation_weights`].
pub fn aggregation_weights_masked(
    mask: &[f32],
    width: usize,
    mode: LossAggregation,
    norm: &BatchNorm,
) -> Vec<f32> {
    let seqs = norm.sequences.max(1) as f64;
    let mut w = vec![0.0f32; mask.len()];
    if width == 0 {
        return w;
    }
    for (row_mask, row_w) in mask.chunks(width).zip(w.chunks_mut(width)) {
        let len = row_mask.iter().filter(|&&m| m > 0.0).count();
        let value = match mode {
            LossAggregation::TokenMean => 1.0 / norm.tokens.max(1) as f64,
            LossAggregation::SeqMeanTokenMean => 1.0 / (len.max(1) as f64 * seqs),
            LossAggregation::SeqMeanTokenSum => 1.0 / seqs,
            LossAggregation::SeqMeanTokenSumNorm => 1.0 / (seqs * norm.horizon.max(1) as f64),
        } as f32;
        for (slot, &m) in row_w.iter_mut().zip(row_mask) {
            if m > 0.0 {
                *slot = value;
            }
        }
    }
    w
}

/// Inputs of [`policy_loss`], all `[n, T]`.
#[derive(Debug, Clone)]
pub struct LossInputs<B: Backend> {
    /// Log-probs of the completion tokens under the current policy (carries
    /// the gradient).
    pub logp: Tensor<B, 2>,
    /// Log-probs under the policy that sampled the batch (no gradient).
    pub old_logp: Tensor<B, 2>,
    /// Log-probs under the frozen reference, when the KL loss is on.
    pub ref_logp: Option<Tensor<B, 2>>,
    /// Per-token entropy of the current policy, when the bonus is on.
    pub entropy: Option<Tensor<B, 2>>,
    /// Sequence advantage broadcast to every token.
    pub advantages: Tensor<B, 2>,
    /// 1 for trained completion tokens, 0 for padding and (multi-turn)
    /// inserted tokens.
    pub mask: Tensor<B, 2>,
    /// Aggregation weights from [`aggregation_weights`].
    pub weights: Tensor<B, 2>,
}

/// Scalar statistics of one loss evaluation. Every field is a *part* of the
/// mini-batch value (normalized by mini-batch counts), so values of shards
/// and micro-batches add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossStats {
    /// Aggregated policy-gradient term.
    pub pg_loss: f64,
    /// Aggregated KL term (before β), 0 without reference.
    pub kl: f64,
    /// Aggregated entropy, 0 when not computed.
    pub entropy: f64,
    /// Fraction of tokens where the ε clip was active.
    pub clip_frac: f64,
    /// Fraction of tokens where the dual clip was active.
    pub clip_frac_lower: f64,
    /// Mean of logπ_old − logπ_θ (verl `ppo_kl`).
    pub ppo_kl: f64,
    /// Fraction of tokens selected by Clip-Cov / KL-Cov.
    pub cov_frac: f64,
    /// Total loss.
    pub loss: f64,
}

impl LossStats {
    /// Adds another part.
    pub fn add(&mut self, o: &LossStats) {
        self.pg_loss += o.pg_loss;
        self.kl += o.kl;
        self.entropy += o.entropy;
        self.clip_frac += o.clip_frac;
        self.clip_frac_lower += o.clip_frac_lower;
        self.ppo_kl += o.ppo_kl;
        self.cov_frac += o.cov_frac;
        self.loss += o.loss;
    }

    /// Divides every field (averaging over inner epochs / mini-batches).
    pub fn scaled(mut self, by: f64) -> Self {
        let s = if by > 0.0 { 1.0 / by } else { 0.0 };
        self.pg_loss *= s;
        self.kl *= s;
        self.entropy *= s;
        self.clip_frac *= s;
        self.clip_frac_lower *= s;
        self.ppo_kl *= s;
        self.cov_frac *= s;
        self.loss *= s;
        self
    }
}

/// Loss tensor (scalar, `[1]`) plus statistics.
#[derive(Debug)]
pub struct LossOutput<B: Backend> {
    /// The differentiable loss.
    pub loss: Tensor<B, 1>,
    /// Statistics.
    pub stats: LossStats,
}

fn to_host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| GrpoError::Data(format!("{e:?}")))
}

/// Clip-Cov token selection (Cui et al. arXiv:2505.22617, Alg. "Clip-Cov";
/// verl `compute_policy_loss_clip_cov`). Returns 1 where the token keeps its
/// gradient, 0 where it is detached.
///
/// Candidates are valid tokens not clipped by the ε clip whose covariance
/// `(A_t − Ā)(logπ_t − \overline{logπ})` (means over valid tokens) lies
/// strictly inside `(lower, upper)`; `max(⌊ratio·N_valid⌋, 1)` of them are
/// picked uniformly at random.
#[allow(clippy::too_many_arguments)]
pub fn clip_cov_keep_mask(
    logp: &[f32],
    old_logp: &[f32],
    adv: &[f32],
    mask: &[f32],
    cfg: &LossConfig,
    ratio: f64,
    lower: f64,
    upper: f64,
    rng: &mut TrainRng,
) -> Vec<f32> {
    let valid: Vec<usize> = (0..mask.len()).filter(|&i| mask[i] > 0.0).collect();
    let mut keep = vec![1.0f32; mask.len()];
    if valid.is_empty() {
        return keep;
    }
    let n = valid.len() as f64;
    let adv_mean = valid.iter().map(|&i| adv[i] as f64).sum::<f64>() / n;
    let logp_mean = valid.iter().map(|&i| logp[i] as f64).sum::<f64>() / n;
    let mut candidates = Vec::new();
    for &i in &valid {
        let a = adv[i] as f64;
        let rho = (logp[i] as f64 - old_logp[i] as f64).exp();
        let l1 = -a * rho;
        let l2 = -a * rho.clamp(1.0 - cfg.clip_low, 1.0 + cfg.clip_high);
        if l2 > l1 {
            continue; // already clipped by the ordinary ε clip
        }
        let cov = (a - adv_mean) * (logp[i] as f64 - logp_mean);
        if cov > lower && cov < upper {
            candidates.push(i);
        }
    }
    let clip_num = ((ratio * n) as usize).max(1);
    if candidates.len() > clip_num {
        rng.shuffle(&mut candidates);
        candidates.truncate(clip_num);
    }
    for i in candidates {
        keep[i] = 0.0;
    }
    keep
}

/// KL-Cov token selection (arXiv:2505.22617, Alg. "KL-Cov"; verl
/// `compute_policy_loss_kl_cov`): the `max(1, ⌊ratio·N_valid⌋)` valid tokens
/// with the largest covariance get the `|logπ − logπ_old|` penalty. Returns 1
/// at selected tokens.
pub fn kl_cov_select_mask(logp: &[f32], adv: &[f32], mask: &[f32], ratio: f64) -> Vec<f32> {
    let valid: Vec<usize> = (0..mask.len()).filter(|&i| mask[i] > 0.0).collect();
    let mut sel = vec![0.0f32; mask.len()];
    if valid.is_empty() {
        return sel;
    }
    let n = valid.len() as f64;
    let adv_mean = valid.iter().map(|&i| adv[i] as f64).sum::<f64>() / n;
    let logp_mean = valid.iter().map(|&i| logp[i] as f64).sum::<f64>() / n;
    let mut scored: Vec<(f64, usize)> = valid
        .iter()
        .map(|&i| ((adv[i] as f64 - adv_mean) * (logp[i] as f64 - logp_mean), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let k = ((n * ratio) as usize).max(1);
    for &(_, i) in scored.iter().take(k) {
        sel[i] = 1.0;
    }
    sel
}

/// The per-token policy-gradient loss, KL, entropy bonus and aggregation.
///
/// `kl_beta` multiplies the KL term when `inputs.ref_logp` is given;
/// `rng` drives Clip-Cov's random pick.
pub fn policy_loss<B: Backend>(
    inputs: LossInputs<B>,
    cfg: &LossConfig,
    kl_beta: f64,
    norm: &BatchNorm,
    rng: &mut TrainRng,
) -> Result<LossOutput<B>> {
    let LossInputs {
        logp,
        old_logp,
        ref_logp,
        entropy,
        advantages,
        mask,
        weights,
    } = inputs;
    let device = logp.device();
    let dims = logp.dims();
    for (name, d) in [
        ("old_logp", old_logp.dims()),
        ("advantages", advantages.dims()),
        ("mask", mask.dims()),
        ("weights", weights.dims()),
    ] {
        if d != dims {
            return Err(GrpoError::Shape {
                context: "policy_loss",
                reason: format!("{name} is {d:?}, logp is {dims:?}"),
            });
        }
    }
    let tokens = norm.tokens.max(1) as f64;

    let log_ratio = (logp.clone() - old_logp.clone()).clamp(-20.0, 20.0);
    let ratio = log_ratio.clone().exp();
    let neg_adv = advantages.clone().neg();
    let pg1 = neg_adv.clone() * ratio.clone();
    let pg2 = neg_adv.clone() * ratio.clone().clamp(1.0 - cfg.clip_low, 1.0 + cfg.clip_high);
    let clipped_indicator = pg2.clone().greater(pg1.clone()).float() * mask.clone();
    let mut pg = pg1.clone().max_pair(pg2);
    let mut lower_indicator = mask.zeros_like();
    if let Some(c) = cfg.dual_clip {
        let pg3 = neg_adv.clone().mul_scalar(c);
        let negative = advantages.clone().lower_elem(0.0);
        lower_indicator =
            pg.clone().greater(pg3.clone()).float() * negative.clone().float() * mask.clone();
        let dual = pg.clone().min_pair(pg3);
        pg = pg.mask_where(negative, dual);
    }

    let mut cov_indicator = mask.zeros_like();
    match cfg.cov {
        CovRegularizer::None => {}
        CovRegularizer::ClipCov {
            ratio: frac,
            lower,
            upper,
        } => {
            let keep = clip_cov_keep_mask(
                &to_host(logp.clone().detach())?,
                &to_host(old_logp.clone())?,
                &to_host(advantages.clone())?,
                &to_host(mask.clone())?,
                cfg,
                frac,
                lower,
                upper,
                rng,
            );
            let keep = Tensor::<B, 2>::from_data(TensorData::new(keep, dims), &device);
            cov_indicator = (keep.clone().neg() + 1.0) * mask.clone();
            // verl's Clip-Cov uses the plain ε-clipped loss, without dual clip.
            pg = pg1.clone().max_pair(
                neg_adv.clone() * ratio.clone().clamp(1.0 - cfg.clip_low, 1.0 + cfg.clip_high),
            ) * keep;
        }
        CovRegularizer::KlCov { ratio: frac, coef } => {
            let sel = kl_cov_select_mask(
                &to_host(logp.clone().detach())?,
                &to_host(advantages.clone())?,
                &to_host(mask.clone())?,
                frac,
            );
            let sel = Tensor::<B, 2>::from_data(TensorData::new(sel, dims), &device);
            cov_indicator = sel.clone() * mask.clone();
            // KL-Cov replaces the clip: −Aρ everywhere, + coef·|log ρ| on the
            // selected tokens.
            pg = pg1 + log_ratio.clone().abs().mul_scalar(coef) * sel;
        }
    }

    let pg_term = (pg * weights.clone()).sum();
    let mut loss = pg_term.clone();
    let mut kl_term = None;
    if let Some(r) = ref_logp {
        let kl = kl_per_token(logp.clone(), r, cfg.kl.estimator);
        let term = (kl * weights.clone()).sum();
        loss = loss + term.clone().mul_scalar(kl_beta);
        kl_term = Some(term);
    }
    let mut ent_term = None;
    if let Some(h) = entropy {
        let term = (h * weights.clone()).sum();
        if cfg.entropy_coef != 0.0 {
            loss = loss - term.clone().mul_scalar(cfg.entropy_coef);
        }
        ent_term = Some(term);
    }

    // One host round-trip for every statistic.
    let zero = || Tensor::<B, 1>::zeros([1], &device);
    let stats_t = Tensor::cat(
        vec![
            pg_term.detach(),
            kl_term.map(|t| t.detach()).unwrap_or_else(zero),
            ent_term.map(|t| t.detach()).unwrap_or_else(zero),
            clipped_indicator.sum(),
            lower_indicator.sum(),
            ((old_logp - logp.detach()) * mask.clone()).sum(),
            cov_indicator.sum(),
            loss.clone().detach(),
        ],
        0,
    );
    let s = to_host(stats_t)?;
    let get = |i: usize| s.get(i).copied().unwrap_or(f32::NAN) as f64;
    let stats = LossStats {
        pg_loss: get(0),
        kl: get(1),
        entropy: get(2),
        clip_frac: get(3) / tokens,
        clip_frac_lower: get(4) / tokens,
        ppo_kl: get(5) / tokens,
        cov_frac: get(6) / tokens,
        loss: get(7),
    };
    Ok(LossOutput { loss, stats })
}
