//! Animated GIF through the `image` crate. GIF frames are deltas composited
//! onto a canvas, so the whole file is decoded once at open (GIFs are small);
//! the frame rate is the frame count over the summed frame delays.

use std::path::{Path, PathBuf};

use image::{AnimationDecoder, RgbImage, RgbaImage};

use crate::error::VideoError;
use crate::source::{FrameSource, VideoInfo};

/// Browsers show a 0 ms delay as 100 ms; so do we.
const DEFAULT_DELAY_MS: f64 = 100.0;

#[derive(Debug, Clone)]
pub struct GifSource {
    path: PathBuf,
    frames: Vec<RgbImage>,
    info: VideoInfo,
}

/// Transparent pixels become white (as qwen-vl-utils' `to_rgb` does for RGBA).
fn flatten_on_white(frame: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(frame.width(), frame.height(), |x, y| {
        let [r, g, b, a] = frame.get_pixel(x, y).0;
        let blend = |c: u8| -> u8 {
            let (c, a) = (u32::from(c), u32::from(a));
            ((c * a + 255 * (255 - a) + 127) / 255) as u8
        };
        image::Rgb([blend(r), blend(g), blend(b)])
    })
}

impl GifSource {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, VideoError> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| VideoError::io(&path, e))?;
        let corrupt = |e: image::ImageError| VideoError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        };
        let decoder =
            image::codecs::gif::GifDecoder::new(std::io::BufReader::new(file)).map_err(corrupt)?;
        let mut frames = Vec::new();
        let mut total_ms = 0.0;
        for frame in decoder.into_frames() {
            let frame = frame.map_err(corrupt)?;
            let (num, den) = frame.delay().numer_denom_ms();
            let delay = if num == 0 || den == 0 {
                DEFAULT_DELAY_MS
            } else {
                f64::from(num) / f64::from(den)
            };
            total_ms += delay;
            frames.push(flatten_on_white(frame.buffer()));
        }
        let first = frames
            .first()
            .ok_or_else(|| VideoError::Empty { path: path.clone() })?;
        let info = VideoInfo {
            frame_count: frames.len(),
            fps: frames.len() as f64 * 1000.0 / total_ms,
            width: first.width(),
            height: first.height(),
        };
        Ok(GifSource { path, frames, info })
    }
}

impl FrameSource for GifSource {
    fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> &VideoInfo {
        &self.info
    }

    fn read_frames(&mut self, indices: &[usize]) -> Result<Vec<RgbImage>, VideoError> {
        self.check_indices(indices)?;
        indices
            .iter()
            .map(|&i| {
                self.frames
                    .get(i)
                    .cloned()
                    .ok_or(VideoError::FrameOutOfRange {
                        path: self.path.clone(),
                        index: i,
                        frame_count: self.frames.len(),
                    })
            })
            .collect()
    }
}
