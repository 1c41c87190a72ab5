//! The [`FrameSource`] trait and opening a video by path.

use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::error::VideoError;

/// Container-level facts about a video.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VideoInfo {
    /// Exact number of frames (counted from the container index, not
    /// estimated from the duration).
    pub frame_count: usize,
    /// Average frame rate (decord's `get_avg_fps`).
    pub fps: f64,
    pub width: u32,
    pub height: u32,
}

impl VideoInfo {
    /// `frame_count / fps`, seconds.
    pub fn duration_secs(&self) -> f64 {
        if self.fps > 0.0 {
            self.frame_count as f64 / self.fps
        } else {
            0.0
        }
    }
}

/// Random access to the frames of one video.
pub trait FrameSource {
    /// The file or directory the frames come from (used in errors).
    fn path(&self) -> &Path;

    fn info(&self) -> &VideoInfo;

    /// Decode the frames at `indices` (any order, repeats allowed) and return
    /// them in the order asked. Implementations decode each distinct frame
    /// once and avoid decoding frames that are not asked for where the format
    /// allows (seek to the nearest key frame).
    fn read_frames(&mut self, indices: &[usize]) -> Result<Vec<RgbImage>, VideoError>;

    /// Error if any index is past the end; call before decoding.
    fn check_indices(&self, indices: &[usize]) -> Result<(), VideoError> {
        let frame_count = self.info().frame_count;
        match indices.iter().find(|&&i| i >= frame_count) {
            Some(&index) => Err(VideoError::FrameOutOfRange {
                path: self.path().to_path_buf(),
                index,
                frame_count,
            }),
            None => Ok(()),
        }
    }
}

/// Options for [`open_video`].
#[derive(Debug, Clone, PartialEq)]
pub struct OpenOptions {
    /// Frame rate assumed for a directory of frame images (they carry none).
    pub frame_dir_fps: f64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        // qwen-vl-utils' default `sample_fps` for frame lists.
        OpenOptions { frame_dir_fps: 2.0 }
    }
}

/// Open `path` with the reader its kind calls for: a directory of numbered
/// images, `.gif`, `.y4m`, and with the `ffmpeg` feature anything libav reads.
pub fn open_video(
    path: impl AsRef<Path>,
    options: &OpenOptions,
) -> Result<Box<dyn FrameSource>, VideoError> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| VideoError::io(path, e))?;
    if meta.is_dir() {
        return Ok(Box::new(crate::frame_dir::FrameDir::open(
            path,
            options.frame_dir_fps,
        )?));
    }
    match extension(path).as_deref() {
        Some("gif") => Ok(Box::new(crate::gif::GifSource::open(path)?)),
        Some("y4m") => Ok(Box::new(crate::y4m::Y4mSource::open(path)?)),
        _ => open_container(path),
    }
}

#[cfg(feature = "ffmpeg")]
fn open_container(path: &Path) -> Result<Box<dyn FrameSource>, VideoError> {
    Ok(Box::new(crate::ffmpeg::FfmpegSource::open(path)?))
}

#[cfg(not(feature = "ffmpeg"))]
fn open_container(path: &Path) -> Result<Box<dyn FrameSource>, VideoError> {
    Err(VideoError::Unsupported {
        path: path.to_path_buf(),
        reason: "container formats need the `ffmpeg` feature (frame folders, GIF and Y4M \
                 work without it)"
            .into(),
    })
}

pub(crate) fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
}

/// Distinct indices in ascending order, and for each requested position the
/// slot of its frame in that list (so each frame is decoded once).
pub(crate) fn dedup_sorted(indices: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut unique: Vec<usize> = indices.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let slots = indices
        .iter()
        .map(|i| unique.partition_point(|u| u < i))
        .collect();
    (unique, slots)
}

/// Put decoded frames (in `unique` order) back into the requested order,
/// moving them when each is asked for once in ascending order (the usual
/// case) and cloning only repeats.
pub(crate) fn reorder(
    decoded: Vec<RgbImage>,
    slots: &[usize],
    path: &Path,
) -> Result<Vec<RgbImage>, VideoError> {
    let identity = slots.len() == decoded.len() && slots.iter().enumerate().all(|(i, &s)| i == s);
    if identity {
        return Ok(decoded);
    }
    slots
        .iter()
        .map(|&s| {
            decoded.get(s).cloned().ok_or_else(|| VideoError::Decode {
                path: PathBuf::from(path),
                index: s,
                reason: "frame missing after decoding".into(),
            })
        })
        .collect()
}
