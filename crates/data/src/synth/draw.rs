//! Small raster primitives for the generators (no extra dependency).
//!
//! Shapes are tested per pixel centre in float coordinates, which keeps the
//! code short and the output identical on every platform (no anti-aliasing,
//! only IEEE arithmetic that Rust defines exactly for +, -, *, /, sqrt).

use image::{Rgb, RgbImage};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub type Color = [u8; 3];

/// Fill the whole image.
pub fn fill(img: &mut RgbImage, color: Color) {
    for p in img.pixels_mut() {
        *p = Rgb(color);
    }
}

/// Mix `a` toward `b` by `t` in [0, 1].
pub fn mix(a: Color, b: Color, t: f32) -> Color {
    let t = t.clamp(0.0, 1.0);
    let ch = |x: u8, y: u8| (f32::from(x) + (f32::from(y) - f32::from(x)) * t).round() as u8;
    [ch(a[0], b[0]), ch(a[1], b[1]), ch(a[2], b[2])]
}

/// Add `delta` to every channel, saturating.
pub fn shade(c: Color, delta: i32) -> Color {
    let ch = |x: u8| (i32::from(x) + delta).clamp(0, 255) as u8;
    [ch(c[0]), ch(c[1]), ch(c[2])]
}

/// Grey level as a colour.
pub fn grey(v: f32) -> Color {
    let g = v.clamp(0.0, 255.0).round() as u8;
    [g, g, g]
}

/// Set every pixel whose centre satisfies `inside(x, y)` to `color(x, y)`.
/// Coordinates are pixel centres (`x + 0.5`).
pub fn paint<I, C>(img: &mut RgbImage, inside: I, color: C)
where
    I: Fn(f32, f32) -> bool,
    C: Fn(f32, f32) -> Color,
{
    let (w, h) = img.dimensions();
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            if inside(fx, fy) {
                img.put_pixel(x, y, Rgb(color(fx, fy)));
            }
        }
    }
}

/// Like [`paint`] but only over the bounding box `[x0, x1) x [y0, y1)`
/// (clipped), for small shapes on large images.
pub fn paint_box<I>(img: &mut RgbImage, bbox: [f32; 4], inside: I, color: Color)
where
    I: Fn(f32, f32) -> bool,
{
    let (w, h) = img.dimensions();
    let clip = |v: f32, max: u32| (v.max(0.0) as u32).min(max);
    let (x0, y0) = (clip(bbox[0].floor(), w), clip(bbox[1].floor(), h));
    let (x1, y1) = (clip(bbox[2].ceil(), w), clip(bbox[3].ceil(), h));
    for y in y0..y1 {
        for x in x0..x1 {
            if inside(x as f32 + 0.5, y as f32 + 0.5) {
                img.put_pixel(x, y, Rgb(color));
            }
        }
    }
}

