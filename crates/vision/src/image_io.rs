//! Image decoding that reproduces what the Hugging Face reference feeds its
//! image processor: EXIF orientation as `transformers.image_utils.load_image`
//! applies it (`PIL.ImageOps.exif_transpose`), then the processor's
//! `convert_to_rgb` (alpha composited on white with Pillow's integer
//! arithmetic; `I;16` grey clipped to 255; 16-bit colour truncated to its high
//! byte, as Pillow decodes it).

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::error::VisionError;

/// What to do with an alpha channel when converting to RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlphaHandling {
    /// Composite over opaque white, like the image processor's `convert_to_rgb`
    /// (what you get when you pass a PIL image to `Qwen2VLImageProcessor`).
    #[default]
    CompositeOnWhite,
    /// Drop the alpha channel, like `transformers.image_utils.load_image`
    /// (`image.convert("RGB")`), i.e. what a processor call with image paths/URLs gets.
    Drop,
}

/// Options for [`decode_image`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Apply the EXIF orientation tag (JPEG, PNG `eXIf`, WebP), as `exif_transpose` does.
    pub apply_exif_orientation: bool,
    /// Alpha channel handling.
    pub alpha: AlphaHandling,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            apply_exif_orientation: true,
            alpha: AlphaHandling::CompositeOnWhite,
        }
    }
}

/// Reads and decodes an image file with the default [`DecodeOptions`].
pub fn load_image(path: impl AsRef<Path>) -> Result<RgbImage, VisionError> {
    load_image_with(path, DecodeOptions::default())
}

/// Reads and decodes an image file.
pub fn load_image_with(
    path: impl AsRef<Path>,
    options: DecodeOptions,
) -> Result<RgbImage, VisionError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| VisionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_image(&bytes, &path.display().to_string(), options)
}

/// Decodes encoded image bytes (PNG, JPEG, GIF, BMP, WebP) into 8-bit RGB.
/// `origin` names the source in errors.
pub fn decode_image(
    bytes: &[u8],
    origin: &str,
    options: DecodeOptions,
) -> Result<RgbImage, VisionError> {
    let decode_err = |source| VisionError::Decode {
        origin: origin.to_string(),
        source,
    };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(image::ImageError::IoError(e)))?;
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(VisionError::ZeroSize {
            origin: origin.to_string(),
            width: width as usize,
            height: height as usize,
        });
    }
    // A broken EXIF block is ignored, as Pillow's exif_transpose does.
    let orientation = if options.apply_exif_orientation {
        decoder.orientation().ok()
    } else {
        None
    };
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(to_rgb_like_pil(image, options.alpha))
}

/// Converts any decoded image to 8-bit RGB the way Pillow + the processor do.
pub fn to_rgb_like_pil(image: DynamicImage, alpha: AlphaHandling) -> RgbImage {
    let (width, height) = (image.width(), image.height());
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    match image {
        DynamicImage::ImageRgb8(rgb) => return rgb,
        DynamicImage::ImageLuma8(grey) => {
            for &v in grey.as_raw() {
                out.extend_from_slice(&[v, v, v]);
            }
        }
        DynamicImage::ImageLumaA8(grey) => {
            for px in grey.as_raw().chunks_exact(2) {
                let v = apply_alpha(px[0], px[1], alpha);
                out.extend_from_slice(&[v, v, v]);
            }
        }
        DynamicImage::ImageRgba8(rgba) => {
            for px in rgba.as_raw().chunks_exact(4) {
                for &c in &px[..3] {
                    out.push(apply_alpha(c, px[3], alpha));
                }
            }
        }
        // Pillow opens 16-bit grey as mode "I;16"; convert("RGB") clips to 255.
        DynamicImage::ImageLuma16(grey) => {
            for &v in grey.as_raw() {
                let v = v.min(255) as u8;
                out.extend_from_slice(&[v, v, v]);
            }
        }
        // Pillow decodes 16-bit grey+alpha / colour PNGs to 8 bits by keeping the high byte.
        DynamicImage::ImageLumaA16(grey) => {
            for px in grey.as_raw().chunks_exact(2) {
                let v = apply_alpha((px[0] >> 8) as u8, (px[1] >> 8) as u8, alpha);
                out.extend_from_slice(&[v, v, v]);
            }
        }
        DynamicImage::ImageRgb16(rgb) => {
            out.extend(rgb.as_raw().iter().map(|&v| (v >> 8) as u8));
        }
        DynamicImage::ImageRgba16(rgba) => {
            for px in rgba.as_raw().chunks_exact(4) {
                let a = (px[3] >> 8) as u8;
                for &c in &px[..3] {
                    out.push(apply_alpha((c >> 8) as u8, a, alpha));
                }
            }
        }
        other => return other.to_rgb8(),
    }
    // The buffer length is exactly width * height * 3 by construction.
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

fn apply_alpha(c: u8, a: u8, alpha: AlphaHandling) -> u8 {
    match alpha {
        AlphaHandling::Drop => c,
        AlphaHandling::CompositeOnWhite => composite_on_white(c, a),
    }
}

/// Pillow's `alpha_composite(white, src)` for one channel (libImaging/AlphaComposite.c,
/// 7-bit-precision integer path). With an opaque white background the
/// coefficients reduce to `a·128` and `(255 − a)·128`; verified against Pillow
/// for all 65 536 (value, alpha) pairs.
pub fn composite_on_white(c: u8, a: u8) -> u8 {
    if a == 0 {
        return 255;
    }
    let (c, a) = (u32::from(c), u32::from(a));
    let t = 128 * (c * a + 255 * (255 - a) + 128);
    (((t + (t >> 8)) >> 8) >> 7) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_extremes() {
        assert_eq!(composite_on_white(0, 0), 255);
        assert_eq!(composite_on_white(0, 255), 0);
        assert_eq!(composite_on_white(200, 255), 200);
        assert_eq!(composite_on_white(255, 1), 255);
    }

    #[test]
    fn garbage_is_an_error() {
        let err = decode_image(b"definitely not an image", "junk", DecodeOptions::default());
        assert!(matches!(err, Err(VisionError::Decode { .. })), "{err:?}");
    }
}
