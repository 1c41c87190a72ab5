//! Qwen2-VL / Qwen2.5-VL image preprocessing and vision towers.
//!
//! * [`image_io`]: decoding (PNG, JPEG, GIF, BMP, WebP) with EXIF orientation
//!   and RGB conversion as the Hugging Face reference does it.
//! * [`preprocess`]: `Qwen2VLImageProcessor` / `Qwen2VLVideoProcessor` —
//!   `smart_resize`, bicubic resize matching Pillow (or torchvision) exactly,
//!   CLIP normalisation, temporal patchify, `grid_thw`.
//! * [`qwen2_vl`], [`qwen2_5_vl`]: the two vision towers in burn, generic over
//!   the backend, loaded from checkpoints by their own tensor names.
//!
//! Parity with transformers 5.24 is tested against fixtures made by
//! `tools/make_vision_fixtures.py`; `docs/vision.md` records the numbers.

pub mod attention;
pub mod config;
pub mod error;
pub mod image_io;
pub mod layers;
pub mod preprocess;
pub mod qwen2_5_vl;
pub mod qwen2_vl;
pub mod resize;
pub mod tower_common;
pub mod weights;

pub use config::{Activation, Qwen25VisionConfig, Qwen2VisionConfig};
pub use error::{VisionError, WeightError};
pub use image_io::{decode_image, load_image, load_image_with, AlphaHandling, DecodeOptions};
pub use preprocess::{
    preprocess_images, preprocess_video, smart_resize, PixelPatches, ProcessorConfig,
};
pub use qwen2_5_vl::Qwen25VisionTower;
pub use qwen2_vl::Qwen2VisionTower;
pub use resize::{resize_rgb, Resample};
pub use tower_common::VisionOutput;
pub use weights::{TensorStore, WeightLoader};
