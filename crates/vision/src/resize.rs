//! Bicubic resizing that reproduces the two reference implementations
//! bit for bit (checked against the fixtures from `tools/make_vision_fixtures.py`):
//!
//! * Pillow ([`Resample::PilBicubic`]): the convolution resampler of
//!   `libImaging/Resample.c`, a Keys cubic with `a = −0.5`, support widened by
//!   the downscale factor (antialiasing), coefficients normalised in f64 and
//!   turned into 22-bit fixed point, two 1-D passes each rounding to u8 (a
//!   pass whose size does not change is skipped). The pass order follows
//!   Pillow 13 (the reference's version): vertical first when the height
//!   shrinks by more than twice the width's shrink, else horizontal first.
//! * torchvision ([`Resample::TorchvisionBicubic`]): `transforms.v2.functional.resize`
//!   on a u8 CPU tensor with `antialias=True`. torchvision 0.29 (the reference
//!   here) resizes u8 bicubic natively with ATen's AVX2/AVX-512 u8 kernel, a
//!   Pillow-SIMD port: the same filter, weights in f64 turned into int16 fixed
//!   point with a per-axis precision, horizontal then vertical, u8 between
//!   passes. GPU tensors and CPUs without AVX2 take other ATen paths that may
//!   differ by a grey level.
//!
//! Images are interleaved 8-bit RGB (`image::RgbImage`).

use image::RgbImage;

/// Which reference bicubic to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resample {
    /// Pillow `Image.resize(..., BICUBIC)` (transformers' `Qwen2VLImageProcessorPil`).
    #[default]
    PilBicubic,
    /// torchvision antialiased bicubic (transformers' default `Qwen2VLImageProcessor`
    /// when torchvision is installed, and the only video processor).
    TorchvisionBicubic,
}

const SUPPORT: f64 = 2.0;
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Keys cubic convolution kernel with `a = −0.5` in Pillow's evaluation order.
fn pil_bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// The same kernel in ATen's evaluation order (`cubic_convolution1/2`).
fn aten_bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

