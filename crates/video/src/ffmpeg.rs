//! Decoding and encoding through the system libav (`ffmpeg-next`), behind the
//! `ffmpeg` feature.
//!
//! Opening demuxes the whole video stream once without decoding (cheap: no
//! pixel work) to build an index of packet timestamps and key frames. That
//! gives the exact frame count (as decord's index does) and lets sampling
//! seek: for each requested frame the decoder either keeps going (when no
//! key frame lies between its position and the target) or seeks to the key
//! frame at or before the target. Only requested frames are converted to RGB.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ffmpeg_next as ff;
use image::RgbImage;

use crate::error::VideoError;
use crate::source::{dedup_sorted, reorder, FrameSource, VideoInfo};

/// Times a missing frame is retried from an earlier key frame.
const MAX_KEY_RETRIES: usize = 4;
/// Corrupt packets skipped (demuxer or decoder) before giving up on a file.
const MAX_BAD_PACKETS: usize = 256;

fn init(path: &Path) -> Result<(), VideoError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        ff::init().map_err(|e| e.to_string())?;
        // Errors reach callers as typed values; keep libav's own log quiet.
        ff::util::log::set_level(ff::util::log::Level::Fatal);
        Ok(())
    })
    .clone()
    .map_err(|reason| VideoError::Unsupported {
        path: path.to_path_buf(),
        reason: format!("libav failed to initialise: {reason}"),
    })
}

/// Decoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeOptions {
    /// Decoder threads; 0 lets libav choose.
    pub threads: usize,
}

/// One frame in presentation order.
#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    pts: i64,
    key: bool,
}

/// A video file read through libav.
pub struct FfmpegSource {
    path: PathBuf,
    input: ff::format::context::Input,
    decoder: ff::decoder::Video,
    stream_index: usize,
    /// Presentation timestamps in ascending order; position = frame index.
    index: Vec<IndexEntry>,
    /// Frame indices of key frames, ascending.
    keys: Vec<usize>,
    scaler: Option<(ScalerKey, ff::software::scaling::Context)>,
    /// RGB frame reused across conversions (swscale writes into it).
    rgb: ff::frame::Video,
    info: VideoInfo,
    /// Demuxer reached the end and the decoder was sent EOF.
    drained: bool,
    /// Frames the decoder has produced since open (diagnostics: shows that
    /// seeking skips most of a long video).
    frames_decoded: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScalerKey {
    format: ff::format::Pixel,
    width: u32,
    height: u32,
}

fn rational_f64(r: ff::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0)
        .then(|| f64::from(r.numerator()) / f64::from(r.denominator()))
}

impl FfmpegSource {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, VideoError> {
        Self::open_with(path, DecodeOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: DecodeOptions) -> Result<Self, VideoError> {
        let path = path.as_ref().to_path_buf();
        std::fs::metadata(&path).map_err(|e| VideoError::io(&path, e))?;
        init(&path)?;
        let corrupt = |what: &str, e: ff::Error| VideoError::Corrupt {
            path: path.clone(),
            reason: format!("{what}: {e}"),
        };
        let mut input = ff::format::input(&path).map_err(|e| match e {
            // The container ends before any frame (e.g. a Matroska file
            // with a video track and no clusters).
            ff::Error::Eof => VideoError::Empty { path: path.clone() },
            e => corrupt("cannot open container", e),
        })?;
        let stream = input
            .streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| VideoError::NoVideoStream { path: path.clone() })?;
        let stream_index = stream.index();
        let time_base = stream.time_base();
        let avg_rate = rational_f64(stream.avg_frame_rate());
        let real_rate = rational_f64(stream.rate());
        let mut context = ff::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| corrupt("bad codec parameters", e))?;
        context.set_threading(ff::codec::threading::Config {
            kind: ff::codec::threading::Type::Frame,
            count: options.threads,
            ..Default::default()
        });
        let decoder = context
            .decoder()
            .video()
            .map_err(|e| VideoError::Unsupported {
                path: path.clone(),
                reason: format!("no decoder for the video stream: {e}"),
            })?;
        let (width, height) = (decoder.width(), decoder.height());

