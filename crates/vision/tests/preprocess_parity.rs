//! Preprocessing parity with transformers 5.24's Qwen2-VL image and video
//! processors (PIL and torchvision backends).

mod common;

use common::{error_stats, fixtures, grid, read, store};
use vlrl_vision::{
    load_image, load_image_with, preprocess_images, preprocess_video, AlphaHandling, DecodeOptions,
    ProcessorConfig, Resample, VisionError,
};

const CASES: &[&str] = &[
    "tiny",
    "odd",
    "huge",
    "wide",
    "tall",
    "rgba",
    "grey",
    "grey_alpha",
    "grey16",
    "rgb16",
    "rgba16",
    "palette",
    "exif_rot6",
];
const TV_CASES: &[&str] = &["tiny", "odd", "rgba"];

fn case_config(name: &str, resample: Resample) -> ProcessorConfig {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("meta.json")).unwrap())
            .unwrap();
    let kwargs = &meta["preprocess"][name];
    let mut config = ProcessorConfig {
        resample,
        ..ProcessorConfig::default()
    };
    if let Some(v) = kwargs.get("min_pixels").and_then(|v| v.as_u64()) {
        config.min_pixels = v as usize;
    }
    if let Some(v) = kwargs.get("max_pixels").and_then(|v| v.as_u64()) {
        config.max_pixels = v as usize;
    }
    config
}

/// Our patches keep both temporal copies; the fixture stores slot 0 only
/// (the script asserts the reference's two copies are identical).
fn temporal_slots(data: &[f32], slot_len: usize, slots: usize) -> Vec<Vec<f32>> {
    (0..slots)
        .map(|s| {
            data.chunks_exact(slot_len * slots)
                .flat_map(|row| {
                    (0..3).flat_map(move |c| {
                        let base = (c * slots + s) * (slot_len / 3);
                        row[base..base + slot_len / 3].iter().copied()
                    })
                })
                .collect()
        })
        .collect()
}

fn check(
    label: &str,
    ours: &vlrl_vision::PixelPatches,
    reference: &[f32],
    ref_grid: &[[usize; 3]],
) -> (f32, f64) {
    assert_eq!(ours.grid_thw, ref_grid, "{label}: grid_thw");
    let slot_len = 3 * 14 * 14;
    let mut worst = (0.0f32, 1.0f64);
    for slot in temporal_slots(&ours.data, slot_len, 2) {
        let (max, frac) = error_stats(&slot, reference);
        worst = (worst.0.max(max), worst.1.min(frac));
    }
    println!(
        "{label}: max abs err {:.3e}, within 1e-5: {:.4}%",
        worst.0,
        worst.1 * 100.0
    );
    assert!(worst.0 <= 1e-2, "{label}: max abs error {}", worst.0);
    assert!(worst.1 >= 0.99, "{label}: only {} within 1e-5", worst.1);
    worst
}

#[test]
fn images_match_pil_backend() {
    let s = store("preprocess.safetensors");
    let mut exact = 0;
    for name in CASES {
        let image = load_image(fixtures().join(format!("images/{name}.png"))).unwrap();
        let ours = preprocess_images(&[image], &case_config(name, Resample::PilBicubic)).unwrap();
        let (reference, _) = read(&s, &format!("{name}.pil.pixel_values"));
        let (max, _) = check(
            &format!("{name} (pil)"),
            &ours,
            &reference,
            &grid(&s, &format!("{name}.pil.grid_thw")),
        );
        if max == 0.0 {
            exact += 1;
        }
    }
    println!("{exact}/{} images bit-exact", CASES.len());
}

#[test]
fn images_match_torchvision_backend() {
    let s = store("preprocess.safetensors");
    for name in TV_CASES {
        let image = load_image(fixtures().join(format!("images/{name}.png"))).unwrap();
        let ours =
            preprocess_images(&[image], &case_config(name, Resample::TorchvisionBicubic)).unwrap();
        let (reference, _) = read(&s, &format!("{name}.tv.pixel_values"));
        check(
            &format!("{name} (torchvision)"),
            &ours,
            &reference,
            &grid(&s, &format!("{name}.tv.grid_thw")),
        );
    }
}

#[test]
fn load_image_drops_alpha_like_transformers_load_image() {
    let s = store("preprocess.safetensors");
    for name in ["rgba", "exif_rot6"] {
        let options = DecodeOptions {
            alpha: AlphaHandling::Drop,
            ..DecodeOptions::default()
        };
        let image =
            load_image_with(fixtures().join(format!("images/{name}.png")), options).unwrap();
        let ours = preprocess_images(&[image], &case_config(name, Resample::PilBicubic)).unwrap();
        let (reference, _) = read(&s, &format!("{name}.load_image.pil.pixel_values"));
        check(
            &format!("{name} (load_image)"),
            &ours,
            &reference,
            &grid(&s, &format!("{name}.load_image.pil.grid_thw")),
        );
    }
}

