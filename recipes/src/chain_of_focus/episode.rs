//! Multi-turn focus episodes: generate a turn, let `FocusLoop` decide, append
//! the zoomed crop as a new user image turn, generate again — batched over
//! rows, for RL sampling (temperature) and evaluation (greedy) alike — and
//! the [`FocusPolicy`] that trains on whole episodes with the inserted turns
//! masked out of the loss.

use std::sync::Arc;

use anyhow::{Context, Result};
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use image::RgbImage;
use serde::{Deserialize, Serialize};
use vlrl::grounding::{
    CoordSpace, FocusAction, FocusConfig, FocusLoop, ImageFrame, ZoomConfig, ZoomPlan,
};
use vlrl::grpo::config::SamplingConfig;
use vlrl::grpo::error::GrpoError;
use vlrl::grpo::policy::{Completion, Episode, Policy, Prompt, SequenceBatch, TokenLogProbs};
use vlrl::grpo::rng::TrainRng;
use vlrl::qwen::{expand_vision_placeholders, MultimodalBatch, Qwen2VL, SamplingParams};
use vlrl::rewards::{Registry, RewardContext};
use vlrl::vision::{preprocess_images, ProcessorConfig};

use crate::eval::ChoiceTarget;
use crate::policy::{stack_vision, PromptVision, VisionExtra, VlmPolicy};
use crate::vl_prompt::VlPrompter;

/// The user turn that carries a zoomed crop (after the model's `<|im_end|>`),
/// in Qwen2-VL's chat layout, ending with the next assistant header.
pub const ZOOM_TURN: &str = "\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Zoomed view.<|im_end|>\n<|im_start|>assistant\n";

/// Everything an episode needs besides the model: tokenizer, the processors
/// of the first view and of crops, the loop rules and the special ids.
pub struct FocusEnv {
    /// First-view processor (its `max_pixels` is the first-view budget).
    pub prompter: VlPrompter,
    /// Processor of zoomed crops.
    pub crop_processor: ProcessorConfig,
    pub focus: FocusConfig,
    pub stop_tokens: Vec<u32>,
    pub pad_id: u32,
    im_end: u32,
    /// Ids of `<|im_start|>assistant\n`: where an inserted turn ends.
    header: Vec<u32>,
}

impl std::fmt::Debug for FocusEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FocusEnv")
            .field("focus", &self.focus)
            .field("stop_tokens", &self.stop_tokens)
            .finish_non_exhaustive()
    }
}

impl FocusEnv {
    /// `view_pixels` / `crop_pixels`: the pixel budgets of the first view
    /// and of each crop; `max_turns` model turns, the answer included;
    /// `box_space`: how boxes that do not name their space are read
    /// (Qwen2.5-VL's JSON `bbox_2d`: resized pixels; Qwen2-VL's
    /// `<|box_start|>` tokens are always the 0–1000 grid).
    pub fn new(
        prompter: VlPrompter,
        view_pixels: usize,
        crop_pixels: usize,
        max_turns: u32,
        box_space: CoordSpace,
        stop_tokens: Vec<u32>,
        pad_id: u32,
    ) -> Result<Self> {
        let mut prompter = prompter;
        prompter.processor.max_pixels = view_pixels;
        prompter.processor.min_pixels = prompter.processor.min_pixels.min(view_pixels);
        let mut crop_processor = prompter.processor.clone();
        crop_processor.max_pixels = crop_pixels;
        crop_processor.min_pixels = crop_processor.min_pixels.min(crop_pixels);
        let focus = FocusConfig {
            max_turns,
            max_total_pixels: u64::MAX,
            box_space,
            min_box_side: 4.0,
            stop_on_invalid: true,
            zoom: ZoomConfig {
                context_frac: 0.0,
                context_px: 0.0,
                min_crop_size: 28,
                min_pixels: crop_pixels as u64,
                max_upscale: 4.0,
                max_pixels: crop_pixels as u64,
            },
            ..FocusConfig::default()
        };
        let tok = &prompter.tokenizer;
        let im_end = tok
            .token_id("<|im_end|>")
            .context("tokenizer lacks <|im_end|>")?;
        let header = tok.encode("<|im_start|>assistant\n")?;
        Ok(Self {
            prompter,
            crop_processor,
            focus,
            stop_tokens,
            pad_id,
            im_end,
            header,
        })
    }

    /// The prompt ids and first view of an image and a question.
    pub fn prompt(&self, image: Arc<RgbImage>, text: &str) -> Result<(Vec<u32>, FocusExtra)> {
        self.prompt_with(image, text, &self.prompter.processor)
    }

