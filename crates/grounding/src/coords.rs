//! Coordinate spaces that box-emitting VLMs use, and exact conversions
//! between them.
//!
//! - Qwen2-VL writes boxes on a 0–1000 grid relative to the image
//!   (`<|box_start|>(x1,y1),(x2,y2)<|box_end|>`).
//! - Qwen2.5-VL writes absolute pixels of the image *after* `smart_resize`
//!   (`{"bbox_2d": [...]}`).
//! - Datasets store original-image pixels or 0–1 normalized values.
//!
//! [`ImageFrame::convert_f64`] works on `f64` coordinates: starting from `f32`
//! values, a round trip A → B → A in `f64` cast back to `f32` returns the same
//! bits (the `f64` error is far below half an `f32` ulp; proptested).
//! [`ImageFrame::convert`] on `f32` boxes rounds the intermediate box to `f32`,
//! so its round trip is within one `f32` ulp (proptested); keep boxes in
//! `f64` when you need to come back bit-exactly.

use crate::bbox::BBox;
use crate::error::GroundingError;
use serde::{Deserialize, Serialize};

/// Qwen2-VL's default `smart_resize` factor (patch 14 × merge 2).
pub const QWEN_FACTOR: u32 = 28;
/// Qwen2-VL's default `min_pixels` (56·56).
pub const QWEN_MIN_PIXELS: u64 = 56 * 56;
/// Qwen2-VL's default `max_pixels` (14·14·4·1280).
pub const QWEN_MAX_PIXELS: u64 = 14 * 14 * 4 * 1280;

