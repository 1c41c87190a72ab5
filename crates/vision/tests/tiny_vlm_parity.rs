//! Parity against the full tiny VLM checkpoints and reference outputs made by
//! `tools/make_fixtures.py` (tests/fixtures/models/, tests/fixtures/reference/):
//! preprocessing of their images and video, and both vision towers loaded from
//! the whole-model checkpoints (published `visual.*` names, both config layouts).

mod common;

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use vlrl_vision::{
    load_image, preprocess_images, preprocess_video, PixelPatches, ProcessorConfig,
    Qwen25VisionConfig, Qwen25VisionTower, Qwen2VisionConfig, Qwen2VisionTower, TensorStore,
    VisionError,
};

use common::B;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn json(path: PathBuf) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn processor(model: &str) -> ProcessorConfig {
    let text =
        std::fs::read_to_string(root().join(format!("models/{model}/preprocessor_config.json")))
            .unwrap();
    ProcessorConfig::from_json_str(&text).unwrap()
}

fn video_processor(model: &str) -> ProcessorConfig {
    let image = processor(model);
    ProcessorConfig {
        min_pixels: image.min_pixels,
        max_pixels: image.max_pixels,
        ..ProcessorConfig::video_default()
    }
}

fn image(file: &str) -> image::RgbImage {
    load_image(root().join("reference").join(file)).unwrap()
}

fn grids(v: &serde_json::Value) -> Vec<[usize; 3]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let g: Vec<usize> = g
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            [g[0], g[1], g[2]]
        })
        .collect()
}

fn files(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn max_err(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len());
    ours.iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

#[test]
fn preprocessing_matches_reference_cases() {
    let cases = json(root().join("reference/preprocess/cases.json"));
    let tensors =
        TensorStore::open(root().join("reference/preprocess/tensors.safetensors")).unwrap();
    let config = processor("qwen2-vl-tiny");
    let mut checked = 0;
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        if name == "video" {
            let frames: Vec<_> = files(&case["files"]).iter().map(|f| image(f)).collect();
            let ours = preprocess_video(&frames, &video_processor("qwen2-vl-tiny")).unwrap();
            assert_eq!(
                ours.grid_thw,
                grids(&serde_json::json!([case["video_grid_thw"]]))
            );
            let (reference, _) = tensors
                .read_f32(case["pixel_values_key"].as_str().unwrap())
                .unwrap();
            let err = max_err(&ours.data, &reference);
            println!("video: max abs err {err:.3e}");
            assert_eq!(err, 0.0);
            checked += 1;
            continue;
        }
        let img = image(case["file"].as_str().unwrap());
        let result = preprocess_images(&[img], &config);
        if case.get("error").is_some() {
            assert!(
                matches!(result, Err(VisionError::AspectRatio { .. })),
                "{name}: {result:?}"
            );
            checked += 1;
            continue;
        }
        let ours = result.unwrap();
        assert_eq!(
            ours.grid_thw,
            grids(&serde_json::json!([case["image_grid_thw"]])),
            "{name}"
        );
        if let Some(key) = case.get("pixel_values_key").and_then(|k| k.as_str()) {
            let (reference, _) = tensors.read_f32(key).unwrap();
            let err = max_err(&ours.data, &reference);
            println!("{name}: max abs err {err:.3e}");
            assert_eq!(err, 0.0, "{name}");
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} cases");
}

/// Pixel values and grids of a VLM case, preprocessed by us from the images.
fn case_inputs(
    model: &str,
    case: &serde_json::Value,
) -> (Option<PixelPatches>, Option<PixelPatches>) {
    let images: Vec<_> = files(&case["image_files"])
        .iter()
        .map(|f| image(f))
        .collect();
    let videos: Vec<_> = files(&case["video_files"])
        .iter()
        .map(|f| image(f))
        .collect();
    let img = (!images.is_empty()).then(|| preprocess_images(&images, &processor(model)).unwrap());
    let vid =
        (!videos.is_empty()).then(|| preprocess_video(&videos, &video_processor(model)).unwrap());
    (img, vid)
}

fn tensor(p: &PixelPatches) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(p.data.clone(), [p.num_patches(), p.patch_dim]),
        &Default::default(),
    )
}

fn check_family<F>(model: &str, forward: F)
where
    F: Fn(Tensor<B, 2>, &[[usize; 3]]) -> vlrl_vision::VisionOutput<B>,
{
    let reference = json(root().join(format!("reference/{model}/cases.json")));
    let tensors =
        TensorStore::open(root().join(format!("reference/{model}/tensors.safetensors"))).unwrap();
    let mut worst = 0.0f32;
    for case in reference["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (img, vid) = case_inputs(model, case);
        for (kind, patches, grid_key) in [
            ("image", img, "image_grid_thw"),
            ("video", vid, "video_grid_thw"),
        ] {
            let Some(patches) = patches else { continue };
            assert_eq!(
                patches.grid_thw,
                grids(&case[grid_key]),
                "{model}/{name} {kind} grid"
            );
            let out = forward(tensor(&patches), &patches.grid_thw);
            let (embeds, _) = tensors.read_f32(&format!("{name}.{kind}_embeds")).unwrap();
            let ours: Vec<f32> = out.merged.into_data().to_vec().unwrap();
            let err = max_err(&ours, &embeds);
            let tol = common::tolerance(1e-4, &embeds);
            assert!(err <= tol, "{model}/{name} {kind} merged: {err} > {tol}");
            let hidden_key = format!("{name}.{kind}_vision_hidden");
            if tensors.contains(&hidden_key) {
                let (hidden, _) = tensors.read_f32(&hidden_key).unwrap();
                let ours: Vec<f32> = out.last_hidden_state.into_data().to_vec().unwrap();
                let hidden_err = max_err(&ours, &hidden);
                let tol = common::tolerance(1e-4, &hidden);
                assert!(
                    hidden_err <= tol,
                    "{model}/{name} {kind} hidden: {hidden_err} > {tol}"
                );
                worst = worst.max(hidden_err);
            }
            println!("{model}/{name} {kind}: merged max abs err {err:.3e}");
            worst = worst.max(err);
        }
    }
    println!("{model}: worst {worst:.3e}");
}

#[test]
fn qwen2_vl_tiny_tower_matches_reference() {
    let store = TensorStore::open(root().join("models/qwen2-vl-tiny")).unwrap();
    for config_file in ["config.json", "config.published.json"] {
        let config = Qwen2VisionConfig::from_json_value(&json(
            root().join(format!("models/qwen2-vl-tiny/{config_file}")),
        ))
        .unwrap();
        let tower =
            Qwen2VisionTower::<B>::load(&config, &store, "visual.", &Default::default()).unwrap();
        check_family("qwen2-vl-tiny", |x, g| tower.forward(x, g).unwrap());
    }
}

#[test]
fn qwen2_5_vl_tiny_tower_matches_reference() {
    let store = TensorStore::open(root().join("models/qwen2_5-vl-tiny")).unwrap();
    for config_file in ["config.json", "config.published.json"] {
        let config = Qwen25VisionConfig::from_json_value(&json(
            root().join(format!("models/qwen2_5-vl-tiny/{config_file}")),
        ))
        .unwrap();
        let tower =
            Qwen25VisionTower::<B>::load(&config, &store, "visual.", &Default::default()).unwrap();
        check_family("qwen2_5-vl-tiny", |x, g| tower.forward(x, g).unwrap());
    }
}
