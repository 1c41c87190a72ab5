//! `Qwen2VLImageProcessor` / `Qwen2VLVideoProcessor` (transformers 5.24) in Rust:
//! `smart_resize` → bicubic resize → rescale 1/255 → CLIP mean/std → temporal
//! patchify into the flattened layout the vision tower's Conv3d expects.
//!
//! Patch rows are ordered per image (or video) as
//! `(t, h/merge, w/merge, merge_h, merge_w)`, so every 2x2 merge window is four
//! consecutive rows, and each row is `(channel, temporal, patch_row, patch_col)`
//! (3·2·14·14 = 1176 values), exactly as the reference `patchify`.

use std::rc::Rc;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::VisionError;
use crate::resize::{resize_rgb, Resample};

/// OpenAI CLIP normalisation mean (transformers `OPENAI_CLIP_MEAN`).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP normalisation std (transformers `OPENAI_CLIP_STD`).
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// `smart_resize` rejects images whose long/short side ratio exceeds this.
pub const MAX_ASPECT_RATIO: f64 = 200.0;

/// Preprocessing settings; field names follow `preprocessor_config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessorConfig {
    /// Lower bound on resized `h·w` (`size.shortest_edge` in transformers 5).
    pub min_pixels: usize,
    /// Upper bound on resized `h·w` (`size.longest_edge`).
    pub max_pixels: usize,
    /// Spatial patch size (14).
    pub patch_size: usize,
    /// Frames per temporal patch (2).
    pub temporal_patch_size: usize,
    /// Spatial merge size of the PatchMerger (2).
    pub merge_size: usize,
    /// Per-channel mean after rescaling.
    pub image_mean: [f32; 3],
    /// Per-channel std after rescaling.
    pub image_std: [f32; 3],
    /// Which reference bicubic to reproduce.
    pub resample: Resample,
}

impl Default for ProcessorConfig {
    /// The image processor defaults: 56·56 ≤ h·w ≤ 28·28·1280, PIL bicubic.
    fn default() -> Self {
        Self {
            min_pixels: 56 * 56,
            max_pixels: 28 * 28 * 1280,
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
            resample: Resample::PilBicubic,
        }
    }
}

/// The `size` dict of transformers-5 processor configs.
#[derive(Deserialize)]
struct SizeDict {
    shortest_edge: Option<usize>,
    longest_edge: Option<usize>,
}

impl ProcessorConfig {
    /// The video processor defaults (`Qwen2VLVideoProcessor`): 128·28·28 ≤ h·w ≤
    /// 768·28·28 per frame, torchvision bicubic (the only video backend).
    pub fn video_default() -> Self {
        Self {
            min_pixels: 128 * 28 * 28,
            max_pixels: 768 * 28 * 28,
            resample: Resample::TorchvisionBicubic,
            ..Self::default()
        }
    }

