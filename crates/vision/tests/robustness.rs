//! Property tests: arbitrary bytes, sizes and settings give results or typed
//! errors, never panics; results keep the processor's invariants.

use proptest::prelude::*;
use vlrl_vision::{
    decode_image, preprocess_images, preprocess_video, resize_rgb, smart_resize, DecodeOptions,
    ProcessorConfig, Resample,
};

fn png_bytes(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x as u8).wrapping_mul(seed),
            (y as u8).wrapping_add(seed),
            seed,
        ])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_image(&bytes, "fuzz", DecodeOptions::default());
    }

    #[test]
    fn decoding_corrupted_png_never_panics(cut in 0usize..400, flip in 0usize..400, seed in any::<u8>()) {
        let mut bytes = png_bytes(9, 7, seed);
        if let Some(b) = bytes.get_mut(flip) {
            *b ^= 0x5a;
        }
        bytes.truncate(cut.min(bytes.len()));
        let _ = decode_image(&bytes, "corrupt", DecodeOptions::default());
    }

    #[test]
    fn smart_resize_is_total_and_aligned(
        h in 0usize..5000, w in 0usize..5000, min in 0usize..200_000, max in 0usize..2_000_000,
    ) {
        if let Ok((rh, rw)) = smart_resize(h, w, 28, min, max) {
            prop_assert!(rh % 28 == 0 && rw % 28 == 0 && rh >= 28 && rw >= 28);
        }
    }

    #[test]
    fn preprocessing_small_images_is_consistent(
        w in 1u32..90, h in 1u32..90, seed in any::<u8>(), tv in any::<bool>(),
    ) {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x as u8) ^ seed, (y as u8).wrapping_mul(3), seed])
        });
        let config = ProcessorConfig {
            max_pixels: 28 * 28 * 12,
            resample: if tv { Resample::TorchvisionBicubic } else { Resample::PilBicubic },
            ..ProcessorConfig::default()
        };
        match preprocess_images(std::slice::from_ref(&img), &config) {
            Ok(p) => {
                let [t, gh, gw] = p.grid_thw[0];
                prop_assert_eq!(t, 1);
                prop_assert_eq!(p.num_patches(), gh * gw);
                prop_assert_eq!(p.data.len(), gh * gw * 1176);
                prop_assert!(p.data.iter().all(|v| v.is_finite()));
            }
            Err(e) => prop_assert!(matches!(e, vlrl_vision::VisionError::AspectRatio { .. }), "{e}"),
        }
        let frames = vec![img.clone(), img.clone(), img];
        if let Ok(p) = preprocess_video(&frames, &config) {
            prop_assert_eq!(p.grid_thw[0][0], 2);
        }
    }

    #[test]
    fn constant_images_resize_to_constants(
        w in 1u32..60, h in 1u32..60, ow in 1u32..120, oh in 1u32..120, v in any::<u8>(), tv in any::<bool>(),
    ) {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([v, v, v]));
        let resample = if tv { Resample::TorchvisionBicubic } else { Resample::PilBicubic };
        let out = resize_rgb(&img, ow, oh, resample);
        prop_assert_eq!(out.dimensions(), (ow, oh));
        prop_assert!(out.as_raw().iter().all(|&p| (i32::from(p) - i32::from(v)).abs() <= 1));
    }
}
