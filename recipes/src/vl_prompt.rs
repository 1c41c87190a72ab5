//! Turning a (images, question) pair into model inputs the way the HF
//! processor does: the checkpoint's chat template, one `<|image_pad|>` per
//! merged patch, pixel patches from `vlrl-vision`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use image::RgbImage;
use serde_json::{json, Value};
use vlrl::qwen::{expand_vision_placeholders, QwenTokenizer};
use vlrl::vision::{preprocess_images, preprocess_video, ProcessorConfig};

use crate::policy::PromptVision;

/// Chat template + tokenizer + image processor of one checkpoint.
pub struct VlPrompter {
    pub tokenizer: QwenTokenizer,
    pub processor: ProcessorConfig,
}

impl VlPrompter {
    /// Reads `tokenizer.json`, the chat template and `preprocessor_config.json`
    /// (HF defaults when absent).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let tokenizer = QwenTokenizer::from_dir(dir)?;
        let pre = dir.join("preprocessor_config.json");
        let processor = if pre.exists() {
            let text = std::fs::read_to_string(&pre)
                .with_context(|| format!("reading {}", pre.display()))?;
            ProcessorConfig::from_json_str(&text)
                .with_context(|| format!("parsing {}", pre.display()))?
        } else {
            ProcessorConfig::default()
        };
        Ok(Self {
            tokenizer,
            processor,
        })
    }

    /// The rendered chat text of one user turn (images first, then text),
    /// with the generation prompt, placeholders not yet expanded.
    pub fn render(&self, n_images: usize, text: &str) -> Result<String> {
        let mut content: Vec<Value> = (0..n_images).map(|_| json!({"type": "image"})).collect();
        content.push(json!({"type": "text", "text": text}));
        let messages = json!([{"role": "user", "content": content}]);
        Ok(self.tokenizer.apply_chat_template(&messages, true)?)
    }

    /// Token ids (placeholders expanded) and pixel patches of one prompt.
    pub fn build(&self, images: &[RgbImage], text: &str) -> Result<(Vec<u32>, Arc<PromptVision>)> {
        self.build_with(images, text, &self.processor)
    }

    /// [`Self::build`] with another image processor (another pixel budget,
    /// such as a zoomed crop's).
    pub fn build_with(
        &self,
        images: &[RgbImage],
        text: &str,
        processor: &ProcessorConfig,
    ) -> Result<(Vec<u32>, Arc<PromptVision>)> {
        let rendered = self.render(images.len(), text)?;
        let vision = if images.is_empty() {
            PromptVision::default()
        } else {
            let patches = preprocess_images(images, processor)?;
            PromptVision {
                pixel_values: patches.data,
                patch_dim: patches.patch_dim,
                grid_thw: patches.grid_thw,
                second_per_grid_t: Vec::new(),
            }
        };
        let expanded =
            expand_vision_placeholders(&rendered, &vision.grid_thw, &[], processor.merge_size)?;
        Ok((self.tokenizer.encode(&expanded)?, Arc::new(vision)))
    }

    /// Token ids and pixel patches of one video prompt (the video first, then
    /// the text), as the HF processor builds them: `frames` (already sampled)
    /// become temporal patches through `processor` (the video processor's
    /// pixel bounds may differ from the image processor's) and the
    /// `<|video_pad|>` placeholder is expanded to one token per merged patch.
    /// `sample_fps` is the rate of the sampled frames (the HF processor's
    /// `fps`; `None` = its default of 2): Qwen2.5-VL reads it as
    /// `second_per_grid_ts = temporal_patch_size / sample_fps`.
    pub fn build_video(
        &self,
        frames: &[RgbImage],
        text: &str,
        processor: &ProcessorConfig,
        sample_fps: Option<f64>,
    ) -> Result<(Vec<u32>, Arc<PromptVision>)> {
        let second_per_grid_t = match sample_fps {
            None => Vec::new(),
            Some(fps) if fps.is_finite() && fps > 0.0 => {
                vec![(processor.temporal_patch_size as f64 / fps) as f32]
            }
            Some(fps) => bail!("video sample fps must be finite and positive, got {fps}"),
        };
        let content = vec![
            json!({"type": "video"}),
            json!({"type": "text", "text": text}),
        ];
        let messages = json!([{"role": "user", "content": content}]);
        let rendered = self.tokenizer.apply_chat_template(&messages, true)?;
        let patches = preprocess_video(frames, processor)?;
        let vision = PromptVision {
            pixel_values: patches.data,
            patch_dim: patches.patch_dim,
            grid_thw: patches.grid_thw,
            second_per_grid_t,
        };
        let expanded =
            expand_vision_placeholders(&rendered, &[], &vision.grid_thw, processor.merge_size)?;
        Ok((self.tokenizer.encode(&expanded)?, Arc::new(vision)))
    }
}
