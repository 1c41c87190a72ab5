//! Autoregressive generation with a KV cache: batched prompts with left
//! padding, greedy / temperature / top-k / top-p / repetition penalty, stop
//! tokens, seeds; returns the sampled ids and their log-probs (GRPO's "old"
//! log-probs come from here).
//!
//! The token choice runs on the host over one row of logits at a time: it is
//! cheap next to the forward pass and keeps sampling bit-identical across
//! backends for a given seed.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{QwenError, Result};
use crate::qwen2::{AttentionMask, Qwen2};
use crate::rope::text_position_ids;

/// How to choose tokens. `temperature == 0` means greedy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    pub max_new_tokens: usize,
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    /// HF's CTRL-style penalty (1.0 = off) over prompt and generated tokens.
    pub repetition_penalty: f32,
    /// Generation of a row ends after any of these (it is kept in the output).
    pub stop_tokens: Vec<u32>,
    /// Tokens never sampled (e.g. a VLM's image/video placeholders, which
    /// would be re-read as vision slots when the completion is scored).
    /// Their probability is zero in the returned log-probs too.
    pub suppress_tokens: Vec<u32>,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repetition_penalty: 1.0,
            stop_tokens: Vec::new(),
            suppress_tokens: Vec::new(),
            seed: 0,
        }
    }
}

/// The generated continuation of each prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// New tokens per row, up to and including the first stop token.
    pub tokens: Vec<Vec<u32>>,
    /// Log-prob of each new token under the model's distribution at the
    /// sampling temperature (before top-k / top-p truncation, as TRL and verl
    /// compute them), `log_softmax(logits / T)`; T = 1 when greedy.
    pub logprobs: Vec<Vec<f32>>,
    /// Whether each row ended on a stop token (false: hit `max_new_tokens`).
    pub finished: Vec<bool>,
}

/// What generation starts from: prompt embeddings and M-RoPE positions, so
/// text-only and vision-language prompts share one decoding loop.
pub struct Prefill<B: Backend> {
    /// `[batch, seq, hidden]`
    pub embeds: Tensor<B, 3>,
    /// `[3, batch, seq]`
    pub position_ids: Tensor<B, 3, Int>,
    /// 1 = real token, 0 = left padding; one row per prompt, `seq` long.
    pub padding: Vec<Vec<u8>>,
    /// Per row: position of the next token = tokens seen so far + delta
    /// (HF's `rope_deltas`; for left-padded text it is −#padding).
    pub rope_deltas: Vec<i64>,
    /// Prompt token ids per row (unpadded), for the repetition penalty.
    pub prompt_ids: Vec<Vec<u32>>,
}

/// Left-pads `prompts` with `pad_id`: `(ids [batch, max_len], mask rows)`.
pub fn left_pad(prompts: &[Vec<u32>], pad_id: u32) -> (Vec<Vec<u32>>, Vec<Vec<u8>>) {
    let len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    prompts
        .iter()
        .map(|p| {
            let pad = len - p.len();
            let mut ids = vec![pad_id; pad];
            ids.extend_from_slice(p);
            let mut mask = vec![0u8; pad];
            mask.extend(std::iter::repeat_n(1u8, p.len()));
            (ids, mask)
        })
        .unzip()
}