        let index = build_index(&mut input, stream_index, &path)?;
        if index.is_empty() {
            return Err(VideoError::Empty { path });
        }
        if width == 0 || height == 0 {
            return Err(VideoError::Corrupt {
                path,
                reason: format!("frame size {width}x{height}"),
            });
        }
        let mut keys: Vec<usize> = index
            .iter()
            .enumerate()
            .filter(|(_, e)| e.key)
            .map(|(i, _)| i)
            .collect();
        if keys.first() != Some(&0) {
            keys.insert(0, 0);
        }
        let duration_secs = index
            .last()
            .zip(index.first())
            .map(|(last, first)| (last.pts - first.pts) as f64 * f64::from(time_base))
            .unwrap_or(0.0);
        let fps = avg_rate
            .or(real_rate)
            .or_else(|| (duration_secs > 0.0).then(|| (index.len() - 1) as f64 / duration_secs))
            .unwrap_or(1.0);
        let info = VideoInfo {
            frame_count: index.len(),
            fps,
            width,
            height,
        };
        Ok(FfmpegSource {
            path,
            input,
            decoder,
            stream_index,
            index,
            keys,
            scaler: None,
            rgb: ff::frame::Video::new(ff::format::Pixel::RGB24, width, height),
            info,
            drained: true,
            frames_decoded: 0,
        })
    }

    /// Frames decoded since open, requested or not.
    pub fn frames_decoded(&self) -> usize {
        self.frames_decoded
    }

    /// Key frames in the index (frame indices, ascending).
    pub fn key_frames(&self) -> &[usize] {
        &self.keys
    }

    /// The key frame at or before `index`, stepping `back` key frames
    /// further (a retry when decoding from the nearest one did not produce
    /// the frame); `None` when there is no such key frame.
    fn key_before(&self, index: usize, back: usize) -> Option<usize> {
        let pos = self.keys.partition_point(|&k| k <= index);
        pos.checked_sub(1 + back)
            .and_then(|p| self.keys.get(p))
            .copied()
    }

    /// Frame index of a decoded frame's timestamp (exact match, else the
    /// last frame at or before it).
    fn frame_index(&self, ts: i64) -> usize {
        let pos = self.index.partition_point(|e| e.pts <= ts);
        pos.saturating_sub(1)
    }

    fn seek_to(&mut self, frame: usize) -> Result<(), VideoError> {
        let pts = self.index.get(frame).map(|e| e.pts).unwrap_or(0);
        // SAFETY: `input` owns a valid, open AVFormatContext for the whole
        // life of `self`; av_seek_frame only reads/writes through it.
        let ret = unsafe {
            ff::ffi::av_seek_frame(
                self.input.as_mut_ptr(),
                self.stream_index as i32,
                pts,
                ff::ffi::AVSEEK_FLAG_BACKWARD,
            )
        };
        if ret < 0 {
            return Err(VideoError::Decode {
                path: self.path.clone(),
                index: frame,
                reason: format!("seek failed: {}", ff::Error::from(ret)),
            });
        }
        self.decoder.flush();
        self.drained = false;
        Ok(())
    }

    /// Next decoded frame and its index, or `None` at the end of the stream.
    /// `target` is the frame being sought (named in errors).
    fn next_frame(
        &mut self,
        frame: &mut ff::frame::Video,
        target: usize,
    ) -> Result<Option<usize>, VideoError> {
        let mut bad_packets = 0usize;
        loop {
            match self.decoder.receive_frame(frame) {
                Ok(()) => {
                    self.frames_decoded += 1;
                    let ts = frame.timestamp().or(frame.pts()).unwrap_or(i64::MIN);
                    return Ok(Some(self.frame_index(ts)));
                }
                Err(ff::Error::Eof) => return Ok(None),
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {}
                Err(ff::Error::InvalidData) => {
                    bad_packets += 1;
                    if bad_packets > MAX_BAD_PACKETS {
                        return Err(self.decode_error(target, "too many corrupt frames"));
                    }
                    continue;
                }
                Err(e) => return Err(self.decode_error(target, &e.to_string())),
            }
            if self.drained {
                return Ok(None);
            }
            // The decoder wants input: feed it the next packet of our stream.
            let mut packet = ff::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {
                    if packet.stream() == self.stream_index {
                        match self.decoder.send_packet(&packet) {
                            Ok(()) => {}
                            Err(ff::Error::InvalidData) => {
                                bad_packets += 1;
                                if bad_packets > MAX_BAD_PACKETS {
                                    return Err(
                                        self.decode_error(target, "too many corrupt packets")
                                    );
                                }
                            }
                            Err(e) => return Err(self.decode_error(target, &e.to_string())),
                        }
                    }
                }
                Err(ff::Error::Eof) => {
                    self.drained = true;
                    // A decoder already at EOF refuses a second one; ignore.
                    let _ = self.decoder.send_eof();
                }
                Err(ff::Error::InvalidData) => {
                    bad_packets += 1;
                    if bad_packets > MAX_BAD_PACKETS {
                        return Err(self.decode_error(target, "too many corrupt packets"));
                    }
                }
                Err(_) => {
                    // I/O error (e.g. truncated file): stop reading, drain
                    // what the decoder holds; missing frames are reported
                    // by the caller.
                    self.drained = true;
                    let _ = self.decoder.send_eof();
                }
            }
        }
    }

    fn decode_error(&self, index: usize, reason: &str) -> VideoError {
        VideoError::Decode {
            path: self.path.clone(),
            index,
            reason: reason.to_string(),
        }
    }

    fn convert_rgb(
        &mut self,
        frame: &ff::frame::Video,
        index: usize,
    ) -> Result<RgbImage, VideoError> {
        let key = ScalerKey {
            format: frame.format(),
            width: frame.width(),
            height: frame.height(),
        };
        let (out_w, out_h) = (self.info.width, self.info.height);
        if self.scaler.as_ref().map(|(k, _)| *k) != Some(key) {
            let scaler = ff::software::scaling::Context::get(
                key.format,
                key.width,
                key.height,
                ff::format::Pixel::RGB24,
                out_w,
                out_h,
                ff::software::scaling::Flags::BILINEAR,
            )
            .map_err(|e| self.decode_error(index, &format!("no RGB conversion: {e}")))?;
            self.scaler = Some((key, scaler));
        }
        if let Some((_, scaler)) = self.scaler.as_mut() {
            scaler
                .run(frame, &mut self.rgb)
                .map_err(|e| VideoError::Decode {
                    path: self.path.clone(),
                    index,
                    reason: format!("RGB conversion failed: {e}"),
                })?;
        }
        // Rows may be padded (stride > 3·width): copy row by row then.
        let stride = self.rgb.stride(0);
        let row_bytes = out_w as usize * 3;
        let size = row_bytes * out_h as usize;
        let data = self.rgb.data(0);
        let pixels = if stride == row_bytes {
            data.get(..size).map(<[u8]>::to_vec)
        } else {
            (0..out_h as usize)
                .map(|row| data.get(row * stride..row * stride + row_bytes))
                .collect::<Option<Vec<&[u8]>>>()
                .map(|rows| rows.concat())
        };
        let pixels =
            pixels.ok_or_else(|| self.decode_error(index, "RGB frame shorter than expected"))?;
        RgbImage::from_raw(out_w, out_h, pixels)
            .ok_or_else(|| self.decode_error(index, "RGB buffer size mismatch"))
    }
}

