//! Typed errors for decoding, preprocessing and weight loading.

use std::path::PathBuf;

/// Errors from image decoding and preprocessing.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// The file could not be read.
    #[error("cannot read image file {path}: {source}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The bytes are not a decodable image (unknown format, corrupt or truncated data).
    #[error("cannot decode image {origin}: {source}")]
    Decode {
        /// Where the bytes came from (a path or a caller-given label).
        origin: String,
        /// Underlying decoder error.
        source: image::ImageError,
    },
    /// An image (or video frame) with a zero width or height.
    #[error("image {origin} has zero size ({width}x{height})")]
    ZeroSize {
        /// Where the image came from.
        origin: String,
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
    },
    /// `max(h, w) / min(h, w)` exceeds the limit of `smart_resize` (200 in the reference).
    #[error("absolute aspect ratio must be smaller than {limit}, got {ratio} for a {width}x{height} image")]
    AspectRatio {
        /// The offending ratio.
        ratio: f64,
        /// The limit.
        limit: f64,
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
    },
    /// A configuration value that cannot work (zero patch size, min > max pixels, ...).
    #[error("invalid preprocessing config: {0}")]
    Config(String),
    /// Tower inputs that do not agree (patch count vs `grid_thw`, patch length, odd grids).
    #[error("invalid vision tower input: {0}")]
    Input(String),
    /// A video without frames.
    #[error("video has no frames")]
    EmptyVideo,
    /// Frames of one video must share one size.
    #[error("video frame {index} is {width}x{height}, frame 0 is {first_width}x{first_height}")]
    FrameSize {
        /// Frame index.
        index: usize,
        /// Its width.
        width: usize,
        /// Its height.
        height: usize,
        /// Width of frame 0.
        first_width: usize,
        /// Height of frame 0.
        first_height: usize,
    },
}

/// Errors from reading vision-tower weights and configs.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// File could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The safetensors header or data is malformed.
    #[error("invalid safetensors file {path}: {message}")]
    Safetensors {
        /// File that failed.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A JSON file (config, shard index) is malformed.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        /// File that failed.
        path: PathBuf,
        /// Parser error.
        source: serde_json::Error,
    },
    /// Tensors the model needs but the checkpoint lacks.
    #[error("missing tensors: {}", names.join(", "))]
    Missing {
        /// The checkpoint names that were looked up.
        names: Vec<String>,
    },
    /// Tensors under the model's prefix that no parameter consumed.
    #[error("unexpected tensors: {}", names.join(", "))]
    Unexpected {
        /// The unused checkpoint names.
        names: Vec<String>,
    },
    /// A tensor with the wrong shape.
    #[error("tensor {name}: expected shape {expected:?}, found {found:?}")]
    Shape {
        /// Checkpoint name.
        name: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A dtype the loader cannot convert to f32.
    #[error("tensor {name}: unsupported dtype {dtype}")]
    Dtype {
        /// Checkpoint name.
        name: String,
        /// The dtype found.
        dtype: String,
    },
    /// The vision config is inconsistent (e.g. heads do not divide the width).
    #[error("invalid vision config: {0}")]
    Config(String),
}