impl<B: Backend> Qwen2<B> {
    /// Text prompts → a [`Prefill`] (left-padded, HF generate's positions).
    pub fn text_prefill(
        &self,
        prompts: &[Vec<u32>],
        pad_id: u32,
        device: &B::Device,
    ) -> Result<Prefill<B>> {
        if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
            return Err(QwenError::Input(
                "every prompt needs at least one token".into(),
            ));
        }
        let vocab = self.config().vocab_size as u32;
        if let Some(bad) = prompts.iter().flatten().find(|&&t| t >= vocab) {
            return Err(QwenError::Input(format!(
                "token id {bad} is outside the vocabulary (size {vocab})"
            )));
        }
        let (ids, padding) = left_pad(prompts, pad_id);
        let (batch, seq) = (ids.len(), ids[0].len());
        let flat: Vec<i64> = ids.iter().flatten().map(|&t| i64::from(t)).collect();
        let input: Tensor<B, 2, Int> =
            Tensor::from_data(TensorData::new(flat, [batch, seq]), device);
        let position_ids = text_position_ids::<B>(batch, seq, 0, Some(&padding), device);
        let rope_deltas = padding
            .iter()
            .map(|m| -(m.iter().filter(|&&x| x == 0).count() as i64))
            .collect();
        Ok(Prefill {
            embeds: self.embed(input),
            position_ids,
            padding,
            rope_deltas,
            prompt_ids: prompts.to_vec(),
        })
    }

    /// Generates from text prompts (token ids). See [`Qwen2::generate_from`].
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        pad_id: u32,
        params: &SamplingParams,
        use_cache: bool,
    ) -> Result<Generation> {
        let device = self.embed_tokens.weight.device();
        let prefill = self.text_prefill(prompts, pad_id, &device)?;
        if use_cache {
            self.generate_from(prefill, pad_id, params)
        } else {
            self.generate_uncached(prompts, pad_id, params)
        }
    }

    /// The decoding loop over a KV cache.
    pub fn generate_from(
        &self,
        prefill: Prefill<B>,
        pad_id: u32,
        params: &SamplingParams,
    ) -> Result<Generation> {
        self.generate_copies_from(prefill, 1, pad_id, params)
    }

    /// [`Qwen2::generate_from`] with `copies` continuations of every prompt
    /// row (rows `r·copies .. (r+1)·copies` of the output continue prompt
    /// `r`): the prompt runs once and its KV cache is copied, where a batch
    /// of repeated prompts would run it `copies` times (a GRPO group). The
    /// samples equal those of the repeated batch under the same seed.
    pub fn generate_copies_from(
        &self,
        prefill: Prefill<B>,
        copies: usize,
        pad_id: u32,
        params: &SamplingParams,
    ) -> Result<Generation> {
        let device = prefill.embeds.device();
        let [prompts, seq, _] = prefill.embeds.dims();
        let copies = copies.max(1);
        let batch = prompts * copies;
        let mut rng = StdRng::seed_from_u64(params.seed);
        let prompt_padding = prefill.padding;
        let any_padding = prompt_padding.iter().flatten().any(|&m| m == 0);
        let mut cache = self.new_cache();
        let mask = AttentionMask::causal(
            prompts,
            seq,
            0,
            any_padding.then_some(prompt_padding.as_slice()),
            &device,
        );
        let hidden = self.forward_embeds(
            prefill.embeds,
            prefill.position_ids,
            &mask,
            Some(&mut cache),
        );
        let mut logits = self.last_logits(hidden)?;
        let rope_deltas = repeat_rows(prefill.rope_deltas, copies);
        if copies > 1 {
            let rows: Vec<i64> = (0..batch).map(|r| (r / copies) as i64).collect();
            cache.select_rows(Tensor::from_data(TensorData::new(rows, [batch]), &device));
            let vocab = self.config().vocab_size;
            logits = logits
                .chunks(vocab)
                .flat_map(|row| std::iter::repeat_n(row, copies).flatten().copied())
                .collect();
        }
        let mut padding = repeat_rows(prompt_padding, copies);
        let mut history = repeat_rows(prefill.prompt_ids, copies);
        let mut out = Generation {
            tokens: vec![Vec::new(); batch],
            logprobs: vec![Vec::new(); batch],
            finished: vec![false; batch],
        };
        for _ in 0..params.max_new_tokens {
            let mut next = Vec::with_capacity(batch);
            for (row, row_logits) in logits.chunks_mut(self.config().vocab_size).enumerate() {
                if out.finished[row] {
                    next.push(pad_id);
                    continue;
                }
                let (token, logprob) = choose_token(row_logits, &history[row], params, &mut rng);
                out.tokens[row].push(token);
                out.logprobs[row].push(logprob);
                history[row].push(token);
                out.finished[row] = params.stop_tokens.contains(&token);
                next.push(token);
            }
            if out.finished.iter().all(|&f| f)
                || out.tokens.iter().all(|t| t.len() >= params.max_new_tokens)
            {
                break;
            }
            let seen = cache.seq_len();
            for m in padding.iter_mut() {
                m.push(1);
            }
            let positions: Vec<i64> = rope_deltas.iter().map(|d| seen as i64 + d).collect();
            let pos: Tensor<B, 2, Int> =
                Tensor::from_data(TensorData::new(positions, [batch, 1]), &device);
            let pos = pos.unsqueeze_dim::<3>(0).repeat_dim(0, 3);
            let ids: Vec<i64> = next.iter().map(|&t| i64::from(t)).collect();
            let input: Tensor<B, 2, Int> =
                Tensor::from_data(TensorData::new(ids, [batch, 1]), &device);
            let mask = AttentionMask::causal(
                batch,
                1,
                seen,
                any_padding.then_some(padding.as_slice()),
                &device,
            );
            let hidden = self.forward_embeds(self.embed(input), pos, &mask, Some(&mut cache));
            logits = self.last_logits(hidden)?;
        }
        Ok(out)
    }

    /// Reference path without a cache: re-runs the whole sequence each step.
    /// Slow; kept to prove the cached path exact (text prompts only).
    fn generate_uncached(
        &self,
        prompts: &[Vec<u32>],
        pad_id: u32,
        params: &SamplingParams,
    ) -> Result<Generation> {
        let device = self.embed_tokens.weight.device();
        let batch = prompts.len();
        let mut rng = StdRng::seed_from_u64(params.seed);
        let mut seqs = prompts.to_vec();
        let mut out = Generation {
            tokens: vec![Vec::new(); batch],
            logprobs: vec![Vec::new(); batch],
            finished: vec![false; batch],
        };
        for _ in 0..params.max_new_tokens {
            let prefill = self.text_prefill(&seqs, pad_id, &device)?;
            let [b, s, _] = prefill.embeds.dims();
            let any_padding = prefill.padding.iter().flatten().any(|&m| m == 0);
            let mask = AttentionMask::causal(
                b,
                s,
                0,
                any_padding.then_some(prefill.padding.as_slice()),
                &device,
            );
            let hidden = self.forward_embeds(prefill.embeds, prefill.position_ids, &mask, None);
            let mut logits = self.last_logits(hidden)?;
            for (row, row_logits) in logits.chunks_mut(self.config().vocab_size).enumerate() {
                if out.finished[row] {
                    continue;
                }
                let (token, logprob) = choose_token(row_logits, &seqs[row], params, &mut rng);
                out.tokens[row].push(token);
                out.logprobs[row].push(logprob);
                seqs[row].push(token);
                out.finished[row] = params.stop_tokens.contains(&token);
            }
            if out.finished.iter().all(|&f| f) {
                break;
            }
        }
        Ok(out)
    }

    /// Logits of the last position of each row, on the host: `batch * vocab`.
    fn last_logits(&self, hidden: Tensor<B, 3>) -> Result<Vec<f32>> {
        let [b, s, h] = hidden.dims();
        let last = hidden.narrow(1, s - 1, 1).reshape([b, 1, h]);
        self.lm_logits(last)
            .into_data()
            .into_vec::<f32>()
            .map_err(|e| QwenError::Input(format!("logits are not f32: {e:?}")))
    }
}