    /// How the first view maps `image`: where its boxes land, without
    /// building a prompt.
    pub fn view_frame(&self, image: &RgbImage) -> Result<ImageFrame> {
        frame_at(image, &self.prompter.processor)
    }

    /// A prompt whose only image is seen at the crop budget, as a zoomed
    /// crop is (`recipes zoom-base` teaches reading such views).
    pub fn crop_prompt(&self, crop: Arc<RgbImage>, text: &str) -> Result<(Vec<u32>, FocusExtra)> {
        self.prompt_with(crop, text, &self.crop_processor)
    }

    fn prompt_with(
        &self,
        image: Arc<RgbImage>,
        text: &str,
        processor: &ProcessorConfig,
    ) -> Result<(Vec<u32>, FocusExtra)> {
        let (ids, vision) =
            self.prompter
                .build_with(std::slice::from_ref(image.as_ref()), text, processor)?;
        let frame = frame_at(&image, processor)?;
        Ok((
            ids,
            Arc::new(FocusState {
                image,
                vision,
                frame,
            }),
        ))
    }

    /// The inserted user turn of a crop, placeholders expanded, and its
    /// pixel patches.
    pub fn zoom_turn(&self, crop: &RgbImage) -> Result<(Vec<u32>, PromptVision)> {
        let patches = preprocess_images(std::slice::from_ref(crop), &self.crop_processor)?;
        let text = expand_vision_placeholders(
            ZOOM_TURN,
            &patches.grid_thw,
            &[],
            self.crop_processor.merge_size,
        )?;
        Ok((
            self.prompter.tokenizer.encode(&text)?,
            PromptVision {
                pixel_values: patches.data,
                patch_dim: patches.patch_dim,
                grid_thw: patches.grid_thw,
                second_per_grid_t: Vec::new(),
            },
        ))
    }

    /// The model's own turns of an episode's completion ids: each ends at
    /// `<|im_end|>`; an inserted turn follows and ends with the assistant
    /// header. A last turn without `<|im_end|>` (truncated) is included.
    pub fn model_turns<'a>(&self, ids: &'a [u32]) -> Vec<&'a [u32]> {
        let mut turns = Vec::new();
        let mut start = 0;
        while start < ids.len() {
            let Some(end) = ids[start..].iter().position(|&t| t == self.im_end) else {
                turns.push(&ids[start..]);
                break;
            };
            let end = start + end;
            turns.push(&ids[start..=end]);
            let h = self.header.len().max(1);
            match ids[end + 1..].windows(h).position(|w| w == self.header) {
                Some(k) => start = end + 1 + k + h,
                None => break,
            }
        }
        turns
    }
}

/// The frame of `image` resized by `processor` (the size its patches cover).
fn frame_at(image: &RgbImage, processor: &ProcessorConfig) -> Result<ImageFrame> {
    let (height, width) = processor.target_size(image.height() as usize, image.width() as usize)?;
    Ok(ImageFrame::new(
        image.width(),
        image.height(),
        width as u32,
        height as u32,
    )?)
}

/// The prompt-side state of an episode: the original image (crops are cut
/// from it), the vision inputs so far, and the frame that maps boxes.
#[derive(Debug, Clone)]
pub struct FocusState {
    pub image: Arc<RgbImage>,
    pub vision: VisionExtra,
    pub frame: ImageFrame,
}

/// `Policy::Extra` of [`FocusPolicy`].
pub type FocusExtra = Arc<FocusState>;

/// One finished episode.
#[derive(Debug, Clone)]
pub struct EpisodeOut {
    /// Model turns and inserted turns, in order.
    pub ids: Vec<u32>,
    /// Sampling log-prob of each model token; 0 at inserted tokens.
    pub logprobs: Vec<f32>,
    /// True at model tokens.
    pub mask: Vec<bool>,
    /// First view plus every crop, in placeholder order.
    pub vision: PromptVision,
    pub zooms: Vec<ZoomPlan>,
    /// Whether the last turn ended on a stop token.
    pub finished: bool,
}

fn append_vision(into: &mut PromptVision, more: PromptVision) {
    into.patch_dim = more.patch_dim;
    into.pixel_values.extend(more.pixel_values);
    into.grid_thw.extend(more.grid_thw);
}