/// Demux every packet of `stream_index` (no decoding) and return the frames'
/// timestamps in presentation order with their key-frame flags.
fn build_index(
    input: &mut ff::format::context::Input,
    stream_index: usize,
    path: &Path,
) -> Result<Vec<IndexEntry>, VideoError> {
    let mut entries = Vec::new();
    let mut bad_packets = 0usize;
    loop {
        let mut packet = ff::Packet::empty();
        match packet.read(input) {
            Ok(()) => {
                if packet.stream() == stream_index {
                    if let Some(pts) = packet.pts().or(packet.dts()) {
                        entries.push(IndexEntry {
                            pts,
                            key: packet.is_key(),
                        });
                    }
                }
            }
            Err(ff::Error::Eof) => break,
            Err(ff::Error::InvalidData) => {
                bad_packets += 1;
                if bad_packets > MAX_BAD_PACKETS {
                    return Err(VideoError::Corrupt {
                        path: path.to_path_buf(),
                        reason: "too many corrupt packets".into(),
                    });
                }
            }
            // Truncated files end in an I/O error: keep the frames found.
            Err(_) => break,
        }
    }
    entries.sort_by_key(|e| e.pts);
    entries.dedup_by_key(|e| e.pts);
    Ok(entries)
}

impl FrameSource for FfmpegSource {
    fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> &VideoInfo {
        &self.info
    }

