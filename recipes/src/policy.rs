//! The bridge between the RL core and the model: a Qwen2-VL / Qwen2.5-VL
//! [`Qwen2VL`] behind `vlrl_grpo::Policy`. Only `recipes` knows both sides
//! (DESIGN.md: `grpo` knows nothing of Qwen, `qwen` nothing of RL).

use std::sync::Arc;

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, Int, Tensor, TensorData};
use vlrl::grpo::config::SamplingConfig;
use vlrl::grpo::error::{GrpoError, Result};
use vlrl::grpo::policy::{
    logprobs_from_logits, Completion, Policy, Prompt, SequenceBatch, TokenLogProbs,
};
use vlrl::grpo::rng::TrainRng;
use vlrl::qwen::{MultimodalBatch, Qwen2VL, SamplingParams, VisionInput};

/// The images of one prompt as preprocessed pixel patches (host memory,
/// shared by every completion of the prompt's group).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptVision {
    /// `[patches, patch_dim]`, row-major.
    pub pixel_values: Vec<f32>,
    pub patch_dim: usize,
    pub grid_thw: Vec<[usize; 3]>,
    /// Seconds per temporal patch of each *video* grid, in order: Qwen2.5-VL's
    /// `second_per_grid_ts` (`temporal_patch_size / sample_fps` in the HF
    /// processor), which spaces the temporal rotary ids by real time. Empty:
    /// the HF default of 1 s (what fps = 2 gives). Qwen2-VL ignores it.
    pub second_per_grid_t: Vec<f32>,
}

impl PromptVision {
    fn patches(&self) -> usize {
        self.pixel_values.len() / self.patch_dim.max(1)
    }
}

pub type VisionExtra = Arc<PromptVision>;

/// A VLM policy: the model plus how its generations end.
#[derive(Module, Debug)]
pub struct VlmPolicy<B: Backend> {
    pub model: Qwen2VL<B>,
    #[module(skip)]
    pub stop_tokens: Vec<u32>,
    #[module(skip)]
    pub pad_id: u32,
    /// Score completions that share a prompt with one prompt pass
    /// ([`Qwen2VL::completion_logits`]): the same log-probs, without running
    /// the prompt and its images once per completion. Off = one full
    /// forward per row (the reference the tests compare against).
    #[module(skip)]
    pub share_prompts: bool,
}

impl<B: Backend> VlmPolicy<B> {
    /// A policy that shares prompt passes when scoring (the default).
    pub fn new(model: Qwen2VL<B>, stop_tokens: Vec<u32>, pad_id: u32) -> Self {
        Self {
            model,
            stop_tokens,
            pad_id,
            share_prompts: true,
        }
    }
}

/// Stacks the images of several prompts (in order) into one vision input.
pub fn stack_vision<B: Backend>(
    extras: &[&PromptVision],
    device: &B::Device,
) -> Option<VisionInput<B>> {
    let patch_dim = extras.iter().map(|e| e.patch_dim).find(|&d| d > 0)?;
    let mut values = Vec::new();
    let mut grid_thw = Vec::new();
    for e in extras {
        values.extend_from_slice(&e.pixel_values);
        grid_thw.extend_from_slice(&e.grid_thw);
    }
    if values.is_empty() {
        return None;
    }
    let rows = values.len() / patch_dim;
    Some(VisionInput {
        pixel_values: Tensor::from_data(TensorData::new(values, [rows, patch_dim]), device),
        grid_thw,
    })
}

/// Whether each vision grid of a prompt is a video, read from the order of
/// its placeholder runs (`<|image_pad|>…` or `<|video_pad|>…`) in `ids`.
/// `None` when the ids hold no video placeholder or the runs do not match the
/// grids one to one (the grids then go to images, as before videos existed).
fn video_grids(ids: &[u32], grids: usize, image_token: u32, video_token: u32) -> Option<Vec<bool>> {
    if !ids.contains(&video_token) {
        return None;
    }
    let mut kinds = Vec::new();
    let mut previous = None;
    for &t in ids {
        if (t == image_token || t == video_token) && previous != Some(t) {
            kinds.push(t == video_token);
        }
        previous = Some(t);
    }
    (kinds.len() == grids).then_some(kinds)
}