/// Per output pixel: first source index, number of taps, and `ksize` weights.
struct Taps<W> {
    ksize: usize,
    start: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<W>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`.
fn pil_taps(in_size: usize, out_size: usize) -> Taps<i32> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut taps = Taps {
        ksize,
        start: Vec::with_capacity(out_size),
        len: Vec::with_capacity(out_size),
        weights: vec![0; out_size * ksize],
    };
    let mut k = vec![0.0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C casts truncate toward zero; clamping to 0 makes that equal to floor here.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = pil_bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut taps.weights[xx * ksize..(xx + 1) * ksize];
        for (dst, &w) in row.iter_mut().zip(&k[..n]) {
            let w = if ww != 0.0 { w / ww } else { w };
            let scaled = w * f64::from(1u32 << PRECISION_BITS);
            *dst = if w < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        taps.start.push(xmin);
        taps.len.push(n);
    }
    taps
}

/// ATen's antialiased bicubic taps for u8 images
/// (`compute_index_ranges_int16_weights`): weights computed in f64 with the
/// `cubic_convolution1/2` forms, normalised, then scaled to int16 with the
/// largest precision that keeps the biggest weight below 2^15.
fn aten_u8_taps(in_size: usize, out_size: usize) -> (Taps<i32>, u32) {
    let scale = in_size as f64 / out_size as f64;
    let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
    let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    let ksize = support.ceil() as usize * 2 + 1;
    let mut start = Vec::with_capacity(out_size);
    let mut len = Vec::with_capacity(out_size);
    let mut weights = vec![0.0f64; out_size * ksize];
    for i in 0..out_size {
        let center = scale * (i as f64 + 0.5);
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let row = &mut weights[i * ksize..(i + 1) * ksize];
        let mut total = 0.0;
        for (j, w) in row.iter_mut().enumerate().take(n) {
            *w = aten_bicubic((j as f64 + xmin as f64 - center + 0.5) * invscale);
            total += *w;
        }
        if total != 0.0 {
            for w in row.iter_mut().take(n) {
                *w /= total;
            }
        }
        start.push(xmin);
        len.push(n);
    }
    let max_weight = weights.iter().copied().fold(0.0f64, f64::max);
    let mut precision = 0u32;
    while precision < 22 {
        if (0.5 + max_weight * f64::from(1u32 << (precision + 1))) as i64 >= (1 << 15) {
            break;
        }
        precision += 1;
    }
    let scaled = weights
        .iter()
        .map(|&w| {
            let v = w * f64::from(1u32 << precision);
            if v < 0.0 {
                (-0.5 + v) as i32
            } else {
                (0.5 + v) as i32
            }
        })
        .collect();
    (
        Taps {
            ksize,
            start,
            len,
            weights: scaled,
        },
        precision,
    )
}

/// Resizes interleaved RGB to `out_w x out_h` with the chosen bicubic.
/// Sizes must be non-zero (the caller checks; a zero size returns an empty image).
pub fn resize_rgb(src: &RgbImage, out_w: u32, out_h: u32, resample: Resample) -> RgbImage {
    if out_w == 0 || out_h == 0 || src.width() == 0 || src.height() == 0 {
        return RgbImage::new(out_w, out_h);
    }
    match resample {
        Resample::PilBicubic => resize_pil(src, out_w as usize, out_h as usize),
        Resample::TorchvisionBicubic => resize_aten(src, out_w as usize, out_h as usize),
    }
}

/// Pillow ≥ 13 runs the vertical pass first when the height shrinks by more
/// than twice as many pixels as the width does (`ImagingResampleInner`);
/// older Pillow always went horizontal first.
fn pil_horizontal_first(in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> bool {
    let dy = in_h as i64 - out_h as i64;
    let dx = in_w as i64 - out_w as i64;
    !(dy > 0 && dy > dx * 2)
}

/// One fixed-point 1-D pass along x over source rows `row0..row0 + rows`:
/// `clamp((½ + Σ wᵢ·pᵢ) >> precision, 0, 255)` in i32, as Pillow's
/// `ImagingResampleHorizontal_8bpc` (precision 22, whose `clip8` table is this
/// clamp) and ATen's u8 kernels (per-axis precision). Sums stay far inside i32:
/// Σ|wᵢ| < 2·2^precision and pixels ≤ 255.
fn conv_horizontal(
    src: &[u8],
    in_w: usize,
    row0: usize,
    rows: usize,
    taps: &Taps<i32>,
    precision: u32,
    out_w: usize,
) -> Vec<u8> {
    let half = 1i32 << precision.saturating_sub(1);
    let mut out = vec![0u8; rows * out_w * 3];
    let in_rows = src.chunks_exact(in_w * 3).skip(row0);
    for (in_row, out_row) in in_rows.zip(out.chunks_exact_mut(out_w * 3)) {
        for (xx, out_px) in out_row.chunks_exact_mut(3).enumerate() {
            let n = taps.len[xx];
            let k = &taps.weights[xx * taps.ksize..xx * taps.ksize + n];
            let start = taps.start[xx] * 3;
            let window = &in_row[start..start + n * 3];
            let (mut r, mut g, mut b) = (half, half, half);
            for (px, &w) in window.chunks_exact(3).zip(k) {
                r += i32::from(px[0]) * w;
                g += i32::from(px[1]) * w;
                b += i32::from(px[2]) * w;
            }
            out_px[0] = (r >> precision).clamp(0, 255) as u8;
            out_px[1] = (g >> precision).clamp(0, 255) as u8;
            out_px[2] = (b >> precision).clamp(0, 255) as u8;
        }
    }
    out
}

/// The matching pass along y (`ImagingResampleVertical_8bpc`); tap starts are
/// shifted by `-row0` (the rows the horizontal pass produced). The inner loop
/// runs along a whole row, so it vectorises.
fn conv_vertical(
    src: &[u8],
    width: usize,
    row0: usize,
    taps: &Taps<i32>,
    precision: u32,
    out_h: usize,
) -> Vec<u8> {
    let stride = width * 3;
    let half = 1i32 << precision.saturating_sub(1);
    let mut out = vec![0u8; out_h * stride];
    let mut acc = vec![0i32; stride];
    for (yy, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let k = &taps.weights[yy * taps.ksize..yy * taps.ksize + taps.len[yy]];
        let start = taps.start[yy] - row0;
        acc.fill(half);
        for (y, &w) in k.iter().enumerate() {
            let row = &src[(start + y) * stride..(start + y + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * w;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = (a >> precision).clamp(0, 255) as u8;
        }
    }
    out
}

fn resize_pil(src: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let need_h = in_w != out_w;
    let need_v = in_h != out_h;
    if !need_h && !need_v {
        return src.clone();
    }
    let data = src.as_raw();
    let out = if pil_horizontal_first(in_w, in_h, out_w, out_h) {
        let vert = pil_taps(in_h, out_h);
        // Only the rows the vertical pass reads (Pillow's ybox crop).
        let (first, last) = if need_v {
            let first = vert.start.first().copied().unwrap_or(0);
            let last =
                vert.start.last().copied().unwrap_or(0) + vert.len.last().copied().unwrap_or(0);
            (first, last)
        } else {
            (0, in_h)
        };
        let rows = if need_h {
            conv_horizontal(
                data,
                in_w,
                first,
                last - first,
                &pil_taps(in_w, out_w),
                PRECISION_BITS,
                out_w,
            )
        } else {
            data.clone()
        };
        let row0 = if need_h { first } else { 0 };
        if need_v {
            conv_vertical(&rows, out_w, row0, &vert, PRECISION_BITS, out_h)
        } else {
            rows
        }
    } else {
        let cols = if need_v {
            conv_vertical(data, in_w, 0, &pil_taps(in_h, out_h), PRECISION_BITS, out_h)
        } else {
            data.clone()
        };
        if need_h {
            conv_horizontal(
                &cols,
                in_w,
                0,
                out_h,
                &pil_taps(in_w, out_w),
                PRECISION_BITS,
                out_w,
            )
        } else {
            cols
        }
    };
    RgbImage::from_raw(out_w as u32, out_h as u32, out).unwrap_or_default()
}

/// torchvision's u8 bicubic: ATen's native u8 antialias kernel (horizontal
/// then vertical, u8 between passes).
fn resize_aten(src: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let mut data = src.as_raw().clone();
    if in_w != out_w {
        let (taps, precision) = aten_u8_taps(in_w, out_w);
        data = conv_horizontal(&data, in_w, 0, in_h, &taps, precision, out_w);
    }
    if in_h != out_h {
        let (taps, precision) = aten_u8_taps(in_h, out_h);
        data = conv_vertical(&data, out_w, 0, &taps, precision, out_h);
    }
    RgbImage::from_raw(out_w as u32, out_h as u32, data).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy() {
        let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 7]));
        assert_eq!(resize_rgb(&img, 5, 4, Resample::PilBicubic), img);
        assert_eq!(resize_rgb(&img, 5, 4, Resample::TorchvisionBicubic), img);
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(13, 9, image::Rgb([200, 17, 90]));
        for resample in [Resample::PilBicubic, Resample::TorchvisionBicubic] {
            let out = resize_rgb(&img, 31, 4, resample);
            assert!(out.pixels().all(|p| p.0 == [200, 17, 90]), "{resample:?}");
        }
    }

    #[test]
    fn pil_weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(10, 84), (1000, 112), (7, 7), (3, 56)] {
            let taps = pil_taps(i, o);
            for xx in 0..o {
                let s: i64 = taps.weights[xx * taps.ksize..(xx + 1) * taps.ksize]
                    .iter()
                    .map(|&w| i64::from(w))
                    .sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= taps.ksize as i64,
                    "{i}->{o}: {s}"
                );
            }
        }
    }
}
