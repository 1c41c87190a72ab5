//! Parity of Qwen2-VL / Qwen2.5-VL composition with transformers: vision
//! features (our tower vs HF), logits (≤ 1e-4) with one and two images and
//! with a video, and greedy generation token for token.

mod common;

use burn::tensor::{Tensor, TensorData};
use common::*;
use serde_json::Value;
use vlrl_qwen::generate::SamplingParams;
use vlrl_qwen::{MultimodalBatch, Qwen2VL, VisionInput};

const MODELS: [&str; 2] = ["qwen2-vl-tiny", "qwen2_5-vl-tiny"];

fn tensor(values: Vec<f32>, shape: &[usize]) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(values, [shape[0], shape[1]]),
        &Default::default(),
    )
}

fn stem(file: &Value) -> String {
    let f = file.as_str().unwrap();
    f.rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".png")
        .to_string()
}

fn grids(v: &Value) -> Vec<[usize; 3]> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The batch of one fixture case, pixels from `reference/preprocess`.
fn batch(case: &Value) -> MultimodalBatch<B> {
    let images = case["image_files"].as_array().unwrap();
    let images = (!images.is_empty()).then(|| {
        let mut values = Vec::new();
        let mut rows = 0;
        for f in images {
            let (v, shape) = reference_tensor("preprocess", &format!("{}.pixel_values", stem(f)));
            values.extend(v);
            rows += shape[0];
        }
        VisionInput {
            pixel_values: tensor(values, &[rows, 1176]),
            grid_thw: grids(&case["image_grid_thw"]),
        }
    });
    let videos = (!case["video_files"].as_array().unwrap().is_empty()).then(|| {
        let (v, shape) = reference_tensor("preprocess", "video.pixel_values_videos");
        VisionInput {
            pixel_values: tensor(v, &shape),
            grid_thw: grids(&case["video_grid_thw"]),
        }
    });
    MultimodalBatch {
        input_ids: ids(&case["input_ids"]),
        attention_mask: mask(&case["attention_mask"]),
        images,
        videos,
        second_per_grid_ts: serde_json::from_value(case["second_per_grid_ts"].clone()).ok(),
    }
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Compares logits with the reference (`logits` full, or `last_logits`).
fn check_logits(model: &str, case: &Value, logits: Tensor<B, 3>, what: &str) {
    let name = case["name"].as_str().unwrap();
    let key = case["logits_key"].as_str().unwrap();
    let (want, _) = reference_tensor(model, &format!("{name}.{key}"));
    let [b, s, v] = logits.dims();
    let got: Vec<f32> = if key == "last_logits" {
        logits
            .narrow(1, s - 1, 1)
            .reshape([b * v])
            .into_data()
            .into_vec()
            .unwrap()
    } else {
        logits.into_data().into_vec().unwrap()
    };
    let err = max_abs(&got, &want);
    eprintln!("{model}/{name} ({what}): max |Δlogits| = {err:e}");
    let tol = common::tolerance(1e-4, &want);
    assert!(err <= tol, "{model}/{name} ({what}): {err} > {tol}");
}

#[test]
fn composition_with_reference_features_matches_logits() {
    for model_name in MODELS {
        let model = Qwen2VL::<B>::from_dir(model_dir(model_name), &Default::default()).unwrap();
        for case in cases(model_name)["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let feature = |kind: &str| {
                let has = !case[format!("{kind}_files")].as_array().unwrap().is_empty();
                has.then(|| {
                    let (v, shape) = reference_tensor(model_name, &format!("{name}.{kind}_embeds"));
                    tensor(v, &shape)
                })
            };
            let prefill = model
                .prefill_with_features(&batch(case), feature("image"), feature("video"))
                .unwrap();
            check_logits(
                model_name,
                case,
                model.forward_prefill(prefill),
                "HF features",
            );
        }
    }
}

#[test]
fn full_model_matches_features_logits_and_generation() {
    for model_name in MODELS {
        let model = Qwen2VL::<B>::from_dir(model_dir(model_name), &Default::default()).unwrap();
        let fixture = cases(model_name);
        let pad = fixture["pad_token_id"].as_u64().unwrap() as u32;
        let stop: Vec<u32> = serde_json::from_value(fixture["eos_token_id"].clone()).unwrap();
        for case in fixture["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let b = batch(case);
            for (input, kind) in [(&b.images, "image"), (&b.videos, "video")] {
                if let Some(input) = input {
                    let got = model
                        .visual
                        .encode(input.pixel_values.clone(), &input.grid_thw)
                        .unwrap();
                    let (want, _) = reference_tensor(model_name, &format!("{name}.{kind}_embeds"));
                    let err = max_abs(&got.into_data().into_vec::<f32>().unwrap(), &want);
                    eprintln!("{model_name}/{name}: max |Δ{kind} features| = {err:e}");
                    let tol = common::tolerance(1e-4, &want);
                    assert!(
                        err <= tol,
                        "{model_name}/{name} {kind} features: {err} > {tol}"
                    );
                }
            }
            check_logits(model_name, case, model.forward(&b).unwrap(), "our tower");
            let params = SamplingParams {
                max_new_tokens: case["max_new_tokens"].as_u64().unwrap() as usize,
                stop_tokens: stop.clone(),
                ..Default::default()
            };
            let out = model.generate(&b, pad, &params).unwrap();
            for (row, want) in ids(&case["generated_ids_cache"]).iter().enumerate() {
                let got = &out.tokens[row];
                assert_eq!(
                    &want[..got.len()],
                    got.as_slice(),
                    "{model_name}/{name} row {row}"
                );
                assert!(want[got.len()..].iter().all(|&t| t == pad));
            }
        }
    }
}

#[test]
fn placeholder_feature_mismatch_is_an_error() {
    let model = Qwen2VL::<B>::from_dir(model_dir("qwen2-vl-tiny"), &Default::default()).unwrap();
    let case = &cases("qwen2-vl-tiny")["cases"][0];
    let mut b = batch(case);
    // One placeholder too many.
    let image = model.tokens().image_token_id;
    b.input_ids[0].push(image);
    b.attention_mask[0].push(1);
    let err = model.forward(&b).unwrap_err().to_string();
    assert!(
        err.contains("do not match") || err.contains("rope index"),
        "{err}"
    );
    // Images given but the prompt has no placeholder.
    let mut b = batch(case);
    b.input_ids[0].retain(|&t| t != image);
    b.attention_mask[0].truncate(b.input_ids[0].len());
    assert!(model.forward(&b).is_err());
}
