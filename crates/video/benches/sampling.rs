//! Time to sample 16 and 64 frames (qwen-vl-utils' uniform rule) from a
//! 10 s 640x480 30 fps H.264 video, opening included, as decord's
//! `VideoReader(path).get_batch(indices)` does. Compare with
//! `tools/video_bench_compare.py` on the same file (docs/video.md).
//!
//! `VLRL_BENCH_VIDEO=path.mp4` uses an existing file; otherwise one is
//! generated (noise 24, libx264 preset medium, default GOP) in a temporary
//! directory.

use criterion::{criterion_group, criterion_main, Criterion};
use vlrl_video::sampling::{plan, SampleConfig};

fn planning(c: &mut Criterion) {
    let config = SampleConfig::default();
    c.bench_function("plan/fps_rule_3000_frames", |b| {
        b.iter(|| plan(std::hint::black_box(&config), 3000, 29.97, 480, 640).unwrap())
    });
}

#[cfg(feature = "ffmpeg")]
fn decoding(c: &mut Criterion) {
    use vlrl_video::ffmpeg::{EncodeOptions, FfmpegSource};
    use vlrl_video::{FrameSource, SynthConfig, SyntheticVideo};

    let dir = tempfile::tempdir().unwrap();
    let path = match std::env::var_os("VLRL_BENCH_VIDEO") {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let path = dir.path().join("bench_640x480_10s.mp4");
            let video = SyntheticVideo::new(SynthConfig {
                width: 640,
                height: 480,
                frame_count: 300,
                fps: 30.0,
                colour_changes: 5,
                noise: 24,
                ..SynthConfig::default()
            });
            let options = EncodeOptions {
                preset: "medium".into(),
                ..EncodeOptions::default()
            };
            video.write_video(&path, &options).unwrap();
            path
        }
    };
    let info = FfmpegSource::open(&path).unwrap().info().clone();
    let mut group = c.benchmark_group("sample_h264_640x480_10s");
    group.sample_size(10);
    for n in [16usize, 64] {
        let indices = plan(
            &SampleConfig::nframes(n),
            info.frame_count,
            info.fps,
            info.height,
            info.width,
        )
        .unwrap()
        .indices;
        group.bench_function(format!("open_and_read_{n}"), |b| {
            b.iter(|| {
                let mut source = FfmpegSource::open(&path).unwrap();
                source.read_frames(&indices).unwrap()
            })
        });
    }
    group.finish();
}

#[cfg(feature = "ffmpeg")]
criterion_group!(benches, planning, decoding);
#[cfg(not(feature = "ffmpeg"))]
criterion_group!(benches, planning);
criterion_main!(benches);
