//! The zoom action: crop a region around a box, with context, a minimum
//! size and upscaling, and map boxes in the crop back to the original image.
//!
//! Chain-of-Focus (Zhang et al., 2025) feeds the zoomed region back to the
//! model as a new image turn; small regions are upscaled so that the vision
//! encoder sees enough patches.

use crate::bbox::BBox;
use crate::error::GroundingError;
use image::imageops::{self, FilterType};
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// How a box becomes a crop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ZoomConfig {
    /// Context added on each side, as a fraction of the box's width (left and
    /// right) and height (top and bottom).
    pub context_frac: f32,
    /// Extra context in original pixels on each side.
    pub context_px: f32,
    /// The crop is at least this many original pixels wide and high (one
    /// Qwen2-VL merged patch is 28), unless the image is smaller.
    pub min_crop_size: u32,
    /// Crops with fewer pixels are upscaled to at least this many.
    pub min_pixels: u64,
    /// Upscaling never exceeds this factor per side.
    pub max_upscale: f32,
    /// Crops with more pixels are downscaled to at most this many.
    pub max_pixels: u64,
}

impl Default for ZoomConfig {
    fn default() -> Self {
        Self {
            context_frac: 0.1,
            context_px: 0.0,
            min_crop_size: 28,
            min_pixels: 56 * 56 * 16,
            max_upscale: 4.0,
            max_pixels: 14 * 14 * 4 * 1280,
        }
    }
}

impl ZoomConfig {
    pub fn validate(&self) -> Result<(), GroundingError> {
        let bad = |field, why| Err(GroundingError::ZoomConfig { field, why });
        if !(self.context_frac.is_finite() && self.context_frac >= 0.0) {
            return bad("context_frac", "must be finite and >= 0");
        }
        if !(self.context_px.is_finite() && self.context_px >= 0.0) {
            return bad("context_px", "must be finite and >= 0");
        }
        if !(self.max_upscale.is_finite() && self.max_upscale >= 1.0) {
            return bad("max_upscale", "must be finite and >= 1");
        }
        if self.max_pixels == 0 || self.min_pixels > self.max_pixels {
            return bad("max_pixels", "must be positive and >= min_pixels");
        }
        Ok(())
    }
}

/// A crop rectangle in original-image pixels (`x, y` top left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CropRegion {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl CropRegion {
    pub fn as_bbox(&self) -> BBox {
        BBox::from_xywh(
            self.x as f32,
            self.y as f32,
            self.width as f32,
            self.height as f32,
        )
    }
}

/// Where a crop came from and how it was scaled: everything needed to map
/// between crop pixels and original pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZoomPlan {
    pub region: CropRegion,
    pub out_width: u32,
    pub out_height: u32,
}

impl ZoomPlan {
    pub fn out_pixels(&self) -> u64 {
        self.out_width as u64 * self.out_height as u64
    }

    fn scale_x(&self) -> f64 {
        self.out_width as f64 / self.region.width.max(1) as f64
    }

    fn scale_y(&self) -> f64 {
        self.out_height as f64 / self.region.height.max(1) as f64
    }

    /// A box in crop-image pixels → original-image pixels.
    pub fn to_original(&self, b: BBox) -> BBox {
        let (sx, sy) = (self.scale_x(), self.scale_y());
        let (ox, oy) = (self.region.x as f64, self.region.y as f64);
        let f = |v: f32, s: f64, o: f64| (v as f64 / s + o) as f32;
        BBox::new(
            f(b.x1, sx, ox),
            f(b.y1, sy, oy),
            f(b.x2, sx, ox),
            f(b.y2, sy, oy),
        )
    }

    /// A box in original-image pixels → crop-image pixels.
    pub fn from_original(&self, b: BBox) -> BBox {
        let (sx, sy) = (self.scale_x(), self.scale_y());
        let (ox, oy) = (self.region.x as f64, self.region.y as f64);
        let f = |v: f32, s: f64, o: f64| ((v as f64 - o) * s) as f32;
        BBox::new(
            f(b.x1, sx, ox),
            f(b.y1, sy, oy),
            f(b.x2, sx, ox),
            f(b.y2, sy, oy),
        )
    }
}

/// A crop and its plan.
#[derive(Debug, Clone)]
pub struct Zoom {
    pub image: RgbImage,
    pub plan: ZoomPlan,
}

/// Grows `[lo, hi]` around its centre to at least `min` (capped by `limit`),
/// shifting it to stay inside `[0, limit]`.
fn widen(lo: f64, hi: f64, min: f64, limit: f64) -> (f64, f64) {
    let len = hi - lo;
    let target = min.min(limit);
    if len >= target {
        return (lo, hi);
    }
    let c = (lo + hi) * 0.5;
    let mut a = c - target * 0.5;
    let mut b = c + target * 0.5;
    if a < 0.0 {
        b -= a;
        a = 0.0;
    }
    if b > limit {
        a -= b - limit;
        b = limit;
    }
    (a.max(0.0), b)
}

