//! The frame-selection and frame-size rules of qwen-vl-utils' `fetch_video`
//! (`qwen_vl_utils/vision_process.py`, version 0.0.14; the video rules are the
//! same as 0.0.10-0.0.11 used with Qwen2-VL / Qwen2.5-VL, where
//! `VIDEO_MIN_PIXELS = 128·28²`, `VIDEO_MAX_PIXELS = 768·28²`,
//! `VIDEO_TOTAL_PIXELS = 128000·28²·0.9`).
//!
//! The pipeline for a video file (the decord / torchcodec readers):
//! 1. [`frame_range`] (`calculate_video_frame_range`): `video_start` /
//!    `video_end` seconds → first and last frame index;
//! 2. [`smart_nframes`]: how many frames (explicit `nframes` rounded to
//!    `FRAME_FACTOR`, or `fps`-based with min/max);
//! 3. [`linspace_indices`]: `torch.linspace(start, end, n).round().long()`,
//!    emulated bit for bit (float32, fused multiply-add, ties to even);
//! 4. [`video_frame_size`]: the per-frame pixel budget (`min_pixels`,
//!    `max_pixels`, `total_pixels / nframes · FRAME_FACTOR`) and
//!    [`smart_resize`] to multiples of `patch_size · SPATIAL_MERGE_SIZE`.
//!
//! Python's `round` (ties to even), `math.floor`/`ceil` and float division are
//! reproduced in f64 in the same operation order, so results are identical;
//! `tests/fixtures/video/qwen_parity.json` (made by `tools/video_parity.py`,
//! which calls qwen-vl-utils itself) checks it.

use crate::error::SampleError;

/// Frames are taken in pairs (Qwen2-VL's temporal patch size is 2).
pub const FRAME_FACTOR: usize = 2;
/// Default sampling rate, frames per second of video.
pub const FPS: f64 = 2.0;
pub const FPS_MIN_FRAMES: usize = 4;
pub const FPS_MAX_FRAMES: usize = 768;
pub const SPATIAL_MERGE_SIZE: usize = 2;
/// Qwen2-VL / Qwen2.5-VL ViT patch size (Qwen3-VL uses 16).
pub const DEFAULT_PATCH_SIZE: usize = 14;
pub const VIDEO_MIN_TOKEN_NUM: usize = 128;
pub const VIDEO_MAX_TOKEN_NUM: usize = 768;
pub const IMAGE_MIN_TOKEN_NUM: usize = 4;
pub const IMAGE_MAX_TOKEN_NUM: usize = 16384;
/// `MODEL_SEQ_LEN` environment default; the total pixel budget is
/// `MODEL_SEQ_LEN · factor² · 0.9`.
pub const MODEL_SEQ_LEN: usize = 128_000;
pub const MAX_RATIO: u32 = 200;

/// How many frames to take: qwen-vl-utils' `nframes` or `fps` keys.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameCount {
    /// Exactly this many (rounded to a multiple of [`FRAME_FACTOR`]).
    Fixed(usize),
    /// `fps` frames per second of video, clamped to `[min_frames, max_frames]`
    /// (defaults [`FPS_MIN_FRAMES`] and `min(FPS_MAX_FRAMES, total_frames)`).
    Fps {
        fps: f64,
        min_frames: Option<usize>,
        max_frames: Option<usize>,
    },
}

impl Default for FrameCount {
    fn default() -> Self {
        FrameCount::Fps {
            fps: FPS,
            min_frames: None,
            max_frames: None,
        }
    }
}

/// The keys of a qwen-vl-utils video message element that affect sampling.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SampleConfig {
    pub frames: FrameCount,
    /// Seconds; frames before are skipped (`video_start`).
    pub video_start: Option<f64>,
    /// Seconds; frames after are skipped (`video_end`).
    pub video_end: Option<f64>,
    pub min_pixels: Option<f64>,
    pub max_pixels: Option<f64>,
    pub total_pixels: Option<f64>,
    /// `(resized_height, resized_width)`: fixed output size (still rounded
    /// by `smart_resize` to the patch factor).
    pub resized: Option<(u32, u32)>,
    /// ViT patch size; the resize factor is `patch_size · SPATIAL_MERGE_SIZE`.
    pub patch_size: usize,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            frames: FrameCount::default(),
            video_start: None,
            video_end: None,
            min_pixels: None,
            max_pixels: None,
            total_pixels: None,
            resized: None,
            patch_size: DEFAULT_PATCH_SIZE,
        }
    }
}

