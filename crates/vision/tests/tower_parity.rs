//! Vision-tower parity with transformers 5.24 on small random-weight configs
//! (fixtures from tools/make_vision_fixtures.py), loading the weights through
//! the real loader by their checkpoint names (`visual.*`).

mod common;

use burn::tensor::{Tensor, TensorData};
use common::{fixtures, grid, read, store, tolerance};
use vlrl_vision::{
    Qwen25VisionConfig, Qwen25VisionTower, Qwen2VisionConfig, Qwen2VisionTower, TensorStore,
    WeightError,
};

use common::B;

fn config_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

fn inputs() -> (Tensor<B, 2>, Vec<[usize; 3]>) {
    let io = store("tower_io.safetensors");
    let (pixels, shape) = read(&io, "pixel_values");
    let t = Tensor::from_data(
        TensorData::new(pixels, [shape[0], shape[1]]),
        &Default::default(),
    );
    (t, grid(&io, "grid_thw"))
}

fn max_abs(t: Tensor<B, 2>, reference: &[f32], label: &str) -> f32 {
    let ours: Vec<f32> = t.into_data().to_vec().unwrap();
    assert_eq!(ours.len(), reference.len(), "{label}: size");
    let err = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let scale = reference.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    println!("{label}: max abs err {err:.3e} (max |ref| {scale:.3})");
    err
}

#[test]
fn qwen2_vl_tower_matches_reference() {
    let config =
        Qwen2VisionConfig::from_json_value(&config_json("qwen2_vl_vision_config.json")).unwrap();
    let weights = store("qwen2_vl_tower.safetensors");
    let tower =
        Qwen2VisionTower::<B>::load(&config, &weights, "visual.", &Default::default()).unwrap();
    let (pixels, grid_thw) = inputs();
    let out = tower.forward(pixels, &grid_thw).unwrap();
    let io = store("tower_io.safetensors");
    let hidden = read(&io, "qwen2_vl.last_hidden_state").0;
    let merged = read(&io, "qwen2_vl.pooler_output").0;
    assert!(max_abs(out.last_hidden_state, &hidden, "qwen2_vl hidden") <= tolerance(1e-4, &hidden));
    assert!(max_abs(out.merged, &merged, "qwen2_vl merged") <= tolerance(1e-4, &merged));
}

#[test]
fn qwen2_5_vl_tower_matches_reference() {
    let config =
        Qwen25VisionConfig::from_json_value(&config_json("qwen2_5_vl_vision_config.json")).unwrap();
    let weights = store("qwen2_5_vl_tower.safetensors");
    let tower =
        Qwen25VisionTower::<B>::load(&config, &weights, "visual.", &Default::default()).unwrap();
    let (pixels, grid_thw) = inputs();
    let out = tower.forward(pixels, &grid_thw).unwrap();
    let io = store("tower_io.safetensors");
    let hidden = read(&io, "qwen2_5_vl.last_hidden_state").0;
    let merged = read(&io, "qwen2_5_vl.pooler_output").0;
    assert!(
        max_abs(
            out.last_hidden_state,
            &hidden,
            "qwen2_5_vl hidden (window order)"
        ) <= tolerance(1e-4, &hidden)
    );
    assert!(max_abs(out.merged, &merged, "qwen2_5_vl merged") <= tolerance(1e-4, &merged));
}

#[test]
fn loading_reports_missing_unexpected_and_shape_errors() {
    let config =
        Qwen2VisionConfig::from_json_value(&config_json("qwen2_vl_vision_config.json")).unwrap();
    let weights = store("qwen2_vl_tower.safetensors");
    let device = Default::default();
    // Wrong prefix: every name is missing.
    let err = Qwen2VisionTower::<B>::load(&config, &weights, "model.visual.", &device).unwrap_err();
    match err {
        WeightError::Missing { names } => {
            assert!(names.contains(&"model.visual.blocks.0.attn.qkv.weight".to_string()))
        }
        other => panic!("{other}"),
    }
    // One block fewer than the checkpoint: block 1's tensors are unexpected.
    let mut shallow = config.clone();
    shallow.depth = 1;
    let err = Qwen2VisionTower::<B>::load(&shallow, &weights, "visual.", &device).unwrap_err();
    match err {
        WeightError::Unexpected { names } => {
            assert!(names.iter().all(|n| n.starts_with("visual.blocks.1.")))
        }
        other => panic!("{other}"),
    }
    // A wider MLP: fc1 has the wrong shape.
    let mut wide = config.clone();
    wide.mlp_ratio *= 2.0;
    let err = Qwen2VisionTower::<B>::load(&wide, &weights, "visual.", &device).unwrap_err();
    assert!(
        matches!(err, WeightError::Shape { ref name, .. } if name == "visual.blocks.0.mlp.fc1.weight"),
        "{err}"
    );
    // Garbage bytes are a typed error.
    let bad = TensorStore::from_buffers(vec![(
        "junk.safetensors".into(),
        b"not a safetensors file".to_vec(),
    )]);
    assert!(matches!(bad, Err(WeightError::Safetensors { .. })));
}

#[test]
fn forward_rejects_inconsistent_inputs() {
    let config =
        Qwen2VisionConfig::from_json_value(&config_json("qwen2_vl_vision_config.json")).unwrap();
    let weights = store("qwen2_vl_tower.safetensors");
    let tower =
        Qwen2VisionTower::<B>::load(&config, &weights, "visual.", &Default::default()).unwrap();
    let (pixels, _) = inputs();
    assert!(tower.forward(pixels.clone(), &[[1, 4, 6]]).is_err());
    assert!(tower.forward(pixels.clone(), &[]).is_err());
    assert!(tower.forward(pixels, &[[1, 3, 20]]).is_err());
}