    /// Reads a `preprocessor_config.json` (published: `min_pixels`/`max_pixels`;
    /// transformers 5: `size: {shortest_edge, longest_edge}`; both accepted, `size` wins).
    pub fn from_json_str(json: &str) -> Result<Self, VisionError> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| VisionError::Config(format!("preprocessor config: {e}")))?;
        let mut config: Self = serde_json::from_value(value.clone())
            .map_err(|e| VisionError::Config(format!("preprocessor config: {e}")))?;
        if let Some(size) = value.get("size") {
            if let Ok(size) = serde_json::from_value::<SizeDict>(size.clone()) {
                if let Some(v) = size.shortest_edge {
                    config.min_pixels = v;
                }
                if let Some(v) = size.longest_edge {
                    config.max_pixels = v;
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// `patch_size · merge_size`: resized sides are multiples of this.
    pub fn factor(&self) -> usize {
        self.patch_size * self.merge_size
    }

    /// Length of one flattened patch row: `3 · temporal_patch_size · patch_size²`.
    pub fn patch_dim(&self) -> usize {
        3 * self.temporal_patch_size * self.patch_size * self.patch_size
    }

    /// Rejects settings the pipeline cannot run with.
    pub fn validate(&self) -> Result<(), VisionError> {
        if self.patch_size == 0 || self.merge_size == 0 || self.temporal_patch_size == 0 {
            return Err(VisionError::Config(
                "patch_size, merge_size and temporal_patch_size must be positive".into(),
            ));
        }
        if self.min_pixels > self.max_pixels {
            return Err(VisionError::Config(format!(
                "min_pixels {} exceeds max_pixels {}",
                self.min_pixels, self.max_pixels
            )));
        }
        if self.image_std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
            return Err(VisionError::Config(
                "image_std must be finite and non-zero".into(),
            ));
        }
        Ok(())
    }

    /// Resized `(height, width)` of an image, as the reference `smart_resize`.
    pub fn target_size(&self, height: usize, width: usize) -> Result<(usize, usize), VisionError> {
        smart_resize(
            height,
            width,
            self.factor(),
            self.min_pixels,
            self.max_pixels,
        )
    }

    /// Number of patch rows an image of this size produces (`grid_h · grid_w`).
    pub fn num_patches(&self, height: usize, width: usize) -> Result<usize, VisionError> {
        let (h, w) = self.target_size(height, width)?;
        Ok((h / self.patch_size) * (w / self.patch_size))
    }
}

/// The reference `smart_resize`: both sides multiples of `factor`, area within
/// `[min_pixels, max_pixels]`, aspect ratio kept as closely as possible. The
/// formula lives in `vlrl-grounding` (box coordinates need it without
/// tensors); this wraps it in the vision crate's sizes and errors.
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize), VisionError> {
    use vlrl_grounding::GroundingError;
    let too_big = || VisionError::Config(format!("image size {width}x{height} is too large"));
    let side = |v: usize| u32::try_from(v).map_err(|_| too_big());
    let (h, w) = vlrl_grounding::smart_resize(
        side(height)?,
        side(width)?,
        u32::try_from(factor).map_err(|_| too_big())?,
        min_pixels as u64,
        max_pixels as u64,
    )
    .map_err(|e| match e {
        GroundingError::ZeroSize { .. } => VisionError::ZeroSize {
            origin: "smart_resize".into(),
            width,
            height,
        },
        GroundingError::AspectRatio { ratio, .. } => VisionError::AspectRatio {
            ratio,
            limit: MAX_ASPECT_RATIO,
            width,
            height,
        },
        other => VisionError::Config(other.to_string()),
    })?;
    if (h as usize) < factor || (w as usize) < factor {
        return Err(VisionError::Config(format!(
            "smart_resize of {width}x{height} gives {w}x{h}; raise min_pixels"
        )));
    }
    Ok((h as usize, w as usize))
}

/// Flattened patches of one or more images/videos, ready for the vision tower.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelPatches {
    /// Row-major `[num_patches, patch_dim]`.
    pub data: Vec<f32>,
    /// Length of one row.
    pub patch_dim: usize,
    /// `(t, h, w)` patch grid of each image/video, in input order.
    pub grid_thw: Vec<[usize; 3]>,
}

impl PixelPatches {
    /// Number of patch rows.
    pub fn num_patches(&self) -> usize {
        self.data.len().checked_div(self.patch_dim).unwrap_or(0)
    }

    /// Appends another batch (same `patch_dim`), as `torch.cat` of the reference.
    pub fn extend(&mut self, other: PixelPatches) {
        self.data.extend(other.data);
        self.grid_thw.extend(other.grid_thw);
    }

    /// As a `[num_patches, patch_dim]` tensor.
    pub fn to_tensor<B: burn::tensor::backend::Backend>(
        &self,
        device: &B::Device,
    ) -> burn::tensor::Tensor<B, 2> {
        let data =
            burn::tensor::TensorData::new(self.data.clone(), [self.num_patches(), self.patch_dim]);
        burn::tensor::Tensor::from_data(data, device)
    }
}