impl SampleConfig {
    /// Uniform sampling of exactly `n` frames (qwen-vl-utils' `nframes`).
    pub fn nframes(n: usize) -> Self {
        SampleConfig {
            frames: FrameCount::Fixed(n),
            ..Self::default()
        }
    }

    /// `fps`-based sampling with the default frame bounds.
    pub fn fps(fps: f64) -> Self {
        SampleConfig {
            frames: FrameCount::Fps {
                fps,
                min_frames: None,
                max_frames: None,
            },
            ..Self::default()
        }
    }

    /// The resize factor: `patch_size · SPATIAL_MERGE_SIZE` (28 for Qwen2-VL).
    pub fn factor(&self) -> usize {
        self.patch_size * SPATIAL_MERGE_SIZE
    }
}

/// Python's `round(x / f) * f` (ties to even).
fn round_by_factor(number: f64, factor: usize) -> f64 {
    (number / factor as f64).round_ties_even() * factor as f64
}

fn ceil_by_factor(number: f64, factor: usize) -> f64 {
    (number / factor as f64).ceil() * factor as f64
}

fn floor_by_factor(number: f64, factor: usize) -> f64 {
    (number / factor as f64).floor() * factor as f64
}

/// The number of frames to sample from `total_frames` frames at `video_fps`
/// (qwen-vl-utils `smart_nframes`). `total_frames` is the count inside the
/// `video_start`/`video_end` range.
pub fn smart_nframes(
    frames: &FrameCount,
    total_frames: usize,
    video_fps: f64,
) -> Result<usize, SampleError> {
    let total = total_frames as f64;
    let nframes = match *frames {
        FrameCount::Fixed(n) => round_by_factor(n as f64, FRAME_FACTOR),
        FrameCount::Fps {
            fps,
            min_frames,
            max_frames,
        } => {
            if !(video_fps.is_finite() && video_fps > 0.0) {
                return Err(SampleError::BadFps(video_fps));
            }
            if !(fps.is_finite() && fps > 0.0) {
                return Err(SampleError::InvalidOption {
                    field: "fps",
                    reason: format!("must be positive and finite, got {fps}"),
                });
            }
            let min_frames =
                ceil_by_factor(min_frames.unwrap_or(FPS_MIN_FRAMES) as f64, FRAME_FACTOR);
            let max_frames = floor_by_factor(
                max_frames.unwrap_or(FPS_MAX_FRAMES.min(total_frames)) as f64,
                FRAME_FACTOR,
            );
            let wanted = total / video_fps * fps;
            let clamped = wanted.max(min_frames).min(max_frames).min(total);
            floor_by_factor(clamped, FRAME_FACTOR)
        }
    };
    let in_range = nframes >= FRAME_FACTOR as f64 && nframes <= total;
    if !in_range {
        return Err(SampleError::FrameCountOutOfRange {
            nframes: nframes.max(0.0) as usize,
            min: FRAME_FACTOR,
            total_frames,
        });
    }
    Ok(nframes as usize)
}

/// Inclusive frame range selected by `video_start` / `video_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrameRange {
    pub start: usize,
    /// Inclusive.
    pub end: usize,
}