#[test]
fn batch_is_concatenation_in_order() {
    let s = store("preprocess.safetensors");
    let config = ProcessorConfig::default();
    let odd = load_image(fixtures().join("images/odd.png")).unwrap();
    let tiny = load_image(fixtures().join("images/tiny.png")).unwrap();
    let batch = preprocess_images(&[odd.clone(), tiny.clone()], &config).unwrap();
    assert_eq!(batch.grid_thw, grid(&s, "batch.pil.grid_thw"));
    let mut expected = preprocess_images(&[odd], &config).unwrap();
    expected.extend(preprocess_images(&[tiny], &config).unwrap());
    assert_eq!(batch, expected);
}

#[test]
fn video_matches_torchvision_video_processor() {
    let s = store("preprocess.safetensors");
    let frames: Vec<_> = (0..5)
        .map(|i| load_image(fixtures().join(format!("images/video_frame{i}.png"))).unwrap())
        .collect();
    let config = ProcessorConfig {
        min_pixels: 28 * 28 * 2,
        max_pixels: 28 * 28 * 16,
        ..ProcessorConfig::video_default()
    };
    let ours = preprocess_video(&frames, &config).unwrap();
    let (reference, _) = read(&s, "video.tv.pixel_values");
    assert_eq!(ours.grid_thw, grid(&s, "video.tv.grid_thw"));
    let (max, frac) = error_stats(&ours.data, &reference);
    println!(
        "video (torchvision): max abs err {max:.3e}, within 1e-5: {:.4}%",
        frac * 100.0
    );
    assert!(max <= 1e-2 && frac >= 0.99);
}

#[test]
fn aspect_ratio_over_limit_is_an_error() {
    let image = load_image(fixtures().join("images/too_wide.png")).unwrap();
    let err = preprocess_images(&[image], &ProcessorConfig::default()).unwrap_err();
    assert!(matches!(err, VisionError::AspectRatio { .. }), "{err}");
}

#[test]
fn truncated_and_missing_files_are_errors() {
    let bytes = std::fs::read(fixtures().join("images/odd.png")).unwrap();
    let cut = &bytes[..bytes.len() / 2];
    let err = vlrl_vision::decode_image(cut, "half.png", DecodeOptions::default()).unwrap_err();
    assert!(matches!(err, VisionError::Decode { .. }), "{err}");
    let err = load_image(fixtures().join("images/does_not_exist.png")).unwrap_err();
    assert!(matches!(err, VisionError::Io { .. }), "{err}");
    let err = vlrl_vision::decode_image(&bytes[..20], "header-only", DecodeOptions::default())
        .unwrap_err();
    assert!(matches!(err, VisionError::Decode { .. }), "{err}");
}

#[test]
fn zero_size_images_are_errors() {
    let empty = image::RgbImage::new(0, 5);
    let err = preprocess_images(&[empty], &ProcessorConfig::default()).unwrap_err();
    assert!(matches!(err, VisionError::ZeroSize { .. }), "{err}");
    // A PNG header claiming 0x0 is rejected by the decoder or by us, never a panic.
    let mut png = Vec::new();
    image::RgbImage::new(1, 1)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png[16..24].copy_from_slice(&[0; 8]);
    assert!(vlrl_vision::decode_image(&png, "zero.png", DecodeOptions::default()).is_err());
}

/// Same pixels as `test_card` in benches/vision.rs and tools/make_vision_fixtures.py.
fn test_card(width: u32, height: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        let v = x
            .wrapping_mul(7)
            .wrapping_add(y.wrapping_mul(13))
            .wrapping_add(seed.wrapping_mul(31));
        image::Rgb([
            (v % 251) as u8,
            ((x ^ y) % 256) as u8,
            ((x * y + seed) % 253) as u8,
        ])
    })
}

fn fnv1a64(values: &[f32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Full-size images (default min/max pixels), compared through a hash of the
/// reference's f32 bytes: equal hashes mean bit-identical pixel_values.
#[test]
fn large_images_are_bit_identical() {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("meta.json")).unwrap())
            .unwrap();
    for (w, h) in [(1024u32, 768u32), (1000, 1333)] {
        let img = test_card(w, h, 0);
        for (backend, resample) in [
            ("pil", Resample::PilBicubic),
            ("tv", Resample::TorchvisionBicubic),
        ] {
            let expected = &meta["large_images"][format!("{w}x{h}.{backend}")];
            let config = ProcessorConfig {
                resample,
                ..ProcessorConfig::default()
            };
            let ours = preprocess_images(std::slice::from_ref(&img), &config).unwrap();
            let grid: Vec<usize> = ours.grid_thw[0].to_vec();
            assert_eq!(
                serde_json::json!(grid),
                expected["grid_thw"],
                "{w}x{h} {backend}"
            );
            assert_eq!(ours.data.len() as u64, expected["len"].as_u64().unwrap());
            assert_eq!(
                fnv1a64(&ours.data),
                expected["fnv1a64"].as_str().unwrap(),
                "{w}x{h} {backend}"
            );
        }
    }
}