/// Plans the crop for `bbox` (original pixels) in an image of
/// `img_w × img_h`, without touching pixels. Errors on a non-finite or
/// inverted box, or one that does not overlap the image.
pub fn plan_zoom(
    bbox: BBox,
    img_w: u32,
    img_h: u32,
    cfg: &ZoomConfig,
) -> Result<ZoomPlan, GroundingError> {
    cfg.validate()?;
    if !bbox.is_finite() {
        return Err(GroundingError::InvalidBox {
            bbox: bbox.to_array(),
            why: "non-finite coordinate",
        });
    }
    if !bbox.is_valid() {
        return Err(GroundingError::InvalidBox {
            bbox: bbox.to_array(),
            why: "x1 > x2 or y1 > y2",
        });
    }
    let (w, h) = (img_w as f64, img_h as f64);
    let outside = || GroundingError::OutsideImage {
        bbox: bbox.to_array(),
        width: img_w,
        height: img_h,
    };
    let (bx1, by1, bx2, by2) = (
        bbox.x1 as f64,
        bbox.y1 as f64,
        bbox.x2 as f64,
        bbox.y2 as f64,
    );
    if img_w == 0 || img_h == 0 || bx2 < 0.0 || by2 < 0.0 || bx1 > w || by1 > h {
        return Err(outside());
    }
    let px = cfg.context_frac as f64 * (bx2 - bx1) + cfg.context_px as f64;
    let py = cfg.context_frac as f64 * (by2 - by1) + cfg.context_px as f64;
    let (x1, x2) = (
        (bx1 - px).floor().clamp(0.0, w),
        (bx2 + px).ceil().clamp(0.0, w),
    );
    let (y1, y2) = (
        (by1 - py).floor().clamp(0.0, h),
        (by2 + py).ceil().clamp(0.0, h),
    );
    let min = cfg.min_crop_size.max(1) as f64;
    let (x1, x2) = widen(x1, x2, min, w);
    let (y1, y2) = widen(y1, y2, min, h);
    let (x1, x2) = (x1.floor(), x2.ceil().min(w));
    let (y1, y2) = (y1.floor(), y2.ceil().min(h));
    if x2 <= x1 || y2 <= y1 {
        return Err(outside());
    }
    let region = CropRegion {
        x: x1 as u32,
        y: y1 as u32,
        width: (x2 - x1) as u32,
        height: (y2 - y1) as u32,
    };
    let pixels = region.width as f64 * region.height as f64;
    let scale = if pixels < cfg.min_pixels as f64 {
        (cfg.min_pixels as f64 / pixels)
            .sqrt()
            .min(cfg.max_upscale as f64)
    } else if pixels > cfg.max_pixels as f64 {
        (cfg.max_pixels as f64 / pixels).sqrt()
    } else {
        1.0
    };
    let dim = |v: u32| -> u32 {
        let s = v as f64 * scale;
        let r = if scale > 1.0 { s.ceil() } else { s.floor() };
        (r as u32).max(1)
    };
    Ok(ZoomPlan {
        region,
        out_width: dim(region.width),
        out_height: dim(region.height),
    })
}

/// Crops and rescales `image` around `bbox` (original pixels) following
/// [`plan_zoom`]. Upscaling uses Catmull-Rom (bicubic, like PIL's BICUBIC),
/// downscaling Lanczos3.
pub fn zoom(image: &RgbImage, bbox: BBox, cfg: &ZoomConfig) -> Result<Zoom, GroundingError> {
    let plan = plan_zoom(bbox, image.width(), image.height(), cfg)?;
    Ok(Zoom {
        image: render_plan(image, &plan),
        plan,
    })
}

