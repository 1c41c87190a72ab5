//! Typed errors. Every error that concerns a file names it, so a failing
//! dataset row can be found without a debugger.

use std::path::PathBuf;

/// Errors of the sampling rules (qwen-vl-utils' `smart_nframes`,
/// `calculate_video_frame_range`, `smart_resize`). They carry no path: the
/// caller that knows the file wraps them in [`VideoError::Sampling`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleError {
    /// qwen-vl-utils: "nframes should in interval [FRAME_FACTOR, total_frames]".
    #[error("frame count {nframes} is outside [{min}, {total_frames}] (total frames in range)")]
    FrameCountOutOfRange {
        nframes: usize,
        min: usize,
        total_frames: usize,
    },
    /// `video_start`/`video_end` select no frame, e.g. a start beyond the end.
    #[error(
        "time range [{start_secs:?}, {end_secs:?}] s selects no frames: start frame {start_frame} \
         >= end frame {end_frame} (video is {duration_secs:.3} s, {total_frames} frames @ {fps} fps)"
    )]
    EmptyRange {
        start_secs: Option<f64>,
        end_secs: Option<f64>,
        start_frame: usize,
        end_frame: usize,
        total_frames: usize,
        fps: f64,
        duration_secs: f64,
    },
    #[error("invalid sampling option `{field}`: {reason}")]
    InvalidOption { field: &'static str, reason: String },
    #[error("video has no frames")]
    NoFrames,
    #[error("frame rate must be positive and finite, got {0}")]
    BadFps(f64),
    /// qwen-vl-utils' `smart_resize`: aspect ratio above `MAX_RATIO`.
    #[error("aspect ratio of {height}x{width} is above {max_ratio}")]
    AspectRatio {
        height: u32,
        width: u32,
        max_ratio: u32,
    },
    #[error("min_pixels {min_pixels} is above max_pixels {max_pixels}")]
    PixelBounds { min_pixels: f64, max_pixels: f64 },
    #[error("resize of {height}x{width} gives an empty frame ({new_height}x{new_width})")]
    EmptyResize {
        height: u32,
        width: u32,
        new_height: u32,
        new_width: u32,
    },
}

/// Errors of opening, decoding and sampling a video.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("{path}: file or directory not found")]
    NotFound { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The container or stream could not be parsed (truncated, corrupt, not a video).
    #[error("{path}: corrupt or unreadable video: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The file opened but holds no frames (zero-length video, empty frame folder).
    #[error("{path}: video has no frames")]
    Empty { path: PathBuf },
    /// A container with streams but none of them video (e.g. audio only).
    #[error("{path}: no video stream")]
    NoVideoStream { path: PathBuf },
    #[error("{path}: unsupported format: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{path}: frame {index} requested but the video has {frame_count} frames")]
    FrameOutOfRange {
        path: PathBuf,
        index: usize,
        frame_count: usize,
    },
    /// A frame that exists in the index could not be decoded.
    #[error("{path}: frame {index} could not be decoded: {reason}")]
    Decode {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("{path}: frame {index} is {got_width}x{got_height}, expected {width}x{height}")]
    FrameSize {
        path: PathBuf,
        index: usize,
        width: u32,
        height: u32,
        got_width: u32,
        got_height: u32,
    },
    #[error("{path}: {source}")]
    Sampling {
        path: PathBuf,
        #[source]
        source: SampleError,
    },
    #[error("{path}: encoding failed: {reason}")]
    Encode { path: PathBuf, reason: String },
}

impl VideoError {
    /// Map an I/O error on `path` to `NotFound` or `Io`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            VideoError::NotFound { path }
        } else {
            VideoError::Io { path, source }
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            VideoError::NotFound { path }
            | VideoError::Io { path, .. }
            | VideoError::Corrupt { path, .. }
            | VideoError::Empty { path }
            | VideoError::NoVideoStream { path }
            | VideoError::Unsupported { path, .. }
            | VideoError::FrameOutOfRange { path, .. }
            | VideoError::Decode { path, .. }
            | VideoError::FrameSize { path, .. }
            | VideoError::Sampling { path, .. }
            | VideoError::Encode { path, .. } => path,
        }
    }
}