/// Qwen2-VL's `smart_resize` (transformers,
/// `models/qwen2_vl/image_processing_qwen2_vl.py`): both sides become
/// multiples of `factor`, the pixel count lands in `[min_pixels, max_pixels]`
/// and the aspect ratio is kept as closely as possible. Returns
/// `(height, width)` like the reference.
///
/// Rounding follows Python exactly: `round()` is round-half-to-even, then
/// `floor`/`ceil` rescaling when out of bounds. `vlrl-vision` may re-export
/// this function so both crates share one rule.
pub fn smart_resize(
    height: u32,
    width: u32,
    factor: u32,
    min_pixels: u64,
    max_pixels: u64,
) -> Result<(u32, u32), GroundingError> {
    if height == 0 || width == 0 {
        return Err(GroundingError::ZeroSize { width, height });
    }
    if factor == 0 || min_pixels > max_pixels {
        return Err(GroundingError::ResizeParams {
            factor,
            min_pixels,
            max_pixels,
        });
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    let ratio = h.max(w) / h.min(w);
    if ratio > 200.0 {
        return Err(GroundingError::AspectRatio {
            width,
            height,
            ratio,
        });
    }
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    if h_bar * w_bar > max_pixels as f64 {
        let beta = ((h * w) / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    Ok((h_bar as u32, w_bar as u32))
}

/// [`smart_resize`] with Qwen2-VL's defaults.
pub fn smart_resize_default(height: u32, width: u32) -> Result<(u32, u32), GroundingError> {
    smart_resize(height, width, QWEN_FACTOR, QWEN_MIN_PIXELS, QWEN_MAX_PIXELS)
}

/// Which space a box's numbers are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum CoordSpace {
    /// Pixels of the image as stored on disk.
    Original,
    /// Pixels of the image after `smart_resize` (Qwen2.5-VL's `bbox_2d`).
    Resized,
    /// 0–1000 grid relative to the image (Qwen2-VL's box tokens).
    Grid1000,
    /// 0–1 relative to the image.
    Normalized,
}

/// Original and resized sizes of one image: everything a conversion needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFrame {
    pub orig_w: u32,
    pub orig_h: u32,
    pub resized_w: u32,
    pub resized_h: u32,
}

impl ImageFrame {
    pub fn new(
        orig_w: u32,
        orig_h: u32,
        resized_w: u32,
        resized_h: u32,
    ) -> Result<Self, GroundingError> {
        if orig_w == 0 || orig_h == 0 || resized_w == 0 || resized_h == 0 {
            return Err(GroundingError::EmptyFrame {
                orig_w,
                orig_h,
                resized_w,
                resized_h,
            });
        }
        Ok(Self {
            orig_w,
            orig_h,
            resized_w,
            resized_h,
        })
    }

    /// Frame whose resized size is Qwen2-VL's default `smart_resize`.
    pub fn qwen_default(orig_w: u32, orig_h: u32) -> Result<Self, GroundingError> {
        let (rh, rw) = smart_resize_default(orig_h, orig_w)?;
        Self::new(orig_w, orig_h, rw, rh)
    }

    /// `(width, height)` of the space, in its own units.
    fn extent(&self, space: CoordSpace) -> (f64, f64) {
        match space {
            CoordSpace::Original => (self.orig_w as f64, self.orig_h as f64),
            CoordSpace::Resized => (self.resized_w as f64, self.resized_h as f64),
            CoordSpace::Grid1000 => (1000.0, 1000.0),
            CoordSpace::Normalized => (1.0, 1.0),
        }
    }

    /// Converts a box between spaces: `v_to = v_from · extent_to / extent_from`
    /// per axis (multiply first, divide second, in `f64`).
    pub fn convert(&self, b: BBox, from: CoordSpace, to: CoordSpace) -> BBox {
        let c = self.convert_f64(b.to_array().map(f64::from), from, to);
        BBox::new(c[0] as f32, c[1] as f32, c[2] as f32, c[3] as f32)
    }

    /// [`ImageFrame::convert`] on `f64` corners `[x1, y1, x2, y2]`.
    pub fn convert_f64(&self, b: [f64; 4], from: CoordSpace, to: CoordSpace) -> [f64; 4] {
        if from == to {
            return b;
        }
        let (fw, fh) = self.extent(from);
        let (tw, th) = self.extent(to);
        [
            b[0] * tw / fw,
            b[1] * th / fh,
            b[2] * tw / fw,
            b[3] * th / fh,
        ]
    }

    /// Converts a point `(x, y)` between spaces.
    pub fn convert_point(&self, p: (f32, f32), from: CoordSpace, to: CoordSpace) -> (f32, f32) {
        let b = self.convert(BBox::new(p.0, p.1, p.0, p.1), from, to);
        (b.x1, b.y1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_known_values() {
        // Values printed by transformers 5.24's qwen2_vl smart_resize; tools/rewards_fixtures.py
        // writes a larger table checked in tests/fixtures.rs.
        assert_eq!(smart_resize_default(480, 640).unwrap(), (476, 644));
        assert_eq!(smart_resize_default(1080, 1920).unwrap(), (728, 1316));
        assert_eq!(smart_resize_default(10, 10).unwrap(), (56, 56));
        assert_eq!(smart_resize_default(42, 42).unwrap(), (56, 56)); // 42/28 = 1.5 rounds to even 2
        assert_eq!(smart_resize_default(14, 70).unwrap(), (28, 140)); // 14/28 = 0.5 rounds to 0, then ceil branch
        assert_eq!(smart_resize_default(3000, 4000).unwrap(), (840, 1148));
        assert_eq!(smart_resize_default(100, 20000).unwrap(), (56, 14140));
        assert!(matches!(
            smart_resize_default(1, 300),
            Err(GroundingError::AspectRatio { .. })
        ));
        assert!(matches!(
            smart_resize_default(0, 30),
            Err(GroundingError::ZeroSize { .. })
        ));
    }

    #[test]
    fn grid_to_resized_to_original() {
        let f = ImageFrame::new(640, 480, 644, 476).unwrap();
        let g = BBox::new(500.0, 250.0, 1000.0, 1000.0);
        let r = f.convert(g, CoordSpace::Grid1000, CoordSpace::Resized);
        assert_eq!(r, BBox::new(322.0, 119.0, 644.0, 476.0));
        let o = f.convert(g, CoordSpace::Grid1000, CoordSpace::Original);
        assert_eq!(o, BBox::new(320.0, 120.0, 640.0, 480.0));
        let n = f.convert(o, CoordSpace::Original, CoordSpace::Normalized);
        assert_eq!(n, BBox::new(0.5, 0.25, 1.0, 1.0));
        assert_eq!(
            f.convert(n, CoordSpace::Normalized, CoordSpace::Grid1000),
            g
        );
    }
}