/// Runs one episode per row (all rows in one generation batch per turn).
/// `params.max_new_tokens` bounds each turn; `params.seed` is varied per
/// turn. Rows stop on an answer, an invalid action, a truncated turn or the
/// turn limit.
pub fn run_episodes<B: Backend>(
    model: &Qwen2VL<B>,
    env: &FocusEnv,
    rows: &[(&[u32], &FocusState)],
    params: &SamplingParams,
    max_turns: u32,
) -> Result<Vec<EpisodeOut>> {
    let device = model.language_model.embed_tokens.weight.device();
    let cfg = FocusConfig {
        max_turns,
        ..env.focus.clone()
    };
    let mut loops: Vec<FocusLoop> = rows
        .iter()
        .map(|(_, s)| FocusLoop::new(s.frame, cfg.clone()))
        .collect();
    let mut outs: Vec<EpisodeOut> = rows
        .iter()
        .map(|(_, s)| EpisodeOut {
            ids: Vec::new(),
            logprobs: Vec::new(),
            mask: Vec::new(),
            vision: s.vision.as_ref().clone(),
            zooms: Vec::new(),
            finished: false,
        })
        .collect();
    let mut active: Vec<usize> = (0..rows.len()).collect();
    for turn in 0..max_turns.max(1) {
        if active.is_empty() {
            break;
        }
        let inputs: Vec<Vec<u32>> = active
            .iter()
            .map(|&i| {
                let mut ids = rows[i].0.to_vec();
                ids.extend_from_slice(&outs[i].ids);
                ids
            })
            .collect();
        let (input_ids, attention_mask) = vlrl::qwen::generate::left_pad(&inputs, env.pad_id);
        let visions: Vec<&PromptVision> = active.iter().map(|&i| &outs[i].vision).collect();
        let batch = MultimodalBatch {
            input_ids,
            attention_mask,
            images: stack_vision::<B>(&visions, &device),
            videos: None,
            second_per_grid_ts: None,
        };
        let turn_params = SamplingParams {
            seed: params.seed.wrapping_add(turn as u64 * 7919),
            ..params.clone()
        };
        let generation = model.generate(&batch, env.pad_id, &turn_params)?;
        let mut still = Vec::new();
        for (k, &i) in active.iter().enumerate() {
            let tokens = generation.tokens.get(k).cloned().unwrap_or_default();
            let logprobs = generation.logprobs.get(k).cloned().unwrap_or_default();
            let finished = generation.finished.get(k).copied().unwrap_or(false);
            let text = env.prompter.tokenizer.decode(&tokens, false)?;
            let out = &mut outs[i];
            out.mask.extend(std::iter::repeat_n(true, tokens.len()));
            out.ids.extend_from_slice(&tokens);
            out.logprobs.extend_from_slice(&logprobs);
            out.finished = finished;
            if !finished {
                continue;
            }
            if let FocusAction::Zoom { plan, .. } = loops[i].step(&text) {
                let crop = FocusLoop::render(&rows[i].1.image, &plan);
                let (ids, vision) = env.zoom_turn(&crop)?;
                out.mask.extend(std::iter::repeat_n(false, ids.len()));
                out.logprobs.extend(std::iter::repeat_n(0.0, ids.len()));
                out.ids.extend(ids);
                append_vision(&mut out.vision, vision);
                out.zooms.push(plan);
                still.push(i);
            }
        }
        active = still;
    }
    Ok(outs)
}

/// Ground truth of a focus prompt (JSON in `Prompt::target`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FocusTarget {
    pub choice: ChoiceTarget,
    /// Target box in original pixels.
    pub bbox: [f32; 4],
    /// Model turns allowed (1 = answer directly).
    pub max_turns: u32,
}

/// How an episode scored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EpisodeScore {
    /// Every turn before the last was a zoom and the last one answered in
    /// the think/answer format (the `format` verifier).
    pub format: f64,
    pub accuracy: f64,
    pub zooms: usize,
    /// The last zoom's region contains the target's centre.
    pub box_hit: bool,
    pub answered: bool,
}

/// Scores an episode from its completion ids alone (the reward function
/// sees nothing else): split into model turns, replay the focus loop, check
/// the answer turn with the `format` and `multiple_choice` verifiers.
pub fn score_episode(
    env: &FocusEnv,
    registry: &Registry,
    frame: ImageFrame,
    target: &FocusTarget,
    ids: &[u32],
) -> Result<EpisodeScore> {
    let cfg = FocusConfig {
        max_turns: target.max_turns,
        ..env.focus.clone()
    };
    let mut focus = FocusLoop::new(frame, cfg);
    let mut score = EpisodeScore::default();
    let turns = env.model_turns(ids);
    for (k, turn) in turns.iter().enumerate() {
        let text = env.prompter.tokenizer.decode(turn, false)?;
        match focus.step(&text) {
            FocusAction::Zoom { region, .. } => {
                score.zooms += 1;
                let (cx, cy) = (
                    (target.bbox[0] + target.bbox[2]) / 2.0,
                    (target.bbox[1] + target.bbox[3]) / 2.0,
                );
                score.box_hit =
                    region.x1 <= cx && cx <= region.x2 && region.y1 <= cy && cy <= region.y2;
            }
            FocusAction::Answer { .. } if k + 1 == turns.len() => {
                let plain = env.prompter.tokenizer.decode(turn, true)?;
                let (format, accuracy) =
                    target
                        .choice
                        .score(registry, plain.trim(), &RewardContext::at(0, 1))?;
                score.format = format;
                score.accuracy = accuracy;
                score.answered = true;
            }
            _ => break,
        }
    }
    Ok(score)
}

