//! The one interface between the RL core and a model.
//!
//! `vlrl-grpo` trains any burn module that can (a) sample completions and
//! (b) score given completions token by token. Everything else — rewards,
//! advantages, losses, optimizer, checkpoints — lives in this crate, so a
//! model crate implements two methods and gets GRPO, Dr.GRPO and DAPO.
//!
//! ## Layout conventions (the same as TRL's `GRPOTrainer`)
//!
//! * Prompts are **left-padded** to the longest prompt of the batch:
//!   `prompt_ids [N, P]` with `prompt_mask [N, P]` (1 = real token).
//! * Completions are **right-padded**: `completion_ids [N, C]` with
//!   `completion_mask [N, C]`; `completion_lens[i]` real tokens each.
//! * The model sees `cat(prompt_ids, completion_ids)` with
//!   `cat(prompt_mask, completion_mask)` as attention mask, and returns the
//!   log-prob of each completion token given everything before it — i.e. the
//!   last `C` positions' next-token distributions (TRL `logits_to_keep = C`),
//!   with logits divided by the sampling temperature.
//! * Masks are float tensors (1.0 / 0.0) so that they multiply directly.
//! * Values at padded completion positions must be finite (any value).

use burn::module::AutodiffModule;
use burn::tensor::{backend::AutodiffBackend, Int, Tensor};

use crate::config::SamplingConfig;
use crate::error::Result;
use crate::rng::TrainRng;

/// One prompt of the data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt<E> {
    /// Token ids of the rendered prompt (chat template applied).
    pub ids: Vec<u32>,
    /// Model-specific extra inputs (e.g. pixel patches and `grid_thw` of a
    /// VLM); `()` for text-only policies.
    pub extra: E,
    /// Data-source tag; metrics are split by it.
    pub source: String,
    /// Opaque ground truth for the reward function (answer text, JSON …).
    pub target: String,
}

/// One sampled completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Generated token ids, including the end-of-sequence token if one was
    /// generated (it is trained on, as in TRL).
    pub ids: Vec<u32>,
    /// Log-prob of each sampled token under the sampling policy (same length
    /// as `ids`).
    pub logprobs: Vec<f32>,
    /// True when generation stopped at `max_new_tokens` without an EOS.
    pub truncated: bool,
}

/// A padded batch of prompt + completion sequences on one device.
#[derive(Debug, Clone)]
pub struct SequenceBatch<B: AutodiffBackend, E> {
    /// `[N, P]` left-padded prompt ids.
    pub prompt_ids: Tensor<B, 2, Int>,
    /// `[N, P]` prompt mask.
    pub prompt_mask: Tensor<B, 2>,
    /// `[N, C]` right-padded completion ids.
    pub completion_ids: Tensor<B, 2, Int>,
    /// `[N, C]` completion mask.
    pub completion_mask: Tensor<B, 2>,
    /// Real prompt length of each row.
    pub prompt_lens: Vec<usize>,
    /// Real completion length of each row.
    pub completion_lens: Vec<usize>,
    /// Extra inputs of each row's prompt (rows of one group share a prompt).
    pub extras: Vec<E>,
}

/// Per-token outputs of [`Policy::token_logprobs`].
#[derive(Debug, Clone)]
pub struct TokenLogProbs<B: AutodiffBackend> {
    /// `[N, C]` log π(completion_t | prefix), differentiable.
    pub logp: Tensor<B, 2>,
    /// `[N, C]` entropy of the next-token distribution at each completion
    /// position (differentiable), when requested.
    pub entropy: Option<Tensor<B, 2>>,
}

/// A trainable policy: a burn module that samples and scores completions.
///
/// Implementations keep their own generation details (KV cache, stop
/// tokens, chat template) and must be deterministic given the `rng`.
pub trait Policy<B: AutodiffBackend>: AutodiffModule<B> + Sized {
    /// Per-prompt extra model inputs (pixel values, image grids, …).
    /// Cloned once per completion row, so wrap large host buffers in `Arc`.
    type Extra: Clone + Send + Sync + std::fmt::Debug + 'static;

    /// Samples `group_size` completions for every prompt, without gradients.
    /// Returns one `Vec` of `group_size` completions per prompt, in order.
    fn sample(
        &self,
        prompts: &[Prompt<Self::Extra>],
        group_size: usize,
        sampling: &SamplingConfig,
        rng: &mut TrainRng,
    ) -> Result<Vec<Vec<Completion>>>;

    /// Log-probs (and optionally entropies) of the given completions, with
    /// gradients w.r.t. the module's parameters.
    fn token_logprobs(
        &self,
        batch: &SequenceBatch<B, Self::Extra>,
        sampling: &SamplingConfig,
        with_entropy: bool,
    ) -> Result<TokenLogProbs<B>>;

    /// Log-probs without gradients (old and reference policies). The default
    /// runs [`Policy::token_logprobs`] and detaches; models should override
    /// it with a cheaper pass on the inner backend.
    fn token_logprobs_no_grad(
        &self,
        batch: &SequenceBatch<B, Self::Extra>,
        sampling: &SamplingConfig,
    ) -> Result<Tensor<B, 2>> {
        Ok(self.token_logprobs(batch, sampling, false)?.logp.detach())
    }
}

/// Per-token log-probs (and entropies) of `ids [N, C]` under `logits
/// [N, C, V]` (already divided by the temperature): the last step of every
/// [`Policy::token_logprobs`], shared so each model only produces logits.
pub fn logprobs_from_logits<B: burn::tensor::backend::Backend>(
    logits: Tensor<B, 3>,
    ids: Tensor<B, 2, Int>,
    with_entropy: bool,
) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
    let [n, c] = ids.dims();
    let logp_all = burn::tensor::activation::log_softmax(logits, 2);
    let logp = logp_all
        .clone()
        .gather(2, ids.reshape([n, c, 1]))
        .reshape([n, c]);
    let entropy = with_entropy.then(|| {
        (logp_all.clone().exp() * logp_all)
            .sum_dim(2)
            .reshape([n, c])
            .neg()
    });
    (logp, entropy)
}
