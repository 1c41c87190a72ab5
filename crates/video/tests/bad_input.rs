//! Bad input never panics or hangs and yields a typed error naming the file.
//! Corrupt inputs are made here, in the test.

use std::path::Path;

use proptest::prelude::*;
use vlrl_video::{
    open_video, sample_video, FrameDir, FrameSource, GifSource, OpenOptions, SampleConfig,
    SampleError, SynthConfig, SyntheticVideo, VideoError, Y4mSource,
};

fn tiny() -> SyntheticVideo {
    SyntheticVideo::new(SynthConfig {
        width: 32,
        height: 24,
        frame_count: 10,
        fps: 10.0,
        ..SynthConfig::default()
    })
}

fn names(err: &VideoError, path: &Path) {
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "error does not name {}: {err}",
        path.display()
    );
}

#[test]
fn missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["nope.mp4", "nope.y4m", "nope.gif", "nope_dir"] {
        let path = dir.path().join(name);
        let err = open_video(&path, &OpenOptions::default()).err().unwrap();
        assert!(matches!(err, VideoError::NotFound { .. }), "{err}");
        names(&err, &path);
    }
    let path = dir.path().join("missing.y4m");
    assert!(matches!(
        Y4mSource::open(&path),
        Err(VideoError::NotFound { .. })
    ));
    assert!(matches!(
        GifSource::open(&path),
        Err(VideoError::NotFound { .. })
    ));
    assert!(matches!(
        FrameDir::open(&path, 2.0),
        Err(VideoError::NotFound { .. })
    ));
}

#[test]
fn zero_length_videos_are_empty() {
    let dir = tempfile::tempdir().unwrap();
    let empty_dir = dir.path().join("frames");
    std::fs::create_dir(&empty_dir).unwrap();
    std::fs::write(empty_dir.join("notes.txt"), "not a frame").unwrap();
    let err = FrameDir::open(&empty_dir, 2.0).err().unwrap();
    assert!(matches!(err, VideoError::Empty { .. }), "{err}");
    names(&err, &empty_dir);

    let y4m = dir.path().join("empty.y4m");
    std::fs::write(&y4m, "YUV4MPEG2 W32 H24 F10:1 Ip A1:1 C420jpeg\n").unwrap();
    let err = Y4mSource::open(&y4m).err().unwrap();
    assert!(matches!(err, VideoError::Empty { .. }), "{err}");
    names(&err, &y4m);
}

#[test]
fn truncated_and_corrupt_y4m() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.y4m");
    tiny().write_y4m(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.path().join("truncated.y4m");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let err = Y4mSource::open(&truncated).err().unwrap();
    assert!(matches!(err, VideoError::Corrupt { .. }), "{err}");
    names(&err, &truncated);

    let garbage = dir.path().join("garbage.y4m");
    std::fs::write(&garbage, b"\x00\x01 definitely not y4m").unwrap();
    let err = Y4mSource::open(&garbage).err().unwrap();
    assert!(matches!(err, VideoError::Corrupt { .. }), "{err}");

    // A frame marker overwritten in the middle of the file.
    let mut broken = bytes.clone();
    let second_frame = bytes
        .windows(5)
        .enumerate()
        .filter(|(_, w)| w == b"FRAME")
        .nth(3)
        .unwrap()
        .0;
    broken[second_frame..second_frame + 5].copy_from_slice(b"XXXXX");
    let marker = dir.path().join("marker.y4m");
    std::fs::write(&marker, &broken).unwrap();
    assert!(matches!(
        Y4mSource::open(&marker),
        Err(VideoError::Corrupt { .. })
    ));
}

#[test]
fn corrupt_frame_image_is_named() {
    let dir = tempfile::tempdir().unwrap();
    tiny().write_frame_dir(dir.path()).unwrap();
    let bad = dir.path().join("frame_00004.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n broken").unwrap();
    let mut source = FrameDir::open(dir.path(), 10.0).unwrap();
    assert!(source.read_frames(&[0, 3]).is_ok());
    let err = source.read_frames(&[4]).err().unwrap();
    assert!(matches!(err, VideoError::Corrupt { .. }), "{err}");
    names(&err, &bad);
}

#[test]
fn corrupt_gif() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gif");
    std::fs::write(&path, b"GIF89a\x10\x00\x10\x00\xff\xff").unwrap();
    let err = GifSource::open(&path).err().unwrap();
    assert!(
        matches!(err, VideoError::Corrupt { .. } | VideoError::Empty { .. }),
        "{err}"
    );
    names(&err, &path);
}

#[test]
fn range_beyond_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.y4m");
    tiny().write_y4m(&path).unwrap();
    let mut source = Y4mSource::open(&path).unwrap();
    // explicit frame index past the end
    let err = source.read_frames(&[3, 10]).err().unwrap();
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
    names(&err, &path);
    // video_start past the 1 s duration
    let config = SampleConfig {
        video_start: Some(5.0),
        ..SampleConfig::nframes(4)
    };
    let err = sample_video(&mut source, &config).err().unwrap();
    assert!(
        matches!(
            err,
            VideoError::Sampling {
                source: SampleError::EmptyRange { .. },
                ..
            }
        ),
        "{err}"
    );
    names(&err, &path);
    // more frames than the video has
    let err = sample_video(&mut source, &SampleConfig::nframes(12))
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            VideoError::Sampling {
                source: SampleError::FrameCountOutOfRange { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[cfg(not(feature = "ffmpeg"))]
#[test]
fn containers_need_the_ffmpeg_feature() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, b"whatever").unwrap();
    let err = open_video(&path, &OpenOptions::default()).err().unwrap();
    assert!(matches!(err, VideoError::Unsupported { .. }), "{err}");
    names(&err, &path);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), y4m_header in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut content = Vec::new();
        if y4m_header {
            content.extend_from_slice(b"YUV4MPEG2 W4 H4 F1:1 C444\nFRAME\n");
        }
        content.extend_from_slice(&bytes);
        // With libav, arbitrary bytes also go through its probing and demuxing.
        let names: &[&str] = if cfg!(feature = "ffmpeg") { &["x.y4m", "x.gif", "x.mp4"] } else { &["x.y4m", "x.gif"] };
        for name in names {
            let path = dir.path().join(name);
            std::fs::write(&path, &content).unwrap();
            if let Ok(mut source) = open_video(&path, &OpenOptions::default()) {
                let n = source.info().frame_count;
                let _ = source.read_frames(&[0, n.saturating_sub(1)]);
            }
        }
    }
}
