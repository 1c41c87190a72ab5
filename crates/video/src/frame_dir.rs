//! A directory of numbered frame images (`frame_00001.png`, `12.jpg`, ...).
//! Frames are ordered by the last run of digits in the file stem, then by
//! name, so `2.png` comes before `10.png`.

use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::error::VideoError;
use crate::source::{dedup_sorted, extension, reorder, FrameSource, VideoInfo};

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "webp", "gif"];

/// Frames stored as image files in one directory.
#[derive(Debug, Clone)]
pub struct FrameDir {
    path: PathBuf,
    files: Vec<PathBuf>,
    info: VideoInfo,
}

/// The number in a frame file's name: its last run of ASCII digits.
fn frame_number(path: &Path) -> Option<u64> {
    let stem = path.file_stem()?.to_str()?;
    let digits: String = stem
        .chars()
        .rev()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let digits: String = digits.chars().rev().collect();
    digits.parse().ok()
}

impl FrameDir {
    /// List the images in `dir` (not recursive) and read the first one's
    /// size. `fps` is the frame rate the frames stand for.
    pub fn open(dir: impl AsRef<Path>, fps: f64) -> Result<Self, VideoError> {
        let path = dir.as_ref().to_path_buf();
        if !(fps.is_finite() && fps > 0.0) {
            return Err(VideoError::Sampling {
                path,
                source: crate::SampleError::BadFps(fps),
            });
        }
        let entries = std::fs::read_dir(&path).map_err(|e| VideoError::io(&path, e))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| VideoError::io(&path, e))?;
            let file = entry.path();
            let is_image = extension(&file).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()));
            if is_image && file.is_file() {
                files.push(file);
            }
        }
        files.sort_by(|a, b| {
            frame_number(a)
                .cmp(&frame_number(b))
                .then_with(|| a.file_name().cmp(&b.file_name()))
        });
        let first = files
            .first()
            .ok_or_else(|| VideoError::Empty { path: path.clone() })?;
        let (width, height) = image::image_dimensions(first).map_err(|e| VideoError::Corrupt {
            path: first.clone(),
            reason: e.to_string(),
        })?;
        let info = VideoInfo {
            frame_count: files.len(),
            fps,
            width,
            height,
        };
        Ok(FrameDir { path, files, info })
    }

    /// The image files in frame order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn read_one(&self, index: usize) -> Result<RgbImage, VideoError> {
        let file = self.files.get(index).ok_or(VideoError::FrameOutOfRange {
            path: self.path.clone(),
            index,
            frame_count: self.files.len(),
        })?;
        let image = image::open(file)
            .map_err(|e| VideoError::Corrupt {
                path: file.clone(),
                reason: e.to_string(),
            })?
            .to_rgb8();
        if image.dimensions() != (self.info.width, self.info.height) {
            return Err(VideoError::FrameSize {
                path: file.clone(),
                index,
                width: self.info.width,
                height: self.info.height,
                got_width: image.width(),
                got_height: image.height(),
            });
        }
        Ok(image)
    }
}

impl FrameSource for FrameDir {
    fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> &VideoInfo {
        &self.info
    }

    fn read_frames(&mut self, indices: &[usize]) -> Result<Vec<RgbImage>, VideoError> {
        self.check_indices(indices)?;
        let (unique, slots) = dedup_sorted(indices);
        let decoded = unique
            .iter()
            .map(|&i| self.read_one(i))
            .collect::<Result<Vec<_>, _>>()?;
        reorder(decoded, &slots, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_names() {
        assert_eq!(frame_number(Path::new("frame_00012.png")), Some(12));
        assert_eq!(frame_number(Path::new("a1b22.jpg")), Some(22));
        assert_eq!(frame_number(Path::new("cover.png")), None);
    }
}
