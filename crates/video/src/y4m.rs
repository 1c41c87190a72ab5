//! YUV4MPEG2 (`.y4m`): uncompressed 8-bit frames behind a text header, the
//! format `ffmpeg -f yuv4mpegpipe` writes. Frames have a fixed size, so an
//! offset index built at open gives true random access.
//!
//! Colour: BT.601 limited range (what ffmpeg assumes for Y4M), 4:2:0 chroma
//! upsampled by nearest neighbour. Supported `C` tags: `420jpeg`, `420paldv`,
//! `420mpeg2`, `420`, `422`, `444`, `mono`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::error::VideoError;
use crate::source::{dedup_sorted, reorder, FrameSource, VideoInfo};

const MAGIC: &str = "YUV4MPEG2";
/// Longest header / frame-header line accepted (guards against non-Y4M input).
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chroma {
    /// Subsampling shifts (x, y).
    Sub(u32, u32),
    Mono,
}

impl Chroma {
    fn parse(tag: &str) -> Option<Self> {
        match tag {
            "420jpeg" | "420paldv" | "420mpeg2" | "420" => Some(Chroma::Sub(1, 1)),
            "422" => Some(Chroma::Sub(1, 0)),
            "444" => Some(Chroma::Sub(0, 0)),
            "mono" => Some(Chroma::Mono),
            _ => None,
        }
    }

    fn plane_size(self, width: u32, height: u32) -> (usize, usize) {
        match self {
            Chroma::Sub(sx, sy) => (
                (width as usize).div_ceil(1 << sx),
                (height as usize).div_ceil(1 << sy),
            ),
            Chroma::Mono => (0, 0),
        }
    }

    fn frame_bytes(self, width: u32, height: u32) -> usize {
        let (cw, ch) = self.plane_size(width, height);
        width as usize * height as usize + 2 * cw * ch
    }
}

#[derive(Debug)]
pub struct Y4mSource {
    path: PathBuf,
    reader: BufReader<File>,
    chroma: Chroma,
    /// Byte offset of each frame's pixel data.
    offsets: Vec<u64>,
    info: VideoInfo,
}

fn read_line(reader: &mut impl BufRead, path: &Path) -> Result<Option<String>, VideoError> {
    let mut buf = Vec::new();
    let n = reader
        .by_ref()
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .map_err(|e| VideoError::io(path, e))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(VideoError::Corrupt {
            path: path.to_path_buf(),
            reason: "header line is unterminated or too long".into(),
        });
    }
    buf.pop();
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| VideoError::Corrupt {
            path: path.to_path_buf(),
            reason: "header is not text".into(),
        })
}

impl Y4mSource {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, VideoError> {
        let path = path.as_ref().to_path_buf();
        let corrupt = |reason: String| VideoError::Corrupt {
            path: path.clone(),
            reason,
        };
        let file = File::open(&path).map_err(|e| VideoError::io(&path, e))?;
        let file_len = file.metadata().map_err(|e| VideoError::io(&path, e))?.len();
        let mut reader = BufReader::new(file);
        let header = read_line(&mut reader, &path)?.ok_or_else(|| corrupt("empty file".into()))?;
        let mut fields = header.split(' ');
        if fields.next() != Some(MAGIC) {
            return Err(corrupt("missing YUV4MPEG2 signature".into()));
        }
        let (mut width, mut height, mut fps, mut chroma) = (0u32, 0u32, None, Chroma::Sub(1, 1));
        for field in fields.filter(|f| !f.is_empty()) {
            let (tag, value) = field.split_at(1);
            match tag {
                "W" => {
                    width = value
                        .parse()
                        .map_err(|_| corrupt(format!("bad width {value:?}")))?
                }
                "H" => {
                    height = value
                        .parse()
                        .map_err(|_| corrupt(format!("bad height {value:?}")))?
                }
                "F" => {
                    let (n, d) = value
                        .split_once(':')
                        .ok_or_else(|| corrupt(format!("bad frame rate {value:?}")))?;
                    let n: f64 = n
                        .parse()
                        .map_err(|_| corrupt(format!("bad frame rate {value:?}")))?;
                    let d: f64 = d
                        .parse()
                        .map_err(|_| corrupt(format!("bad frame rate {value:?}")))?;
                    fps = Some(n / d);
                }
                "C" => {
                    chroma = Chroma::parse(value).ok_or_else(|| VideoError::Unsupported {
                        path: path.clone(),
                        reason: format!("Y4M colour space {value:?} (8-bit only)"),
                    })?
                }
                _ => {}
            }
        }
        if width == 0 || height == 0 {
            return Err(corrupt(format!("frame size {width}x{height}")));
        }
        let fps = fps
            .filter(|f| f.is_finite() && *f > 0.0)
            .ok_or_else(|| corrupt("missing or zero frame rate".into()))?;
        let frame_bytes = chroma.frame_bytes(width, height) as u64;
        let mut offsets = Vec::new();
        let mut pos = reader
            .stream_position()
            .map_err(|e| VideoError::io(&path, e))?;
        while pos < file_len {
            let line = read_line(&mut reader, &path)?
                .ok_or_else(|| corrupt(format!("frame {} header cut short", offsets.len())))?;
            if !line.starts_with("FRAME") {
                return Err(corrupt(format!(
                    "frame {} has no FRAME marker",
                    offsets.len()
                )));
            }
            let data = reader
                .stream_position()
                .map_err(|e| VideoError::io(&path, e))?;
            if data + frame_bytes > file_len {
                return Err(corrupt(format!(
                    "frame {} is truncated ({} of {frame_bytes} bytes)",
                    offsets.len(),
                    file_len - data
                )));
            }
            offsets.push(data);
            pos = data + frame_bytes;
            reader
                .seek(SeekFrom::Start(pos))
                .map_err(|e| VideoError::io(&path, e))?;
        }
        if offsets.is_empty() {
            return Err(VideoError::Empty { path });
        }
        let info = VideoInfo {
            frame_count: offsets.len(),
            fps,
            width,
            height,
        };
        Ok(Y4mSource {
            path,
            reader,
            chroma,
            offsets,
            info,
        })
    }

