//! Qwen2-VL / Qwen2.5-VL conditional generation: the vision tower's merged
//! features replace the `<|image_pad|>` / `<|video_pad|>` placeholders in the
//! token embeddings (HF's `masked_scatter`, row-major order), M-RoPE
//! positions come from [`get_rope_index`], and generation runs through the
//! same KV-cache loop as text (`Qwen2::generate_from`).

use std::path::Path;

use burn::module::Module;
use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};
use serde_json::Value;
use vlrl_vision::{
    Qwen25VisionConfig, Qwen25VisionTower, Qwen2VisionConfig, Qwen2VisionTower, TensorStore,
};

use crate::config::Qwen2Config;
use crate::error::{QwenError, Result};
use crate::generate::{Generation, Prefill, SamplingParams};
use crate::qwen2::{AttentionMask, Qwen2};
use crate::rope_index::{get_rope_index, GridThw, RopeIndexConfig};

/// The vision tower of either family.
#[derive(Module, Debug)]
pub enum VisionTower<B: Backend> {
    Qwen2(Qwen2VisionTower<B>),
    Qwen25(Qwen25VisionTower<B>),
}

impl<B: Backend> VisionTower<B> {
    /// Merged features `[tokens, hidden]` for `pixel_values [patches, patch_dim]`.
    pub fn encode(
        &self,
        pixel_values: Tensor<B, 2>,
        grid_thw: &[[usize; 3]],
    ) -> Result<Tensor<B, 2>> {
        let out = match self {
            Self::Qwen2(t) => t.forward(pixel_values, grid_thw),
            Self::Qwen25(t) => t.forward(pixel_values, grid_thw),
        };
        out.map(|o| o.merged)
            .map_err(|e| QwenError::Input(format!("vision tower: {e}")))
    }
}

/// Token ids and geometry the composition needs, from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct VlTokens {
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub rope: RopeIndexConfig,
}

/// Pixels of one modality for the whole batch, in placeholder order.
#[derive(Debug, Clone)]
pub struct VisionInput<B: Backend> {
    /// `[patches, 3·2·14·14]` from `vlrl_vision::preprocess_images` / `preprocess_video`.
    pub pixel_values: Tensor<B, 2>,
    pub grid_thw: Vec<[usize; 3]>,
}

/// A left-padded batch of multimodal prompts.
#[derive(Debug, Clone)]
pub struct MultimodalBatch<B: Backend> {
    /// Token ids with placeholders already expanded (one per merged feature).
    pub input_ids: Vec<Vec<u32>>,
    /// 1 = real token, 0 = left padding.
    pub attention_mask: Vec<Vec<u8>>,
    pub images: Option<VisionInput<B>>,
    pub videos: Option<VisionInput<B>>,
    /// Qwen2.5-VL: seconds per temporal grid step of each video.
    pub second_per_grid_ts: Option<Vec<f32>>,
}

/// A Qwen2-VL or Qwen2.5-VL model: vision tower + Qwen2 decoder with M-RoPE.
#[derive(Module, Debug)]
pub struct Qwen2VL<B: Backend> {
    pub visual: VisionTower<B>,
    pub language_model: Qwen2<B>,
    #[module(skip)]
    tokens: VlTokens,
}

