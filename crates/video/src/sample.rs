//! Sampling a [`FrameSource`] end to end: plan (qwen-vl-utils' rule), decode
//! only the chosen frames, resize them to the planned size.

use image::imageops::FilterType;
use image::RgbImage;

use crate::error::VideoError;
use crate::sampling::{plan, SampleConfig, SamplePlan};
use crate::source::FrameSource;

/// Frames chosen and resized as qwen-vl-utils' `fetch_video` would.
#[derive(Debug, Clone)]
pub struct SampledVideo {
    pub plan: SamplePlan,
    /// One frame per `plan.indices` entry, `resized_width`×`resized_height`.
    pub frames: Vec<RgbImage>,
    /// Source frame rate.
    pub video_fps: f64,
}

/// Plan for `source` without decoding anything.
pub fn plan_for(source: &dyn FrameSource, config: &SampleConfig) -> Result<SamplePlan, VideoError> {
    let info = source.info();
    plan(config, info.frame_count, info.fps, info.height, info.width).map_err(|e| {
        VideoError::Sampling {
            path: source.path().to_path_buf(),
            source: e,
        }
    })
}

/// Decode and resize the frames qwen-vl-utils would feed the model.
///
/// Resizing uses Catmull-Rom (bicubic) filtering; torchvision's antialiased
/// bicubic differs by a few grey levels, while indices and sizes are exact.
pub fn sample_video(
    source: &mut dyn FrameSource,
    config: &SampleConfig,
) -> Result<SampledVideo, VideoError> {
    let plan = plan_for(source, config)?;
    let frames = source.read_frames(&plan.indices)?;
    let (w, h) = (plan.resized_width, plan.resized_height);
    let frames = frames
        .into_iter()
        .map(|f| {
            if f.dimensions() == (w, h) {
                f
            } else {
                image::imageops::resize(&f, w, h, FilterType::CatmullRom)
            }
        })
        .collect();
    Ok(SampledVideo {
        plan,
        frames,
        video_fps: source.info().fps,
    })
}
