//! Decoding through libav (`--features ffmpeg`): exact frame counts, seeking
//! returns the right frames, several containers, and bad files (truncated,
//! corrupt, zero-length, audio only) give typed errors naming the file.
#![cfg(feature = "ffmpeg")]

use std::path::Path;

use image::RgbImage;
use vlrl_video::ffmpeg::{encode_video, EncodeOptions, FfmpegSource, VideoCodec};
use vlrl_video::{
    open_video, sample_video, FrameSource, OpenOptions, SampleConfig, SynthConfig, SyntheticVideo,
    VideoError,
};

fn video(frames: usize) -> SyntheticVideo {
    SyntheticVideo::new(SynthConfig {
        width: 96,
        height: 64,
        frame_count: frames,
        fps: 30.0,
        seed: 11,
        ..SynthConfig::default()
    })
}

fn write(video: &SyntheticVideo, path: &Path, codec: VideoCodec, gop: u32) {
    let options = EncodeOptions {
        codec,
        gop: Some(gop),
        crf: 18,
        ..EncodeOptions::default()
    };
    video.write_video(path, &options).unwrap();
}

fn mad(a: &RgbImage, b: &RgbImage) -> f64 {
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

/// The synthetic frame a decoded frame is closest to, among all frames.
fn closest(video: &SyntheticVideo, frame: &RgbImage) -> usize {
    (0..video.config().frame_count)
        .min_by(|&a, &b| mad(frame, &video.frame(a)).total_cmp(&mad(frame, &video.frame(b))))
        .unwrap()
}

fn names(err: &VideoError, path: &Path) {
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn mp4_exact_count_and_seeked_frames_are_right() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let synth = video(75);
    write(&synth, &path, VideoCodec::H264, 12);
    let mut source = FfmpegSource::open(&path).unwrap();
    let info = source.info().clone();
    assert_eq!(info.frame_count, 75);
    assert!((info.fps - 30.0).abs() < 1e-6, "{}", info.fps);
    assert_eq!((info.width, info.height), (96, 64));
    // unsorted, repeated, across key frames, backwards
    let wanted = [70, 3, 3, 40, 0, 74, 13, 12, 41];
    let frames = source.read_frames(&wanted).unwrap();
    for (frame, &i) in frames.iter().zip(&wanted) {
        assert_eq!(closest(&synth, frame), i, "frame {i}");
        assert!(mad(frame, &synth.frame(i)) < 4.0);
    }
    // seeking and sequential decoding give identical pixels
    let all = source.read_frames(&(0..75).collect::<Vec<_>>()).unwrap();
    for (frame, &i) in frames.iter().zip(&wanted) {
        assert_eq!(frame, &all[i]);
    }
}

#[test]
fn seeking_skips_most_of_a_long_video() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.mp4");
    let synth = SyntheticVideo::new(SynthConfig {
        width: 64,
        height: 48,
        frame_count: 600,
        fps: 30.0,
        seed: 12,
        ..SynthConfig::default()
    });
    write(&synth, &path, VideoCodec::H264, 30);
    let mut source = FfmpegSource::open(&path).unwrap();
    assert_eq!(source.info().frame_count, 600);
    assert!(source.key_frames().len() >= 20, "{:?}", source.key_frames());
    let wanted = [5, 299, 595];
    let frames = source.read_frames(&wanted).unwrap();
    for (frame, &i) in frames.iter().zip(&wanted) {
        assert_eq!(closest(&synth, frame), i);
    }
    // three GOPs of at most 30 frames each (+ decoder look-ahead), not 600
    assert!(
        source.frames_decoded() < 120,
        "decoded {}",
        source.frames_decoded()
    );
}

#[test]
fn other_containers_decode() {
    let dir = tempfile::tempdir().unwrap();
    let synth = video(20);
    for (name, codec) in [
        ("c.mkv", VideoCodec::H264),
        ("c.avi", VideoCodec::Mpeg4),
        ("c.webm", VideoCodec::Vp9),
    ] {
        let path = dir.path().join(name);
        write(&synth, &path, codec, 5);
        let mut source = open_video(&path, &OpenOptions::default()).unwrap();
        assert_eq!(source.info().frame_count, 20, "{name}");
        let frames = source.read_frames(&[17, 2]).unwrap();
        assert_eq!(closest(&synth, &frames[0]), 17, "{name}");
        assert_eq!(closest(&synth, &frames[1]), 2, "{name}");
    }
}