/// A VLM policy whose rollouts are focus episodes. Checkpoints hold the
/// inner [`VlmPolicy`]'s record.
#[derive(Module, Debug)]
pub struct FocusPolicy<B: Backend> {
    pub inner: VlmPolicy<B>,
    #[module(skip)]
    pub env: Arc<FocusEnv>,
    /// Model turns per training episode.
    #[module(skip)]
    pub max_turns: u32,
}

fn policy_err(e: impl std::fmt::Display) -> GrpoError {
    GrpoError::Policy(e.to_string())
}

/// The same batch with each row's vision inputs as the inner policy takes them.
fn plain_batch<B: AutodiffBackend>(
    batch: &SequenceBatch<B, FocusExtra>,
) -> SequenceBatch<B, VisionExtra> {
    batch.with_extras(batch.extras.iter().map(|e| e.vision.clone()).collect())
}

impl<B: AutodiffBackend> Policy<B> for FocusPolicy<B> {
    type Extra = FocusExtra;

    /// The episodes' completions without their masks and crops: only for
    /// callers that want the text; the trainer uses `sample_episodes`.
    fn sample(
        &self,
        prompts: &[Prompt<FocusExtra>],
        group_size: usize,
        sampling: &SamplingConfig,
        rng: &mut TrainRng,
    ) -> vlrl::grpo::Result<Vec<Vec<Completion>>> {
        Ok(self
            .sample_episodes(prompts, group_size, sampling, rng)?
            .into_iter()
            .map(|g| g.into_iter().map(|e| e.completion).collect())
            .collect())
    }

    fn sample_episodes(
        &self,
        prompts: &[Prompt<FocusExtra>],
        group_size: usize,
        sampling: &SamplingConfig,
        rng: &mut TrainRng,
    ) -> vlrl::grpo::Result<Vec<Vec<Episode<FocusExtra>>>> {
        let model = self.inner.model.valid();
        let t = model.tokens();
        let mut out = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let rows: Vec<(&[u32], &FocusState)> =
                vec![(prompt.ids.as_slice(), prompt.extra.as_ref()); group_size];
            let params = SamplingParams {
                max_new_tokens: sampling.max_new_tokens,
                temperature: sampling.temperature as f32,
                top_p: (sampling.top_p < 1.0).then_some(sampling.top_p as f32),
                stop_tokens: self.env.stop_tokens.clone(),
                suppress_tokens: vec![t.image_token_id, t.video_token_id],
                seed: rng.next_u64(),
                ..Default::default()
            };
            let max_turns = match serde_json::from_str::<FocusTarget>(&prompt.target) {
                Ok(target) => target.max_turns,
                Err(_) => self.max_turns,
            };
            let episodes =
                run_episodes(&model, &self.env, &rows, &params, max_turns).map_err(policy_err)?;
            out.push(
                episodes
                    .into_iter()
                    .map(|e| Episode {
                        completion: Completion {
                            ids: e.ids,
                            logprobs: e.logprobs,
                            truncated: !e.finished,
                        },
                        loss_mask: Some(e.mask),
                        extra: Some(Arc::new(FocusState {
                            image: prompt.extra.image.clone(),
                            vision: Arc::new(e.vision),
                            frame: prompt.extra.frame,
                        })),
                    })
                    .collect(),
            );
        }
        Ok(out)
    }

    fn token_logprobs(
        &self,
        batch: &SequenceBatch<B, FocusExtra>,
        sampling: &SamplingConfig,
        with_entropy: bool,
    ) -> vlrl::grpo::Result<TokenLogProbs<B>> {
        self.inner
            .token_logprobs(&plain_batch(batch), sampling, with_entropy)
    }

    fn token_logprobs_no_grad(
        &self,
        batch: &SequenceBatch<B, FocusExtra>,
        sampling: &SamplingConfig,
    ) -> vlrl::grpo::Result<Tensor<B, 2>> {
        self.inner
            .token_logprobs_no_grad(&plain_batch(batch), sampling)
    }
}