/// Stacks the vision inputs of several rows (in order), routing each grid to
/// the images or the videos of the batch by the placeholder run it fills in
/// the row's ids (Qwen2-VL matches `<|image_pad|>` runs with images and
/// `<|video_pad|>` runs with videos, each in order). Rows without video
/// placeholders give exactly [`stack_vision`]'s images and no videos.
pub fn stack_vision_routed<B: Backend>(
    rows: &[(&[u32], &PromptVision)],
    image_token: u32,
    video_token: u32,
    device: &B::Device,
) -> (Option<VisionInput<B>>, Option<VisionInput<B>>) {
    if !rows.iter().any(|(ids, _)| ids.contains(&video_token)) {
        let extras: Vec<&PromptVision> = rows.iter().map(|(_, e)| *e).collect();
        return (stack_vision::<B>(&extras, device), None);
    }
    let mut images: Vec<PromptVision> = Vec::with_capacity(rows.len());
    let mut videos: Vec<PromptVision> = Vec::new();
    for (ids, extra) in rows {
        let Some(kinds) = video_grids(ids, extra.grid_thw.len(), image_token, video_token) else {
            images.push((*extra).clone());
            continue;
        };
        let (mut image, mut video) = (PromptVision::default(), PromptVision::default());
        let mut offset = 0;
        for (grid, is_video) in extra.grid_thw.iter().zip(kinds) {
            let rows = grid[0] * grid[1] * grid[2];
            let end = (offset + rows * extra.patch_dim).min(extra.pixel_values.len());
            let part = if is_video { &mut video } else { &mut image };
            part.pixel_values
                .extend_from_slice(&extra.pixel_values[offset.min(end)..end]);
            part.patch_dim = extra.patch_dim;
            part.grid_thw.push(*grid);
            offset = end;
        }
        images.push(image);
        videos.push(video);
    }
    let stack = |parts: &[PromptVision]| {
        let refs: Vec<&PromptVision> = parts.iter().collect();
        stack_vision::<B>(&refs, device)
    };
    (stack(&images), stack(&videos))
}

/// The batch's `second_per_grid_ts`, one entry per video in the order
/// [`stack_vision_routed`] stacks the videos; a video whose prompt gave no
/// value gets the HF default of 1 s. `None` when no prompt gave one (the
/// model's default for every video, exactly as before).
pub fn second_per_grid_ts(
    rows: &[(&[u32], &PromptVision)],
    image_token: u32,
    video_token: u32,
) -> Option<Vec<f32>> {
    if rows.iter().all(|(_, e)| e.second_per_grid_t.is_empty()) {
        return None;
    }
    let mut out = Vec::new();
    for (ids, extra) in rows {
        let Some(kinds) = video_grids(ids, extra.grid_thw.len(), image_token, video_token) else {
            continue;
        };
        let videos = kinds.iter().filter(|&&is_video| is_video).count();
        out.extend((0..videos).map(|i| extra.second_per_grid_t.get(i).copied().unwrap_or(1.0)));
    }
    Some(out)
}

fn policy_err(e: impl std::fmt::Display) -> GrpoError {
    GrpoError::Policy(e.to_string())
}

fn host_ids<B: Backend>(t: &Tensor<B, 2, Int>) -> Vec<Vec<u32>> {
    let [n, len] = t.dims();
    let flat: Vec<u32> = t.to_data().iter::<i64>().map(|v| v as u32).collect();
    (0..n)
        .map(|i| flat[i * len..(i + 1) * len].to_vec())
        .collect()
}

fn host_mask<B: Backend>(t: &Tensor<B, 2>) -> Vec<Vec<u8>> {
    let [n, len] = t.dims();
    let flat: Vec<u8> = t
        .to_data()
        .iter::<f32>()
        .map(|v| u8::from(v > 0.5))
        .collect();
    (0..n)
        .map(|i| flat[i * len..(i + 1) * len].to_vec())
        .collect()
}

impl<B: Backend> VlmPolicy<B> {
    /// Vision placeholders are never sampled: a completion containing one
    /// would be read back as an image slot when it is scored.
    fn suppressed(&self) -> Vec<u32> {
        let t = self.model.tokens();
        vec![t.image_token_id, t.video_token_id]
    }

    /// [`stack_vision_routed`] with this model's placeholder tokens.
    fn stack_routed<M: Backend>(
        &self,
        rows: &[(&[u32], &PromptVision)],
        device: &M::Device,
    ) -> (Option<VisionInput<M>>, Option<VisionInput<M>>) {
        let t = self.model.tokens();
        stack_vision_routed::<M>(rows, t.image_token_id, t.video_token_id, device)
    }

    /// [`second_per_grid_ts`] with this model's placeholder tokens.
    fn seconds(&self, rows: &[(&[u32], &PromptVision)]) -> Option<Vec<f32>> {
        let t = self.model.tokens();
        second_per_grid_ts(rows, t.image_token_id, t.video_token_id)
    }
}