impl FrameRange {
    pub fn len(&self) -> usize {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// qwen-vl-utils `calculate_video_frame_range`: seconds → frame indices, the
/// start rounded up and the end rounded down, both clamped to the video.
pub fn frame_range(
    video_start: Option<f64>,
    video_end: Option<f64>,
    total_frames: usize,
    video_fps: f64,
) -> Result<FrameRange, SampleError> {
    if !(video_fps.is_finite() && video_fps > 0.0) {
        return Err(SampleError::BadFps(video_fps));
    }
    if total_frames == 0 {
        return Err(SampleError::NoFrames);
    }
    for (field, value) in [("video_start", video_start), ("video_end", video_end)] {
        if value.is_some_and(|v| v.is_nan()) {
            return Err(SampleError::InvalidOption {
                field,
                reason: "is NaN".into(),
            });
        }
    }
    if video_start.is_none() && video_end.is_none() {
        return Ok(FrameRange {
            start: 0,
            end: total_frames - 1,
        });
    }
    let max_duration = total_frames as f64 / video_fps;
    let start_frame = match video_start {
        Some(s) => (s.min(max_duration).max(0.0) * video_fps).ceil() as usize,
        None => 0,
    };
    let end_frame = match video_end {
        Some(e) => {
            let clamped = e.min(max_duration).max(0.0);
            ((clamped * video_fps).floor() as usize).min(total_frames - 1)
        }
        None => total_frames - 1,
    };
    if start_frame >= end_frame {
        return Err(SampleError::EmptyRange {
            start_secs: video_start,
            end_secs: video_end,
            start_frame,
            end_frame,
            total_frames,
            fps: video_fps,
            duration_secs: max_duration,
        });
    }
    Ok(FrameRange {
        start: start_frame,
        end: end_frame,
    })
}

/// `torch.linspace(start, end, steps).round().long()` exactly as PyTorch's CPU
/// kernel computes it: float32, `step = (end - start) / (steps - 1)`, the first
/// half as `start + step·i` and the second half as `end - step·(steps-1-i)`,
/// each a single fused multiply-add (emulated in f64, which is exact for these
/// magnitudes), then rounded half to even. Verified against torch 2.15 for all
/// ranges up to 700 frames and counts up to 260 (see the parity fixture).
pub fn linspace_indices(start: usize, end: usize, steps: usize) -> Vec<usize> {
    match steps {
        0 => return Vec::new(),
        1 => return vec![start],
        _ => {}
    }
    let start_f = start as f32;
    let end_f = end as f32;
    let step = (end_f - start_f) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            let value = if i < halfway {
                (f64::from(start_f) + f64::from(step) * i as f64) as f32
            } else {
                (f64::from(end_f) - f64::from(step) * (steps - 1 - i) as f64) as f32
            };
            value.round_ties_even().max(0.0) as usize
        })
        .collect()
}

/// qwen-vl-utils `smart_resize`: the size closest to `height`×`width` whose
/// sides are multiples of `factor` and whose area lies in
/// `[min_pixels, max_pixels]`, keeping the aspect ratio.
pub fn smart_resize(
    height: u32,
    width: u32,
    factor: usize,
    min_pixels: f64,
    max_pixels: f64,
) -> Result<(u32, u32), SampleError> {
    if max_pixels < min_pixels {
        return Err(SampleError::PixelBounds {
            min_pixels,
            max_pixels,
        });
    }
    if height == 0 || width == 0 {
        return Err(SampleError::EmptyResize {
            height,
            width,
            new_height: 0,
            new_width: 0,
        });
    }
    let (h, w) = (f64::from(height), f64::from(width));
    if h.max(w) / h.min(w) > f64::from(MAX_RATIO) {
        return Err(SampleError::AspectRatio {
            height,
            width,
            max_ratio: MAX_RATIO,
        });
    }
    let f = factor as f64;
    let mut h_bar = f.max(round_by_factor(h, factor));
    let mut w_bar = f.max(round_by_factor(w, factor));
    if h_bar * w_bar > max_pixels {
        let beta = ((h * w) / max_pixels).sqrt();
        h_bar = floor_by_factor(h / beta, factor);
        w_bar = floor_by_factor(w / beta, factor);
    } else if h_bar * w_bar < min_pixels {
        let beta = (min_pixels / (h * w)).sqrt();
        h_bar = ceil_by_factor(h * beta, factor);
        w_bar = ceil_by_factor(w * beta, factor);
    }
    let out_of_range = |v: f64| v < 1.0 || v > f64::from(u32::MAX);
    if out_of_range(h_bar) || out_of_range(w_bar) {
        return Err(SampleError::EmptyResize {
            height,
            width,
            new_height: h_bar.max(0.0).min(f64::from(u32::MAX)) as u32,
            new_width: w_bar.max(0.0).min(f64::from(u32::MAX)) as u32,
        });
    }
    Ok((h_bar as u32, w_bar as u32))
}

