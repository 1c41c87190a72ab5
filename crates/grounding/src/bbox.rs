//! Axis-aligned boxes in `x1, y1, x2, y2` corner form.
//!
//! All arithmetic that feeds a reward is done in `f64` and rounded once to
//! `f32`, so integer pixel boxes give the same IoU as the Python references
//! (which compute in double precision).

use serde::{Deserialize, Serialize};

/// An axis-aligned box, corners `(x1, y1)` (top left) and `(x2, y2)` (bottom right).
///
/// A box may hold anything a model wrote (NaN, inverted corners, negative
/// values); use [`BBox::is_valid`] before trusting it. Every method is total:
/// none panics, and degenerate or non-finite boxes have zero area and zero IoU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct BBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BBox {
    pub const fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self { x1, y1, x2, y2 }
    }

    /// From COCO's `[x, y, width, height]` form.
    pub fn from_xywh(x: f32, y: f32, w: f32, h: f32) -> Self {
        Self::new(x, y, x + w, y + h)
    }

    /// From a slice of exactly four coordinates.
    pub fn from_slice(v: &[f32]) -> Option<Self> {
        match v {
            [x1, y1, x2, y2] => Some(Self::new(*x1, *y1, *x2, *y2)),
            _ => None,
        }
    }

    pub fn to_array(self) -> [f32; 4] {
        [self.x1, self.y1, self.x2, self.y2]
    }

    /// All four coordinates are finite.
    pub fn is_finite(&self) -> bool {
        self.to_array().iter().all(|c| c.is_finite())
    }

    /// Finite with `x1 <= x2` and `y1 <= y2` (zero width or height allowed).
    pub fn is_valid(&self) -> bool {
        self.is_finite() && self.x1 <= self.x2 && self.y1 <= self.y2
    }

    /// Valid and with strictly positive area.
    pub fn has_area(&self) -> bool {
        self.is_valid() && self.x1 < self.x2 && self.y1 < self.y2
    }

    /// Corners swapped where needed so that `x1 <= x2`, `y1 <= y2`.
    pub fn sorted(self) -> Self {
        Self::new(
            self.x1.min(self.x2),
            self.y1.min(self.y2),
            self.x1.max(self.x2),
            self.y1.max(self.y2),
        )
    }

    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }

    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }

    pub fn center(&self) -> (f32, f32) {
        ((self.x1 + self.x2) * 0.5, (self.y1 + self.y2) * 0.5)
    }

    /// Area in `f64`; zero for invalid or non-finite boxes.
    pub fn area_f64(&self) -> f64 {
        if !self.is_valid() {
            return 0.0;
        }
        let a = (self.x2 as f64 - self.x1 as f64) * (self.y2 as f64 - self.y1 as f64);
        if a.is_finite() {
            a
        } else {
            0.0
        }
    }

    pub fn area(&self) -> f32 {
        self.area_f64() as f32
    }

    /// The overlapping region, `None` when the boxes do not overlap with
    /// positive area (touching edges count as no overlap, as in V-Triune's
    /// `compute_iou`).
    pub fn intersection(&self, other: &Self) -> Option<Self> {
        if !self.is_valid() || !other.is_valid() {
            return None;
        }
        let b = Self::new(
            self.x1.max(other.x1),
            self.y1.max(other.y1),
            self.x2.min(other.x2),
            self.y2.min(other.y2),
        );
        (b.x1 < b.x2 && b.y1 < b.y2).then_some(b)
    }

    /// Smallest box enclosing both.
    pub fn union_hull(&self, other: &Self) -> Self {
        Self::new(
            self.x1.min(other.x1),
            self.y1.min(other.y1),
            self.x2.max(other.x2),
            self.y2.max(other.y2),
        )
    }

    /// Intersection over union in `f64`, always in `[0, 1]`.
    ///
    /// Same rule as `compute_iou` in V-Triune's `reward_server/utils/det_helper.py`:
    /// no positive-area overlap gives 0.
    pub fn iou_f64(&self, other: &Self) -> f64 {
        let Some(inter) = self.intersection(other) else {
            return 0.0;
        };
        let i = inter.area_f64();
        let u = self.area_f64() + other.area_f64() - i;
        if u > 0.0 && u.is_finite() {
            (i / u).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    pub fn iou(&self, other: &Self) -> f32 {
        self.iou_f64(other) as f32
    }

    /// Generalized IoU (Rezatofighi et al., CVPR 2019):
    /// `GIoU = IoU − |C \ (A ∪ B)| / |C|`, C the enclosing hull. In `[-1, 1]`;
    /// `-1` for invalid boxes.
    pub fn giou(&self, other: &Self) -> f32 {
        if !self.is_valid() || !other.is_valid() {
            return -1.0;
        }
        let iou = self.iou_f64(other);
        let i = self.intersection(other).map_or(0.0, |b| b.area_f64());
        let u = self.area_f64() + other.area_f64() - i;
        let c = self.union_hull(other).area_f64();
        if c <= 0.0 || !c.is_finite() {
            return iou as f32;
        }
        (iou - (c - u) / c).clamp(-1.0, 1.0) as f32
    }

    /// Clamped into `[0, width] × [0, height]`. NaN coordinates become 0.
    pub fn clamp(self, width: f32, height: f32) -> Self {
        let cx = |v: f32| {
            if v.is_nan() {
                0.0
            } else {
                v.clamp(0.0, width.max(0.0))
            }
        };
        let cy = |v: f32| {
            if v.is_nan() {
                0.0
            } else {
                v.clamp(0.0, height.max(0.0))
            }
        };
        Self::new(cx(self.x1), cy(self.y1), cx(self.x2), cy(self.y2))
    }

    /// Multiplies x by `sx` and y by `sy` (computed in `f64`).
    pub fn scale(self, sx: f64, sy: f64) -> Self {
        Self::new(
            (self.x1 as f64 * sx) as f32,
            (self.y1 as f64 * sy) as f32,
            (self.x2 as f64 * sx) as f32,
            (self.y2 as f64 * sy) as f32,
        )
    }

    /// Moved by `(dx, dy)`.
    pub fn translate(self, dx: f32, dy: f32) -> Self {
        Self::new(self.x1 + dx, self.y1 + dy, self.x2 + dx, self.y2 + dy)
    }

    /// Grown by `px` on every side (negative shrinks).
    pub fn pad(self, px: f32) -> Self {
        Self::new(self.x1 - px, self.y1 - px, self.x2 + px, self.y2 + px)
    }

    /// Lies inside `[0, width] × [0, height]`.
    pub fn is_inside(&self, width: f32, height: f32) -> bool {
        self.is_valid() && self.x1 >= 0.0 && self.y1 >= 0.0 && self.x2 <= width && self.y2 <= height
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_hand_computed() {
        // V-Triune det_helper test_iou cases.
        let a = BBox::new(100.0, 100.0, 200.0, 200.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&BBox::new(300.0, 300.0, 400.0, 400.0)), 0.0);
        // 100x100 overlap of two 200x200 boxes: 10000 / (40000+40000-10000) = 1/7.
        let p =
            BBox::new(100.0, 100.0, 300.0, 300.0).iou_f64(&BBox::new(200.0, 200.0, 400.0, 400.0));
        assert!((p - 1.0 / 7.0).abs() < 1e-15);
        // Nested: 200x200 inside 300x300 → 40000/90000.
        let n =
            BBox::new(100.0, 100.0, 400.0, 400.0).iou_f64(&BBox::new(150.0, 150.0, 350.0, 350.0));
        assert!((n - 4.0 / 9.0).abs() < 1e-15);
        // Shared edge only → 0.
        assert_eq!(a.iou(&BBox::new(200.0, 100.0, 300.0, 200.0)), 0.0);
        // Corner: 50x50 / (10000+10000-2500) = 1/7.
        let c = a.iou_f64(&BBox::new(150.0, 150.0, 250.0, 250.0));
        assert!((c - 2500.0 / 17500.0).abs() < 1e-15);
    }

    #[test]
    fn giou_hand_computed() {
        let a = BBox::new(0.0, 0.0, 1.0, 1.0);
        let b = BBox::new(2.0, 0.0, 3.0, 1.0);
        // IoU 0, hull 3, union 2 → -(3-2)/3.
        assert!((a.giou(&b) + 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(a.giou(&a), 1.0);
        assert_eq!(a.giou(&BBox::new(f32::NAN, 0.0, 1.0, 1.0)), -1.0);
    }

    #[test]
    fn validity_and_degenerate() {
        assert!(!BBox::new(5.0, 0.0, 1.0, 1.0).is_valid());
        assert!(BBox::new(5.0, 0.0, 1.0, 1.0).sorted().is_valid());
        assert!(BBox::new(1.0, 1.0, 1.0, 2.0).is_valid());
        assert!(!BBox::new(1.0, 1.0, 1.0, 2.0).has_area());
        assert_eq!(BBox::new(f32::INFINITY, 0.0, 1.0, 1.0).area(), 0.0);
        assert_eq!(
            BBox::new(-1e30, -1e30, 1e30, 1e30).iou(&BBox::new(0.0, 0.0, 1.0, 1.0)),
            0.0
        );
    }

    #[test]
    fn clamp_scale_translate() {
        let b = BBox::new(-5.0, f32::NAN, 120.0, 50.0).clamp(100.0, 40.0);
        assert_eq!(b, BBox::new(0.0, 0.0, 100.0, 40.0));
        assert_eq!(
            BBox::new(1.0, 2.0, 3.0, 4.0).scale(2.0, 0.5),
            BBox::new(2.0, 1.0, 6.0, 2.0)
        );
        assert_eq!(
            BBox::from_xywh(1.0, 2.0, 3.0, 4.0),
            BBox::new(1.0, 2.0, 4.0, 6.0)
        );
        assert_eq!(
            BBox::new(1.0, 2.0, 3.0, 4.0).translate(1.0, -1.0).pad(1.0),
            BBox::new(1.0, 0.0, 5.0, 4.0)
        );
    }
}