impl<B: Backend> Qwen2VL<B> {
    /// Loads a checkpoint directory (published flat or transformers-5 nested
    /// `config.json`; tensor names `model.*` / `visual.*` or
    /// `model.language_model.*` / `model.visual.*`).
    pub fn from_dir(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&config_path).map_err(crate::error::io_err(&config_path))?;
        let root: Value = serde_json::from_str(&text).map_err(|e| QwenError::Config {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
        let bad = |message: String| QwenError::Config {
            path: config_path.clone(),
            message,
        };
        let text_config = Qwen2Config::from_json_str(&text).map_err(&bad)?;
        let vision = root
            .get("vision_config")
            .ok_or_else(|| bad("missing field `vision_config`".into()))?;
        let token = |field: &str| -> Result<u32> {
            root.get(field)
                .or_else(|| root.get("text_config").and_then(|t| t.get(field)))
                .and_then(Value::as_u64)
                .map(|v| v as u32)
                .ok_or_else(|| bad(format!("missing field `{field}`")))
        };
        let (image_token_id, video_token_id) = (token("image_token_id")?, token("video_token_id")?);
        let model_type = root
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("qwen2_vl");

        let store = TensorStore::open(dir)?;
        let language_model = Qwen2::from_checkpoint(&store, &text_config, device)?;
        let prefix = if store.contains("model.visual.patch_embed.proj.weight") {
            "model.visual."
        } else {
            "visual."
        };
        let vision_err = |e: vlrl_vision::WeightError| {
            QwenError::Input(format!("{}: vision tower: {e}", dir.display()))
        };
        let (visual, rope) = if model_type.starts_with("qwen2_5") {
            let cfg = Qwen25VisionConfig::from_json_value(vision).map_err(vision_err)?;
            let tps = cfg
                .tokens_per_second
                .or_else(|| root.get("tokens_per_second").and_then(Value::as_f64))
                .unwrap_or(2.0);
            let rope = RopeIndexConfig::qwen2_5_vl(
                image_token_id,
                video_token_id,
                cfg.spatial_merge_size,
                tps as f32,
            );
            let tower =
                Qwen25VisionTower::load(&cfg, &store, prefix, device).map_err(vision_err)?;
            (VisionTower::Qwen25(tower), rope)
        } else {
            let cfg = Qwen2VisionConfig::from_json_value(vision).map_err(vision_err)?;
            let rope =
                RopeIndexConfig::qwen2_vl(image_token_id, video_token_id, cfg.spatial_merge_size);
            let tower = Qwen2VisionTower::load(&cfg, &store, prefix, device).map_err(vision_err)?;
            (VisionTower::Qwen2(tower), rope)
        };
        Ok(Self {
            visual,
            language_model,
            tokens: VlTokens {
                image_token_id,
                video_token_id,
                rope,
            },
        })
    }

    pub fn tokens(&self) -> &VlTokens {
        &self.tokens
    }

    /// Embeddings, M-RoPE positions and decode deltas for a batch, running
    /// the vision tower on its pixels.
    pub fn prefill(&self, batch: &MultimodalBatch<B>) -> Result<Prefill<B>> {
        let encode = |input: &Option<VisionInput<B>>| -> Result<Option<Tensor<B, 2>>> {
            input
                .as_ref()
                .map(|v| self.visual.encode(v.pixel_values.clone(), &v.grid_thw))
                .transpose()
        };
        let image_features = encode(&batch.images)?;
        let video_features = encode(&batch.videos)?;
        self.prefill_with_features(batch, image_features, video_features)
    }

    /// As [`Qwen2VL::prefill`], with vision features computed elsewhere
    /// (cached, or from another implementation).
    pub fn prefill_with_features(
        &self,
        batch: &MultimodalBatch<B>,
        image_features: Option<Tensor<B, 2>>,
        video_features: Option<Tensor<B, 2>>,
    ) -> Result<Prefill<B>> {
        let rows = batch.input_ids.len();
        let seq = batch.input_ids.first().map_or(0, Vec::len);
        if rows == 0 || seq == 0 {
            return Err(QwenError::Input("empty batch".into()));
        }
        if batch.attention_mask.len() != rows
            || batch
                .input_ids
                .iter()
                .zip(&batch.attention_mask)
                .any(|(i, m)| i.len() != seq || m.len() != seq)
        {
            return Err(QwenError::Input(
                "input_ids and attention_mask rows must all have the same length".into(),
            ));
        }
        let vocab = self.language_model.config().vocab_size as u32;
        if let Some(bad) = batch.input_ids.iter().flatten().find(|&&t| t >= vocab) {
            return Err(QwenError::Input(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
        let device = self.language_model.embed_tokens.weight.device();
        let flat: Vec<i64> = batch
            .input_ids
            .iter()
            .flatten()
            .map(|&t| i64::from(t))
            .collect();
        let ids: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(flat, [rows, seq]), &device);
        let mut embeds = self.language_model.embed(ids);
        for (features, token, what) in [
            (image_features, self.tokens.image_token_id, "image"),
            (video_features, self.tokens.video_token_id, "video"),
        ] {
            embeds = scatter_features(embeds, &batch.input_ids, token, features, what)?;
        }

        let mask: Vec<Vec<bool>> = batch
            .attention_mask
            .iter()
            .map(|r| r.iter().map(|&m| m != 0).collect())
            .collect();
        let grids = |v: &Option<VisionInput<B>>| -> Vec<GridThw> {
            v.as_ref()
                .map(|v| v.grid_thw.iter().map(|&g| GridThw::from(g)).collect())
                .unwrap_or_default()
        };
        let index = get_rope_index(
            &self.tokens.rope,
            &batch.input_ids,
            Some(mask.as_slice()),
            &grids(&batch.images),
            &grids(&batch.videos),
            batch.second_per_grid_ts.as_deref(),
        )
        .map_err(|e| QwenError::Input(format!("rope index: {e}")))?;
        let position_ids: Tensor<B, 3, Int> = Tensor::from_data(
            TensorData::new(index.positions().to_vec(), [3, rows, seq]),
            &device,
        );
        // `generate_from` counts every cached slot, padding included: fold
        // each row's padding into its delta.
        let rope_deltas = index
            .rope_deltas()
            .iter()
            .zip(&batch.attention_mask)
            .map(|(d, m)| d - m.iter().filter(|&&x| x == 0).count() as i64)
            .collect();
        let prompt_ids = batch
            .input_ids
            .iter()
            .zip(&batch.attention_mask)
            .map(|(ids, m)| {
                ids.iter()
                    .zip(m)
                    .filter(|(_, &m)| m != 0)
                    .map(|(&t, _)| t)
                    .collect()
            })
            .collect();
        Ok(Prefill {
            embeds,
            position_ids,
            padding: batch.attention_mask.clone(),
            rope_deltas,
            prompt_ids,
        })
    }

    /// Logits `[batch, seq, vocab]` of a prefill (no cache).
    pub fn forward_prefill(&self, prefill: Prefill<B>) -> Tensor<B, 3> {
        let [b, s, _] = prefill.embeds.dims();
        let padded = prefill.padding.iter().flatten().any(|&m| m == 0);
        let device = prefill.embeds.device();
        let mask = AttentionMask::causal(
            b,
            s,
            0,
            padded.then_some(prefill.padding.as_slice()),
            &device,
        );
        let hidden =
            self.language_model
                .forward_embeds(prefill.embeds, prefill.position_ids, &mask, None);
        self.language_model.lm_logits(hidden)
    }

    /// Logits `[batch, seq, vocab]` for a multimodal batch.
    pub fn forward(&self, batch: &MultimodalBatch<B>) -> Result<Tensor<B, 3>> {
        Ok(self.forward_prefill(self.prefill(batch)?))
    }

    /// Next-token logits `[rows, C, vocab]` that score each row's
    /// completion: row `i` is `prompts` row `prompt_of_row[i]` followed by
    /// `completions[i]` (right-padded to `C`, `completion_mask` 1 = real).
    /// Position `t` predicts completion token `t`, as
    /// `forward(cat(prompt, completion))` sliced at `P - 1 .. P + C - 1` does.
    ///
    /// Each distinct prompt — vision tower included — runs once, and its KV
    /// cache serves every completion of it. A GRPO group is G completions of
    /// one prompt, so the scoring pass costs one prompt plus G completions
    /// instead of G of each (gradients flow into the shared prompt through
    /// the cache). Completions must be text: a completion with image or video
    /// placeholders (multi-turn episodes) needs [`Qwen2VL::forward`].
    pub fn completion_logits(
        &self,
        prompts: &MultimodalBatch<B>,
        prompt_of_row: &[usize],
        completions: &[Vec<u32>],
        completion_mask: &[Vec<u8>],
    ) -> Result<Tensor<B, 3>> {
        let unique = prompts.input_ids.len();
        let rows = prompt_of_row.len();
        let c = completions.first().map_or(0, Vec::len);
        if rows == 0 || c == 0 {
            return Err(QwenError::Input("no completions to score".into()));
        }
        if completions.len() != rows
            || completion_mask.len() != rows
            || completions
                .iter()
                .zip(completion_mask)
                .any(|(ids, m)| ids.len() != c || m.len() != c)
        {
            return Err(QwenError::Input(format!(
                "{rows} rows need {rows} completions and masks of one length ({} and {} given)",
                completions.len(),
                completion_mask.len()
            )));
        }
        if let Some(&bad) = prompt_of_row.iter().find(|&&u| u >= unique) {
            return Err(QwenError::Input(format!(
                "completion refers to prompt {bad}, but the batch has {unique} prompts"
            )));
        }
        let vision = [self.tokens.image_token_id, self.tokens.video_token_id];
        if completions.iter().flatten().any(|t| vision.contains(t)) {
            return Err(QwenError::Input(
                "a completion holds image or video placeholders: score it with `forward`".into(),
            ));
        }
        let vocab = self.language_model.config().vocab_size as u32;
        if let Some(bad) = completions.iter().flatten().find(|&&t| t >= vocab) {
            return Err(QwenError::Input(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }

        // The prompts, once each, filling the cache.
        let prefill = self.prefill(prompts)?;
        let [_, p, _] = prefill.embeds.dims();
        let device = prefill.embeds.device();
        let padded = prefill.padding.iter().flatten().any(|&m| m == 0);
        let prompt_mask = AttentionMask::causal(
            unique,
            p,
            0,
            padded.then_some(prefill.padding.as_slice()),
            &device,
        );
        let mut cache = self.language_model.new_cache();
        let prompt_hidden = self.language_model.forward_embeds(
            prefill.embeds,
            prefill.position_ids,
            &prompt_mask,
            Some(&mut cache),
        );
        let index: Vec<i64> = prompt_of_row.iter().map(|&u| u as i64).collect();
        let index: Tensor<B, 1, Int> = Tensor::from_data(TensorData::new(index, [rows]), &device);
        cache.select_rows(index.clone());
        // The last prompt position predicts the first completion token.
        let last = prompt_hidden.narrow(1, p - 1, 1).select(0, index);

        // The completions after their prompt's cache. Text positions continue
        // from the prompt on all three M-RoPE axes, as in decoding.
        let flat: Vec<i64> = completions
            .iter()
            .flatten()
            .map(|&t| i64::from(t))
            .collect();
        let ids: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(flat, [rows, c]), &device);
        let mut positions = Vec::with_capacity(3 * rows * c);
        for _axis in 0..3 {
            for &u in prompt_of_row {
                let start = p as i64 + prefill.rope_deltas[u];
                positions.extend((0..c as i64).map(|t| start + t));
            }
        }
        let positions: Tensor<B, 3, Int> =
            Tensor::from_data(TensorData::new(positions, [3, rows, c]), &device);
        let padding: Vec<Vec<u8>> = prompt_of_row
            .iter()
            .zip(completion_mask)
            .map(|(&u, m)| prefill.padding[u].iter().chain(m).copied().collect())
            .collect();
        let mask = AttentionMask::causal(rows, c, p, Some(padding.as_slice()), &device);
        let completion_hidden = self.language_model.forward_embeds(
            self.language_model.embed(ids),
            positions,
            &mask,
            Some(&mut cache),
        );
        let hidden = if c > 1 {
            Tensor::cat(vec![last, completion_hidden.narrow(1, 0, c - 1)], 1)
        } else {
            last
        };
        Ok(self.language_model.lm_logits(hidden))
    }

    /// Generates continuations of a multimodal batch with the KV cache.
    pub fn generate(
        &self,
        batch: &MultimodalBatch<B>,
        pad_id: u32,
        params: &SamplingParams,
    ) -> Result<Generation> {
        let prefill = self.prefill(batch)?;
        self.language_model.generate_from(prefill, pad_id, params)
    }

    /// `copies` continuations of every prompt of `batch`, the prompt (and
    /// its images) run once: [`Qwen2::generate_copies_from`]. Row
    /// `r·copies + k` of the output is the k-th continuation of prompt `r`.
    pub fn generate_copies(
        &self,
        batch: &MultimodalBatch<B>,
        copies: usize,
        pad_id: u32,
        params: &SamplingParams,
    ) -> Result<Generation> {
        let prefill = self.prefill(batch)?;
        self.language_model
            .generate_copies_from(prefill, copies, pad_id, params)
    }
}

/// Replaces the embeddings of every `token` position (row-major) with the
/// rows of `features`; the counts must agree exactly.
fn scatter_features<B: Backend>(
    embeds: Tensor<B, 3>,
    input_ids: &[Vec<u32>],
    token: u32,
    features: Option<Tensor<B, 2>>,
    what: &str,
) -> Result<Tensor<B, 3>> {
    let placeholders = input_ids.iter().flatten().filter(|&&t| t == token).count();
    let available = features.as_ref().map_or(0, |f| f.dims()[0]);
    if placeholders != available {
        return Err(QwenError::Input(format!(
            "{what} features and {what} tokens do not match: {placeholders} placeholder tokens, {available} features"
        )));
    }
    let Some(features) = features else {
        return Ok(embeds);
    };
    let [b, s, h] = embeds.dims();
    if features.dims()[1] != h {
        return Err(QwenError::Input(format!(
            "{what} features have width {}, the language model {h}",
            features.dims()[1]
        )));
    }
    let device = embeds.device();
    let mut next = 0i64;
    let mut index = Vec::with_capacity(b * s);
    let mut is_feature = Vec::with_capacity(b * s);
    for &t in input_ids.iter().flatten() {
        let hit = t == token;
        index.push(if hit { next } else { 0 });
        is_feature.push(hit);
        next += i64::from(hit);
    }
    let index: Tensor<B, 1, Int> = Tensor::from_data(TensorData::new(index, [b * s]), &device);
    let mask: Tensor<B, 2, Bool> =
        Tensor::from_data(TensorData::new(is_feature, [b * s, 1]), &device);
    let gathered = features.select(0, index);
    let merged = embeds
        .reshape([b * s, h])
        .mask_where(mask.expand([b * s, h]), gathered);
    Ok(merged.reshape([b, s, h]))
}

/// The processor step of Qwen2-VL: each `<|image_pad|>` (`<|video_pad|>`) in
/// the rendered chat text becomes one placeholder per merged feature of the
/// matching image (video), `t·h·w / merge²` copies, in order.
pub fn expand_vision_placeholders(
    text: &str,
    image_grids: &[[usize; 3]],
    video_grids: &[[usize; 3]],
    merge_size: usize,
) -> Result<String> {
    let mut out = text.to_string();
    for (token, grids, what) in [
        ("<|image_pad|>", image_grids, "image"),
        ("<|video_pad|>", video_grids, "video"),
    ] {
        let pieces: Vec<&str> = out.split(token).collect();
        if pieces.len() - 1 != grids.len() {
            return Err(QwenError::Input(format!(
                "the prompt has {} {what} placeholders but {} {what}s were given",
                pieces.len() - 1,
                grids.len()
            )));
        }
        let mut expanded = String::with_capacity(out.len());
        for (i, piece) in pieces.iter().enumerate() {
            expanded.push_str(piece);
            if let Some([t, h, w]) = grids.get(i) {
                let n = t * h * w / (merge_size * merge_size).max(1);
                expanded.push_str(&token.repeat(n));
            }
        }
        out = expanded;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_each_placeholder_by_its_grid() {
        let text = "a<|image_pad|>b<|image_pad|>c<|video_pad|>";
        let out =
            expand_vision_placeholders(text, &[[1, 4, 4], [1, 2, 4]], &[[2, 2, 2]], 2).unwrap();
        assert_eq!(
            out,
            format!(
                "a{}b{}c{}",
                "<|image_pad|>".repeat(4),
                "<|image_pad|>".repeat(2),
                "<|video_pad|>".repeat(2)
            )
        );
        assert!(expand_vision_placeholders("a<|image_pad|>", &[], &[], 2).is_err());
        assert!(expand_vision_placeholders("a", &[[1, 2, 2]], &[], 2).is_err());
    }
}