/// Renders a plan made by [`plan_zoom`] for this image.
pub fn render_plan(image: &RgbImage, plan: &ZoomPlan) -> RgbImage {
    let r = plan.region;
    let crop = imageops::crop_imm(image, r.x, r.y, r.width, r.height).to_image();
    if plan.out_width == r.width && plan.out_height == r.height {
        return crop;
    }
    let filter = if plan.out_pixels() > r.width as u64 * r.height as u64 {
        FilterType::CatmullRom
    } else {
        FilterType::Lanczos3
    };
    imageops::resize(&crop, plan.out_width, plan.out_height, filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn no_scale() -> ZoomConfig {
        ZoomConfig {
            context_frac: 0.0,
            min_pixels: 0,
            ..ZoomConfig::default()
        }
    }

    #[test]
    fn plain_crop_keeps_pixels() {
        let img = RgbImage::from_fn(100, 80, |x, y| Rgb([x as u8, y as u8, 7]));
        let z = zoom(&img, BBox::new(10.0, 20.0, 50.0, 60.0), &no_scale()).unwrap();
        assert_eq!(
            z.plan.region,
            CropRegion {
                x: 10,
                y: 20,
                width: 40,
                height: 40
            }
        );
        assert_eq!(z.image.dimensions(), (40, 40));
        assert_eq!(z.image.get_pixel(0, 0), &Rgb([10, 20, 7]));
        assert_eq!(z.image.get_pixel(39, 39), &Rgb([49, 59, 7]));
    }

    #[test]
    fn context_and_clamping() {
        let cfg = ZoomConfig {
            context_frac: 0.25,
            ..no_scale()
        };
        // 40x40 box → 10 px context per side; left side clamps at 0.
        let p = plan_zoom(BBox::new(5.0, 20.0, 45.0, 60.0), 100, 80, &cfg).unwrap();
        assert_eq!(
            p.region,
            CropRegion {
                x: 0,
                y: 10,
                width: 55,
                height: 60
            }
        );
    }

    #[test]
    fn min_size_expands_around_center_and_shifts_inside() {
        let p = plan_zoom(BBox::new(1.0, 50.0, 3.0, 52.0), 100, 80, &no_scale()).unwrap();
        // centre x = 2 → [-12, 16] shifted to [0, 28]; centre y = 51 → [37, 65].
        assert_eq!(
            p.region,
            CropRegion {
                x: 0,
                y: 37,
                width: 28,
                height: 28
            }
        );
        // Image smaller than the minimum: the crop is the whole side.
        let q = plan_zoom(BBox::new(1.0, 1.0, 2.0, 2.0), 20, 10, &no_scale()).unwrap();
        assert_eq!(
            q.region,
            CropRegion {
                x: 0,
                y: 0,
                width: 20,
                height: 10
            }
        );
    }

    #[test]
    fn upscale_to_min_pixels_and_map_back() {
        let cfg = ZoomConfig {
            context_frac: 0.0,
            min_pixels: 112 * 112,
            max_upscale: 8.0,
            ..ZoomConfig::default()
        };
        let img = RgbImage::new(200, 200);
        let z = zoom(&img, BBox::new(100.0, 100.0, 128.0, 128.0), &cfg).unwrap();
        assert_eq!((z.plan.out_width, z.plan.out_height), (112, 112));
        assert_eq!(z.image.dimensions(), (112, 112));
        // Crop-space box (0,0)-(56,56) is the top-left quarter of the region.
        let back = z.plan.to_original(BBox::new(0.0, 0.0, 56.0, 56.0));
        assert_eq!(back, BBox::new(100.0, 100.0, 114.0, 114.0));
        assert_eq!(z.plan.from_original(back), BBox::new(0.0, 0.0, 56.0, 56.0));
        // The upscale cap holds.
        let capped = ZoomConfig {
            max_upscale: 2.0,
            ..cfg
        };
        let p = plan_zoom(BBox::new(100.0, 100.0, 128.0, 128.0), 200, 200, &capped).unwrap();
        assert_eq!((p.out_width, p.out_height), (56, 56));
    }

    #[test]
    fn downscale_to_max_pixels() {
        let cfg = ZoomConfig {
            context_frac: 0.0,
            min_pixels: 0,
            max_pixels: 50 * 50,
            ..ZoomConfig::default()
        };
        let p = plan_zoom(BBox::new(0.0, 0.0, 100.0, 100.0), 100, 100, &cfg).unwrap();
        assert_eq!((p.out_width, p.out_height), (50, 50));
    }

    #[test]
    fn bad_boxes_error() {
        let c = ZoomConfig::default();
        assert!(matches!(
            plan_zoom(BBox::new(f32::NAN, 0.0, 1.0, 1.0), 10, 10, &c),
            Err(GroundingError::InvalidBox { .. })
        ));
        assert!(matches!(
            plan_zoom(BBox::new(5.0, 0.0, 1.0, 1.0), 10, 10, &c),
            Err(GroundingError::InvalidBox { .. })
        ));
        assert!(matches!(
            plan_zoom(BBox::new(20.0, 20.0, 30.0, 30.0), 10, 10, &c),
            Err(GroundingError::OutsideImage { .. })
        ));
        assert!(matches!(
            plan_zoom(BBox::new(0.0, 0.0, 1.0, 1.0), 0, 10, &c),
            Err(GroundingError::OutsideImage { .. })
        ));
    }
}
