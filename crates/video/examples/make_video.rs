//! Write a synthetic video (moving shapes, counter, colour changes).
//!
//! ```text
//! cargo run -p vlrl-video --features ffmpeg --release --example make_video -- \
//!     OUT.mp4 [--width 640] [--height 480] [--seconds 10] [--fps 30] [--seed 0] \
//!     [--preset medium] [--gop N] [--noise 0-255]
//! ```
//! `OUT` ending in `/` (or an existing directory) writes a PNG frame folder,
//! `.y4m` writes Y4M; both work without the `ffmpeg` feature.

use std::path::PathBuf;

use vlrl_video::{SynthConfig, SyntheticVideo, VideoError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().ok_or("usage: make_video OUT [--width W] ...")?);
    let mut config = SynthConfig {
        width: 640,
        height: 480,
        fps: 30.0,
        ..SynthConfig::default()
    };
    let mut seconds = 10.0f64;
    #[allow(unused_mut, unused_variables)]
    let (mut preset, mut gop) = (String::from("medium"), None::<u32>);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--width" => config.width = value.parse()?,
            "--height" => config.height = value.parse()?,
            "--seconds" => seconds = value.parse()?,
            "--fps" => config.fps = value.parse()?,
            "--seed" => config.seed = value.parse()?,
            "--noise" => config.noise = value.parse()?,
            "--preset" => preset = value,
            "--gop" => gop = Some(value.parse()?),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    config.frame_count = (seconds * config.fps).round() as usize;
    config.colour_changes = (seconds / 2.0).ceil() as usize;
    let video = SyntheticVideo::new(config);
    let is_dir = out.is_dir() || out.to_string_lossy().ends_with('/');
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    if is_dir {
        video.write_frame_dir(&out)?;
    } else if ext == "y4m" {
        video.write_y4m(&out)?;
    } else {
        write_container(&video, &out, preset, gop)?;
    }
    println!(
        "wrote {} ({} frames, {}x{} @ {} fps; colour changes at {:?})",
        out.display(),
        video.config().frame_count,
        video.config().width,
        video.config().height,
        video.config().fps,
        video.colour_change_frames()
    );
    Ok(())
}

#[cfg(feature = "ffmpeg")]
fn write_container(
    video: &SyntheticVideo,
    out: &std::path::Path,
    preset: String,
    gop: Option<u32>,
) -> Result<(), VideoError> {
    let options = vlrl_video::ffmpeg::EncodeOptions {
        preset,
        gop,
        ..Default::default()
    };
    video.write_video(out, &options)
}

#[cfg(not(feature = "ffmpeg"))]
fn write_container(
    _video: &SyntheticVideo,
    out: &std::path::Path,
    _preset: String,
    _gop: Option<u32>,
) -> Result<(), VideoError> {
    Err(VideoError::Unsupported {
        path: out.to_path_buf(),
        reason: "encoding containers needs --features ffmpeg".into(),
    })
}