    fn read_frames(&mut self, indices: &[usize]) -> Result<Vec<RgbImage>, VideoError> {
        self.check_indices(indices)?;
        let (targets, slots) = dedup_sorted(indices);
        let mut decoded: Vec<RgbImage> = Vec::with_capacity(targets.len());
        let mut frame = ff::frame::Video::empty();
        // Index of the last frame the decoder produced in the current run.
        let mut position: Option<usize> = None;
        // Key frames to step back for the current target: some streams (an
        // x264 tail GOP, open GOPs) do not decode from the nearest key frame
        // after a seek, so a miss retries from the key frame before it.
        let mut back = 0usize;
        let mut next = 0usize;
        while let Some(&target) = targets.get(next) {
            let key = self
                .key_before(target, back)
                .filter(|_| back <= MAX_KEY_RETRIES)
                .ok_or_else(|| {
                    self.decode_error(target, "frame was not produced by the decoder")
                })?;
            let can_continue = position.is_some_and(|p| p < target && key <= p);
            if !can_continue {
                self.seek_to(key)?;
                position = None;
            }
            // Decode forward until the target comes out or is passed.
            let produced = loop {
                let Some(at) = self.next_frame(&mut frame, target)? else {
                    break false;
                };
                position = Some(at);
                if at == target {
                    break true;
                }
                if at > target {
                    break false;
                }
            };
            if produced {
                decoded.push(self.convert_rgb(&frame, target)?);
                next += 1;
                back = 0;
            } else {
                back += 1;
                position = None;
            }
        }
        reorder(decoded, &slots, &self.path)
    }
}

/// Encoder choice for [`encode_video`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoCodec {
    /// libx264 (falls back to any H.264 encoder libav has).
    #[default]
    H264,
    /// MPEG-4 part 2 (libav's own encoder; always present).
    Mpeg4,
    /// libvpx-vp9 (for `.webm`).
    Vp9,
}

/// Encoding settings for [`encode_video`].
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeOptions {
    pub codec: VideoCodec,
    /// Key frame interval in frames; `None` keeps the encoder default
    /// (250 for x264, 12 for mpeg4).
    pub gop: Option<u32>,
    /// libx264 preset.
    pub preset: String,
    /// libx264 constant rate factor.
    pub crf: u32,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            codec: VideoCodec::H264,
            gop: None,
            preset: "veryfast".into(),
            crf: 23,
        }
    }
}