#[test]
fn sampling_an_mp4_matches_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let synth = video(60);
    write(&synth, &path, VideoCodec::H264, 30);
    let mut source = open_video(&path, &OpenOptions::default()).unwrap();
    let sampled = sample_video(source.as_mut(), &SampleConfig::nframes(8)).unwrap();
    assert_eq!(
        sampled.plan.indices,
        vlrl_video::sampling::linspace_indices(0, 59, 8)
    );
    assert_eq!(sampled.frames.len(), 8);
}

#[test]
fn truncated_and_corrupt_mp4_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.mp4");
    write(&video(30), &good, VideoCodec::H264, 10);
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.path().join("truncated.mp4");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = FfmpegSource::open(&truncated).err().unwrap();
    assert!(matches!(err, VideoError::Corrupt { .. }), "{err}");
    names(&err, &truncated);

    let random = dir.path().join("random.mp4");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&random, &noise).unwrap();
    let err = FfmpegSource::open(&random).err().unwrap();
    assert!(matches!(err, VideoError::Corrupt { .. }), "{err}");
    names(&err, &random);

    // Garbage over the coded frames: opening works (the index is intact),
    // decoding returns frames or a typed error, never a panic or a hang.
    let mut scrambled = bytes.clone();
    let (lo, hi) = (bytes.len() / 8, bytes.len() / 2);
    for (i, b) in scrambled[lo..hi].iter_mut().enumerate() {
        *b ^= (i as u8).wrapping_mul(37) | 1;
    }
    let scrambled_path = dir.path().join("scrambled.mp4");
    std::fs::write(&scrambled_path, &scrambled).unwrap();
    match FfmpegSource::open(&scrambled_path) {
        Ok(mut source) => {
            let n = source.info().frame_count;
            if let Err(err) = source.read_frames(&(0..n).collect::<Vec<_>>()) {
                names(&err, &scrambled_path);
            }
        }
        Err(err) => names(&err, &scrambled_path),
    }
}

#[test]
fn zero_length_video_is_empty() {
    use ffmpeg_next as ff;
    let dir = tempfile::tempdir().unwrap();
    // The MP4 muxer drops a track without samples; Matroska keeps it.
    let path = dir.path().join("empty.mkv");
    ff::init().unwrap();
    {
        let mut output = ff::format::output(&path).unwrap();
        let codec = ff::encoder::find(ff::codec::Id::MPEG4).unwrap();
        let mut encoder = ff::codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .unwrap();
        encoder.set_width(32);
        encoder.set_height(32);
        encoder.set_format(ff::format::Pixel::YUV420P);
        encoder.set_time_base(ff::Rational::new(1, 30));
        let encoder = encoder.open_as(codec).unwrap();
        let mut stream = output.add_stream(codec).unwrap();
        stream.set_parameters(&encoder);
        output.write_header().unwrap();
        output.write_trailer().unwrap();
    }
    let err = FfmpegSource::open(&path).err().unwrap();
    assert!(matches!(err, VideoError::Empty { .. }), "{err}");
    names(&err, &path);
}

/// A PCM WAV file written by hand: a container with only an audio stream.
fn write_wav(path: &Path) {
    let samples: Vec<i16> = (0..8000)
        .map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&8000u32.to_le_bytes());
    bytes.extend_from_slice(&16000u32.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn audio_only_file_has_no_video_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sound.wav");
    write_wav(&path);
    let err = open_video(&path, &OpenOptions::default()).err().unwrap();
    assert!(matches!(err, VideoError::NoVideoStream { .. }), "{err}");
    names(&err, &path);
}

#[test]
fn missing_file_and_index_past_end() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.mp4");
    assert!(matches!(
        FfmpegSource::open(&missing),
        Err(VideoError::NotFound { .. })
    ));
    let path = dir.path().join("clip.mp4");
    write(&video(10), &path, VideoCodec::H264, 5);
    let mut source = FfmpegSource::open(&path).unwrap();
    let err = source.read_frames(&[10]).err().unwrap();
    assert!(
        matches!(
            err,
            VideoError::FrameOutOfRange {
                index: 10,
                frame_count: 10,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn encode_rejects_no_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.mp4");
    let err = encode_video(
        &path,
        30.0,
        Vec::<RgbImage>::new(),
        &EncodeOptions::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, VideoError::Encode { .. }));
}
