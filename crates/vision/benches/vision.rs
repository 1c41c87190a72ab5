//! Preprocessing and vision-tower benchmarks (CPU, burn Flex backend).
//!
//!     cargo bench -p vlrl-vision --bench vision
//!
//! Python counterpart: tools/vision_bench_compare.py (same inputs and configs);
//! numbers are recorded in docs/vision.md.

use burn::backend::Flex;
use criterion::{criterion_group, criterion_main, Criterion};
use image::RgbImage;
use vlrl_vision::{
    preprocess_images, Activation, ProcessorConfig, Qwen25VisionConfig, Qwen25VisionTower,
    Qwen2VisionConfig, Qwen2VisionTower, Resample,
};

type B = Flex;

/// The same deterministic test card as tools/vision_bench_compare.py.
pub fn test_card(width: u32, height: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
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

fn preprocessing(c: &mut Criterion) {
    let one = vec![test_card(1024, 768, 0)];
    let eight: Vec<RgbImage> = (0..8).map(|i| test_card(1024, 768, i)).collect();
    let mut group = c.benchmark_group("preprocess");
    group.sample_size(20);
    for (label, resample) in [
        ("pil", Resample::PilBicubic),
        ("torchvision", Resample::TorchvisionBicubic),
    ] {
        let config = ProcessorConfig {
            resample,
            ..ProcessorConfig::default()
        };
        group.bench_function(format!("1024x768/{label}"), |b| {
            b.iter(|| preprocess_images(&one, &config).unwrap())
        });
        group.bench_function(format!("8x1024x768/{label}"), |b| {
            b.iter(|| preprocess_images(&eight, &config).unwrap())
        });
    }
    group.finish();
}

/// Qwen2-VL-2B's vision width (1280, 16 heads, MLP 5120) at depth 2.
pub fn qwen2_vl_bench_config() -> Qwen2VisionConfig {
    Qwen2VisionConfig {
        depth: 2,
        embed_dim: 1280,
        hidden_size: 1536,
        hidden_act: Activation::QuickGelu,
        mlp_ratio: 4.0,
        num_heads: 16,
        in_channels: 3,
        patch_size: 14,
        spatial_merge_size: 2,
        temporal_patch_size: 2,
        rope_parameters: None,
        rope_theta: None,
    }
}

/// Qwen2.5-VL-3B's vision width (1280, 16 heads, SwiGLU 3420, windows of 112 px) at depth 2.
pub fn qwen2_5_vl_bench_config() -> Qwen25VisionConfig {
    Qwen25VisionConfig {
        depth: 2,
        hidden_size: 1280,
        hidden_act: Activation::Silu,
        intermediate_size: 3420,
        num_heads: 16,
        in_channels: 3,
        patch_size: 14,
        spatial_merge_size: 2,
        temporal_patch_size: 2,
        tokens_per_second: Some(2.0),
        window_size: 112,
        out_hidden_size: 2048,
        fullatt_block_indexes: vec![1],
        rope_parameters: None,
        rope_theta: None,
    }
}

fn towers(c: &mut Criterion) {
    let device = Default::default();
    let patches =
        preprocess_images(&[test_card(448, 448, 1)], &ProcessorConfig::default()).unwrap();
    let grid = patches.grid_thw.clone();
    let mut group = c.benchmark_group("tower_448x448_depth2");
    group.sample_size(10);
    let qwen2 = Qwen2VisionTower::<B>::random(&qwen2_vl_bench_config(), 0, &device).unwrap();
    group.bench_function("qwen2_vl", |b| {
        b.iter(|| {
            let out = qwen2
                .forward(patches.to_tensor::<B>(&device), &grid)
                .unwrap();
            out.merged.into_data()
        })
    });
    let qwen25 = Qwen25VisionTower::<B>::random(&qwen2_5_vl_bench_config(), 0, &device).unwrap();
    group.bench_function("qwen2_5_vl", |b| {
        b.iter(|| {
            let out = qwen25
                .forward(patches.to_tensor::<B>(&device), &grid)
                .unwrap();
            out.merged.into_data()
        })
    });
    group.finish();
}

criterion_group!(benches, preprocessing, towers);
criterion_main!(benches);