/// Filled circle.
pub fn circle(img: &mut RgbImage, cx: f32, cy: f32, r: f32, color: Color) {
    paint_box(
        img,
        [cx - r, cy - r, cx + r, cy + r],
        |x, y| (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r,
        color,
    );
}

/// Filled axis-aligned rectangle `[x0, y0, x1, y1]`.
pub fn rect(img: &mut RgbImage, b: [f32; 4], color: Color) {
    paint_box(
        img,
        b,
        |x, y| x >= b[0] && x < b[2] && y >= b[1] && y < b[3],
        color,
    );
}

/// Thick line segment.
pub fn line(img: &mut RgbImage, a: (f32, f32), b: (f32, f32), width: f32, color: Color) {
    let half = width / 2.0;
    let bbox = [
        a.0.min(b.0) - half,
        a.1.min(b.1) - half,
        a.0.max(b.0) + half,
        a.1.max(b.1) + half,
    ];
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    paint_box(
        img,
        bbox,
        |x, y| {
            let t = if len2 > 0.0 {
                (((x - a.0) * dx + (y - a.1) * dy) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let (px, py) = (a.0 + t * dx - x, a.1 + t * dy - y);
            px * px + py * py <= half * half
        },
        color,
    );
}

/// Add uniform noise in `[-amp, amp]` to every channel (the same offset on
/// all three, so greys stay grey).
pub fn noise(img: &mut RgbImage, rng: &mut ChaCha8Rng, amp: i32) {
    if amp <= 0 {
        return;
    }
    for p in img.pixels_mut() {
        let d = rng.random_range(-amp..=amp);
        p.0 = shade(p.0, d);
    }
}

/// Sine from +, -, *, / and `round` only, so textures are bit-identical on
/// every platform (libm `sin` may differ in the last bit between systems).
/// Max error ~1e-4 after reducing to [-pi, pi]: plenty for textures.
pub fn dsin(x: f32) -> f32 {
    use std::f32::consts::PI;
    let x = x - (x / (2.0 * PI)).round() * (2.0 * PI);
    // Fold to [-pi/2, pi/2] where the odd Taylor series converges fast.
    let x = if x > PI / 2.0 {
        PI - x
    } else if x < -PI / 2.0 {
        -PI - x
    } else {
        x
    };
    let x2 = x * x;
    x * (1.0 - x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0 * (1.0 - x2 / 72.0))))
}

/// A simple 2-D shape for counting / search tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
}

impl Shape {
    pub const ALL: [Shape; 4] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Diamond,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Diamond => "diamond",
        }
    }

    /// Whether `(x, y)` lies in this shape of "radius" `r` centred at `(cx, cy)`.
    pub fn contains(self, cx: f32, cy: f32, r: f32, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - cx, y - cy);
        match self {
            Shape::Circle => dx * dx + dy * dy <= r * r,
            Shape::Square => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
            Shape::Diamond => dx.abs() + dy.abs() <= r,
            Shape::Triangle => {
                // Apex up, base at cy + 0.8r; width grows linearly downward.
                let top = cy - r;
                let bottom = cy + 0.8 * r;
                if y < top || y > bottom {
                    return false;
                }
                let t = (y - top) / (bottom - top);
                dx.abs() <= t * r
            }
        }
    }

    /// Draw this shape filled.
    pub fn draw(self, img: &mut RgbImage, cx: f32, cy: f32, r: f32, color: Color) {
        paint_box(
            img,
            [cx - r, cy - r, cx + r, cy + r],
            |x, y| self.contains(cx, cy, r, x, y),
            color,
        );
    }
}

/// Named colours for colour questions (distinct hues, readable at 10 px).
pub const NAMED_COLORS: [(&str, Color); 6] = [
    ("red", [220, 30, 30]),
    ("green", [30, 170, 40]),
    ("blue", [30, 60, 220]),
    ("yellow", [235, 215, 20]),
    ("purple", [140, 40, 180]),
    ("orange", [245, 130, 20]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cover_their_centre_not_far_corners() {
        for s in Shape::ALL {
            assert!(s.contains(10.0, 10.0, 5.0, 10.0, 10.5), "{}", s.name());
            assert!(!s.contains(10.0, 10.0, 5.0, 15.5, 4.5), "{}", s.name());
        }
    }

    #[test]
    fn dsin_matches_sin() {
        for i in -400..400 {
            let x = i as f32 * 0.05;
            assert!((dsin(x) - x.sin()).abs() < 1e-3, "{x}");
        }
    }

    #[test]
    fn primitives_clip_at_edges() {
        let mut img = RgbImage::new(8, 8);
        circle(&mut img, -3.0, -3.0, 100.0, [255, 0, 0]);
        line(&mut img, (-5.0, 4.0), (20.0, 4.0), 2.0, [0, 255, 0]);
        rect(&mut img, [6.0, 6.0, 30.0, 30.0], [0, 0, 255]);
        assert_eq!(img.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(7, 4).0, [0, 255, 0]);
        assert_eq!(img.get_pixel(7, 7).0, [0, 0, 255]);
    }
}
