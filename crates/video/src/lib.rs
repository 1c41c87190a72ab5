//! Video frame decoding and the frame samplers of qwen-vl-utils and Video-RTS.
//!
//! - [`FrameSource`]: random access to decoded RGB frames. Always available:
//!   [`FrameDir`] (numbered images), [`GifSource`], [`Y4mSource`]; with the
//!   `ffmpeg` feature, [`ffmpeg::FfmpegSource`] for anything libav decodes
//!   (MP4/H.264, WebM/VP9, MKV, AVI, ...), seeking so that sampling a few
//!   frames of a long video decodes only around them. [`open_video`] picks one.
//! - [`sampling`]: qwen-vl-utils' `fetch_video` rules, bit-exact (frame
//!   count, `video_start`/`video_end`, `torch.linspace` indices, total-pixel
//!   budget resize); [`sample_video`] applies them to a source.
//! - [`schedule`]: Video-RTS sparse-to-dense frame rounds.
//! - [`synth`]: seeded synthetic videos (moving shapes, counter, colour
//!   changes) written as frame folders, Y4M, or (with `ffmpeg`) MP4.
//!
//! This crate knows nothing of tensors: it hands `image::RgbImage`s to the
//! vision preprocessing.

mod error;
mod frame_dir;
mod gif;
mod sample;
pub mod sampling;
pub mod schedule;
mod source;
pub mod synth;
mod y4m;

#[cfg(feature = "ffmpeg")]
pub mod ffmpeg;

pub use error::{SampleError, VideoError};
pub use frame_dir::FrameDir;
pub use gif::GifSource;
pub use sample::{plan_for, sample_video, SampledVideo};
pub use sampling::{FrameCount, SampleConfig, SamplePlan};
pub use schedule::{sparse_to_dense, Densify, Round, ScheduleConfig};
pub use source::{open_video, FrameSource, OpenOptions, VideoInfo};
pub use synth::{SynthConfig, SyntheticVideo};
pub use y4m::{write_y4m, Y4mSource};