/// Per-channel lookup table u8 → normalised f32, bit-identical to the reference
/// arithmetic of each backend.
fn normalize_lut(config: &ProcessorConfig) -> [[f32; 256]; 3] {
    let mut lut = [[0.0f32; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        let (mean, std) = (config.image_mean[c], config.image_std[c]);
        for (v, out) in table.iter_mut().enumerate() {
            *out = match config.resample {
                // PIL backend: (u8 as f64 · (1/255)) as f32, then (x − mean) / std in f32.
                Resample::PilBicubic => {
                    let x = (v as f64 * (1.0 / 255.0)) as f32;
                    (x - mean) / std
                }
                // torchvision backend: rescale fused into mean/std: (x − 255·mean) / (255·std) in f32.
                Resample::TorchvisionBicubic => (v as f32 - mean * 255.0) / (std * 255.0),
            };
        }
    }
    lut
}

/// Resizes one frame to the target size (no-op resize included, as the reference).
fn resized(image: &RgbImage, h: usize, w: usize, resample: Resample) -> RgbImage {
    resize_rgb(image, w as u32, h as u32, resample)
}

/// Normalises an interleaved RGB frame into three f32 planes (`[3][h·w]`).
fn normalized_planes(frame: &RgbImage, lut: &[[f32; 256]; 3]) -> Vec<f32> {
    let n = frame.width() as usize * frame.height() as usize;
    let mut planes = vec![0.0f32; 3 * n];
    let (r, rest) = planes.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for (((px, r), g), b) in frame.as_raw().chunks_exact(3).zip(r).zip(g).zip(b) {
        *r = lut[0][usize::from(px[0])];
        *g = lut[1][usize::from(px[1])];
        *b = lut[2][usize::from(px[2])];
    }
    planes
}

/// Writes the patches of one image or video clip (`frames` already resized to
/// `h x w`, `frames.len()` a multiple of the temporal patch) into `out`.
fn patchify(
    frames: &[&RgbImage],
    h: usize,
    w: usize,
    config: &ProcessorConfig,
    out: &mut Vec<f32>,
) -> [usize; 3] {
    let lut = normalize_lut(config);
    let (p, m, tp) = (
        config.patch_size,
        config.merge_size,
        config.temporal_patch_size,
    );
    let (grid_t, grid_h, grid_w) = (frames.len() / tp, h / p, w / p);
    let plane = h * w;
    out.reserve(grid_t * grid_h * grid_w * config.patch_dim());
    // Frames shared by reference (an image repeated temporal_patch_size times)
    // are normalised once.
    let mut cache: Vec<(&RgbImage, Rc<Vec<f32>>)> = Vec::new();
    let planes: Vec<Rc<Vec<f32>>> = frames
        .iter()
        .map(|&f| {
            if let Some((_, p)) = cache.iter().find(|(k, _)| std::ptr::eq(*k, f)) {
                return p.clone();
            }
            let p = Rc::new(normalized_planes(f, &lut));
            cache.push((f, p.clone()));
            p
        })
        .collect();
    for gt in 0..grid_t {
        let clip = &planes[gt * tp..(gt + 1) * tp];
        for bh in 0..grid_h / m {
            for bw in 0..grid_w / m {
                for mh in 0..m {
                    for mw in 0..m {
                        let (y0, x0) = ((bh * m + mh) * p, (bw * m + mw) * p);
                        for c in 0..3 {
                            for frame in clip {
                                let channel = &frame[c * plane..(c + 1) * plane];
                                for py in 0..p {
                                    let start = (y0 + py) * w + x0;
                                    out.extend_from_slice(&channel[start..start + p]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    [grid_t, grid_h, grid_w]
}

/// Patch rows and grid of one image.
type OneImage = (Vec<f32>, [usize; 3]);

/// Preprocesses images like `Qwen2VLImageProcessor(images=[...])`: each image
/// becomes `temporal_patch_size` identical frames; outputs are concatenated.
pub fn preprocess_images(
    images: &[RgbImage],
    config: &ProcessorConfig,
) -> Result<PixelPatches, VisionError> {
    config.validate()?;
    let one = |image: &RgbImage| -> Result<OneImage, VisionError> {
        let (h, w) = config.target_size(image.height() as usize, image.width() as usize)?;
        let frame = resized(image, h, w, config.resample);
        let frames: Vec<&RgbImage> =
            std::iter::repeat_n(&frame, config.temporal_patch_size).collect();
        let mut data = Vec::new();
        let grid = patchify(&frames, h, w, config, &mut data);
        Ok((data, grid))
    };
    // Images are independent: spread a batch over the available cores.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(images.len());
    let results: Vec<Result<OneImage, VisionError>> = if threads > 1 {
        let chunk = images.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = images
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(VisionError::Input(
                            "preprocessing thread panicked".into(),
                        ))]
                    })
                })
                .collect()
        })
    } else {
        images.iter().map(one).collect()
    };
    let mut patches = PixelPatches {
        data: Vec::new(),
        patch_dim: config.patch_dim(),
        grid_thw: Vec::with_capacity(images.len()),
    };
    for result in results {
        let (data, grid) = result?;
        if patches.data.is_empty() {
            patches.data = data;
        } else {
            patches.data.extend_from_slice(&data);
        }
        patches.grid_thw.push(grid);
    }
    Ok(patches)
}

/// Preprocesses one video (frames already sampled) like `Qwen2VLVideoProcessor`:
/// every frame resized to one `smart_resize` size, the last frame repeated up to
/// a multiple of `temporal_patch_size`, consecutive frames paired into temporal patches.
pub fn preprocess_video(
    frames: &[RgbImage],
    config: &ProcessorConfig,
) -> Result<PixelPatches, VisionError> {
    config.validate()?;
    let first = frames.first().ok_or(VisionError::EmptyVideo)?;
    let (fw, fh) = (first.width() as usize, first.height() as usize);
    for (index, frame) in frames.iter().enumerate() {
        if frame.width() as usize != fw || frame.height() as usize != fh {
            return Err(VisionError::FrameSize {
                index,
                width: frame.width() as usize,
                height: frame.height() as usize,
                first_width: fw,
                first_height: fh,
            });
        }
    }
    let (h, w) = config.target_size(fh, fw)?;
    let resized_frames: Vec<RgbImage> = frames
        .iter()
        .map(|f| resized(f, h, w, config.resample))
        .collect();
    let mut refs: Vec<&RgbImage> = resized_frames.iter().collect();
    let tp = config.temporal_patch_size;
    while !refs.len().is_multiple_of(tp) {
        if let Some(&last) = refs.last() {
            refs.push(last);
        }
    }
    let mut data = Vec::new();
    let grid = patchify(&refs, h, w, config, &mut data);
    Ok(PixelPatches {
        data,
        patch_dim: config.patch_dim(),
        grid_thw: vec![grid],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_matches_reference_cases() {
        // Values computed with transformers' smart_resize.
        assert_eq!(
            smart_resize(7, 10, 28, 3136, 1_003_520).ok(),
            Some((56, 84))
        );
        assert_eq!(
            smart_resize(77, 123, 28, 3136, 1_003_520).ok(),
            Some((84, 112))
        );
        assert_eq!(
            smart_resize(700, 1000, 28, 3136, 12_544).ok(),
            Some((84, 112))
        );
        // Banker's rounding: 42/28 = 1.5 → 2, 70/28 = 2.5 → 2.
        assert_eq!(smart_resize(42, 70, 28, 0, 1 << 30).ok(), Some((56, 56)));
    }

    #[test]
    fn aspect_ratio_limit() {
        assert!(matches!(
            smart_resize(2, 500, 28, 3136, 1_003_520),
            Err(VisionError::AspectRatio { .. })
        ));
        assert!(smart_resize(2, 400, 28, 3136, 1_003_520).is_ok());
        assert!(matches!(
            smart_resize(0, 5, 28, 1, 10),
            Err(VisionError::ZeroSize { .. })
        ));
    }

    #[test]
    fn config_reads_both_layouts() {
        let published = r#"{"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14,
            "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711], "image_processor_type": "Qwen2VLImageProcessor"}"#;
        let c = ProcessorConfig::from_json_str(published).unwrap();
        assert_eq!(c.max_pixels, 12_845_056);
        let v5 = r#"{"size": {"shortest_edge": 100, "longest_edge": 2000}}"#;
        let c = ProcessorConfig::from_json_str(v5).unwrap();
        assert_eq!((c.min_pixels, c.max_pixels), (100, 2000));
        assert!(ProcessorConfig::from_json_str(r#"{"patch_size": 0}"#).is_err());
    }
}