    fn read_one(&mut self, index: usize, buf: &mut Vec<u8>) -> Result<RgbImage, VideoError> {
        let offset = *self.offsets.get(index).ok_or(VideoError::FrameOutOfRange {
            path: self.path.clone(),
            index,
            frame_count: self.offsets.len(),
        })?;
        let (width, height) = (self.info.width, self.info.height);
        buf.resize(self.chroma.frame_bytes(width, height), 0);
        self.reader
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.reader.read_exact(buf))
            .map_err(|e| VideoError::Decode {
                path: self.path.clone(),
                index,
                reason: e.to_string(),
            })?;
        Ok(yuv_to_rgb(buf, width, height, self.chroma))
    }
}

fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// BT.601 limited range → RGB, fixed point (coefficients ×256).
fn yuv_pixel(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 298 * (i32::from(y) - 16);
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    [
        clamp_u8((c + 409 * e + 128) >> 8),
        clamp_u8((c - 100 * d - 208 * e + 128) >> 8),
        clamp_u8((c + 516 * d + 128) >> 8),
    ]
}

fn yuv_to_rgb(data: &[u8], width: u32, height: u32, chroma: Chroma) -> RgbImage {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = chroma.plane_size(width, height);
    let (luma, rest) = data.split_at(w * h);
    let (u_plane, v_plane) = rest.split_at(cw * ch);
    let mut out = vec![0u8; w * h * 3];
    for (row, out_row) in out.chunks_exact_mut(w * 3).enumerate() {
        for (col, px) in out_row.chunks_exact_mut(3).enumerate() {
            let y = luma.get(row * w + col).copied().unwrap_or(16);
            let (u, v) = match chroma {
                Chroma::Sub(sx, sy) => {
                    let ci = (row >> sy) * cw + (col >> sx);
                    (
                        u_plane.get(ci).copied().unwrap_or(128),
                        v_plane.get(ci).copied().unwrap_or(128),
                    )
                }
                Chroma::Mono => (128, 128),
            };
            px.copy_from_slice(&yuv_pixel(y, u, v));
        }
    }
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

/// RGB → BT.601 limited range Y, U, V.
fn rgb_to_yuv([r, g, b]: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    [
        clamp_u8(((66 * r + 129 * g + 25 * b + 128) >> 8) + 16),
        clamp_u8(((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128),
        clamp_u8(((112 * r - 94 * g - 18 * b + 128) >> 8) + 128),
    ]
}

impl FrameSource for Y4mSource {
    fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> &VideoInfo {
        &self.info
    }

    fn read_frames(&mut self, indices: &[usize]) -> Result<Vec<RgbImage>, VideoError> {
        self.check_indices(indices)?;
        let (unique, slots) = dedup_sorted(indices);
        let mut buf = Vec::new();
        let decoded = unique
            .iter()
            .map(|&i| self.read_one(i, &mut buf))
            .collect::<Result<Vec<_>, _>>()?;
        reorder(decoded, &slots, &self.path)
    }
}

/// Write frames as 4:4:4 Y4M (no chroma loss) at `fps` (rounded to a
/// rational with denominator 1000).
pub fn write_y4m<'a>(
    path: impl AsRef<Path>,
    fps: f64,
    frames: impl IntoIterator<Item = &'a RgbImage>,
) -> Result<(), VideoError> {
    let path = path.as_ref();
    let io = |e| VideoError::io(path, e);
    let mut frames = frames.into_iter().peekable();
    let (width, height) =
        frames
            .peek()
            .map(|f| f.dimensions())
            .ok_or_else(|| VideoError::Encode {
                path: path.to_path_buf(),
                reason: "no frames to write".into(),
            })?;
    let mut out = BufWriter::new(File::create(path).map_err(io)?);
    let fps_num = (fps * 1000.0).round() as u64;
    writeln!(
        out,
        "{MAGIC} W{width} H{height} F{fps_num}:1000 Ip A1:1 C444"
    )
    .map_err(io)?;
    let plane = width as usize * height as usize;
    let mut planes = vec![0u8; plane * 3];
    for (index, frame) in frames.enumerate() {
        if frame.dimensions() != (width, height) {
            return Err(VideoError::FrameSize {
                path: path.to_path_buf(),
                index,
                width,
                height,
                got_width: frame.width(),
                got_height: frame.height(),
            });
        }
        for (i, px) in frame.pixels().enumerate() {
            let [y, u, v] = rgb_to_yuv(px.0);
            planes[i] = y;
            planes[plane + i] = u;
            planes[2 * plane + i] = v;
        }
        out.write_all(b"FRAME\n").map_err(io)?;
        out.write_all(&planes).map_err(io)?;
    }
    out.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuv_round_trip_is_close() {
        for rgb in [[0, 0, 0], [255, 255, 255], [200, 30, 90], [10, 250, 128]] {
            let [y, u, v] = rgb_to_yuv(rgb);
            let back = yuv_pixel(y, u, v);
            for c in 0..3 {
                assert!(
                    (i32::from(back[c]) - i32::from(rgb[c])).abs() <= 3,
                    "{rgb:?} -> {back:?}"
                );
            }
        }
    }
}