/// Every row `copies` times in a row.
fn repeat_rows<T: Clone>(rows: Vec<T>, copies: usize) -> Vec<T> {
    rows.into_iter()
        .flat_map(|r| std::iter::repeat_n(r, copies))
        .collect()
}

/// Picks one token from a row of logits (modified in place) and returns it
/// with its log-prob at the sampling temperature. HF's processor order:
/// repetition penalty, temperature, top-k, top-p.
pub fn choose_token(
    logits: &mut [f32],
    history: &[u32],
    params: &SamplingParams,
    rng: &mut StdRng,
) -> (u32, f32) {
    if params.repetition_penalty != 1.0 {
        let p = params.repetition_penalty;
        let mut seen = history.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for &t in &seen {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = if *l < 0.0 { *l * p } else { *l / p };
            }
        }
    }
    for &t in &params.suppress_tokens {
        if let Some(l) = logits.get_mut(t as usize) {
            *l = f32::NEG_INFINITY;
        }
    }
    let greedy = params.temperature <= 0.0;
    let t = if greedy { 1.0 } else { params.temperature };
    for l in logits.iter_mut() {
        *l /= t;
    }
    let log_probs = log_softmax(logits);
    if greedy {
        // First maximum, as torch.argmax does.
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        return (best as u32, log_probs[best]);
    }
    // Candidates sorted by probability, then truncated by top-k and top-p.
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| log_probs[b].total_cmp(&log_probs[a]).then(a.cmp(&b)));
    if let Some(k) = params.top_k.filter(|&k| k > 0) {
        order.truncate(k);
    }
    if let Some(p) = params.top_p.filter(|&p| p < 1.0) {
        let mut cum = 0.0f32;
        let mut keep = 0;
        for &i in &order {
            cum += log_probs[i].exp();
            keep += 1;
            if cum >= p {
                break;
            }
        }
        order.truncate(keep.max(1));
    }
    let weights: Vec<f32> = order.iter().map(|&i| log_probs[i].exp()).collect();
    let total: f32 = weights.iter().sum();
    let mut x = rng.random::<f32>() * total;
    let mut pick = order[order.len() - 1];
    for (&i, &w) in order.iter().zip(&weights) {
        if x < w {
            pick = i;
            break;
        }
        x -= w;
    }
    (pick as u32, log_probs[pick])
}

fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let lse = max + sum.ln();
    logits.iter().map(|&l| l - lse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_first_max_and_logprob_is_normalized() {
        let mut l = vec![1.0, 3.0, 3.0, -1.0];
        let (t, lp) = choose_token(
            &mut l,
            &[],
            &SamplingParams::default(),
            &mut StdRng::seed_from_u64(0),
        );
        assert_eq!(t, 1);
        let expect = 3.0 - (1f32.exp() + 2.0 * 3f32.exp() + (-1f32).exp()).ln();
        assert!((lp - expect).abs() < 1e-6);
    }

    #[test]
    fn suppressed_tokens_are_never_chosen() {
        let params = SamplingParams {
            temperature: 1.0,
            suppress_tokens: vec![2],
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            let mut l = vec![0.0, 0.0, 9.0];
            let (t, lp) = choose_token(&mut l, &[], &params, &mut rng);
            assert_ne!(t, 2);
            assert!((lp - 0.5f32.ln()).abs() < 1e-6);
        }
    }

    #[test]
    fn top_k_one_is_greedy() {
        let params = SamplingParams {
            temperature: 1.0,
            top_k: Some(1),
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..20 {
            let mut l = vec![0.5, 0.1, 2.0, 1.9];
            assert_eq!(choose_token(&mut l, &[], &params, &mut rng).0, 2);
        }
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // probs ≈ [0.64, 0.24, 0.09, 0.03]: top_p 0.8 keeps tokens 0 and 1.
        let params = SamplingParams {
            temperature: 1.0,
            top_p: Some(0.8),
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let mut l = vec![3.0, 2.0, 1.0, 0.0];
            assert!(choose_token(&mut l, &[], &params, &mut rng).0 < 2);
        }
    }

    #[test]
    fn repetition_penalty_follows_hf_sign_rule() {
        let params = SamplingParams {
            repetition_penalty: 2.0,
            ..Default::default()
        };
        let mut l = vec![2.0, 1.5, -1.0];
        let (t, _) = choose_token(&mut l, &[0], &params, &mut StdRng::seed_from_u64(0));
        assert_eq!(t, 1);
        assert_eq!(l[0], 1.0);
        let mut l = vec![-1.0, -3.0];
        choose_token(&mut l, &[0], &params, &mut StdRng::seed_from_u64(0));
        assert_eq!(l[0], -2.0);
    }

    #[test]
    fn same_seed_same_samples() {
        let params = SamplingParams {
            temperature: 1.0,
            ..Default::default()
        };
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|_| choose_token(&mut [0.1, 0.2, 0.3, 0.4], &[], &params, &mut rng).0)
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn left_pad_pads_on_the_left() {
        let (ids, mask) = left_pad(&[vec![5, 6, 7], vec![9]], 0);
        assert_eq!(ids, vec![vec![5, 6, 7], vec![0, 0, 9]]);
        assert_eq!(mask, vec![vec![1, 1, 1], vec![0, 0, 1]]);
    }
}