/// The per-frame size `fetch_video` resizes sampled frames to, given the
/// number of sampled frames (the total-pixel budget is shared by all frames).
pub fn video_frame_size(
    config: &SampleConfig,
    nframes: usize,
    height: u32,
    width: u32,
) -> Result<(u32, u32), SampleError> {
    let factor = config.factor();
    if factor == 0 {
        return Err(SampleError::InvalidOption {
            field: "patch_size",
            reason: "must be positive".into(),
        });
    }
    let f2 = (factor * factor) as f64;
    if let Some((rh, rw)) = config.resized {
        return smart_resize(
            rh,
            rw,
            factor,
            IMAGE_MIN_TOKEN_NUM as f64 * f2,
            IMAGE_MAX_TOKEN_NUM as f64 * f2,
        );
    }
    if nframes == 0 {
        return Err(SampleError::NoFrames);
    }
    let frame_min_pixels = VIDEO_MIN_TOKEN_NUM as f64 * f2;
    let frame_max_pixels = VIDEO_MAX_TOKEN_NUM as f64 * f2;
    let min_pixels = config.min_pixels.unwrap_or(frame_min_pixels);
    let total_pixels = config
        .total_pixels
        .unwrap_or(MODEL_SEQ_LEN as f64 * f2 * 0.9);
    let budget = frame_max_pixels.min(total_pixels / nframes as f64 * FRAME_FACTOR as f64);
    let max_pixels = budget.max((min_pixels * 1.05).trunc());
    let max_pixels = config.max_pixels.unwrap_or(max_pixels).min(max_pixels);
    smart_resize(height, width, factor, min_pixels, max_pixels)
}

/// Which frames to decode and what size to resize them to.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplePlan {
    pub range: FrameRange,
    /// Frame indices into the whole video, non-decreasing.
    pub indices: Vec<usize>,
    /// `nframes / frames_in_range · video_fps` (qwen-vl-utils' `sample_fps`,
    /// used for the temporal position ids).
    pub sample_fps: f64,
    pub resized_height: u32,
    pub resized_width: u32,
}

/// The full `fetch_video` rule for a video of `total_frames` frames at
/// `video_fps`, frame size `height`×`width`.
pub fn plan(
    config: &SampleConfig,
    total_frames: usize,
    video_fps: f64,
    height: u32,
    width: u32,
) -> Result<SamplePlan, SampleError> {
    let range = frame_range(
        config.video_start,
        config.video_end,
        total_frames,
        video_fps,
    )?;
    let frames_in_range = range.len();
    let nframes = smart_nframes(&config.frames, frames_in_range, video_fps)?;
    let indices = linspace_indices(range.start, range.end, nframes);
    let sample_fps = nframes as f64 / (frames_in_range as f64).max(1e-6) * video_fps;
    let (resized_height, resized_width) = video_frame_size(config, nframes, height, width)?;
    Ok(SamplePlan {
        range,
        indices,
        sample_fps,
        resized_height,
        resized_width,
    })
}

/// qwen-vl-utils' rule for a video given as a list of frame images: all
/// frames, the last repeated up to a multiple of [`FRAME_FACTOR`].
pub fn frame_list_indices(len: usize) -> Vec<usize> {
    if len == 0 {
        return Vec::new();
    }
    let padded = ceil_by_factor(len as f64, FRAME_FACTOR) as usize;
    (0..padded).map(|i| i.min(len - 1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_hand_values() {
        // torch.linspace(0, 12, 12).round() (values 8.727273 etc.)
        assert_eq!(
            linspace_indices(0, 12, 12),
            vec![0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]
        );
        // exact ties round to even: linspace(0, 10, 5) = 0, 2.5, 5, 7.5, 10
        assert_eq!(linspace_indices(0, 10, 5), vec![0, 2, 5, 8, 10]);
    }

    #[test]
    fn nframes_rounds_to_even() {
        assert_eq!(smart_nframes(&FrameCount::Fixed(5), 100, 30.0), Ok(4));
        assert_eq!(smart_nframes(&FrameCount::Fixed(7), 100, 30.0), Ok(8));
        assert!(smart_nframes(&FrameCount::Fixed(1), 100, 30.0).is_err());
        assert!(smart_nframes(&FrameCount::Fixed(102), 100, 30.0).is_err());
    }

    #[test]
    fn fps_mode_defaults() {
        // 10 s at 30 fps → 20 frames at 2 fps
        assert_eq!(smart_nframes(&FrameCount::default(), 300, 30.0), Ok(20));
        // 1 s → 2 frames wanted, min 4
        assert_eq!(smart_nframes(&FrameCount::default(), 30, 30.0), Ok(4));
    }

    #[test]
    fn range_beyond_end_is_an_error() {
        let err = frame_range(Some(20.0), None, 300, 30.0).unwrap_err();
        assert!(matches!(err, SampleError::EmptyRange { .. }));
        let r = frame_range(Some(1.0), Some(2.0), 300, 30.0).unwrap();
        assert_eq!((r.start, r.end), (30, 60));
    }

    #[test]
    fn frame_list_pads_last() {
        assert_eq!(frame_list_indices(3), vec![0, 1, 2, 2]);
        assert_eq!(frame_list_indices(4), vec![0, 1, 2, 3]);
    }
}