/// Encode RGB frames into a video file; the container follows the file
/// extension. Frames must all have the size of the first (even sides for
/// 4:2:0 codecs).
pub fn encode_video(
    path: &Path,
    fps: f64,
    frames: impl IntoIterator<Item = RgbImage>,
    options: &EncodeOptions,
) -> Result<(), VideoError> {
    init(path)?;
    let enc_err = |what: &str, e: ff::Error| VideoError::Encode {
        path: path.to_path_buf(),
        reason: format!("{what}: {e}"),
    };
    let mut frames = frames.into_iter().peekable();
    let (width, height) =
        frames
            .peek()
            .map(|f| f.dimensions())
            .ok_or_else(|| VideoError::Encode {
                path: path.to_path_buf(),
                reason: "no frames to write".into(),
            })?;
    if !(fps.is_finite() && fps > 0.0) {
        return Err(VideoError::Encode {
            path: path.to_path_buf(),
            reason: format!("frame rate {fps}"),
        });
    }
    let codec = match options.codec {
        VideoCodec::H264 => {
            ff::encoder::find_by_name("libx264").or_else(|| ff::encoder::find(ff::codec::Id::H264))
        }
        VideoCodec::Mpeg4 => ff::encoder::find(ff::codec::Id::MPEG4),
        VideoCodec::Vp9 => ff::encoder::find_by_name("libvpx-vp9")
            .or_else(|| ff::encoder::find(ff::codec::Id::VP9)),
    }
    .ok_or_else(|| VideoError::Encode {
        path: path.to_path_buf(),
        reason: format!("no {:?} encoder in this libav", options.codec),
    })?;
    let mut output =
        ff::format::output(&path).map_err(|e| enc_err("cannot create container", e))?;
    let global_header = output
        .format()
        .flags()
        .contains(ff::format::Flags::GLOBAL_HEADER);
    // Time base 1/(1000·fps): one frame lasts 1000 ticks, exact for
    // fractional rates like 29.97.
    let rate_num = (fps * 1000.0).round() as i32;
    let time_base = ff::Rational::new(1, rate_num);
    let mut encoder = ff::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| enc_err("encoder context", e))?;
    encoder.set_width(width);
    encoder.set_height(height);
    encoder.set_format(ff::format::Pixel::YUV420P);
    encoder.set_time_base(time_base);
    encoder.set_frame_rate(Some(ff::Rational::new(rate_num, 1000)));
    if let Some(gop) = options.gop {
        encoder.set_gop(gop);
    }
    if global_header {
        encoder.set_flags(ff::codec::Flags::GLOBAL_HEADER);
    }
    let mut dict = ff::Dictionary::new();
    if options.codec == VideoCodec::H264 {
        dict.set("preset", &options.preset);
        dict.set("crf", &options.crf.to_string());
    }
    if options.codec == VideoCodec::Vp9 {
        dict.set("deadline", "realtime");
        dict.set("cpu-used", "8");
    }
    let mut encoder = encoder
        .open_as_with(codec, dict)
        .map_err(|e| enc_err("cannot open encoder", e))?;
    {
        let mut stream = output
            .add_stream(codec)
            .map_err(|e| enc_err("cannot add stream", e))?;
        stream.set_parameters(&encoder);
        stream.set_time_base(time_base);
    }
    output
        .write_header()
        .map_err(|e| enc_err("cannot write header", e))?;
    let stream_time_base = output.stream(0).map(|s| s.time_base()).unwrap_or(time_base);

    let mut scaler = ff::software::scaling::Context::get(
        ff::format::Pixel::RGB24,
        width,
        height,
        ff::format::Pixel::YUV420P,
        width,
        height,
        ff::software::scaling::Flags::BILINEAR,
    )
    .map_err(|e| enc_err("no YUV conversion", e))?;
    let mut rgb = ff::frame::Video::new(ff::format::Pixel::RGB24, width, height);
    let mut yuv = ff::frame::Video::empty();
    let write_packets = |encoder: &mut ff::encoder::Video,
                         output: &mut ff::format::context::Output|
     -> Result<(), VideoError> {
        let mut packet = ff::Packet::empty();
        while encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            // Each frame lasts 1000 ticks; without a duration the muxer
            // guesses the last one and the average frame rate drifts.
            packet.set_duration(1000);
            packet.rescale_ts(time_base, stream_time_base);
            packet
                .write_interleaved(output)
                .map_err(|e| enc_err("cannot write packet", e))?;
        }
        Ok(())
    };
    for (i, image) in frames.enumerate() {
        if image.dimensions() != (width, height) {
            return Err(VideoError::FrameSize {
                path: path.to_path_buf(),
                index: i,
                width,
                height,
                got_width: image.width(),
                got_height: image.height(),
            });
        }
        let stride = rgb.stride(0);
        let row_bytes = width as usize * 3;
        let dst = rgb.data_mut(0);
        for (row, line) in image.as_raw().chunks_exact(row_bytes).enumerate() {
            if let Some(out) = dst.get_mut(row * stride..row * stride + row_bytes) {
                out.copy_from_slice(line);
            }
        }
        scaler
            .run(&rgb, &mut yuv)
            .map_err(|e| enc_err("YUV conversion", e))?;
        yuv.set_pts(Some(i as i64 * 1000));
        encoder
            .send_frame(&yuv)
            .map_err(|e| enc_err("cannot encode frame", e))?;
        write_packets(&mut encoder, &mut output)?;
    }
    encoder
        .send_eof()
        .map_err(|e| enc_err("cannot flush encoder", e))?;
    write_packets(&mut encoder, &mut output)?;
    output
        .write_trailer()
        .map_err(|e| enc_err("cannot write trailer", e))
}