impl<B: AutodiffBackend> Policy<B> for VlmPolicy<B> {
    type Extra = VisionExtra;

    fn sample(
        &self,
        prompts: &[Prompt<Self::Extra>],
        group_size: usize,
        sampling: &SamplingConfig,
        rng: &mut TrainRng,
    ) -> Result<Vec<Vec<Completion>>> {
        // Sampling needs no gradients: run the inner (non-autodiff) model.
        let model = self.model.valid();
        let device = model.language_model.embed_tokens.weight.device();
        let mut out = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            // The prompt runs once; its cache is copied for the group.
            let rows = [(prompt.ids.as_slice(), prompt.extra.as_ref())];
            let (images, videos) = self.stack_routed::<B::InnerBackend>(&rows, &device);
            let batch = MultimodalBatch {
                input_ids: vec![prompt.ids.clone()],
                attention_mask: vec![vec![1; prompt.ids.len()]],
                images,
                videos,
                second_per_grid_ts: self.seconds(&rows),
            };
            let params = SamplingParams {
                max_new_tokens: sampling.max_new_tokens,
                temperature: sampling.temperature as f32,
                top_p: (sampling.top_p < 1.0).then_some(sampling.top_p as f32),
                stop_tokens: self.stop_tokens.clone(),
                suppress_tokens: self.suppressed(),
                seed: rng.next_u64(),
                ..Default::default()
            };
            let generation = model
                .generate_copies(&batch, group_size, self.pad_id, &params)
                .map_err(policy_err)?;
            out.push(
                generation
                    .tokens
                    .into_iter()
                    .zip(generation.logprobs)
                    .zip(generation.finished)
                    .map(|((ids, logprobs), finished)| Completion {
                        ids,
                        logprobs,
                        truncated: !finished,
                    })
                    .collect(),
            );
        }
        Ok(out)
    }

    fn token_logprobs(
        &self,
        batch: &SequenceBatch<B, Self::Extra>,
        sampling: &SamplingConfig,
        with_entropy: bool,
    ) -> Result<TokenLogProbs<B>> {
        let logits = self.scored_logits(&self.model, batch, sampling)?;
        let (logp, entropy) =
            logprobs_from_logits(logits, batch.completion_ids.clone(), with_entropy);
        Ok(TokenLogProbs { logp, entropy })
    }

    /// Old / reference log-probs: the same pass on the inner backend, so no
    /// autodiff graph is recorded.
    fn token_logprobs_no_grad(
        &self,
        batch: &SequenceBatch<B, Self::Extra>,
        sampling: &SamplingConfig,
    ) -> Result<Tensor<B, 2>> {
        let model = self.model.valid();
        let logits = self.scored_logits(&model, batch, sampling)?;
        let ids = batch.completion_ids.clone().inner();
        Ok(Tensor::from_inner(
            logprobs_from_logits(logits, ids, false).0,
        ))
    }
}

impl<B: Backend> VlmPolicy<B> {
    /// The model inputs of `rows` of a scoring batch: each row's ids and
    /// mask, and its images stacked in row order.
    fn model_inputs<M: Backend>(
        &self,
        rows: Vec<(Vec<u32>, Vec<u8>, &PromptVision)>,
    ) -> MultimodalBatch<M> {
        let (input_ids, attention_mask): (Vec<Vec<u32>>, Vec<Vec<u8>>) = rows
            .iter()
            .map(|(ids, mask, _)| (ids.clone(), mask.clone()))
            .unzip();
        let vision: Vec<(&[u32], &PromptVision)> = input_ids
            .iter()
            .map(Vec::as_slice)
            .zip(rows.iter().map(|(_, _, v)| *v))
            .collect();
        let (images, videos) = self.stack_routed::<M>(&vision, &Default::default());
        let second_per_grid_ts = self.seconds(&vision);
        MultimodalBatch {
            input_ids,
            attention_mask,
            images,
            videos,
            second_per_grid_ts,
        }
    }

