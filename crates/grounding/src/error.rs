use thiserror::Error;

/// Errors from grounding operations. Parsing model text never errors (it
/// returns what it found); these are for geometry the caller asked for.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum GroundingError {
    #[error("smart_resize: image size {width}x{height} has a zero side")]
    ZeroSize { width: u32, height: u32 },
    #[error(
        "smart_resize: absolute aspect ratio must be at most 200, got {ratio} for {width}x{height}"
    )]
    AspectRatio { width: u32, height: u32, ratio: f64 },
    #[error("smart_resize: factor must be positive and pixel bounds ordered (factor {factor}, min_pixels {min_pixels}, max_pixels {max_pixels})")]
    ResizeParams {
        factor: u32,
        min_pixels: u64,
        max_pixels: u64,
    },
    #[error("box {bbox:?} is not valid ({why})")]
    InvalidBox { bbox: [f32; 4], why: &'static str },
    #[error("box {bbox:?} does not overlap the {width}x{height} image")]
    OutsideImage {
        bbox: [f32; 4],
        width: u32,
        height: u32,
    },
    #[error(
        "image frame has a zero side: original {orig_w}x{orig_h}, resized {resized_w}x{resized_h}"
    )]
    EmptyFrame {
        orig_w: u32,
        orig_h: u32,
        resized_w: u32,
        resized_h: u32,
    },
    #[error("zoom config field `{field}` is invalid: {why}")]
    ZoomConfig {
        field: &'static str,
        why: &'static str,
    },
    #[error("crop of {width}x{height} would need {pixels} pixels, above the limit {limit}")]
    CropTooLarge {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
}
