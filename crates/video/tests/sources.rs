//! Frame sources that need no system libraries, fed by the synthetic
//! generator: frame folders (lossless round trip), Y4M, GIF, sampling end to
//! end and the Video-RTS schedule on a real source.

use image::RgbImage;
use vlrl_video::schedule::{sparse_to_dense, Densify, ScheduleConfig};
use vlrl_video::{
    open_video, sample_video, FrameDir, FrameSource, GifSource, OpenOptions, SampleConfig,
    SynthConfig, SyntheticVideo, Y4mSource,
};

fn small_video(frames: usize, seed: u64) -> SyntheticVideo {
    SyntheticVideo::new(SynthConfig {
        width: 64,
        height: 48,
        frame_count: frames,
        fps: 10.0,
        seed,
        ..SynthConfig::default()
    })
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn frame_dir_round_trip_is_lossless() {
    let dir = tempfile::tempdir().unwrap();
    let video = small_video(12, 1);
    let files = video.write_frame_dir(dir.path()).unwrap();
    assert_eq!(files.len(), 12);
    let mut source = FrameDir::open(dir.path(), 10.0).unwrap();
    assert_eq!(source.info().frame_count, 12);
    assert_eq!((source.info().width, source.info().height), (64, 48));
    let frames = source.read_frames(&[11, 0, 5, 5]).unwrap();
    assert_eq!(frames[0], video.frame(11));
    assert_eq!(frames[1], video.frame(0));
    assert_eq!(frames[2], video.frame(5));
    assert_eq!(frames[3], video.frame(5));
}

#[test]
fn frame_dir_orders_numerically() {
    let dir = tempfile::tempdir().unwrap();
    let video = small_video(12, 2);
    for i in 0..12 {
        // unpadded numbers: lexical order would put 10 before 2
        video
            .frame(i)
            .save(dir.path().join(format!("{i}.png")))
            .unwrap();
    }
    let mut source = FrameDir::open(dir.path(), 10.0).unwrap();
    assert_eq!(
        source.read_frames(&[2, 10]).unwrap(),
        vec![video.frame(2), video.frame(10)]
    );
}

#[test]
fn y4m_round_trip_is_close_and_random_access() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.y4m");
    let video = small_video(20, 3);
    video.write_y4m(&path).unwrap();
    let mut source = Y4mSource::open(&path).unwrap();
    assert_eq!(source.info().frame_count, 20);
    assert_eq!(source.info().fps, 10.0);
    let frames = source.read_frames(&[19, 3]).unwrap();
    assert!(mean_abs_diff(&frames[0], &video.frame(19)) < 2.0);
    assert!(mean_abs_diff(&frames[1], &video.frame(3)) < 2.0);
    // a different frame is clearly further away
    assert!(mean_abs_diff(&frames[1], &video.frame(10)) > 2.0);
}

#[test]
fn gif_frames_and_rate() {
    use image::codecs::gif::{GifEncoder, Repeat};
    use image::{Delay, Frame};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.gif");
    let video = small_video(6, 4);
    {
        let file = std::fs::File::create(&path).unwrap();
        let mut encoder = GifEncoder::new(file);
        encoder.set_repeat(Repeat::Infinite).unwrap();
        for frame in video.frames() {
            let rgba = image::DynamicImage::ImageRgb8(frame).to_rgba8();
            encoder
                .encode_frame(Frame::from_parts(
                    rgba,
                    0,
                    0,
                    Delay::from_numer_denom_ms(100, 1),
                ))
                .unwrap();
        }
    }
    let mut source = GifSource::open(&path).unwrap();
    assert_eq!(source.info().frame_count, 6);
    assert!((source.info().fps - 10.0).abs() < 1e-9);
    let frames = source.read_frames(&[5, 0]).unwrap();
    // GIF quantises colours: close, not equal
    assert!(mean_abs_diff(&frames[0], &video.frame(5)) < 12.0);
    assert!(
        mean_abs_diff(&frames[0], &video.frame(5)) < mean_abs_diff(&frames[0], &video.frame(0))
    );
}

#[test]
fn sample_video_follows_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let video = SyntheticVideo::new(SynthConfig {
        width: 100,
        height: 60,
        frame_count: 40,
        fps: 10.0,
        seed: 5,
        ..SynthConfig::default()
    });
    video.write_frame_dir(dir.path()).unwrap();
    let mut source = open_video(
        dir.path(),
        &OpenOptions {
            frame_dir_fps: 10.0,
        },
    )
    .unwrap();
    // 4 s at 10 fps, 2 fps sampling → 8 frames, uniform over 0..=39
    let sampled = sample_video(source.as_mut(), &SampleConfig::default()).unwrap();
    assert_eq!(sampled.plan.indices, vec![0, 6, 11, 17, 22, 28, 33, 39]);
    assert_eq!(sampled.frames.len(), 8);
    // min_pixels 128·28² forces upscaling to multiples of 28
    let (h, w) = (sampled.plan.resized_height, sampled.plan.resized_width);
    assert_eq!((h % 28, w % 28), (0, 0));
    assert!(u64::from(h) * u64::from(w) >= 128 * 28 * 28);
    assert!(sampled.frames.iter().all(|f| f.dimensions() == (w, h)));
    assert!((sampled.plan.sample_fps - 2.0).abs() < 1e-12);
}

#[test]
fn nested_schedule_decodes_only_new_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.y4m");
    let video = SyntheticVideo::new(SynthConfig {
        width: 32,
        height: 24,
        frame_count: 300,
        fps: 30.0,
        seed: 6,
        ..SynthConfig::default()
    });
    video.write_y4m(&path).unwrap();
    let mut source = Y4mSource::open(&path).unwrap();
    let config = ScheduleConfig {
        start: 32,
        max: 128,
        densify: Densify::Nested,
        ..ScheduleConfig::default()
    };
    let rounds = sparse_to_dense(&config, source.info().frame_count, source.info().fps).unwrap();
    assert_eq!(
        rounds.iter().map(|r| r.nframes).collect::<Vec<_>>(),
        vec![32, 64, 128]
    );
    let mut decoded = std::collections::BTreeMap::new();
    for round in &rounds {
        let new = source.read_frames(&round.new_indices).unwrap();
        decoded.extend(round.new_indices.iter().copied().zip(new));
        assert!(round.indices.iter().all(|i| decoded.contains_key(i)));
    }
    assert_eq!(decoded.len(), 128, "each frame decoded once");
}