    /// Logits `[N, C, V]` predicting each row's completion tokens. Rows that
    /// share a prompt (a GRPO group) share one prompt pass when
    /// `share_prompts` is on and no completion holds vision placeholders
    /// (multi-turn episodes append images, so they take the full pass).
    fn completion_logits<M: Backend, A: AutodiffBackend>(
        &self,
        model: &Qwen2VL<M>,
        batch: &SequenceBatch<A, VisionExtra>,
    ) -> Result<Tensor<M, 3>> {
        let p = batch.prompt_ids.dims()[1];
        let c = batch.completion_ids.dims()[1];
        let prompt_mask = host_mask(&batch.prompt_mask);
        let completion_mask = host_mask(&batch.completion_mask);
        // Padded slots hold arbitrary ids: make them the pad token so they
        // can never be mistaken for image placeholders.
        let real = |ids: Vec<Vec<u32>>, masks: &[Vec<u8>]| -> Vec<Vec<u32>> {
            ids.into_iter()
                .zip(masks)
                .map(|(row, mask)| {
                    row.into_iter()
                        .zip(mask)
                        .map(|(t, &m)| if m == 1 { t } else { self.pad_id })
                        .collect()
                })
                .collect()
        };
        let prompts = real(host_ids(&batch.prompt_ids), &prompt_mask);
        let completions = real(host_ids(&batch.completion_ids), &completion_mask);
        let vision = self.suppressed();
        let text_only = !completions.iter().flatten().any(|t| vision.contains(t));
        if self.share_prompts && text_only {
            let (firsts, prompt_of_row) = distinct_prompts(&prompts, &prompt_mask, &batch.extras);
            let unique = firsts
                .iter()
                .map(|&i| {
                    (
                        prompts[i].clone(),
                        prompt_mask[i].clone(),
                        batch.extras[i].as_ref(),
                    )
                })
                .collect();
            let inputs = self.model_inputs::<M>(unique);
            return model
                .completion_logits(&inputs, &prompt_of_row, &completions, &completion_mask)
                .map_err(policy_err);
        }
        let rows = (0..prompts.len())
            .map(|i| {
                let mut ids = prompts[i].clone();
                ids.extend(&completions[i]);
                let mask = prompt_mask[i]
                    .iter()
                    .chain(&completion_mask[i])
                    .copied()
                    .collect();
                (ids, mask, batch.extras[i].as_ref())
            })
            .collect();
        let logits = model
            .forward(&self.model_inputs::<M>(rows))
            .map_err(policy_err)?;
        // Position t predicts token t+1: the completion is predicted by the C
        // positions ending one before the last.
        Ok(logits.narrow(1, p - 1, c))
    }

    /// Next-token logits `[N, C, V]` of the completion positions, divided by
    /// the sampling temperature, with the sampling-time suppression applied.
    fn scored_logits<M: Backend, A: AutodiffBackend>(
        &self,
        model: &Qwen2VL<M>,
        batch: &SequenceBatch<A, VisionExtra>,
        sampling: &SamplingConfig,
    ) -> Result<Tensor<M, 3>> {
        let logits = self.completion_logits(model, batch)?;
        let [n, c, vocab] = logits.dims();
        let logits = logits / sampling.temperature.max(1e-6);
        // A large finite value keeps the entropy (p · log p = 0 · finite)
        // free of NaN.
        let mut suppress = vec![false; vocab];
        for t in self.suppressed() {
            if let Some(s) = suppress.get_mut(t as usize) {
                *s = true;
            }
        }
        let device = logits.device();
        let suppress: Tensor<M, 3, Bool> =
            Tensor::from_data(TensorData::new(suppress, [1, 1, vocab]), &device);
        Ok(logits.mask_fill(suppress.expand([n, c, vocab]), -1e30))
    }
}

/// The distinct prompts of a batch: the first row of each, and for every
/// row the index of its prompt among them. Rows share a prompt when their
/// ids, mask and images are equal (the rows of one group share one `Arc`,
/// so the image comparison is usually a pointer check).
fn distinct_prompts(
    prompts: &[Vec<u32>],
    masks: &[Vec<u8>],
    extras: &[VisionExtra],
) -> (Vec<usize>, Vec<usize>) {
    let mut firsts: Vec<usize> = Vec::new();
    let mut prompt_of_row = Vec::with_capacity(prompts.len());
    for i in 0..prompts.len() {
        let same = |&j: &usize| {
            prompts[j] == prompts[i]
                && masks[j] == masks[i]
                && (Arc::ptr_eq(&extras[j], &extras[i]) || extras[j] == extras[i])
        };
        match firsts.iter().position(same) {
            Some(u) => prompt_of_row.push(u),
            None => {
                prompt_of_row.push(firsts.len());
                firsts.push(i);
            }
        }
    }
    (firsts, prompt_of_row)
}

/// Total patches of a prompt's images (for logging and checks).
pub fn vision_patches(extra: &PromptVision) -> usize {
    extra.patches()
}
